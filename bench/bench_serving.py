"""Serving benchmark (``make bench-serving``): three HTTP servers side by side under ``wrk``.

1. **ours**: ``POST /serve/occupancy`` through the real clearml-serving inference app
   (``python -m services.serving run``), configured against a local ClearML server that this bench
   starts, with a freshly trained model bundle registered as the champion;
2. **ceiling**: a bare FastAPI endpoint returning a constant (the framework's ceiling);
3. **naive**: FastAPI with the same Keras model (same weights) called in the handler, ``model(x)``,
   after computing the same features with pandas, as a first version of a model server would.

Each server is one uvicorn worker (uvloop + httptools, no access log) pinned with ``taskset`` to
one core; ``wrk`` (Debian's, one thread) is pinned to the other core. Every server gets the same
request, one real reading of ``datatest.txt`` in the documented body ``{"readings": [...]}``,
and the bench first checks that each answers it with 200 (and that ours and naive agree on the
probability). Then, at each concurrency (connections) 1, 8 and 64, the servers take turns, ``--repeat``
rounds: a short warm-up, then ``--duration`` seconds of measurement; wrk's Lua ``done()`` reports
requests/s and the latency percentiles (p50, p99) of that run, and the best round (req/s) counts.
A run with any non-2xx answer, socket error or timeout (5 s; 60 s for naive) fails the bench.

Each run also reads the server's CPU time (``/proc/PID/stat``, all threads) and the time its event
loop waited for a core held by another process (``/proc/PID/schedstat``): "core" is the share of
one core the server used, "waited" the share it was ready but not running. On a busy machine
(waited well above 0) req/s and p99 are the machine's; CPU µs per request is still the server's
own cost, and the ceiling's CPU/request divided by ours is the req/s ratio an idle core would give.
``--profile FILE`` profiles ours (cProfile, steady state) through one more run at c=8 and prints
the cost centres per request.

Targets (issue 8): ours ≥ 0.5× the ceiling's requests/s at c=8, ours' p99 < 30 ms at c=64, ours
≥ 20× naive's requests/s (at c=8). Exit status 1 if one is missed, naming it. Figures depend on
this machine (2 cores: server on one, load generator on the other).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from starlette.requests import Request

REPO = Path(__file__).resolve().parents[1]
SERVERS = ("ours", "ceiling", "naive")
CONCURRENCIES = (1, 8, 64)
TARGET_CEILING_RATIO = 0.5  # ours / ceiling requests/s at c=8
TARGET_P99_MS = 30.0  # ours at c=64
TARGET_NAIVE_RATIO = 20.0  # ours / naive requests/s at c=8
CONSTANT = {"predictions": [{"date": "2015-02-04 17:51:00", "occupied": True, "probability": 0.97}]}

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[BODY]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# ---------------------------------------------------------------------------- the two reference servers


def ceiling_app() -> Any:
    """A bare FastAPI endpoint returning a constant: what the framework alone costs per request."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict")
    async def predict() -> dict[str, Any]:
        return CONSTANT

    return app


def naive_app(model_dir: Path) -> Any:
    """The same Keras model called in the handler: pandas features, ``model(x)``, JSON out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import pandas as pd
    from fastapi import FastAPI

    from training.bundle import KERAS_FILE, METADATA_FILE, schema_from_dict
    from training.features import make_features

    model = keras.models.load_model(model_dir / KERAS_FILE)
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    schema = schema_from_dict(metadata["feature_schema"])
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:  # Request: a module-level name for FastAPI
        body = await request.json()
        readings = body.get("readings", [body])
        frame = pd.DataFrame(readings)
        x = make_features(frame, schema).to_numpy(dtype="float32")
        proba = np.asarray(model(x, training=False)).ravel()
        return {
            "predictions": [
                {"date": r["date"], "occupied": bool(p >= 0.5), "probability": round(float(p), 6)}
                for r, p in zip(readings, proba.tolist(), strict=True)
            ]
        }

    return app


def serve(kind: str, port: int, model_dir: Path | None) -> None:
    import uvicorn

    app = ceiling_app() if kind == "ceiling" else naive_app(Path(str(model_dir)))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


# ---------------------------------------------------------------------------- processes and cores


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Cores:
    server: list[str]
    """Command prefix pinning a server (``taskset -c 0``), or nothing."""
    load: list[str]
    """Command prefix pinning wrk to another core, or nothing."""
    note: str


def pick_cores() -> Cores:
    cores = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if taskset is None or len(cores) < 2:
        return Cores(
            [], [], f"not pinned ({len(cores)} core(s), taskset {'found' if taskset else 'missing'})"
        )
    server, load = cores[0], cores[-1]
    return Cores(
        [taskset, "-c", str(server)],
        [taskset, "-c", str(load)],
        f"server on core {server}, wrk on core {load} (of {len(cores)})",
    )


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def child(
    name: str,
    command: list[str],
    env: dict[str, str],
    log: Path,
    url: str,
    body: bytes,
    timeout: float = 120,
    cwd: Path = REPO,
) -> Iterator[Server]:
    """Run ``command`` until the block ends; yields once ``url`` answers ``body`` with 200."""
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_answering(name, proc, url, body, log, timeout)
        yield Server(name, url, proc, log)
    finally:
        stop(proc)


def post(url: str, body: bytes, timeout: float = 10) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout)


def wait_answering(
    name: str, proc: subprocess.Popen[bytes], url: str, body: bytes, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            res = post(url, body)
            if res.status_code == 200:
                return
            last = f"{res.status_code} {res.text[:300]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{name} did not answer {url} with 200 (last: {last}); its log {log}:\n{tail}")


# ---------------------------------------------------------------------------- the model and the body


def make_model(work: Path, epochs: int, env: dict[str, str]) -> Path:
    """Train the occupancy MLP on ``datatraining.txt`` (a few epochs) in a child process (TensorFlow's
    start-up noise goes to ``train.log``); the model folder (Keras, portable numpy, metadata)."""
    code = f"from bench.bench_serving import train; train({str(work)!r}, {epochs})"
    with (work / "train.log").open("ab") as log:
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, stdout=log, stderr=log)
    if proc.returncode != 0:
        tail = (work / "train.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"training the benchmark model failed:\n{tail}")
    return work / "model"


def train(work: str, epochs: int) -> None:
    from training.config import TrainingConfig
    from training.data import load_occupancy_file, locate_occupancy_data
    from training.train import train_model

    frame = load_occupancy_file(locate_occupancy_data() / "datatraining.txt")
    config = TrainingConfig.from_mapping({"MAX_EPOCHS": epochs, "MIN_EPOCHS": min(epochs, 3)})
    trained = train_model(frame, config)
    trained.extra_metadata["dataset_id"] = "bench-serving"
    trained.save(Path(work) / "model")
    print(f"validation accuracy {trained.validation.accuracy:.4f}, {trained.seconds:.1f} s")


def request_body(readings: int) -> bytes:
    """The last ``readings`` consecutive readings of ``datatest.txt`` as ``{"readings": [...]}``."""
    from training.data import SENSOR_COLUMNS, TIME_COLUMN, load_occupancy_file, locate_occupancy_data

    frame = load_occupancy_file(locate_occupancy_data() / "datatest.txt").iloc[-readings:]
    rows = [
        {TIME_COLUMN: ts.strftime("%Y-%m-%d %H:%M:%S"), **{c: float(row[c]) for c in SENSOR_COLUMNS}}
        for ts, (_, row) in zip(frame[TIME_COLUMN], frame.iterrows(), strict=True)
    ]
    return json.dumps({"readings": rows}).encode()


# ---------------------------------------------------------------------------- our endpoint


REGISTER = """
import json, sys
from clearml import OutputModel, Task

project, folder = sys.argv[1], sys.argv[2]
task = Task.create(project_name=project, task_name="train occupancy-mlp (bench)", task_type="training")
model = OutputModel(task=task, name="occupancy-mlp", framework="Keras")
model.set_upload_destination(uri=task.get_logger().get_default_upload_destination())
model.update_weights_package(weights_path=folder, auto_delete_file=False)
task.flush(wait_for_uploads=True)
model.set_metadata("dataset_id", "bench-serving", "str")
model.publish()
print("MODEL_ID=" + model.id)
"""

APPLY = """
import sys
from services.serving.deploy import Arm, apply_arms

apply_arms(sys.argv[1], Arm(sys.argv[2], "1"), None, 0.0)
"""


def _run_child(args: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    proc = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


@contextlib.contextmanager
def ours_server(
    work: Path, model_dir: Path, body: bytes, prefix: list[str], profile: Path | None
) -> Iterator[Server]:
    """A local ClearML server, the model registered and deployed as the champion, then our inference
    server: ``python -m services.serving run`` (one worker); when ``profile`` names a stats file, the
    launcher's own uvicorn command and environment on :data:`PROFILED_APP` instead."""
    from local_server import local_server
    from occupancy_mlops.client_env import client_env
    from services.serving.launcher import APP, RunOptions, server_env, uvicorn_command

    project = "BenchServing"
    server = local_server(work / "clearml-server")
    with server:
        env = client_env(server.env, work / "client")
        env.pop("CLEARML_DEFAULT_OUTPUT_URI", None)  # models and code go to the file server
        home = Path(env["HOME"])
        cli = str(Path(sys.executable).with_name("occupancy-mlops"))
        out = _run_child([cli, "serving", "setup", "--project", project], env, home, "serving setup")
        service_id = json.loads(out.strip().splitlines()[-1])["service_id"]
        out = _run_child([sys.executable, "-c", REGISTER, project, str(model_dir)], env, home, "register")
        model_id = next(x for x in out.splitlines() if x.startswith("MODEL_ID=")).split("=", 1)[1]
        _run_child([sys.executable, "-c", APPLY, service_id, model_id], env, home, "apply_arms")
        port = free_port()
        serving_home = work / "serving"
        serving_home.mkdir()
        (serving_home / "clearml.conf").write_text("sdk { development { report_use_subprocess: false } }\n")
        run_env = {
            **env,
            "HOME": str(serving_home),
            "CLEARML_CACHE_DIR": str(serving_home / "cache"),
            "CLEARML_CONFIG_FILE": str(serving_home / "clearml.conf"),
        }
        if profile is None:
            command = [
                *(sys.executable, "-m", "services.serving", "run", "--service-id", service_id),
                *("--port", str(port), "--workers", "1", "--metrics-dir", str(serving_home / "metrics")),
            ]
        else:  # the launcher's own uvicorn command and environment, on the profiling wrapper
            options = RunOptions(service_id, port=port, metrics_dir=serving_home / "metrics")
            run_env = {**server_env(options, run_env), PROFILE_ENV: str(profile)}
            # the wrapper is this module, imported by uvicorn from the serving home: the checkout on the path
            paths = (str(REPO), run_env.get("PYTHONPATH", ""))
            run_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
            command = [PROFILED_APP if x == APP else x for x in uvicorn_command(options)]
        with child(
            "ours",
            [*prefix, *command],
            run_env,
            work / "ours.log",
            f"http://127.0.0.1:{port}/serve/occupancy",
            body,
            timeout=180,
            cwd=serving_home,
        ) as running:
            yield running


# ---------------------------------------------------------------------------- steady-state profile

PROFILE_ENV = "BENCH_SERVING_PROFILE"
PROFILED_APP = "bench.bench_serving:profiled_app"
"""``services.serving.app:app`` with cProfile switched on by SIGUSR1 and dumped to ``$BENCH_SERVING_PROFILE``
by SIGUSR2, so a profile holds the requests of one measured run and nothing of the start-up."""


def __getattr__(name: str) -> Any:  # uvicorn imports PROFILED_APP by name in the server process
    if name != "profiled_app":
        raise AttributeError(name)
    import cProfile

    from services.serving.app import app

    profiler = cProfile.Profile()
    path = os.environ[PROFILE_ENV]

    def start(signum: int, frame: Any) -> None:
        profiler.enable()  # signal handlers run in the main thread: the event loop's

    def stop(signum: int, frame: Any) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return app


def profile_run(
    server: Server, profile: Path, seconds: float, script: Path, prefix: list[str], log: Path
) -> None:
    """Profile ``server`` (started on :data:`PROFILED_APP`) through one wrk run at c=8; print the
    cost centres per request."""
    profile.unlink(missing_ok=True)
    os.kill(server.process.pid, signal.SIGUSR1)
    result = run_wrk(server, 8, seconds, script, prefix, log)
    os.kill(server.process.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not profile.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    print_profile(profile, result.requests)


def _short(key: tuple[str, int, str]) -> str:
    path, line, name = key
    for marker in ("site-packages/", f"{REPO}/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})" if line else name


def print_profile(path: Path, requests_done: int, top: int = 30) -> None:
    """Cost centres of the profiled requests: per request, cumulative and own time, by function."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    n = max(1, requests_done)
    total = sum(v[2] for v in stats.values())
    rows = [(ct, tt, nc, _short(key)) for key, (_cc, nc, tt, ct, _callers) in stats.items()]
    print(
        f"\nprofile of ours at c=8 ({requests_done:,} requests; cProfile inflates Python calls, "
        f"compare shares): {total / n * 1e6:,.0f} µs/request profiled; stats in {path}"
    )
    print(f"{'cum µs/req':>10} {'own µs/req':>10} {'calls/req':>9}  function (by cumulative time)")
    for ct, tt, nc, name in sorted(rows, reverse=True)[:top]:
        print(f"{ct / n * 1e6:10.0f} {tt / n * 1e6:10.0f} {nc / n:9.2f}  {name}")
    print(f"{'cum µs/req':>10} {'own µs/req':>10} {'calls/req':>9}  function (by own time)")
    for ct, tt, nc, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"{ct / n * 1e6:10.0f} {tt / n * 1e6:10.0f} {nc / n:9.2f}  {name}")


# ---------------------------------------------------------------------------- the load generator


@dataclass
class Result:
    server: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    cpu_seconds: float
    """CPU time (user + system, all threads) the server process used during the run."""
    wait_seconds: float
    """Time the server's main thread (the event loop) was ready to run but another process had the core."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_util(self) -> float:
        """Share of one core the server got: well below 1 at c≥8 means other processes took its core."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def wait_share(self) -> float:
        """Share of the run the event loop waited for a core: high means a busy machine, not our code."""
        return self.wait_seconds / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        """CPU per request: the server's own cost, less sensitive to a busy machine than req/s."""
        return self.cpu_seconds / self.requests * 1e6 if self.requests else 0.0


def run_queue_seconds(pid: int) -> float:
    """Seconds the main thread of ``pid`` spent runnable, waiting for a CPU (``/proc/PID/schedstat``)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    server: Server,
    connections: int,
    seconds: float,
    script: Path,
    prefix: list[str],
    log: Path,
    timeout: float = 5.0,
) -> Result:
    """One wrk run (one thread) against ``server``; a request slower than ``timeout`` counts as an error."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is missing: install it as root with `apt-get install -y wrk` (Debian/Ubuntu)")
    command = [
        *prefix,
        wrk,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{timeout:g}s",
        "--latency",
        "--script",
        str(script),
        server.url,
    ]
    cpu_before, wait_before = cpu_seconds(server.process.pid), run_queue_seconds(server.process.pid)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 60)
    cpu_used = cpu_seconds(server.process.pid) - cpu_before
    waited = run_queue_seconds(server.process.pid) - wait_before
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n{proc.stdout}{proc.stderr}\n")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}) on {server.name}:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line.removeprefix("WRK_RESULT "))
    return Result(
        server=server.name,
        connections=connections,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors={k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout") if data[k]},
        cpu_seconds=cpu_used,
        wait_seconds=waited,
    )


# ---------------------------------------------------------------------------- report


def check_targets(results: dict[tuple[str, int], Result]) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for each target whose figures were measured."""
    checks = []
    ours8, ceiling8, naive8 = (results.get((s, 8)) for s in ("ours", "ceiling", "naive"))
    ours64 = results.get(("ours", 64))
    if ours8 and ceiling8:
        ratio = ours8.rps / ceiling8.rps
        checks.append(
            (
                f"ours ≥ {TARGET_CEILING_RATIO}× ceiling req/s at c=8",
                ratio >= TARGET_CEILING_RATIO,
                f"{ratio:.2f}×",
            )
        )
    if ours64:
        checks.append(
            (
                f"ours p99 < {TARGET_P99_MS:g} ms at c=64",
                ours64.p99_ms < TARGET_P99_MS,
                f"{ours64.p99_ms:.1f} ms",
            )
        )
    if ours8 and naive8:
        ratio = ours8.rps / naive8.rps
        checks.append(
            (
                f"ours ≥ {TARGET_NAIVE_RATIO:g}× naive req/s at c=8",
                ratio >= TARGET_NAIVE_RATIO,
                f"{ratio:.1f}×",
            )
        )
    return checks


def print_report(
    results: dict[tuple[str, int], Result], servers: list[str], concurrencies: list[int]
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="requests/s and latency per server and concurrency (wrk; the best of the repeats)",
        title_justify="left",
    )
    columns = (
        "server",
        "c",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "requests",
        "CPU µs/req",
        "core",
        "waited",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "server" else "right")
    for name in servers:
        for c in concurrencies:
            r = results.get((name, c))
            if r is None:
                continue
            table.add_row(
                name,
                str(c),
                f"{r.rps:,.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p90_ms:.2f}",
                f"{r.p99_ms:.2f}",
                f"{r.max_ms:.1f}",
                f"{r.requests:,}",
                f"{r.cpu_us_per_request:,.0f}",
                f"{r.cpu_util:.2f}",
                f"{r.wait_share:.2f}",
            )
    Console(width=120).print(table)


# ---------------------------------------------------------------------------- main


def bench(args: argparse.Namespace) -> int:
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    concurrencies = [int(c) for c in args.connections.split(",")]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    cores = pick_cores()
    started = time.monotonic()
    print(f"bench-serving: {', '.join(servers)} at c={concurrencies}, {args.duration:g} s each; {cores.note}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp, contextlib.ExitStack() as stack:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        body = request_body(args.readings)
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT.replace("BODY", body.decode()))
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        model_dir = work / "model"
        if "ours" in servers or "naive" in servers:
            print(f"training the model ({args.epochs} epochs) ...", flush=True)
            model_dir = make_model(work, args.epochs, env)
        running: dict[str, Server] = {}
        for name in servers:
            print(f"starting {name} ...", flush=True)
            if name == "ours":
                profile = Path(args.profile).resolve() if args.profile else None
                started_server = ours_server(work, model_dir, body, cores.server, profile)
            else:
                port = free_port()
                started_server = child(
                    name,
                    [
                        *cores.server,
                        *(sys.executable, "-m", "bench.bench_serving", "serve", name),
                        *("--port", str(port), "--model", str(model_dir)),
                    ],
                    env,
                    work / f"{name}.log",
                    f"http://127.0.0.1:{port}/predict",
                    body,
                )
            running[name] = stack.enter_context(started_server)
        answers = {name: post(s.url, body).json() for name, s in running.items()}
        if "ours" in answers and "naive" in answers:
            ours_p = answers["ours"]["predictions"][-1]["probability"]
            naive_p = answers["naive"]["predictions"][-1]["probability"]
            print(f"same request, probability: ours {ours_p:.6f}, naive (Keras) {naive_p:.6f}")
            if abs(ours_p - naive_p) > 1e-3:
                print("warning: ours and the Keras model disagree on the probability", file=sys.stderr)
        results: dict[tuple[str, int], Result] = {}  # the best of the repeats (highest req/s)
        failed_runs: list[Result] = []
        wrk_log = work / "wrk.log"
        for c in concurrencies:
            for round_ in range(args.repeat):
                for name in servers:  # the servers take turns, so a burst of load elsewhere hits all
                    server = running[name]
                    # naive queues 64 connections for seconds: its timeout must not cut its queue short
                    timeout = 60.0 if name == "naive" else 5.0
                    run_wrk(server, min(c, 8), args.warmup, script, cores.load, wrk_log, timeout)
                    result = run_wrk(server, c, args.duration, script, cores.load, wrk_log, timeout)
                    best = results.get((name, c))
                    if best is None or result.rps > best.rps:
                        results[(name, c)] = result
                    flag = f"  ERRORS {result.errors}" if result.errors else ""
                    print(
                        f"  {name:8s} c={c:<3d} #{round_ + 1} {result.rps:9,.0f} req/s  "
                        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                        f"{result.cpu_us_per_request:5,.0f} CPU µs/req  core {result.cpu_util:.2f} "
                        f"waited {result.wait_share:.2f}{flag}",
                        flush=True,
                    )
                    failed_runs.extend([result] if result.errors else [])
        if args.profile and "ours" in running:
            profile_run(
                running["ours"], Path(args.profile).resolve(), args.duration, script, cores.load, wrk_log
            )
        for server in running.values():  # the servers stay healthy under the load
            if post(server.url, body).status_code != 200:
                print(f"error: {server.name} no longer answers 200 after the load", file=sys.stderr)
        stack.close()
        print()
        print_report(results, servers, concurrencies)
        checks = check_targets(results)
        if ("ours", 8) in results and ("ceiling", 8) in results:
            print(f"ours/ceiling at c=8: {results[('ours', 8)].rps / results[('ceiling', 8)].rps:.2f}×")
        if ("ours", 8) in results and ("naive", 8) in results:
            print(f"ours/naive at c=8: {results[('ours', 8)].rps / results[('naive', 8)].rps:.1f}×")
        if ("ours", 8) in results and ("ceiling", 8) in results:
            cpu_ratio = results[("ceiling", 8)].cpu_us_per_request / results[("ours", 8)].cpu_us_per_request
            print(
                f"ceiling CPU/req ÷ ours CPU/req at c=8: {cpu_ratio:.2f}× (the req/s ratio a server with a "
                "whole core to itself would reach)"
            )
        for name in servers:
            r = results.get((name, max(concurrencies)))
            if r is not None and r.rps and max(concurrencies) > 1 and name != "naive":
                queue_ms = r.connections / r.rps * 1000
                print(
                    f"{name} at c={r.connections}: {r.connections} connections / {r.rps:,.0f} req/s = "
                    f"{queue_ms:.1f} ms average latency from queueing alone (p50 {r.p50_ms:.1f}, "
                    f"p99 {r.p99_ms:.1f} ms)"
                )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for target, met, measured in checks:
            print(f"target {target}: {'met' if met else 'MISSED'} ({measured})")
        for r in failed_runs:
            print(f"error: {r.server} at c={r.connections} had failed requests {r.errors}", file=sys.stderr)
        print(
            f"measured {datetime.now().isoformat(timespec='seconds')} in {time.monotonic() - started:.0f} s; "
            f"body {len(body)} bytes ({args.readings} reading(s)); "
            f"logs in {work if args.keep else '(removed)'}"
        )
    return 0 if all(met for _, met, _ in checks) and not failed_runs else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="run one reference server (used by the bench itself)")
    serve_parser.add_argument("kind", choices=("ceiling", "naive"))
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--model", type=Path)
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated subset of ours,ceiling,naive"
    )
    parser.add_argument("--connections", default=",".join(map(str, CONCURRENCIES)))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of measurement per run")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs per server and concurrency; the best (req/s) is reported"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each run")
    parser.add_argument("--readings", type=int, default=1, help="readings per request (1 to 1440)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs of the benchmarked model")
    parser.add_argument("--keep", help="keep logs, model and profile in this folder")
    parser.add_argument(
        "--profile",
        help="after the measured runs, profile ours (cProfile) through one more run at c=8, write the "
        "stats to this file and print the cost centres per request",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.kind, args.port, args.model)
        return 0
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
