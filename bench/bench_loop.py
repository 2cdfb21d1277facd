"""Benchmark of the loop (``make bench-loop``): how long after ``finalize()`` returns is the retrain
queued, and how long until the retrained model answers HTTP requests?

1. **Queued**: the scheduler with its default settings (poll every 3 s) watches a project; a client
   makes 20 dataset versions tagged ``Production``, at irregular intervals (0.5 to 4 s, so the
   versions land at every phase of the poll), and notes when each ``finalize()`` returned. The lag is
   the time from then to the retrain being enqueued (the run's ``status_changed`` on the server; same
   machine, same clock). Target: p50 under 5 s.
2. **Serving**: the whole loop (:mod:`occupancy_mlops.live_loop`): scheduler, two clearml-agents,
   the inference server, Prometheus and the canary controller, with a replay client sending real
   readings at 20 requests/s. 3 labeling rounds of real data (tagged Production) one after the other;
   per version: finalize → queued → gated → canary live → the first answer by the new model → promoted
   or rolled back. The first round's model becomes the champion directly (nothing to compare with).
   Goal: finalize → new model answering, p50 under 30 s, training included.

Everything runs against the local server on this machine; figures depend on its 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from local_server import local_server
from occupancy_mlops.clearml_api import ClearmlApi
from occupancy_mlops.client_env import client_env
from occupancy_mlops.local_stack import scheduler_process
from occupancy_mlops.timeline import read_timeline
from services.scheduler.reconcile import idempotency_key, parse_time
from training.data import load_occupancy_file, locate_occupancy_data, split_by_day

TARGET_P50_S = 5.0
TARGET_SERVED_P50_S = 30.0

MAKE_VERSIONS = """
import json, random, sys, time
from pathlib import Path
from clearml import Dataset

project, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
for i in range(n):
    folder = Path(f"v{i}")
    folder.mkdir()
    (folder / f"day{i}.csv").write_text(f"date,Light,Occupancy\\n2015-02-04 10:{i:02d},400,1\\n")
    ds = Dataset.create(dataset_project=project, dataset_name="sensors")
    ds.add_files(path=str(folder))
    ds.add_tags(["Production"])
    ds.finalize(auto_upload=True)
    print(json.dumps({"id": ds.id, "finalized": time.time()}), flush=True)
    time.sleep(rng.uniform(0.5, 4.0))
"""


@contextlib.contextmanager
def _quiet(log: Path) -> Iterator[None]:
    """The SDK's prints and progress bars go to a log file; the bench prints its own tables."""
    with log.open("a") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        yield


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_queued(env: dict[str, str], work: Path, n: int) -> list[float]:
    api = ClearmlApi()
    project = f"BenchLoop-{uuid.uuid4().hex[:6]}"
    project_id = api.call("projects.create", name=f"{project}/templates")["id"]
    template = api.call(
        "tasks.create",
        name="train occupancy model",
        type="training",
        project=project_id,
        hyperparams={"General": {"CLEARML_DATASET_ID": {"section": "General", "name": "CLEARML_DATASET_ID"}}},
    )["id"]
    settings = {
        "project": project,
        "template_id": template,
        "queue": "bench-controllers",
        "dataset_parameter": "General/CLEARML_DATASET_ID",
    }
    with scheduler_process(env, settings, work / "scheduler-queued.log"):
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(MAKE_VERSIONS), project, str(n)],
            env={**os.environ, **env},
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        versions = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        keys = {idempotency_key(v["id"]): v for v in versions}
        deadline = time.monotonic() + 60
        while True:
            runs = api.call(
                "tasks.get_all", tags=list(keys), only_fields=["id", "tags", "status", "status_changed"]
            )["tasks"]
            if len([r for r in runs if r["status"] == "queued"]) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    lags = []
    for run in runs:
        key = next(t for t in run["tags"] if t in keys)
        queued = parse_time(run["status_changed"])
        assert queued is not None
        lags.append(queued.timestamp() - keys[key]["finalized"])
    if len(lags) != n:
        raise RuntimeError(f"only {len(lags)} of {n} versions were queued")
    return lags


def bench_published(env: dict[str, str], work: Path, rounds: int) -> list[dict[str, float | str]]:
    """The whole loop (scheduler, agents, serving, Prometheus, canary controller) and a replay client;
    ``rounds`` labeling rounds of real data one after the other, each waited for until its model is
    promoted, rolled back or rejected. Per version: finalize → queued → gated → canary live → first
    answer by the new model (what a client sees) → decided."""
    from occupancy_mlops.live_loop import live_loop, model_of_version, wait_settled
    from occupancy_mlops.replay import Replay
    from occupancy_mlops.timeline import add_registry_times
    from services.labeling.sync import sync_folder
    from training.registry import ModelRegistry

    source = locate_occupancy_data()
    days = split_by_day(load_occupancy_file(source / "datatraining.txt"), work / "daily")
    eval_dir, labeled = work / "evaluation", work / "labeled"
    eval_dir.mkdir()
    labeled.mkdir()
    shutil.copy2(source / "datatest.txt", eval_dir / "datatest.txt")
    project = f"BenchRetrain-{uuid.uuid4().hex[:6]}"
    sdk_log = work / "clearml-sdk.log"
    with _quiet(sdk_log):
        eval_id = sync_folder(eval_dir, project, "eval", tags=["evaluation"]).dataset_id
    api = ClearmlApi()
    for queue in ("bench-services", "bench-training"):
        api.call("queues.create", name=queue)
    settings = {
        "project": project,
        "queue": "bench-services",
        "steps_queue": "bench-training",
        "parameters": {"Args/eval_dataset_id": eval_id},
    }
    registry = ModelRegistry(project)
    ids, finalized_at = [], {}
    with (
        live_loop(
            work / "loop",
            env,
            project=project,
            scheduler_settings=settings,
            controller_queue="bench-services",
            steps_queue="bench-training",
        ) as loop,
        Replay(loop.endpoint, load_occupancy_file(source / "datatest.txt"), rate=20) as replay,
    ):
        # the first labeling rounds together make the first champion's data (day 1 is a few hours)
        first = 2
        for i, day in enumerate(days[: first + rounds - 1]):
            shutil.copy2(day, labeled / day.name)
            if i < first - 1:
                continue
            with _quiet(sdk_log):
                ids.append(sync_folder(labeled, project, "sensors", tags=["Production"]).dataset_id)
            finalized_at[ids[-1]] = time.time()
            outcome = wait_settled(
                api, registry, project, "sensors", ids[-1], lambda _: None, f"round {len(ids)}", 600
            )
            print(f"labeled {day.stem}: version {ids[-1][:8]} → {outcome}", flush=True)
        rows = read_timeline(api, project, "sensors", last=len(ids), ids=ids)
        add_registry_times(rows, registry)
        _print_step_times(api, rows)
        first_answers = {}
        for r in rows:
            _, model_id = model_of_version(api, project, "sensors", r.dataset_id)
            first_answers[r.dataset_id] = replay.stats.first_answer(model_id) if model_id else None
    results: list[dict[str, float | str]] = []
    nan = float("nan")
    for r in rows:
        answered = first_answers.get(r.dataset_id)
        served = answered - finalized_at[r.dataset_id] if answered is not None else nan
        results.append(
            {
                "version": r.dataset_id[:8],
                "queued": r.seconds_after_finalize(r.launched) or nan,
                "decided": r.seconds_after_finalize(r.decided) or nan,
                "canary": r.seconds_after_finalize(r.canary_live) or nan,
                "served": served,
                "final": r.seconds_after_finalize(r.canary_decided) or nan,
                "verdict": (r.state or r.verdict or r.run_status or ""),
            }
        )
    return results


def _print_step_times(api: ClearmlApi, rows: list) -> None:
    """Where a retrain's time goes: each pipeline task's created → started → completed, in seconds
    after the dataset version's finalize."""
    for r in rows:
        if not r.run_id or r.finalized is None:
            continue
        tasks = api.call(
            "tasks.get_all",
            id=[r.run_id],
            only_fields=["id", "name", "created", "started", "completed"],
        )["tasks"]
        tasks += api.call(
            "tasks.get_all",
            parent=r.run_id,
            search_hidden=True,
            order_by=["created"],
            only_fields=["id", "name", "created", "started", "completed"],
        )["tasks"]
        parts = []
        for t in tasks:
            times = [
                r.seconds_after_finalize(parse_time(t.get(k))) for k in ("created", "started", "completed")
            ]
            text = "/".join("-" if x is None else f"{x:.1f}" for x in times)
            parts.append(f"{t.get('name', '')[:24]} {text}")
        print(
            f"version {r.dataset_id[:8]} tasks (created/started/completed s): " + "; ".join(parts), flush=True
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", type=int, default=20, help="versions for the queued latency")
    parser.add_argument(
        "--rounds", type=int, default=3, help="labeling rounds retrained end to end (0: skip)"
    )
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        work = Path(tmp)
        server = local_server(work / "server")
        with server:
            env = client_env(server.env, work / "client")
            os.environ.update(env)
            console.print(
                f"[bold]1. finalize() → retrain queued[/bold], {args.versions} versions, default poll 3 s"
            )
            lags = bench_queued(env, work, args.versions)
            table = Table(title="finalize() returned → retrain queued (seconds)", title_justify="left")
            for column in ("versions", "p50", "p95", "max", "mean"):
                table.add_column(column, justify="right")
            p50, p95 = statistics.median(lags), _percentile(lags, 0.95)
            table.add_row(
                str(len(lags)), f"{p50:.2f}", f"{p95:.2f}", f"{max(lags):.2f}", f"{statistics.mean(lags):.2f}"
            )
            console.print(table)
            if args.rounds:
                console.print(
                    f"[bold]2. finalize() → new model serving[/bold], {args.rounds} rounds of real data, "
                    "the whole loop with a replay client"
                )
                rows = bench_published(env, work, args.rounds)
                table = Table(title="seconds after finalize()", title_justify="left")
                columns = ("version", "queued", "gated", "canary live", "first answer", "decided", "state")
                for column in columns:
                    table.add_column(column, justify="right" if column != "state" else "left")
                for r in rows:
                    table.add_row(
                        str(r["version"]),
                        *(f"{float(r[k]):.1f}" for k in ("queued", "decided", "canary", "served", "final")),
                        str(r["verdict"]),
                    )
                console.print(table)
                served = [float(r["served"]) for r in rows if r["served"] == r["served"]]
                if served:
                    served_p50 = statistics.median(served)
                    console.print(
                        f"finalize() → the new model answering requests: p50 {served_p50:.1f} s over "
                        f"{len(served)} rounds (goal: under {TARGET_SERVED_P50_S:.0f} s, training included)"
                    )
    ok = p50 < TARGET_P50_S
    console.print(
        f"target p50 to queued < {TARGET_P50_S:.0f} s: "
        + ("[green]met[/green]" if ok else "[red]missed[/red]")
    )
    print(f"measured {datetime.now().isoformat(timespec='seconds')}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
