"""The occupancy endpoint on the real clearml-serving inference app against the local server:
``serving setup`` (idempotent), the champion served with its lineage, then a canary at 50 % served
beside it within seconds, without a restart; the bad-input corpus on the same server."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local_server import LocalServer
from tests.conftest import api_client
from tests.serving.models import expected_probability, register_bundles
from tests.serving.server import READING, Deployment, apply_arms, cli, deploy, setup_service
from tests.serving.test_corpus import _metric

PROJECT = "ServeFlow"
SERVICE = "occupancy-serving"
CANARY_SHIFT = -3.0


@pytest.fixture(scope="module")
def deployment(server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(server, tmp_path_factory.mktemp("serving-flow"), PROJECT, SERVICE, [0.0, CANARY_SHIFT]) as d:
        yield d


def test_setup_is_idempotent(deployment: Deployment) -> None:
    env = deployment.env

    def artifacts() -> dict[str, Any]:
        task = api_client(env).tasks.get_by_id(task=deployment.service_id)
        return {a.key: a.to_dict() for a in task.execution.artifacts or []}

    uploaded = artifacts()
    assert list(uploaded) == ["py_code_occupancy"]
    assert setup_service(env, PROJECT, SERVICE) == deployment.service_id
    assert artifacts() == uploaded, "the shim is uploaded once"
    status = cli(env, "serving", "status", "--service-id", deployment.service_id)
    assert status.returncode == 0, status.stderr
    assert '"occupancy/champion"' in status.stdout and deployment.champion in status.stdout
    # the same configuration again writes nothing
    assert apply_arms(env, deployment.service_id, (deployment.champion, "1")) is False
    missing = cli(env, "serving", "status", "--project", "NoSuchProject", "--name", "nothing")
    assert missing.returncode == 2 and "no serving service" in missing.stderr


def test_champion_then_canary_without_restart(deployment: Deployment) -> None:
    srv = deployment.server
    info = srv.wait_ready()
    assert "occupancy/champion" in info["endpoints"], info

    def answered() -> requests.Response:
        resp = srv.post(READING)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return resp

    body = srv.wait_for("the champion's first answer", answered, 60).json()
    assert body["arm"] == "champion"
    assert body["model"] == {"id": deployment.champion, "version": "1", "dataset_id": "ds-42"}
    [prediction] = body["predictions"]
    assert prediction["date"] == READING["date"]
    assert prediction["probability"] == pytest.approx(expected_probability(READING["Light"]), abs=1e-6)
    assert prediction["occupied"] is True

    # a series: every reading predicted with the history before it
    series = {
        "readings": [
            dict(READING, date=f"2015-02-04 17:{m:02d}:00", Light=float(m * 20 + 5)) for m in range(30)
        ]
    }
    resp = srv.post(series)
    assert resp.status_code == 200, resp.text
    got = resp.json()["predictions"]
    assert [p["date"] for p in got] == [r["date"] for r in series["readings"]]
    assert [p["occupied"] for p in got] == [r["Light"] > 300 for r in series["readings"]]

    # a canary at 50 %: both arms answer within seconds, the running server is not restarted
    pid = srv.proc.pid
    changed = time.monotonic()
    assert apply_arms(
        deployment.env, deployment.service_id, (deployment.champion, "1"), (deployment.canary, "2"), 0.5
    )

    def both_arms() -> Counter[str]:
        arms = Counter(srv.post(READING).json()["arm"] for _ in range(20))
        assert set(arms) == {"champion", "canary"}, arms
        return arms

    srv.wait_for("the canary to answer", both_arms, 30)
    live_after = time.monotonic() - changed
    assert live_after < 20, live_after
    # both arms were loaded by the configuration thread, not by a request
    assert "configuration changed: endpoints loaded in" in srv.log_tail()

    def both_loaded() -> None:
        assert srv.wait_ready()["loaded"] == ["occupancy/canary", "occupancy/champion"]
        assert "endpoints loaded: occupancy/canary, occupancy/champion" in srv.log_tail()

    srv.wait_for("the new table of loaded endpoints", both_loaded, 15)
    arms: Counter[str] = Counter()
    for _ in range(200):
        answer = srv.post(READING).json()
        arms[answer["arm"]] += 1
        if answer["arm"] == "canary":
            assert answer["model"] == {"id": deployment.canary, "version": "2", "dataset_id": "ds-42"}
            expected = expected_probability(READING["Light"], CANARY_SHIFT)
            assert answer["predictions"][0]["probability"] == pytest.approx(expected, abs=1e-6)
    assert 60 <= arms["canary"] <= 140, arms  # 0.5 of 200 (binomial: ±5 sigma is ±35)
    assert srv.proc.pid == pid and srv.proc.poll() is None

    # back to the champion alone (a rollback): only champion answers
    assert apply_arms(deployment.env, deployment.service_id, (deployment.champion, "1"), None, 0.0)

    def champion_only() -> None:
        arms = {srv.post(READING).json().get("arm") for _ in range(20)}
        assert arms == {"champion"}, arms

    srv.wait_for("the canary to be gone", champion_only, 30)

    # a canary whose model cannot be loaded: its requests fail as server errors of the canary arm
    [broken] = register_bundles(deployment.env, PROJECT, "occupancy-mlp", [0.0], broken=True)
    assert apply_arms(deployment.env, deployment.service_id, (deployment.champion, "1"), (broken, "3"), 0.5)

    def canary_fails() -> Counter[tuple[int, str]]:
        seen: Counter[tuple[int, str]] = Counter()
        for _ in range(20):
            resp = srv.post(READING)
            seen[(resp.status_code, resp.json().get("arm") or resp.json().get("cause"))] += 1
        assert set(seen) == {(200, "champion"), (500, "model_error")}, seen
        return seen

    srv.wait_for("the broken canary to fail", canary_fails, 30)
    metrics = requests.get(f"{srv.url}/metrics", timeout=10).text
    assert (
        _metric(
            metrics, "occupancy_serving_errors_total", arm="canary", model_version="3", cause="model_error"
        )
        > 0
    )
    assert _metric(metrics, "occupancy_serving_errors_total", arm="champion", kind="server") == 0
    assert apply_arms(deployment.env, deployment.service_id, (deployment.champion, "1"), None, 0.0)
    srv.wait_for("the broken canary to be gone", champion_only, 30)
    print(f"canary live {live_after:.1f} s after apply_arms (poll every 3 s)")


def test_unknown_endpoint_and_methods(deployment: Deployment) -> None:
    srv = deployment.server
    srv.wait_ready()
    resp = requests.post(f"{srv.url}/serve/nothing", json=READING, timeout=10)
    assert resp.status_code == 404 and resp.json()["cause"] == "not_found"
    resp = requests.get(f"{srv.url}/serve/occupancy", timeout=10)
    assert resp.status_code == 405
    assert requests.get(f"{srv.url}/healthz", timeout=10).status_code == 200
