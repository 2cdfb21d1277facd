"""Two uvicorn workers: /metrics, scraped from either worker, counts every request exactly once, and
every labeled reading posted to /feedback/ once, whichever worker issued its prediction id and
whichever verified it; the faults file makes the canary arm fail (counted as injected_fault, kind
server) or slow."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from local_server import LocalServer
from tests.serving.server import READING, Deployment, deploy
from tests.serving.test_corpus import _metric
from training.data import load_labeled
from training.drift import build_reference
from training.features import DEFAULT_SCHEMA

N = 300
MAX_ROUNDS = 8


@pytest.fixture(scope="module")
def faults_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "faults.json"


@pytest.fixture(scope="module")
def deployment(
    server: LocalServer, tmp_path_factory: pytest.TempPathFactory, faults_file: Path, occupancy_dir: Path
) -> Iterator[Deployment]:
    reference = build_reference(load_labeled([occupancy_dir / "datatraining.txt"]), DEFAULT_SCHEMA)
    with deploy(
        server,
        tmp_path_factory.mktemp("serving-metrics"),
        "ServeMetrics",
        "metrics-serving",
        [0.0, -3.0],
        workers=2,
        extra_env={
            "OCCUPANCY_SERVING_FAULTS_FILE": str(faults_file),
            "OCCUPANCY_SERVING_DRIFT_EVERY": "5",
            "OCCUPANCY_SERVING_DRIFT_MIN_READINGS": "10",
            "OCCUPANCY_SERVING_DRIFT_SECONDS": "0",
        },
        canary_weight=0.5,
        drift_reference=reference.to_dict(),
    ) as d:
        yield d


def scrape(url: str) -> str:
    # a new connection each time: the kernel hands it to either worker
    return requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text


def _worker_pids(srv_home: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[1] for p in (srv_home / "metrics").glob("counter_*.db")}


def _send(url: str, i: int) -> tuple[int, str | None]:
    body = READING if i % 10 else dict(READING, CO2="bad")  # some client errors as well
    resp = requests.post(f"{url}/serve/occupancy", json=body, timeout=30, headers={"Connection": "close"})
    return resp.status_code, resp.json().get("arm") if resp.status_code == 200 else None


def test_two_workers_count_every_request_once(deployment: Deployment) -> None:
    srv = deployment.server
    name = "occupancy_serving_requests_total"
    before = scrape(srv.url)
    arms: Counter[str] = Counter()
    sent = 0
    # The kernel hands each new connection to whichever worker accepts first; on a busy machine
    # one worker can win many in a row. Send concurrent rounds until both workers have served
    # (bounded), so the test is about counting, not about the kernel's scheduling.
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(MAX_ROUNDS):
            for status, arm in pool.map(lambda i: _send(srv.url, i), range(sent, sent + N)):
                if status == 200 and arm:
                    arms[arm] += 1
            sent += N
            if len(_worker_pids(srv.home)) >= 2:
                break
    for _ in range(6):  # whichever worker answers the scrape, the totals are the same
        after = scrape(srv.url)
        assert _metric(after, name) - _metric(before, name) == sent
        # every request was routed (bad readings too: the arm's Preprocess refused them)
        routed = sum(_metric(after, name, arm=arm) - _metric(before, name, arm=arm) for arm in arms)
        assert routed == sent
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
        == sent // 10
    )
    predicted = _metric(after, "occupancy_serving_predictions_total") - _metric(
        before, "occupancy_serving_predictions_total"
    )
    assert predicted == sent - sent // 10
    assert _metric(after, "occupancy_serving_probability_count") >= predicted
    assert _metric(after, "occupancy_serving_request_duration_seconds_count") >= sent
    # both workers served and wrote their own files
    pids = _worker_pids(srv.home)
    assert len(pids) >= 2, f"{sent} requests all reached one worker: {pids}"


def _predict(url: str, i: int) -> tuple[str, str, list[bool]]:
    resp = requests.post(f"{url}/serve/occupancy", json=READING, timeout=30, headers={"Connection": "close"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["arm"], body["prediction_id"], [p["occupied"] for p in body["predictions"]]


def _label(url: str, token: str, labels: list[bool | None]) -> requests.Response:
    body = {"prediction_id": token, "occupied": labels}
    return requests.post(f"{url}/feedback/occupancy", json=body, timeout=30, headers={"Connection": "close"})


def test_two_workers_count_every_labeled_reading_once(deployment: Deployment) -> None:
    """The reading is lit and occupied: the champion predicts it right, the canary (bias -3) wrong.
    The launcher gave both workers one secret, so each verifies the other's prediction ids."""
    srv = deployment.server
    before = scrape(srv.url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        predictions = list(pool.map(lambda i: _predict(srv.url, i), range(200)))
        # the first 20 posted with null labels: accepted, nothing counted
        answers = list(
            pool.map(
                lambda ip: _label(srv.url, ip[1][1], [None] if ip[0] < 20 else [True]),
                enumerate(predictions),
            )
        )
    refused = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
    assert not refused, (
        f"{len(refused)} of {len(answers)} refused (a worker with another secret?): {refused[:3]}"
    )
    assert len({token for _, token, _ in predictions}) == 200, "every answer has an id of its own"
    arms = Counter(arm for arm, _, _ in predictions[20:])
    assert {"champion", "canary"} <= set(arms), arms
    assert all(occupied == [arm == "champion"] for arm, _, occupied in predictions), "the models' answers"
    assert len(_worker_pids(srv.home)) >= 2, "both workers wrote metrics"
    name = "occupancy_serving_feedback_total"
    for _ in range(6):  # whichever worker answers the scrape
        after = scrape(srv.url)

        def delta(metric: str, **labels: str) -> float:
            return _metric(after, metric, **labels) - _metric(before, metric, **labels)  # noqa: B023

        assert delta(name, arm="champion", correct="true") == arms["champion"]
        assert delta(name, arm="canary", correct="false") == arms["canary"]
        assert delta(name, arm="champion", correct="false") == delta(name, arm="canary", correct="true") == 0
        assert delta("occupancy_serving_feedback_requests_total") == 180, "posts with at least one label"
        assert delta("occupancy_serving_feedback_delay_seconds_count") == 180
        assert delta("occupancy_serving_feedback_errors_total") == 0


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


def test_input_drift_gauges_of_both_arms(deployment: Deployment) -> None:
    """Every request sends the same lit reading (426 lux): its Light is far from the training week's
    spread, so each arm's Light PSI (set every 5 requests by the worker that served them) is above
    its limit; any worker answers the scrape with the same one series per input and arm."""
    srv = deployment.server
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: _predict(srv.url, i), range(120)))
    inputs = ("Temperature", "Humidity", "Light", "CO2", "HumidityRatio")
    for _ in range(4):
        text = scrape(srv.url)
        for arm, version in (("champion", "1"), ("canary", "2")):
            for name in inputs:
                labels = {"arm": arm, "model_version": version, "input": name}
                assert _metric(text, "occupancy_serving_input_drift_psi_limit", **labels) > 0, (arm, name)
                assert 0 < _metric(text, "occupancy_serving_input_drift_ks", **labels) <= 1, (arm, name)
            light = {"arm": arm, "model_version": version, "input": "Light"}
            psi = _metric(text, "occupancy_serving_input_drift_psi", **light)
            assert psi > _metric(text, "occupancy_serving_input_drift_psi_limit", **light), (arm, psi)
            assert (
                _metric(text, "occupancy_serving_input_drift_readings", arm=arm, model_version=version) >= 10
            )
        series = [line for line in text.splitlines() if line.startswith("occupancy_serving_input_drift_psi{")]
        assert len(series) == 2 * len(inputs), series
