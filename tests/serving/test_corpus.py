"""Every request of a generated corpus of bad requests (tests/serving/corpus.py) answers 4xx with a
message that names the field, never 5xx; the server stays healthy and answers correctly after it,
and /metrics counts each as a client error. The same for bad feedback posts
(tests/serving/feedback_corpus.py): none is counted as a label, each as a refused post."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local_server import LocalServer
from services.serving.feedback import SECRET_ENV
from tests.serving.corpus import corpus, readings
from tests.serving.feedback_corpus import SECRET, feedback_corpus
from tests.serving.models import expected_probability
from tests.serving.server import READING, Deployment, deploy


@pytest.fixture(scope="module", params=["direct", "upstream-route"])
def deployment(
    request: pytest.FixtureRequest, server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The middleware calling the upstream processor itself (default), and every request through the
    upstream FastAPI route (``OCCUPANCY_SERVING_DIRECT=0``): the same answers either way."""
    direct = "1" if request.param == "direct" else "0"
    home = tmp_path_factory.mktemp(f"serving-corpus-{request.param}")
    extra = {"OCCUPANCY_SERVING_DIRECT": direct, SECRET_ENV: SECRET}
    with deploy(server, home, "ServeCorpus", f"corpus-{request.param}", [0.0], extra_env=extra) as d:
        yield d


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _send(url: str, cases: list[tuple[Any, str | None]]) -> tuple[list[str], Counter[str]]:
    """POST every case; the failures (status, field prefix, and cause when one is expected) and the
    causes the server gave."""
    failures: list[str] = []
    causes: Counter[str] = Counter()
    session = requests.Session()
    for case, cause in cases:
        try:
            resp = session.post(url, data=case.body, headers=case.headers, timeout=30)
        except requests.ConnectionError as exc:
            failures.append(f"{case.name}: connection error {exc}")
            session = requests.Session()
            continue
        try:
            body = resp.json()
        except ValueError:
            body = {"detail": resp.text[:200]}
        detail = str(body.get("detail", ""))
        causes[str(body.get("cause"))] += 1
        wrong_cause = cause is not None and body.get("cause") != cause
        if resp.status_code != case.status or not detail.startswith(case.field) or wrong_cause:
            failures.append(
                f"{case.name}: {resp.status_code} {body.get('cause')} {detail[:160]!r} "
                f"(want {case.status} {cause or ''} {case.field!r})"
            )
    return failures, causes


def test_bad_request_corpus(deployment: Deployment) -> None:
    srv = deployment.server
    cases = corpus()
    assert len(cases) >= 200
    before = requests.get(f"{srv.url}/metrics", timeout=10).text
    failures, causes = _send(f"{srv.url}/serve/occupancy", [(case, None) for case in cases])
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)

    assert requests.get(f"{srv.url}/healthz", timeout=10).status_code == 200
    good = srv.post(READING)
    assert good.status_code == 200, good.text
    assert good.json()["predictions"][0]["probability"] == pytest.approx(
        expected_probability(READING["Light"]), abs=1e-6
    )

    after = requests.get(f"{srv.url}/metrics", timeout=10).text
    for cause, count in causes.items():
        name = "occupancy_serving_errors_total"
        got = _metric(after, name, cause=cause, kind="client") - _metric(
            before, name, cause=cause, kind="client"
        )
        assert got == count, (cause, got, count)
    assert _metric(after, "occupancy_serving_errors_total", kind="server") == 0
    print(f"{len(cases)} bad requests: {dict(causes)}")


def test_bad_feedback_corpus(deployment: Deployment) -> None:
    srv = deployment.server
    one, five = srv.post(READING), srv.post({"readings": readings(5)})
    assert one.status_code == 200 and five.status_code == 200, (one.text, five.text)
    token1, token5 = one.json()["prediction_id"], five.json()["prediction_id"]
    cases = feedback_corpus(token1, token5)
    assert len(cases) >= 100
    url = f"{srv.url}/feedback/occupancy"
    before = requests.get(f"{srv.url}/metrics", timeout=10).text
    failures, causes = _send(url, cases)
    wrong_method = requests.get(url, timeout=10)
    wrong_endpoint = requests.post(f"{srv.url}/feedback/rooms", json={}, timeout=10)
    assert (wrong_method.status_code, wrong_method.json()["cause"]) == (405, "not_found")
    assert wrong_endpoint.status_code == 404 and wrong_endpoint.json()["detail"].startswith("/feedback/rooms")
    causes["not_found"] += 2
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)

    after = requests.get(f"{srv.url}/metrics", timeout=10).text
    for cause, count in causes.items():
        name = "occupancy_serving_feedback_errors_total"
        assert _metric(after, name, cause=cause) - _metric(before, name, cause=cause) == count, cause
    for name in ("occupancy_serving_feedback_total", "occupancy_serving_requests_total"):
        assert _metric(after, name) == _metric(before, name), f"{name}: bad feedback counted"

    # healthy, and good feedback counts: four labeled readings of five, right where predicted so
    assert requests.get(f"{srv.url}/healthz", timeout=10).status_code == 200
    predicted = [p["occupied"] for p in five.json()["predictions"]]
    labels = [True, False, None, True, True]
    good = requests.post(url, json={"prediction_id": token5, "occupied": labels}, timeout=10)
    right = sum(p == t for p, t in zip(predicted, labels, strict=True) if t is not None)
    assert good.status_code == 200, good.text
    assert good.json() == {"labeled": 4, "correct": right, "arm": "champion", "model_version": "1"}
    final = requests.get(f"{srv.url}/metrics", timeout=10).text
    name = "occupancy_serving_feedback_total"
    labels_kw = {"arm": "champion", "model_version": "1"}
    assert _metric(final, name, correct="true", **labels_kw) - _metric(after, name, correct="true") == right
    assert _metric(final, name, correct="false") - _metric(after, name, correct="false") == 4 - right
    print(f"{len(cases) + 2} bad feedback posts: {dict(causes)}")
