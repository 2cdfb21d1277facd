"""``make demo``: the loop on the embedded local ClearML server, no cluster needed.

Stage 1 (this issue): start the local server, cut the occupancy data into one labeled CSV per day
(as a labeling tool would deliver them), make one dataset version per labeling round (each a child
of the previous one, tagged with its day), and print what every version added, changed and removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from services.labeling.sync import VersionReport, sync_folder
from services.local_server import local_server
from training.data import load_all, locate_occupancy_data, split_by_day

PROJECT = "Occupancy"
DATASET = "room-sensors"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send the SDK's prints and progress bars to a log file; the demo prints its own summary."""
    with log_path.open("a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def versions_table(reports: list[VersionReport]) -> Table:
    table = Table(title=f"Dataset versions of {PROJECT}/{DATASET}", title_justify="left")
    for column in (
        "#",
        "version",
        "parent",
        "tags",
        "added",
        "modified",
        "removed",
        "delta",
        "files",
        "total",
    ):
        right = column in ("#", "delta", "files", "total")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "added")
    for i, r in enumerate(reports, 1):
        table.add_row(
            str(i),
            r.dataset_id[:8],
            (r.parent_id or "-")[:8],
            ",".join(r.tags),
            ", ".join(Path(p).stem for p in r.added) or "-",
            ", ".join(Path(p).stem for p in r.modified) or "-",
            ", ".join(Path(p).stem for p in r.removed) or "-",
            _human(r.delta_bytes),
            str(r.total_files),
            _human(r.total_bytes),
        )
    return table


def run_demo(
    workdir: Path, data: Path | None = None, days: int | None = None, console: Console | None = None
) -> list[VersionReport]:
    console = console or Console(file=sys.stdout, width=max(Console().width, 132))
    logging.getLogger("clearml").setLevel(logging.WARNING)
    source = locate_occupancy_data(data)
    if workdir.exists():
        console.print(f"[dim]removing the previous demo state in {workdir}[/dim]")
        shutil.rmtree(workdir)
    (workdir / "storage").mkdir(parents=True)

    frame = load_all(source)
    daily = split_by_day(frame, workdir / "daily")
    if days:
        daily = daily[:days]
    console.print(f"Read {len(frame):,} readings from {source}: {len(daily)} days of labeled data.")

    server = local_server(workdir / "server")
    with server:
        os.environ.update(server.env)
        os.environ["CLEARML_DEFAULT_OUTPUT_URI"] = f"file://{(workdir / 'storage').resolve()}"
        os.environ.setdefault("CLEARML_CACHE_DIR", str((workdir / "cache").resolve()))
        os.environ.setdefault("CLEARML_CONFIG_FILE", str((workdir / "clearml.conf").resolve()))
        console.print(f"Local ClearML server at {server.settings.base_url} (state in {workdir / 'server'})")

        labeled = workdir / "labeled"
        labeled.mkdir()
        reports = []
        sdk_log = workdir / "clearml-sdk.log"
        with console.status("creating dataset versions") as status, _quiet(sdk_log):
            for i, day_file in enumerate(daily, 1):
                status.update(f"labeling round {i}/{len(daily)}: {day_file.stem}")
                shutil.copy2(day_file, labeled / day_file.name)
                reports.append(sync_folder(labeled, PROJECT, DATASET, tags=[f"day-{day_file.stem}"]))
        console.print(f"[dim]ClearML SDK output: {sdk_log}[/dim]")
        console.print(versions_table(reports))
    command = Path(sys.executable).parent / "occupancy-mlops"
    with contextlib.suppress(ValueError):
        command = command.relative_to(Path.cwd())
    console.print(
        f"Inspect the state again with: [bold]{command} local-server --data {workdir / 'server'}[/bold]"
    )
    return reports
