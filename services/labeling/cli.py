"""``occupancy-mlops label``: labeled files become dataset versions (``sync`` and ``watch``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DONE_CONVENTION = (
    "A file is done when it appears under its final name *.csv (or *.txt) outside hidden folders: "
    "the labeling tool writes it under a temporary name (x.csv.part, .x.csv) and renames it when "
    "the annotator marks it done."
)

label_app = typer.Typer(
    help="Labeled files become dataset versions: the upload button (sync) or automatic (watch).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

Folder = Annotated[
    Path,
    typer.Argument(help="the labeling tool's folder of labeled CSV files", file_okay=False, exists=True),
]
Project = Annotated[str, typer.Option(help="ClearML project of the dataset")]
DatasetName = Annotated[str, typer.Option("--dataset", help="dataset name")]
Tags = Annotated[
    list[str] | None,
    typer.Option("--tag", help="tag of the new version, e.g. Production (repeat the option)"),
]
PreviewFiles = Annotated[
    int, typer.Option(min=0, help="files shown in the version's scatter plots and table preview")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@label_app.command("sync", epilog=DONE_CONVENTION)
def sync_cmd(
    folder: Folder,
    project: Project = "Occupancy",
    dataset: DatasetName = "room-sensors",
    tag: Tags = None,
    mirror: Annotated[
        bool, typer.Option(help="also remove from the version the files no longer in the folder")
    ] = False,
    preview_files: PreviewFiles = 3,
) -> None:
    """The upload button: the folder becomes the next version (only changed files are uploaded).

    Every labeled file is validated first; a bad file is refused (file, line, column named) before
    anything is created. Nothing changed since the latest version: no new version.
    """
    from services.labeling.sync import NoLabeledFilesError, sync_folder
    from training.data import DataValidationError

    try:
        report = sync_folder(folder, project, dataset, tag, mirror=mirror, preview_files=preview_files)
    except DataValidationError as exc:
        raise _fail(f"{exc}\nnothing was created or uploaded") from exc
    except (NoLabeledFilesError, NotADirectoryError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(report.describe(project, dataset))


@label_app.command("watch", epilog=DONE_CONVENTION)
def watch_cmd(
    folder: Folder,
    project: Project = "Occupancy",
    dataset: DatasetName = "room-sensors",
    tag: Tags = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="where the open version is recorded (default: FOLDER/.label-watch)"),
    ] = None,
    poll_seconds: Annotated[float, typer.Option(min=0.05, help="how often the folder is scanned")] = 1.0,
    preview_files: PreviewFiles = 3,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Automatic mode: each done file is uploaded at once; SIGINT/SIGTERM finalizes the version.

    One run is one labeling round and makes one version (none if nothing changed). Each done file
    is validated (a bad one is refused, named by file, line and column), added with its path in the
    dataset and uploaded in the background. After a SIGKILL the next run deletes the unfinished
    version and makes a new one with every file.
    """
    from services.labeling.watch import LabelWatcher, WatcherBusyError, watch_until_signal

    watcher = LabelWatcher(
        folder,
        project,
        dataset,
        tags=tag or [],
        state_dir=state_dir,
        poll_seconds=poll_seconds,
        preview_files=preview_files,
        progress=progress,
    )
    try:
        watch_until_signal(watcher)
    except WatcherBusyError as exc:
        raise _fail(str(exc)) from exc
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc
