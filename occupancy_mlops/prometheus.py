"""A real Prometheus server as a child process (tests, demo, benchmarks) and a small client of its
HTTP API (the canary controller's analyses).

The server is Debian's ``prometheus`` package (2.42 on bookworm), run directly with a generated
configuration: it listens on 127.0.0.1 on a free port, keeps its TSDB in a work folder and scrapes
static targets, grouped by job name::

    with prometheus_process(workdir, {"serving": ["127.0.0.1:8080"]}) as prom:
        client = PromClient(prom.url)
        client.wait_for_series('up{job="serving"} == 1', timeout=10)
        prom.reload({"serving": [...], "canary": ["127.0.0.1:9100"]})   # add targets while it runs
        for labels, value in client.query('sum by (arm) (rate(occupancy_serving_requests_total[30s]))'):
            ...

Never a fake Prometheus API: a missing binary raises :class:`PrometheusNotFound` saying how to install it.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

INSTALL_HINT = (
    "install Debian's prometheus package as root: `apt-get update && apt-get install -y prometheus` "
    "(or run `make test`/`make demo` as root, which installs it), or set PROMETHEUS_BIN to a "
    "prometheus binary (2.x)"
)
Targets = Mapping[str, Sequence[str]]
"""Scrape targets: job name -> ``host:port`` addresses (each scraped at ``/metrics``)."""


class PrometheusNotFound(RuntimeError):
    """The ``prometheus`` binary is not installed (or ``$PROMETHEUS_BIN`` names no executable)."""


class PrometheusError(RuntimeError):
    """A Prometheus server failed to start, could not be reached, or refused a query (bad PromQL)."""


def find_prometheus() -> str:
    """The path of the prometheus binary: ``$PROMETHEUS_BIN`` if set (it must exist), else ``PATH``."""
    configured = os.environ.get("PROMETHEUS_BIN")
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise PrometheusNotFound(f"PROMETHEUS_BIN={configured} is not an executable file; {INSTALL_HINT}")
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusNotFound(f"the `prometheus` binary is not on PATH; {INSTALL_HINT}")
    return found


def _duration(seconds: float) -> str:
    """A Prometheus duration (``1500ms``) for a number of seconds."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a duration must be positive, got {seconds} s")
    return f"{millis}ms"


def write_config(path: Path, targets: Targets, scrape_interval_seconds: float = 1.0) -> Path:
    """Write a configuration scraping ``targets`` (one job per key, ``/metrics`` over HTTP)."""
    interval = _duration(scrape_interval_seconds)
    jobs = []
    for job, addresses in targets.items():
        if not job:
            raise ValueError("a job name must not be empty")
        if isinstance(addresses, str):
            raise TypeError(f"targets[{job!r}] must be a list of host:port, got the string {addresses!r}")
        jobs.append(
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "scheme": "http",
                "static_configs": [{"targets": [str(a) for a in addresses]}],
            }
        )
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": jobs,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)  # atomic: a reload never reads half a file
    return path


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningPrometheus:
    """A Prometheus child process started by :func:`prometheus_process`."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
    process: subprocess.Popen[bytes]
    workdir: Path
    config_path: Path
    log_path: Path
    scrape_interval_seconds: float
    targets: dict[str, list[str]] = field(default_factory=dict)

    def client(self, timeout: float = 10.0) -> PromClient:
        return PromClient(self.url, timeout=timeout)

    def reload(self, targets: Targets) -> None:
        """Scrape ``targets`` from now on: rewrite the configuration and POST ``/-/reload``.

        If Prometheus refuses the new configuration it keeps running the old one; so does the file,
        and :class:`PrometheusError` carries Prometheus' reason.
        """
        previous = self.config_path.read_bytes()
        write_config(self.config_path, targets, self.scrape_interval_seconds)
        try:
            res = requests.post(f"{self.url}/-/reload", timeout=30)
        except requests.RequestException as exc:
            self.config_path.write_bytes(previous)
            raise PrometheusError(f"cannot reach Prometheus at {self.url} to reload: {exc}") from exc
        if res.status_code != 200:
            self.config_path.write_bytes(previous)
            raise PrometheusError(
                f"Prometheus refused the new configuration ({res.status_code}): {res.text.strip()}"
            )
        self.targets = {job: list(addresses) for job, addresses in targets.items()}


def _log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (Prometheus flushes its head block and exits), SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def prometheus_process(
    workdir: Path,
    targets: Targets,
    scrape_interval_seconds: float = 1.0,
    start_timeout: float = 30.0,
    stop_grace: float = 10.0,
    host: str = "127.0.0.1",
) -> Iterator[RunningPrometheus]:
    """Run Prometheus scraping ``targets`` until the block ends; yields once ``/-/ready`` answers 200.

    Configuration ``prometheus.yml``, TSDB ``data/`` and log ``prometheus.log`` live in ``workdir``.
    It listens on ``host`` (loopback) on a free port (a port lost to a race is retried), with
    ``--web.enable-lifecycle`` for :meth:`RunningPrometheus.reload`. Stopped with SIGTERM, SIGKILL
    after ``stop_grace`` seconds. Raises :class:`PrometheusNotFound` if the binary is missing and
    :class:`PrometheusError` (with the end of its log) if it does not become ready.
    """
    binary = find_prometheus()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(workdir / "prometheus.yml", targets, scrape_interval_seconds)
    log_path = workdir / "prometheus.log"
    last_error = ""
    for _attempt in range(3):
        port = _free_port(host)
        url = f"http://{host}:{port}"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    "--storage.tsdb.retention.time=1d",
                    f"--web.listen-address={host}:{port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it: we stop it
            )
        try:
            if _wait_ready(proc, url, start_timeout):
                running = RunningPrometheus(
                    url=url,
                    process=proc,
                    workdir=workdir,
                    config_path=config_path,
                    log_path=log_path,
                    scrape_interval_seconds=scrape_interval_seconds,
                    targets={job: list(a) for job, a in targets.items()},
                )
                yield running
                return
            last_error = _log_tail(log_path)
            if "address already in use" not in last_error:
                break
        finally:
            _stop(proc, stop_grace)
    raise PrometheusError(f"Prometheus ({binary}) did not become ready; see {log_path}:\n{last_error}")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


Sample = tuple[dict[str, str], float]
"""One result of an instant query: the series' labels (``__name__`` included if kept) and its value."""


class PromClient:
    """Instant PromQL queries over a Prometheus server's HTTP API (``GET /api/v1/query``).

    ``query`` returns a list of ``(labels, value)``: one per series for a vector result, a single
    ``({}, value)`` for a scalar. Values are floats (``NaN`` and ``±Inf`` included, as Prometheus
    returns them: ``histogram_quantile`` over no traffic is NaN). An unreachable server, an HTTP
    error, or PromQL that Prometheus refuses (parse or execution error) raises :class:`PrometheusError`
    naming the query and Prometheus' own message.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def query(self, promql: str, time: float | None = None) -> list[Sample]:
        """Evaluate ``promql`` at unix time ``time`` (default: now)."""
        params: dict[str, str] = {"query": promql}
        if time is not None:
            params["time"] = f"{time:.3f}"
        try:
            res = self.session.get(f"{self.url}/api/v1/query", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from exc
        try:
            body: dict[str, Any] = res.json()
        except ValueError:
            raise PrometheusError(
                f"Prometheus at {self.url} answered {res.status_code} without JSON to {promql!r}: "
                f"{res.text[:300]}"
            ) from None
        if res.status_code != 200 or body.get("status") != "success":
            kind = body.get("errorType", f"HTTP {res.status_code}")
            raise PrometheusError(
                f"Prometheus refused {promql!r} ({kind}): {body.get('error', res.text[:300])}"
            )
        data = body["data"]
        result_type, result = data["resultType"], data["result"]
        if result_type == "vector":
            return [(dict(item["metric"]), float(item["value"][1])) for item in result]
        if result_type == "scalar":
            return [({}, float(result[1]))]
        raise PrometheusError(
            f"{promql!r} is a {result_type} result; instant queries here need a vector or a scalar "
            "(wrap a range selector in a function such as rate() or max_over_time())"
        )

    def value(self, promql: str, time: float | None = None, default: float = math.nan) -> float:
        """The single value of ``promql`` (``default`` when it returns nothing; an error when several)."""
        samples = self.query(promql, time)
        if not samples:
            return default
        if len(samples) > 1:
            raise PrometheusError(
                f"{promql!r} returned {len(samples)} series, expected one: {[s[0] for s in samples]}"
            )
        return samples[0][1]

    def wait_for_series(self, promql: str, timeout: float = 30.0, interval: float = 0.25) -> list[Sample]:
        """Query until ``promql`` returns at least one series; :class:`PrometheusError` after ``timeout`` s.

        Query errors (bad PromQL) are raised at once; a server that cannot be reached yet is retried.
        """
        deadline = time.monotonic() + timeout
        last = "no series"
        while True:
            try:
                samples = self.query(promql)
            except PrometheusError as exc:
                if not isinstance(exc.__cause__, requests.RequestException):
                    raise
                samples, last = [], str(exc)
            if samples:
                return samples
            if time.monotonic() >= deadline:
                raise PrometheusError(f"{promql!r} returned {last} within {timeout:g} s at {self.url}")
            time.sleep(interval)
