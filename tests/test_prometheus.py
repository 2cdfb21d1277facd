"""A real Prometheus (Debian's 2.42 binary) scraping a real prometheus-client endpoint on loopback.

The endpoint emits a histogram with known bucket counts (so ``histogram_quantile`` has one exact
answer), a counter ticking at a steady rate, and a histogram fed at a steady mix; the test reads them
back through :class:`PromClient` as the canary controller does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from occupancy_mlops.prometheus import (
    PromClient,
    PrometheusError,
    PrometheusNotFound,
    RunningPrometheus,
    find_prometheus,
    prometheus_process,
    write_config,
)

SCRAPE = 0.5  # seconds
TICK = 0.05  # the emitter's period: 20 ticks per second
BUCKETS = (0.01, 0.1, 1.0)


class Emitter:
    """A prometheus-client HTTP endpoint on a free loopback port with metrics whose answers are known."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        static = Histogram(
            "bench_static_seconds", "fixed observations", buckets=BUCKETS, registry=self.registry
        )
        # 50 in (0, 0.01], 40 in (0.01, 0.1], 10 in (0.1, 1]: p50 = 0.01, p90 = 0.1, p95 = 0.55
        for value, count in ((0.005, 50), (0.05, 40), (0.5, 10)):
            for _ in range(count):
                static.observe(value)
        self.ticks = Counter("bench_ticks", "one per tick", ["arm"], registry=self.registry)
        self.latency = Histogram(
            "bench_latency_seconds", "steady mix per tick", buckets=BUCKETS, registry=self.registry
        )
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.address = f"127.0.0.1:{self.server.server_port}"
        self.stop_event = threading.Event()
        self.loop = threading.Thread(target=self._run, daemon=True)
        self.loop.start()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self.stop_event.is_set():
            self.ticks.labels(arm="champion").inc()
            self.ticks.labels(arm="canary").inc(3)
            for value, count in ((0.005, 5), (0.05, 4), (0.5, 1)):
                for _ in range(count):
                    self.latency.observe(value)
            next_tick += TICK
            self.stop_event.wait(max(0.0, next_tick - time.monotonic()))

    def close(self) -> None:
        self.stop_event.set()
        self.loop.join()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def emitter() -> Iterator[Emitter]:
    em = Emitter()
    yield em
    em.close()


@pytest.fixture(scope="module")
def prom(emitter: Emitter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    with prometheus_process(
        tmp_path_factory.mktemp("prometheus"), {"emitter": [emitter.address]}, scrape_interval_seconds=SCRAPE
    ) as running:
        yield running


def test_scrapes_and_answers_promql(prom: RunningPrometheus, emitter: Emitter) -> None:
    assert prom.url.startswith("http://127.0.0.1:")
    client = PromClient(prom.url)
    up = client.wait_for_series('up{job="emitter"} == 1', timeout=10)
    assert up[0][0]["instance"] == emitter.address

    # exact: histogram_quantile over the fixed bucket counts
    static = "bench_static_seconds_bucket"
    assert client.value(f"histogram_quantile(0.5, {static})") == pytest.approx(0.01)
    assert client.value(f"histogram_quantile(0.9, {static})") == pytest.approx(0.1)
    assert client.value(f"histogram_quantile(0.95, {static})") == pytest.approx(0.55)
    assert client.value("bench_static_seconds_count") == 100

    # rate() is exact only when the series covers the whole window (else Prometheus extrapolates
    # less): wait for 4 s of samples, then rate over 3 s. The emitter ticks 20 times a second.
    window = "[3s]"
    client.wait_for_series("count_over_time(bench_ticks_total{arm='canary'}[1m]) >= 9", timeout=15)
    rates = dict((labels["arm"], value) for labels, value in client.query(f"rate(bench_ticks_total{window})"))
    assert rates["champion"] == pytest.approx(1 / TICK, rel=0.2)
    assert rates["canary"] == pytest.approx(3 / TICK, rel=0.2)
    ratio = client.value(
        f"sum(rate(bench_ticks_total{{arm='canary'}}{window})) / sum(rate(bench_ticks_total{window}))"
    )
    assert ratio == pytest.approx(0.75, abs=0.03)
    p90 = client.value(f"histogram_quantile(0.9, sum by (le) (rate(bench_latency_seconds_bucket{window})))")
    assert p90 == pytest.approx(0.1, rel=0.1)
    # no traffic in a series: NaN, as Prometheus answers it
    assert math.isnan(
        client.value(f"histogram_quantile(0.9, sum by (le) (rate(bench_static_seconds_bucket{window})))")
    )
    # a query evaluated in the past (before the server started) has no data
    assert client.query("bench_static_seconds_count", time=time.time() - 3600) == []
    assert client.query("1 + 1") == [({}, 2.0)]


def test_bad_promql_is_a_clear_error(prom: RunningPrometheus) -> None:
    client = PromClient(prom.url)
    with pytest.raises(
        PrometheusError, match=r"refused 'rate\(bench_ticks_total\[' \(bad_data\).*parse error"
    ):
        client.query("rate(bench_ticks_total[")
    with pytest.raises(PrometheusError, match="matrix result"):
        client.query("bench_ticks_total[5s]")
    with pytest.raises(PrometheusError, match="parse error"):
        client.wait_for_series("sum(", timeout=5)
    with pytest.raises(PrometheusError, match="returned no series within 1 s"):
        client.wait_for_series("no_such_metric", timeout=1)
    with pytest.raises(PrometheusError, match=r"cannot reach Prometheus at http://127\.0\.0\.1:9"):
        PromClient("http://127.0.0.1:9", timeout=2).query("up")


def test_reload_adds_a_target(prom: RunningPrometheus, emitter: Emitter) -> None:
    second = Emitter()
    try:
        prom.reload({"emitter": [emitter.address], "second": [second.address]})
        client = prom.client()
        assert client.wait_for_series('up{job="second"} == 1', timeout=10)[0][0]["instance"] == second.address
        assert prom.targets == {"emitter": [emitter.address], "second": [second.address]}
        assert "second" in prom.config_path.read_text()
    finally:
        second.close()
    # a configuration Prometheus refuses leaves the old one running and says why
    with pytest.raises(PrometheusError, match="refused the new configuration"):
        prom.reload({"emitter": ["http://127.0.0.1:1/metrics"]})
    assert "second" in prom.config_path.read_text()
    assert client.value('up{job="emitter"}') == 1


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_BIN", "/nonexistent")
    with pytest.raises(PrometheusNotFound, match=r"apt-get install -y prometheus"):
        find_prometheus()
    with (
        pytest.raises(PrometheusNotFound, match="PROMETHEUS_BIN=/nonexistent"),
        prometheus_process(tmp_path, {}),
    ):
        pass
    monkeypatch.delenv("PROMETHEUS_BIN")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusNotFound, match=r"not on PATH.*apt-get install -y prometheus"):
        find_prometheus()


def test_write_config(tmp_path: Path) -> None:
    import yaml

    path = write_config(tmp_path / "p.yml", {"serving": ["127.0.0.1:1", "127.0.0.1:2"]}, 0.25)
    config = yaml.safe_load(path.read_text())
    assert config["global"]["scrape_interval"] == "250ms"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]
    with pytest.raises(TypeError, match="list of host:port"):
        write_config(tmp_path / "q.yml", {"serving": "127.0.0.1:1"})
