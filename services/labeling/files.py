"""Which files of a labeled folder are done, and their content hash.

**The done-convention.** A labeled file is *done* when it exists under its final name: a name
ending in ``.csv`` or ``.txt`` (the UCI layout), with no path component starting with a dot. A
labeling tool therefore writes a file under a temporary name (``day.csv.part``, ``.day.csv``, or in
another folder on the same file system) and renames it to its final name when the annotator marks
it done; the rename is atomic, so a watcher never sees half a file. Writing a file again (and
renaming it into place) marks it done again: the new content replaces the old one in the next
version. Hidden paths (``.label-watch/`` holds the watcher's state) are never part of the dataset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

DONE_SUFFIXES = (".csv", ".txt")


def is_done(path: Path, root: Path) -> bool:
    """True when ``path`` (inside ``root``) is a finished labeled file under the convention."""
    rel = path.relative_to(root)
    return (
        path.suffix in DONE_SUFFIXES
        and not any(part.startswith(".") for part in rel.parts)
        and path.is_file()
    )


def done_files(root: Path) -> dict[str, Path]:
    """Every done file under ``root``, keyed by its path inside the dataset (POSIX, relative)."""
    if not root.is_dir():
        raise NotADirectoryError(f"labeled folder {root} does not exist or is not a folder")
    found = {}
    for path in root.rglob("*"):
        if is_done(path, root):
            found[dataset_path_of(path, root)] = path
    return dict(sorted(found.items()))


def dataset_path_of(path: Path, root: Path) -> str:
    return PurePosixPath(*path.relative_to(root).parts).as_posix()


def has_hidden_matches(root: Path) -> bool:
    """True when a folder-wide ``*.csv``/``*.txt`` add would also pick up hidden files."""
    return any(
        p.is_file() and any(part.startswith(".") for part in p.relative_to(root).parts)
        for suffix in DONE_SUFFIXES
        for p in root.rglob(f"*{suffix}")
    )


def sha256_of(path: Path) -> str:
    """The content hash the ClearML SDK stores for a dataset file (hex SHA-256)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
