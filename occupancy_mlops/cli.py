"""The ``occupancy-mlops`` command: one subcommand per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.autoscaler.cli import autoscaler_app
from services.canary.cli import canary_app
from services.labeling.cli import label_app
from services.scheduler.cli import scheduler_app
from services.serving.cli import serving_app

app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False
)
app.add_typer(label_app, name="label")
app.add_typer(scheduler_app, name="scheduler")
app.add_typer(serving_app, name="serving")
app.add_typer(canary_app, name="canary")
app.add_typer(autoscaler_app, name="autoscaler")


@app.callback()
def _root() -> None:
    """A fully automatic retraining loop for an IoT room-occupancy model on ClearML."""


def _local_server_cmd() -> None:
    try:
        from local_server.command import local_server_cmd
    except ImportError:  # the production images leave the development server out
        return
    app.command("local-server")(local_server_cmd)


_local_server_cmd()  # one definition of its options, in local_server/command.py


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="folder for the demo's server state, data and storage")
    ] = Path(".demo"),
    data: Annotated[
        Path | None,
        typer.Option(help="folder with datatraining.txt/datatest.txt (default: found or downloaded)"),
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="only the first N days of data")] = None,
) -> None:
    """Run the loop on the embedded local ClearML server: no cluster, no external server."""
    from occupancy_mlops.demo import WorkdirError, run_demo, stop_on_signals
    from training.data import DataNotFoundError

    try:
        with stop_on_signals():
            run_demo(workdir.resolve(), data, days)
    except (DataNotFoundError, WorkdirError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as exc:
        typer.echo(f"demo stopped ({exc or 'Ctrl-C'}); every process it started was stopped", err=True)
        raise typer.Exit(130) from None


@app.command()
def train(
    dataset_id: Annotated[
        str | None, typer.Option(help="train as a tracked ClearML task on this dataset version")
    ] = None,
    eval_dataset_id: Annotated[
        str | None, typer.Option(help="with --dataset-id: the fixed evaluation set")
    ] = None,
    data: Annotated[
        list[Path] | None, typer.Option(help="offline: labeled CSV files or folders (repeat the option)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="offline: folder to write the model files to")] = None,
    seed: Annotated[int | None, typer.Option(help="override RANDOM_STATE")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="offline: show TensorFlow's own log lines on the terminal")
    ] = False,
) -> None:
    """Train the occupancy model: tracked on ClearML (--dataset-id) or offline (--data ... --out DIR).

    Offline, TensorFlow's native log lines go to OUT/tensorflow.log (``--verbose``: to the terminal)."""
    import json

    overrides: dict[str, object] = {} if seed is None else {"RANDOM_STATE": seed}
    if dataset_id and (data or out):
        raise typer.BadParameter("use either --dataset-id (tracked) or --data/--out (offline)")
    if dataset_id:
        from training.task import run

        overrides["CLEARML_DATASET_ID"] = dataset_id
        if eval_dataset_id:
            overrides["EVAL_DATASET_ID"] = eval_dataset_id
        run(overrides)
        return
    if not data or out is None:
        raise typer.BadParameter("offline training needs --data PATH (one or more) and --out DIR")
    from training.config import TrainingConfig
    from training.data import DataNotFoundError, DataValidationError, load_labeled
    from training.train import native_stderr_to, train_model

    try:
        frame = load_labeled(list(data))
    except (DataNotFoundError, DataValidationError) as exc:
        typer.echo(f"error: --data: {exc}", err=True)
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    with native_stderr_to(None if verbose else out / "tensorflow.log"):
        trained = train_model(frame, TrainingConfig.from_mapping(overrides))
    trained.save(out)
    summary = {
        "model_dir": str(out),
        "rows": len(frame),
        "validation": trained.validation.as_dict(),
        "best_epoch": trained.best_epoch,
        "train_seconds": round(trained.seconds, 2),
    }
    typer.echo(json.dumps(summary))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="model folder written by `train --out`")],
    data: Annotated[list[Path], typer.Option(help="labeled CSV files or folders (repeat the option)")],
) -> None:
    """Print accuracy, F1 and ROC-AUC of a model on labeled files, as one JSON object."""
    import json

    from training.bundle import ModelBundle
    from training.data import LABEL_COLUMN, DataNotFoundError, DataValidationError, load_labeled
    from training.evaluate import compute_metrics

    try:
        bundle = ModelBundle.load(model)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: --model: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        frame = load_labeled(list(data))
    except (DataNotFoundError, DataValidationError) as exc:
        typer.echo(f"error: --data: {exc}", err=True)
        raise typer.Exit(2) from None
    metrics = compute_metrics(frame[LABEL_COLUMN].to_numpy(), bundle.predict_proba(frame))
    typer.echo(json.dumps(metrics.as_dict()))


@app.command()
def drift(
    model: Annotated[Path, typer.Option(help="model folder written by `train --out` (or a model package)")],
    data: Annotated[
        list[Path], typer.Option(help="CSV files or folders of readings, labeled or not (repeat the option)")
    ],
    plot: Annotated[
        Path | None, typer.Option(help="write a PNG: training vs new distribution per row")
    ] = None,
) -> None:
    """PSI and KS of new readings against the model's training readings, per input, per input change
    and per model feature, beside the day-to-day variation of the training days. Exit status: 0 no
    drift, 1 drift, 2 bad input (see docs/drift.md)."""
    from rich.console import Console

    from training.bundle import METADATA_FILE
    from training.data import DataNotFoundError, DataValidationError, load_labeled
    from training.drift import (
        MIN_DAY_READINGS,
        DriftReference,
        NoDriftReference,
        compare,
        plot_report,
        rich_table,
    )

    def fail(message: str) -> typer.Exit:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(2)

    try:
        from training.bundle import ModelBundle

        bundle = ModelBundle.load(model)
        reference = DriftReference.from_metadata(bundle.metadata)
    except NoDriftReference as exc:
        raise fail(f"--model: {model}: {exc}") from None
    except FileNotFoundError as exc:
        raise fail(f"--model: {exc}") from None
    except (ValueError, KeyError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise fail(f"--model: {model / METADATA_FILE} is not a model's metadata ({problem})") from None
    try:
        frame = load_labeled(list(data), require_label=False)
        report = compare(reference, frame, bundle.schema)
    except (DataNotFoundError, DataValidationError, ValueError) as exc:
        raise fail(f"--data: {exc}") from None
    console = Console()
    console.print(rich_table(report, f"Input drift of {len(frame)} readings against {model}"))
    days = ", ".join(reference.baseline_days) or "none: fixed limits"
    console.print(f"training days in the baseline: {days}")
    if report.missing:
        console.print(f"not in the new readings: {', '.join(report.missing)}")
    if len(frame) < MIN_DAY_READINGS:
        console.print(
            f"note: {len(frame)} readings, less than half a day: the limits come from whole training "
            "days, so a few hours' pattern can read as drift"
        )
    if plot is not None:
        try:
            plot_report(reference, frame, report, plot, bundle.schema)
        except OSError as exc:
            raise fail(f"--plot: cannot write {plot}: {exc.strerror or exc}") from None
        console.print(f"plot: {plot}")
    typer.echo(report.summary())
    raise typer.Exit(1 if report.drift else 0)


@app.command()
def pipeline(
    dataset_id: Annotated[str | None, typer.Option(help="dataset version to retrain on")] = None,
    eval_dataset_id: Annotated[str | None, typer.Option(help="the fixed evaluation set of the gate")] = None,
    queue: Annotated[str | None, typer.Option(help="run the steps through agents on this queue")] = None,
    project: Annotated[str, typer.Option(help="ClearML project")] = "Occupancy",
    register: Annotated[
        bool,
        typer.Option(
            "--register",
            help="store the pipeline as the scheduler's draft template (steps on --queue) and print its id",
        ),
    ] = False,
) -> None:
    """Run the retraining pipeline (preprocess → train → evaluate + gate) once, or register it as the
    template the trigger scheduler clones per dataset version."""
    import subprocess

    if register:
        if not queue:
            raise typer.BadParameter("--register needs --queue: where the steps of a launched pipeline run")
        from training.pipeline import register_command

        raise typer.Exit(subprocess.call(register_command(project, queue, eval_dataset_id or "")))
    if not dataset_id or not eval_dataset_id:
        raise typer.BadParameter("running the pipeline needs --dataset-id and --eval-dataset-id")
    from training.pipeline import run

    try:
        typer.echo(run(dataset_id, eval_dataset_id, project, queue))
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def timeline(
    project: Annotated[str, typer.Option(help="ClearML project of the loop")] = "Occupancy",
    dataset: Annotated[
        str | None, typer.Option(help="only this dataset (default: all in the project)")
    ] = None,
    last: Annotated[int, typer.Option(min=1, help="newest N dataset versions")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per version")] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="add tags, run status, model id and the champion's accuracy")
    ] = False,
) -> None:
    """Per dataset version: labeled → finalized → retrain launched → started → gated → canary →
    promoted or rolled back (seconds after the finalize), with the verdict and accuracy."""
    import json
    from dataclasses import asdict

    from rich.console import Console

    from occupancy_mlops.clearml_api import ApiCallError, ClearmlApi
    from occupancy_mlops.timeline import add_registry_times, read_timeline, timeline_table
    from training.registry import ModelRegistry, RegistryError

    try:
        rows = read_timeline(ClearmlApi(), project, dataset, last)
        add_registry_times(rows, ModelRegistry(project))
    except (ApiCallError, RegistryError) as exc:
        typer.echo(f"error: cannot read the ClearML server: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        for row in rows:
            typer.echo(json.dumps(asdict(row), default=str))
        return
    if not rows:
        typer.echo(
            f"no finalized dataset versions in project {project!r}"
            + (f" named {dataset!r}" if dataset else "")
        )
        return
    Console().print(timeline_table(rows, f"The loop, per version of {project}", wide=wide))


NO_SERVER = (
    "error: no ClearML server configured. Start the local one with `occupancy-mlops local-server` "
    "and export the settings it prints, or name yours with CLEARML_API_HOST, CLEARML_API_ACCESS_KEY "
    "and CLEARML_API_SECRET_KEY (or CLEARML_CONFIG_FILE, or run clearml-init)."
)


def main() -> None:
    from clearml.backend_api.session.defs import MissingConfigError

    try:
        app()
    except MissingConfigError:
        typer.echo(NO_SERVER, err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
