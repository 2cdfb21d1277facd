"""The "upload" button: a labeled folder becomes the next dataset version (parent → child).

1. Every done file of the folder (see :mod:`services.labeling.files`) is validated first; a bad
   file is refused with an error naming file, line and column before anything is created.
2. The latest finalized version's metadata (never its files) is read; when every file is already
   in it with the same content, nothing is created and the report says so.
3. Otherwise ``Dataset.get(..., auto_create=True, writable_copy=True)`` opens a child version,
   ``add_files(path=folder)`` adds the folder (ClearML hashes it, recognises unchanged files and
   uploads only the changed ones), the preview is logged, and the version is finalized. A failure
   on the way deletes the unfinished version: nothing half-written is left behind.

Files deleted from the folder stay in the dataset unless ``mirror`` is set.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath

from services.labeling.files import DONE_SUFFIXES, done_files, has_hidden_matches, sha256_of
from services.labeling.previews import PREVIEW_FILES
from services.labeling.versions import (
    VersionReport,
    discard_version,
    file_hashes,
    finalize_or_discard,
    kept_files,
    latest_version,
    open_child,
)
from training.data import load_dataset_files

__all__ = ["NoLabeledFilesError", "VersionReport", "sync_folder"]


class NoLabeledFilesError(FileNotFoundError):
    pass


def sync_folder(
    folder: Path,
    project: str,
    name: str,
    tags: list[str] | None = None,
    mirror: bool = False,
    preview_files: int = PREVIEW_FILES,
    show_progress: bool = False,
) -> VersionReport:
    """Make the next version of ``project/name`` hold ``folder``; finalize it with its upload.

    Raises :class:`training.data.DataValidationError` (file, line, column of every problem) or
    :class:`NoLabeledFilesError` before anything is created on the server.
    """
    files = done_files(folder)
    if not files:
        raise NoLabeledFilesError(
            f"no labeled files ({', '.join('*' + s for s in DONE_SUFFIXES)}) in {folder}"
        )
    latest = latest_version(project, name)
    known = file_hashes(latest)
    # what training will read: the folder's files and, without mirror, the parent's other files;
    # every file valid and none clashing with another, all problems at once, before anything is made
    kept = {} if mirror or latest is None else kept_files(latest, set(known) - set(files))
    load_dataset_files({**kept, **files})
    local = {rel: sha256_of(path) for rel, path in files.items()}
    unchanged = all(known.get(rel) == digest for rel, digest in local.items())
    if latest is not None and unchanged and (not mirror or set(known) <= set(local)):
        return VersionReport(dataset_id=str(latest.id), parent_id=None, created=False)

    version = open_child(project, name)
    try:
        dataset = version.dataset
        if mirror:
            for rel in sorted(set(version.base) - set(files)):
                dataset.remove_files(dataset_path=rel, recursive=False)
        if has_hidden_matches(folder):  # add the done files one by one, never a hidden one
            for rel, path in files.items():
                parent = PurePosixPath(rel).parent.as_posix()
                dataset.add_files(path=path, dataset_path=None if parent == "." else parent)
        else:
            dataset.add_files(path=folder, wildcard=[f"*{s}" for s in DONE_SUFFIXES], verbose=False)
        dataset.upload(show_progress=show_progress, verbose=False, preview=False)
        return finalize_or_discard(version, files, sorted(set(tags or [])), preview_files)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more than a cleanup failure
            if not version.dataset.is_final():
                discard_version(version.id, version.dataset)
        raise
