"""Two uvicorn workers: /metrics, scraped from either worker, counts every request exactly once;
the faults file makes the canary arm fail (counted as injected_fault, kind server) or slow."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from services.local_server import LocalServer
from tests.serving.server import READING, Deployment, deploy
from tests.serving.test_corpus import _metric

N = 300


@pytest.fixture(scope="module")
def faults_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "faults.json"


@pytest.fixture(scope="module")
def deployment(
    server: LocalServer, tmp_path_factory: pytest.TempPathFactory, faults_file: Path
) -> Iterator[Deployment]:
    with deploy(
        server,
        tmp_path_factory.mktemp("serving-metrics"),
        "ServeMetrics",
        "metrics-serving",
        [0.0, -3.0],
        workers=2,
        extra_env={"OCCUPANCY_SERVING_FAULTS_FILE": str(faults_file)},
        canary_weight=0.5,
    ) as d:
        yield d


def scrape(url: str) -> str:
    # a new connection each time: the kernel hands it to either worker
    return requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text


def test_two_workers_count_every_request_once(deployment: Deployment) -> None:
    srv = deployment.server
    name = "occupancy_serving_requests_total"
    before = scrape(srv.url)
    arms: Counter[str] = Counter()
    for i in range(N):
        body = READING if i % 10 else dict(READING, CO2="bad")  # some client errors as well
        resp = requests.post(
            f"{srv.url}/serve/occupancy", json=body, timeout=30, headers={"Connection": "close"}
        )
        if resp.status_code == 200:
            arms[resp.json()["arm"]] += 1
    for _ in range(6):  # whichever worker answers the scrape, the totals are the same
        after = scrape(srv.url)
        assert _metric(after, name) - _metric(before, name) == N
        # every request was routed (bad readings too: the arm's Preprocess refused them)
        routed = sum(_metric(after, name, arm=arm) - _metric(before, name, arm=arm) for arm in arms)
        assert routed == N
        for arm, count in arms.items():
            assert (
                _metric(after, "occupancy_serving_predictions_total", arm=arm)
                - _metric(before, "occupancy_serving_predictions_total", arm=arm)
                == count
            ), arm
    assert {"champion", "canary"} <= set(arms), arms
    errors = _metric(after, "occupancy_serving_errors_total", cause="validation", kind="client")
    assert (
        errors - _metric(before, "occupancy_serving_errors_total", cause="validation", kind="client")
        == N // 10
    )
    predicted = _metric(after, "occupancy_serving_predictions_total") - _metric(
        before, "occupancy_serving_predictions_total"
    )
    assert predicted == N - N // 10
    assert _metric(after, "occupancy_serving_probability_count") >= predicted
    assert _metric(after, "occupancy_serving_request_duration_seconds_count") >= N
    # both workers served and wrote their own files
    pids = {p.stem.rsplit("_", 1)[1] for p in (srv.home / "metrics").glob("counter_*.db")}
    assert len(pids) >= 2, pids


def test_injected_faults_hit_the_canary_only(deployment: Deployment, faults_file: Path) -> None:
    srv = deployment.server
    before = scrape(srv.url)
    faults_file.write_text(json.dumps({"canary": {"error_ratio": 1.0}}))
    time.sleep(1.5)  # each worker looks at the file at most once a second
    statuses: Counter[tuple[int, str]] = Counter()
    for _ in range(100):
        resp = srv.post(READING)
        body = resp.json()
        statuses[(resp.status_code, body.get("arm") or body.get("cause"))] += 1
    assert set(statuses) == {(200, "champion"), (500, "injected_fault")}, statuses
    after = scrape(srv.url)
    name = "occupancy_serving_errors_total"
    labels = {"arm": "canary", "cause": "injected_fault", "kind": "server"}
    assert (
        _metric(after, name, **labels) - _metric(before, name, **labels) == statuses[(500, "injected_fault")]
    )
    assert _metric(after, name, arm="champion", kind="server") == 0

    # a delay instead: the canary is slow, the champion is not
    faults_file.write_text(json.dumps({"canary": {"delay_ms": 500}}))
    time.sleep(1.5)
    times: dict[str, list[float]] = {"champion": [], "canary": []}
    for _ in range(30):
        started = time.monotonic()
        resp = srv.post(READING)
        assert resp.status_code == 200, resp.text
        times[resp.json()["arm"]].append(time.monotonic() - started)
    # every canary answer waited the delay; the champion's did not (median: robust to a busy machine)
    assert min(times["canary"]) >= 0.5 and statistics.median(times["champion"]) < 0.25, times

    faults_file.unlink()
    time.sleep(1.5)
    assert all(srv.post(READING).status_code == 200 for _ in range(20))
