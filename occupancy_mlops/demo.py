"""``make demo``: the loop on the embedded local ClearML server, no cluster needed.

Stage 1: start the local server, cut the training week into one labeled CSV per day (as a labeling
tool would deliver them), make one dataset version per labeling round (each a child of the previous
one, tagged with its day) and print what every version added, changed and removed. ``datatest.txt``,
cut into one file per day, becomes the fixed evaluation set of the gate: each file is an evaluation
window, on which a challenger may not lose more than the tolerance.
Stage 2: the retraining pipeline (preprocess → train → evaluate + gate) runs on the latest version,
its steps executed by a real clearml-agent; the first model clears the floor and becomes champion.
Stage 3: the whole loop (:mod:`occupancy_mlops.live_loop`). The trigger scheduler, two agents
(pipeline controllers on ``services``, steps on ``training``), the inference server (clearml-serving
with our endpoint), a real Prometheus and the canary controller start, and a replay client sends real
readings as HTTP requests. The last days arrive as labeling rounds tagged ``Production``: each new
version is retrained without anyone asking, gated, deployed as a canary under live traffic and
promoted or rolled back on Prometheus' numbers. In the first round serving fails half of the canary
arm's requests (an injected fault), so that canary is rolled back. The demo prints the timeline per
version (labeled → finalized → queued → gated → canary → promoted or rolled back) and writes a
report with plots.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from local_server import local_server
from occupancy_mlops.agent import local_agent
from occupancy_mlops.clearml_api import ClearmlApi
from occupancy_mlops.client_env import client_env
from occupancy_mlops.live_loop import LiveLoop, live_loop, model_of_version, wait_settled
from occupancy_mlops.replay import Replay, ReplayStats, reading_payload
from occupancy_mlops.report import VersionRow, serving_series, write_report
from occupancy_mlops.timeline import VersionTimeline, add_registry_times, read_timeline, timeline_table
from services.labeling.sync import VersionReport, sync_folder
from services.labeling.versions import human_size
from training.data import load_occupancy_file, locate_occupancy_data, split_by_day
from training.registry import ModelRegistry

PROJECT = "Occupancy"
DATASET = "room-sensors"
EVAL_DATASET = "room-sensors-eval"
QUEUE = "training"
CONTROLLER_QUEUE = "services"
PRODUCTION = "Production"
RETRAIN_TIMEOUT = 900.0  # seconds the demo waits for the automatic retrains
DEPLOY_MODE = "canary"
"""A passing challenger waits as a candidate until the canary controller promotes or rolls it back
(the first model becomes champion at once: there is nothing to compare a canary with)."""
REPLAY_RATE = 25.0  # requests a second of the replay client
FAULT_ERROR_RATIO = 0.5  # share of the canary arm's requests that fail in the faulty round
MIN_LIVE_ANSWERS = 100  # live accuracy of a version is shown from this many answers on
AFTER_SECONDS = 10.0  # traffic kept flowing after the last decision, for the report's plots


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
            human_size(r.delta_bytes),
            str(r.total_files),
            human_size(r.total_bytes),
        )
    return table


@dataclass
class DemoResult:
    versions: list[VersionReport]
    eval_dataset_id: str
    verdict: dict[str, Any] | None = None  # the gate's verdict on the first trained model
    gate_windows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Model id -> the gate's table per evaluation window (window, rows, accuracy, champion's...)."""
    timeline: list[VersionTimeline] = field(default_factory=list)  # stage 3, every version
    report: Path | None = None  # stage 3: report.md with its figures
    replay: ReplayStats | None = None  # stage 3: what the replay client sent and got back


def _train_first_champion(
    workdir: Path, env: dict[str, str], dataset_id: str, eval_id: str
) -> dict[str, Any]:
    """Stage 2: the retraining pipeline, its steps run by a clearml-agent, publishes the first model."""
    api = ClearmlApi()
    _ensure_queue(QUEUE)
    with local_agent(QUEUE, env, workdir, "demo-agent"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "training.pipeline",
                "--dataset-id",
                dataset_id,
                "--eval-dataset-id",
                eval_id,
                "--project",
                PROJECT,
                "--queue",
                QUEUE,
                "--deploy-mode",
                DEPLOY_MODE,
            ],
            env={**os.environ, **env},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
        )
    (workdir / "pipeline.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"the retraining pipeline failed; see {workdir / 'pipeline.log'} and agent.log")
    # the verdict lives in the model registry, where the gate wrote it
    models = api.call(
        "models.get_all", only_fields=["id", "ready", "metadata", "created"], order_by=["-created"]
    )["models"]
    for model in models:
        meta = {k: v["value"] for k, v in (model.get("metadata") or {}).items()}
        if meta.get("dataset_id") == dataset_id and "gate_verdict" in meta:
            return {
                "model_id": model["id"],
                "published": bool(model.get("ready")),
                "reason": meta.get("gate_reason", ""),
                "accuracy": float(meta.get("eval_accuracy", "nan")),
                "windows": json.loads(meta.get("gate_windows") or "[]"),
            }
    raise RuntimeError(f"no gated model for dataset {dataset_id}; see {workdir / 'pipeline.log'}")


def gate_windows(api: ClearmlApi, model_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The gate's reason and its table per evaluation window, from the model's metadata."""
    model = api.call("models.get_by_id", model=model_id)["model"]
    meta = {k: v.get("value") for k, v in (model.get("metadata") or {}).items()}
    return str(meta.get("gate_reason") or ""), json.loads(meta.get("gate_windows") or "[]")


def windows_line(windows: list[dict[str, Any]]) -> str:
    """``2015-02-02.csv 95.87 % (champion 95.87 %), ...``; a window the challenger lost is marked."""
    parts = []
    for w in windows:
        text = f"{w['window']} {w['accuracy']:.2%}"
        if "champion_accuracy" in w:
            text += f" (champion {w['champion_accuracy']:.2%})"
        if not w.get("passed", True):
            text += " [red]lost[/red]"
        parts.append(text)
    return ", ".join(parts)


def _ensure_queue(name: str) -> None:
    api = ClearmlApi()
    if not api.call("queues.get_all", name=f"^{name}$", only_fields=["id"])["queues"]:
        api.call("queues.create", name=name)


def _live_rounds(
    workdir: Path,
    env: dict[str, str],
    later: list[Path],
    labeled: Path,
    eval_id: str,
    replay_frame: Any,
    console: Console,
    sdk_log: Path,
    windows: dict[str, list[dict[str, Any]]],
) -> tuple[list[VersionReport], list[VersionTimeline], Path, ReplayStats]:
    """Stage 3: the whole loop runs; each later day is a Production labeling round whose model is
    retrained, gated, deployed as a canary under replayed traffic and promoted or rolled back. The
    first round's canary gets an injected fault in serving."""
    for queue in (CONTROLLER_QUEUE, QUEUE):
        _ensure_queue(queue)
    settings = {
        "project": PROJECT,
        "tags": [PRODUCTION],
        "queue": CONTROLLER_QUEUE,
        "steps_queue": QUEUE,
        "parameters": {
            "Args/eval_dataset_id": eval_id,
            "Args/overrides": json.dumps({"DEPLOY_MODE": "canary"}),
        },
        "poll_interval_seconds": 1.0,
    }
    api = ClearmlApi()
    registry = ModelRegistry(PROJECT)
    reports: list[VersionReport] = []
    events: list[tuple[float, str]] = []
    with (
        console.status("starting scheduler, agents, serving, Prometheus and the canary controller") as status,
        live_loop(workdir / "loop", env, project=PROJECT, scheduler_settings=settings) as loop,
    ):
        console.print(
            f"Serving [bold]POST {loop.endpoint}[/bold] (clearml-serving, service {loop.service_id[:8]}); "
            f"Prometheus {loop.prometheus.url}; canary controller {loop.canary_url}; trigger scheduler "
            f"{loop.scheduler_url}; agents on {CONTROLLER_QUEUE} and {QUEUE}."
        )
        status.update("waiting for serving to answer with the champion")
        _wait_answering(loop.endpoint, replay_frame, 120)
        with Replay(loop.endpoint, replay_frame, rate=REPLAY_RATE) as replay:
            console.print(
                f"Replay client: {REPLAY_RATE:.0f} requests/s of real readings ({EVAL_DATASET}), "
                "each with its last hour of history; answers checked against the labels."
            )
            for i, day_file in enumerate(later, 1):
                label = f"round {i}/{len(later)} ({day_file.stem})"
                faulty = i == 1
                if faulty:
                    loop.inject_fault("canary", error_ratio=FAULT_ERROR_RATIO)
                    events.append((time.time(), "fault on"))
                    console.print(
                        f"[yellow]{label}: INJECTED FAULT: serving fails {FAULT_ERROR_RATIO:.0%} of the "
                        "canary arm's requests (a fault filter, as a service mesh would inject)[/yellow]"
                    )
                status.update(f"{label}: labeling round tagged {PRODUCTION}")
                shutil.copyfile(day_file, labeled / day_file.name)  # written now: labeled_at is now
                with _quiet(sdk_log):
                    report = sync_folder(labeled, PROJECT, DATASET, tags=[f"day-{day_file.stem}", PRODUCTION])
                reports.append(report)
                if report.drift:  # the labeling preview's verdict against the champion's training days
                    console.print(f"{label}: {report.drift}")
                events.append((time.time(), f"{day_file.stem} labeled"))
                outcome = wait_settled(
                    api, registry, PROJECT, DATASET, report.dataset_id, status.update, label, RETRAIN_TIMEOUT
                )
                events.append((time.time(), outcome))
                if faulty:
                    loop.clear_faults()
                colour = {"champion": "green", "rolled-back": "yellow"}.get(outcome, "red")
                _, model_id = model_of_version(api, PROJECT, DATASET, report.dataset_id)
                state = registry.read()
                console.print(
                    f"{label}: model {(model_id or '-')[:8]} → [{colour}]{outcome}[/{colour}]"
                    + (f" ({state.reasons.get(model_id, '')})" if model_id else "")
                )
                if model_id:
                    reason, windows[model_id] = gate_windows(api, model_id)
                    console.print(f"  gate per evaluation window: {windows_line(windows[model_id])}")
                    if outcome != "rejected":
                        console.print(f"  gate: {reason}")
            status.update("traffic on the final champion")
            time.sleep(AFTER_SECONDS)
        stats = replay.stats
        end = time.time()
        console.print(
            f"Replay: {stats.sent:,} requests, answers by status {dict(sorted(stats.by_status().items()))}, "
            f"by arm {dict(sorted(stats.by_arm().items()))}."
        )
        rows = read_timeline(api, PROJECT, DATASET, last=100)
        add_registry_times(rows, registry)
        page = _write_report(workdir / "report", registry, rows, stats, loop, end, events)
    return reports, rows, page, stats


def _wait_answering(endpoint: str, frame: Any, timeout: float) -> None:
    """Until the endpoint answers a request of real readings with 200 (the controller deployed the
    champion and serving read its configuration)."""
    import requests

    body = reading_payload(frame.head(61))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = requests.post(endpoint, json=body, timeout=10)
            if resp.status_code == 200:
                return
            last = f"{resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"serving did not answer within {timeout:.0f} s (last answer: {last})")


def _write_report(
    out: Path,
    registry: ModelRegistry,
    timeline: list[VersionTimeline],
    stats: ReplayStats,
    loop: LiveLoop,
    end: float,
    events: list[tuple[float, str]],
) -> Path:
    """Accuracy per version, traffic split, latency and error ratio per arm, as PNGs and report.md."""
    state = registry.read()
    accuracy = {r.model_id: r.accuracy for r in timeline if r.model_id}
    rows = [
        VersionRow(
            str(version),
            model_id,
            state.states.get(model_id, "-"),
            accuracy.get(model_id),
            stats.accuracy(str(version), min_answers=MIN_LIVE_ANSWERS),
            state.reasons.get(model_id, ""),
            stats.judged(str(version)),
        )
        for model_id, version in sorted(state.versions.items(), key=lambda kv: kv[1])
    ]
    series = serving_series(loop.prometheus.url, loop.started_at, end)
    return write_report(out, rows, series, loop.started_at, events)


MARKER = ".occupancy-mlops-demo"
"""File the demo writes first into its work folder: only a folder holding it is ever deleted."""


class WorkdirError(RuntimeError):
    pass


def prepare_workdir(workdir: Path) -> bool:
    """Make ``workdir`` an empty folder holding the marker; True when a previous demo's was removed.

    A folder that exists, is not empty and has no marker was not made by the demo: refused, never
    deleted.
    """
    removed = False
    if workdir.exists() or workdir.is_symlink():
        if workdir.is_symlink() or not workdir.is_dir():
            raise WorkdirError(f"--workdir {workdir} exists and is not a folder; choose another --workdir")
        if (workdir / MARKER).is_file():
            shutil.rmtree(workdir)
            removed = True
        elif any(workdir.iterdir()):
            raise WorkdirError(
                f"--workdir {workdir} holds files the demo did not make (no {MARKER} in it); "
                "choose another --workdir, or empty it yourself"
            )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by occupancy-mlops demo; the next demo run deletes this folder\n")
    return removed


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM (and SIGHUP) unwind like Ctrl-C, so every ``with`` block stops the processes it
    started (server, agents and their pipeline runs, scheduler, serving, Prometheus, controller)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(
    workdir: Path,
    data: Path | None = None,
    days: int | None = None,
    console: Console | None = None,
    train: bool = True,
    retrain_days: int = 2,
) -> DemoResult:
    console = console or Console(file=sys.stdout, width=max(Console().width, 132))
    logging.getLogger("clearml").setLevel(logging.WARNING)
    source = locate_occupancy_data(data)
    if prepare_workdir(workdir):
        console.print(f"[dim]removed the previous demo state in {workdir}[/dim]")
    (workdir / "storage").mkdir(parents=True)

    # the labeling stream is the training week; datatest.txt is the fixed evaluation set of the gate
    frame = load_occupancy_file(source / "datatraining.txt")
    daily = split_by_day(frame, workdir / "daily")
    if days:
        daily = daily[:days]
    # the last days arrive once the loop runs (stage 3); the first model needs at least one day
    retrain_days = min(retrain_days, len(daily) - 1) if train else 0
    seed, later = daily[: len(daily) - retrain_days], daily[len(daily) - retrain_days :]
    console.print(f"Read {len(frame):,} readings from {source}: {len(daily)} days of labeled data.")

    server = local_server(workdir / "server")
    with server:
        env = client_env(server.env, workdir, set_home=False)
        for key in [k for k in os.environ if k.startswith(("CLEARML_", "TRAINS_"))]:
            del os.environ[key]  # the demo's server, whatever the user's shell points at
        os.environ.update(env)
        console.print(f"Local ClearML server at {server.settings.base_url} (state in {workdir / 'server'})")

        labeled = workdir / "labeled"
        labeled.mkdir()
        evaluation = workdir / "evaluation"
        evaluation.mkdir()
        # one file per day: each is an evaluation window of the gate (EVAL_WINDOW "file")
        eval_days = split_by_day(load_occupancy_file(source / "datatest.txt"), evaluation)
        reports = []
        sdk_log = workdir / "clearml-sdk.log"
        with console.status("creating dataset versions") as status, _quiet(sdk_log):
            eval_id = sync_folder(evaluation, PROJECT, EVAL_DATASET, tags=["evaluation"]).dataset_id
            for i, day_file in enumerate(seed, 1):
                status.update(f"labeling round {i}/{len(seed)}: {day_file.stem}")
                shutil.copyfile(day_file, labeled / day_file.name)
                reports.append(sync_folder(labeled, PROJECT, DATASET, tags=[f"day-{day_file.stem}"]))
        console.print(f"[dim]ClearML SDK output: {sdk_log}[/dim]")
        console.print(versions_table(reports))
        console.print(
            f"Evaluation set {PROJECT}/{EVAL_DATASET}: datatest.txt as {len(eval_days)} daily files "
            f"({', '.join(p.name for p in eval_days)}); the gate scores every model on each file and "
            "refuses one that loses more than the tolerance on any of them, or against the best of the "
            "last 3 champions."
        )
        result = DemoResult(reports, eval_id)
        if train:
            with console.status("retraining pipeline on the latest version: steps run by a clearml-agent"):
                result.verdict = _train_first_champion(workdir, env, reports[-1].dataset_id, eval_id)
            v = result.verdict
            console.print(
                f"Model {v['model_id'][:8]} trained on version {reports[-1].dataset_id[:8]}: accuracy "
                f"{v['accuracy']:.2%} on the evaluation set ({EVAL_DATASET}) → "
                + ("[green]published, champion[/green]" if v["published"] else "[red]rejected[/red]")
                + f" ({v['reason']})"
            )
            result.gate_windows[v["model_id"]] = v["windows"]
        if later:
            console.print(
                f"Now the loop runs by itself: {len(later)} more day(s) arrive as labeling rounds tagged "
                f"{PRODUCTION}."
            )
            replay_frame = load_occupancy_file(source / "datatest.txt")
            new_reports, result.timeline, result.report, result.replay = _live_rounds(
                workdir, env, later, labeled, eval_id, replay_frame, console, sdk_log, result.gate_windows
            )
            result.versions += new_reports
            console.print(
                timeline_table(
                    result.timeline,
                    f"The loop, per version of {PROJECT}/{DATASET}",
                    wide=console.width >= 132,
                )
            )
            console.print(
                "[dim]Seconds after each version was finalized. launched: the scheduler created and "
                "enqueued the retrain (a version without the Production tag is not launched); started: an "
                "agent began it; canary: the new model serving a share of the traffic; decided: promoted "
                "to champion or rolled back.[/dim]"
            )
            console.print(
                f"Report with plots (accuracy per version, traffic split, latency, errors): {result.report}"
            )
    command = Path(sys.executable).parent / "occupancy-mlops"
    with contextlib.suppress(ValueError):
        command = command.relative_to(Path.cwd())
    console.print(
        f"Inspect the state again with: [bold]{command} local-server --data {workdir / 'server'}[/bold]"
    )
    return result
