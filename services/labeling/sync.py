"""The "upload" button: a labeled folder becomes the next dataset version (parent → child).

Only the version's metadata is fetched, never its files; ClearML hashes the folder, recognises
unchanged files and uploads only what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class VersionReport:
    """What one sync produced."""

    dataset_id: str
    parent_id: str | None
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    delta_bytes: int = 0
    total_bytes: int = 0
    total_files: int = 0
    tags: list[str] = field(default_factory=list)


def sync_folder(folder: Path, project: str, name: str, tags: list[str] | None = None) -> VersionReport:
    """Create the next version of ``project/name`` holding ``folder``, finalize and upload it."""
    from clearml import Dataset

    if not folder.is_dir():
        raise NotADirectoryError(f"labeled folder {folder} does not exist")
    dataset = Dataset.get(dataset_project=project, dataset_name=name, auto_create=True, writable_copy=True)
    parents = dataset._get_parents()
    parent = parents[-1] if parents else None
    dataset.add_files(path=str(folder), verbose=False)
    if tags:
        dataset.add_tags(tags)
    dataset.upload(show_progress=False, verbose=False)
    dataset.finalize()
    entries = dataset.file_entries_dict
    added = sorted(dataset.list_added_files(parent)) if parent else sorted(entries)
    modified = sorted(dataset.list_modified_files(parent)) if parent else []
    removed = sorted(dataset.list_removed_files(parent)) if parent else []
    return VersionReport(
        dataset_id=dataset.id,
        parent_id=parent,
        added=added,
        modified=modified,
        removed=removed,
        delta_bytes=sum(entries[p].size or 0 for p in [*added, *modified] if p in entries),
        total_bytes=sum(e.size or 0 for e in entries.values()),
        total_files=len(entries),
        tags=sorted(tags or []),
    )
