"""Dataset versions of labeled data: open the next child version, compare, finalize or discard.

Shared by both labeling modes (``sync`` and ``watch``). A version is opened with
``Dataset.get(..., auto_create=True, writable_copy=True, only_completed=True)``: the metadata of the
latest *finalized* version (never its files) becomes the parent of a new writable version.
``only_completed`` matters: without it an unfinished version left by a killed run would become the
parent. A version that would change nothing is deleted instead of finalized, and a version carries
exactly the tags given (the SDK would copy the parent's tags onto the child).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from occupancy_mlops.clearml_api import LABELED_AT
from services.labeling.previews import PREVIEW_FILES, report_drift, report_previews

if TYPE_CHECKING:
    from clearml import Dataset

NOT_FOUND = "Could not find Dataset"


@dataclass
class VersionReport:
    """What one labeling round produced (``created`` is False when nothing changed)."""

    dataset_id: str
    parent_id: str | None
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    labeled_at: datetime | None = None
    """The newest modification time of the added or modified files: when the round's labels were
    written. Stored on the version as the user property ``labeled_at`` (ISO 8601, UTC)."""
    delta_bytes: int = 0
    total_bytes: int = 0
    total_files: int = 0
    tags: list[str] = field(default_factory=list)
    created: bool = True
    previewed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # watch mode: files refused by validation
    drift: str = ""
    """The preview's input drift line (against the champion's training data)."""

    def describe(self, project: str, name: str) -> str:
        """The lines the CLI prints for this round."""
        if not self.created:
            latest = f"version {self.dataset_id}" if self.dataset_id else "the dataset (it has no version)"
            return f"Nothing changed since {latest} of {project}/{name}: no new version created."
        lines = [
            f"New version {self.dataset_id} of {project}/{name} "
            f"(child of {self.parent_id or 'nothing: first version'}), finalized"
            + (f", tags: {', '.join(self.tags)}" if self.tags else ", no tags"),
            f"  files added:    {len(self.added)}" + _listing(self.added),
            f"  files modified: {len(self.modified)}" + _listing(self.modified),
            f"  files removed:  {len(self.removed)}" + _listing(self.removed),
            f"  delta size:     {human_size(self.delta_bytes)}",
            f"  version total:  {self.total_files} files, {human_size(self.total_bytes)}",
        ]
        if self.previewed:
            lines.append(f"  preview (scatter plots + tables) of: {', '.join(self.previewed)}")
        if self.drift:
            lines.append(f"  {self.drift}")
        return "\n".join(lines)


def _listing(paths: list[str], limit: int = 10) -> str:
    if not paths:
        return ""
    more = f", ... ({len(paths) - limit} more)" if len(paths) > limit else ""
    return " (" + ", ".join(paths[:limit]) + more + ")"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def latest_version(project: str, name: str) -> Dataset | None:
    """The latest finalized version (metadata only), or None when the dataset has none."""
    from clearml import Dataset

    try:
        return Dataset.get(dataset_project=project, dataset_name=name, only_completed=True)
    except ValueError as exc:
        if NOT_FOUND in str(exc):
            return None
        raise


def file_hashes(dataset: Dataset | None) -> dict[str, str]:
    """Dataset path → content hash of every file of a version."""
    if dataset is None:
        return {}
    return {path: entry.hash or "" for path, entry in dataset.file_entries_dict.items()}


def kept_files(dataset: Dataset, paths: set[str]) -> dict[str, Path]:
    """Local copies of the files ``paths`` of a finalized version (the SDK's cached, read-only copy;
    downloaded once per version), to validate a new version's files against the ones it keeps."""
    if not paths:
        return {}
    root = Path(dataset.get_local_copy())
    return {rel: root / rel for rel in sorted(paths)}


@dataclass
class OpenVersion:
    """A writable child version and the state of its parent (the base it is compared with)."""

    dataset: Dataset
    parent_id: str | None
    base: dict[str, str]  # dataset path → hash in the parent

    @property
    def id(self) -> str:
        return str(self.dataset.id)


def open_child(project: str, name: str) -> OpenVersion:
    """A new writable version, child of the latest finalized one (the dataset is created if absent)."""
    from clearml import Dataset

    dataset = Dataset.get(
        dataset_project=project,
        dataset_name=name,
        auto_create=True,
        writable_copy=True,
        only_completed=True,
    )
    parents = dataset.get_dependency_graph().get(dataset.id) or []
    return OpenVersion(dataset, parents[-1] if parents else None, file_hashes(dataset))


def changes(version: OpenVersion) -> tuple[dict[str, str], list[str]]:
    """(path → "added"/"modified", removed paths) of the open version against its parent."""
    now = file_hashes(version.dataset)
    changed = {
        path: "added" if path not in version.base else "modified"
        for path, digest in now.items()
        if version.base.get(path) != digest
    }
    removed = sorted(set(version.base) - set(now))
    return dict(sorted(changed.items())), removed


def finalize_or_discard(
    version: OpenVersion,
    on_disk: dict[str, Path],
    tags: list[str],
    preview_files: int = PREVIEW_FILES,
) -> VersionReport:
    """Finalize the open version with its previews and tags; discard it when nothing changed."""
    changed, removed = changes(version)
    if not changed and not removed:
        discard_version(version.id, version.dataset)
        return VersionReport(dataset_id=version.parent_id or "", parent_id=None, created=False)
    dataset = version.dataset
    if dataset.is_dirty():  # every file must be uploaded before finalize
        dataset.upload(show_progress=False, preview=False)
    entries = dataset.file_entries_dict
    present = {p: path for p, path in on_disk.items() if p in entries}
    previewed = report_previews(dataset.get_logger(), present, changed, preview_files)
    new = {p: present[p] for p in changed if p in present}
    drift = report_drift(dataset.get_logger(), new, dataset.project)
    labeled_at = labeled_moment([present[p] for p in changed if p in present])
    if labeled_at is not None:
        record_labeled_at(dataset, labeled_at)
    dataset.tags = sorted(set(tags))
    dataset.finalize()
    return VersionReport(
        dataset_id=version.id,
        parent_id=version.parent_id,
        added=[p for p, kind in changed.items() if kind == "added"],
        modified=[p for p, kind in changed.items() if kind == "modified"],
        removed=removed,
        delta_bytes=sum(entries[p].size or 0 for p in changed),
        total_bytes=sum(e.size or 0 for e in entries.values()),
        total_files=len(entries),
        tags=sorted(set(tags)),
        previewed=previewed,
        labeled_at=labeled_at,
        drift=drift,
    )


def labeled_moment(paths: list[Path]) -> datetime | None:
    """The newest modification time of ``paths`` (the labeling tool's last write), None for none."""
    times = [path.stat().st_mtime for path in paths if path.exists()]
    return datetime.fromtimestamp(max(times), UTC) if times else None


def record_labeled_at(dataset: Dataset, moment: datetime) -> None:
    """Store ``labeled_at`` on the version's task (before finalize: a finalized task is read-only).

    Through the dataset's own task object: a second handle on the same task could be overwritten
    when the dataset saves its state at finalize.
    """
    task = dataset._task  # the SDK offers no public handle on a version's task
    task.set_user_properties(**{LABELED_AT: moment.isoformat(timespec="milliseconds")})


def discard_version(dataset_id: str, dataset: Dataset | None = None) -> bool:
    """Delete an unfinished version and its uploaded chunks. False when it no longer exists.

    Refuses to delete a finalized version: that one is a real version, not a leftover.
    """
    from clearml import Task

    try:
        task: Task = Task.get_task(task_id=dataset_id)
    except ValueError:
        return False
    if task.status in ("completed", "published", "closed"):
        raise RuntimeError(f"version {dataset_id} is finalized; refusing to delete it")
    pinger = getattr(dataset, "_task_pinger", None)  # the SDK's liveness thread for this version
    if pinger is not None:
        pinger.unregister()
    return bool(task.delete(delete_artifacts_and_models=True, raise_on_error=True))


def is_finalized(dataset_id: str) -> bool | None:
    """True/False for an existing version, None when it does not exist (any more)."""
    from clearml import Task

    try:
        task: Task = Task.get_task(task_id=dataset_id)
    except ValueError:
        return None
    return task.status in ("completed", "published", "closed")
