"""Fully automatic labeling sync: each done file is added and uploaded on its own, in the background.

A *labeling round* is one watch session: from ``start()`` to ``stop()`` (SIGINT/SIGTERM for the
command, a GUI's close event for a tool embedding :class:`LabelWatcher`). The round becomes one
dataset version, child of the latest finalized one, finalized by ``stop()`` with its preview and
tags. A round in which no file changed leaves no version behind.

**Done-convention** (see :mod:`services.labeling.files`): a file is done when it appears under its
final name ``*.csv`` (or ``*.txt``) outside hidden folders; write it under a temporary name
(``x.csv.part`` or ``.x.csv``) and rename it when the annotator marks it done. The folder is polled
(every second by default); each new or rewritten done file is validated (a bad file is refused with
file, line and column, and retried when it changes), added with
``add_files(path=file, dataset_path=<its folder>)`` and uploaded with ``upload()``. Files deleted
from the folder stay in the dataset (``label sync --mirror`` removes them).

**Crash recovery.** The id of the open (unfinished) version is kept in a small JSON state file,
written atomically (temporary file, fsync, rename), in ``<folder>/.label-watch/`` (``state_dir``).
Nothing is finalized before ``stop()``, so a run killed with SIGKILL, even in the middle of an
upload, leaves only an unfinished version, never a finalized partial one. The next run finds it in
the state file, deletes it with its uploaded chunks, and opens a new child of the latest finalized
version; since every done file is looked at again on start, the next version holds every file. A
lock file keeps two watchers off the same folder and dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import IO, Any

from tqdm import tqdm

from services.labeling.files import done_files, sha256_of
from services.labeling.previews import PREVIEW_FILES
from services.labeling.versions import (
    OpenVersion,
    VersionReport,
    discard_version,
    file_hashes,
    finalize_or_discard,
    human_size,
    is_finalized,
    kept_files,
    latest_version,
    open_child,
)
from training.data import DataValidationError, check_combined, read_labeled_csv, room_of

STATE_DIR_NAME = ".label-watch"


class WatcherBusyError(RuntimeError):
    pass


class WatchState:
    """The open version of one (folder, dataset) pair, persisted atomically as JSON."""

    def __init__(self, state_dir: Path, project: str, name: str) -> None:
        key = hashlib.sha1(f"{project}\0{name}".encode()).hexdigest()[:12]
        self.path = state_dir / f"state-{key}.json"
        self.lock_path = state_dir / f"state-{key}.lock"
        self.project, self.name = project, name
        self._lock: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise WatcherBusyError(
                f"another label watch is running for {self.project}/{self.name} ({self.lock_path})"
            ) from exc
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def open_version(self) -> str | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"unreadable label watch state {self.path}: {exc}") from exc
        return data.get("open_version_id") or None

    def save(self, version_id: str | None) -> None:
        data = {"project": self.project, "dataset": self.name, "open_version_id": version_id}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class LabelWatcher:
    """Watch a labeled folder; one dataset version per round (``start()`` … ``stop()``).

    For a GUI: ``watcher.start()`` when the tool opens, ``watcher.stop()`` in its close event.
    """

    def __init__(
        self,
        folder: Path,
        project: str,
        name: str,
        tags: Sequence[str] = (),
        state_dir: Path | None = None,
        poll_seconds: float = 1.0,
        preview_files: int = PREVIEW_FILES,
        progress: bool = True,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        if not folder.is_dir():
            raise NotADirectoryError(f"labeled folder {folder} does not exist or is not a folder")
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")
        self.folder = folder.resolve()
        self.project, self.name = project, name
        self.tags = sorted(set(tags))
        self.poll_seconds = poll_seconds
        self.preview_files = preview_files
        self.state = WatchState(state_dir or self.folder / STATE_DIR_NAME, project, name)
        self._progress = progress
        self.echo = echo or (lambda line: tqdm.write(line, file=sys.stdout))
        self._version: OpenVersion | None = None
        self._latest_id: str | None = None
        self._known: dict[str, str] = {}  # dataset path → hash of the version being built
        self._frames: dict[str, Any] = {}  # dataset path → validated rows of each file in it
        self._seen: dict[str, tuple[int, int]] = {}  # dataset path → (mtime_ns, size) handled
        self._refused: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: tqdm[Any] | None = None
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Recover from an interrupted run, then watch the folder in a background thread."""
        self.state.acquire()
        try:
            self._recover()
            latest = latest_version(self.project, self.name)
            self._latest_id = str(latest.id) if latest is not None else None
            self._known = file_hashes(latest)
            self._frames = _parent_frames(latest, set(self._known))
        except BaseException:
            self.state.release()
            raise
        self._bar = tqdm(
            total=0, unit="file", desc="done files processed", disable=not self._progress, file=sys.stderr
        )
        self.echo(
            f"Watching {self.folder} for done labeled files (*.csv, *.txt) → {self.project}/{self.name}"
            + (f" (latest version {self._latest_id})" if self._latest_id else " (no version yet)")
        )
        self._thread = threading.Thread(target=self._loop, name="label-watch", daemon=True)
        self._thread.start()

    def stop(self) -> VersionReport | None:
        """End the round: upload what is left, finalize the version (None if nothing changed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if self.error is not None:
                raise RuntimeError(
                    f"label watch failed: {self.error}; the unfinished version is redone by the next run"
                ) from self.error
            self._scan()  # files marked done up to this moment belong to the round
            return self._finish()
        finally:
            if self._bar is not None:
                self._bar.close()
            self.state.release()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._scan()
                self._stop.wait(self.poll_seconds)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    # ------------------------------------------------------------------ work

    def _recover(self) -> None:
        left = self.state.open_version()
        if not left:
            return
        finalized = is_finalized(left)
        if finalized is None:
            self.echo(f"The unfinished version {left} of an interrupted run no longer exists.")
        elif finalized:
            self.echo(f"Version {left} of the previous run was finalized.")
        else:
            discard_version(left)
            self.echo(
                f"Deleted the unfinished version {left} of an interrupted run; "
                "its files are added again to a new version."
            )
        self.state.save(None)

    def _scan(self) -> None:
        for rel, path in done_files(self.folder).items():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # renamed away since the listing
            signature = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(rel) == signature:
                continue
            if self._bar is not None:
                self._bar.total = (self._bar.total or 0) + 1
                self._bar.refresh()
            try:
                self._handle(rel, path)
                self._seen[rel] = signature
            except FileNotFoundError:
                pass  # replaced or removed while reading: looked at again on the next poll
            finally:
                if self._bar is not None:
                    self._bar.update(1)

    def _handle(self, rel: str, path: Path) -> None:
        digest = sha256_of(path)
        if self._known.get(rel) == digest:
            self._refused.pop(rel, None)
            return  # already in the version with this content
        try:
            frame = read_labeled_csv(path, room=room_of(rel))
            others = {k: v for k, v in self._frames.items() if k != rel}
            clashes = check_combined({**others, rel: frame})  # what training would refuse
            if clashes:
                raise DataValidationError(clashes)
        except DataValidationError as exc:
            self._refused[rel] = str(exc)
            self.echo(f"refused {rel} (not added; fix it and save it again):\n{exc}")
            return
        self._refused.pop(rel, None)
        version = self._open()
        parent = PurePosixPath(rel).parent.as_posix()
        version.dataset.add_files(path=path, dataset_path=None if parent == "." else parent)
        version.dataset.upload(show_progress=False, verbose=False, preview=False)
        self._known = file_hashes(version.dataset)
        self._frames[rel] = frame
        kind = "modified" if rel in version.base else "added"
        self.echo(f"uploaded {rel} ({kind}, {human_size(path.stat().st_size)})")

    def _open(self) -> OpenVersion:
        if self._version is None:
            version = open_child(self.project, self.name)
            self.state.save(version.id)  # before any file goes up: a crash from here on is recovered
            self._version = version
            self.echo(f"opened version {version.id} (child of {version.parent_id or 'nothing'})")
        return self._version

    def _finish(self) -> VersionReport | None:
        version = self._version
        if version is None:
            self.echo(
                f"Nothing changed since "
                f"{'version ' + self._latest_id if self._latest_id else 'the start'}: no new version."
            )
            return None
        report = finalize_or_discard(version, done_files(self.folder), self.tags, self.preview_files)
        self.state.save(None)
        self._version = None
        report.refused = sorted(self._refused)
        if not report.created:
            report.dataset_id = self._latest_id or ""
        self.echo(report.describe(self.project, self.name))
        if report.refused:
            self.echo("Refused (not in this version): " + ", ".join(report.refused))
        return report if report.created else None


def _parent_frames(latest: Any, paths: set[str]) -> dict[str, Any]:
    """The validated rows of the parent version's files, to refuse a new file that clashes with one
    (a parent file the contract now refuses is left out of the comparison, not fatal)."""
    frames: dict[str, Any] = {}
    for rel, path in kept_files(latest, paths).items() if latest is not None else ():
        with contextlib.suppress(DataValidationError, OSError):
            frames[rel] = read_labeled_csv(path, room=room_of(rel))
    return frames


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM; a second one interrupts as usual."""
    event = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()
        for sig, old in previous.items():
            signal.signal(sig, old)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def watch_until_signal(watcher: LabelWatcher) -> VersionReport | None:
    """The command's main loop: watch until SIGINT/SIGTERM, then finalize the round."""
    with stop_signals() as stopping:
        watcher.start()
        while not stopping.wait(0.2) and not watcher.failed:
            pass
        if not watcher.failed:
            watcher.echo("Stopping: uploading what is left and finalizing the version ...")
        return watcher.stop()
