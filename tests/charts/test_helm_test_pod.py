"""The `helm test` Pod sends one inference request and passes only on an answer with predictions:
its script, taken from the rendered Pod, run against a stand-in serving endpoint on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.charts import chart

ANSWER = {
    "predictions": [{"date": "2015-02-04 17:51:00", "occupied": True, "probability": 0.8}],
    "model": {"id": "m", "version": "1", "dataset_id": "d"},
    "arm": "champion",
}


class Serving(BaseHTTPRequestHandler):
    status = 200
    received: ClassVar[list[tuple[str, str, dict]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Serving.received.append((self.path, self.headers["Content-Type"], body))
        payload = (
            ANSWER
            if Serving.status == 200
            else {"detail": "/serve/occupancy: no such endpoint", "cause": "not_found"}
        )
        data = json.dumps(payload).encode()
        self.send_response(Serving.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def serving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Serving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_test_pod(url: str, *sets: str) -> subprocess.CompletedProcess[str]:
    pod = next(o for o in chart.render_with(*sets) if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    env = {e["name"]: e["value"] for e in container["env"]}
    service = next(
        o
        for o in chart.objects("minimal")
        if o["kind"] == "Service" and o["metadata"]["name"].endswith("-serving")
    )
    assert (
        env["SERVING_URL"]
        == f"http://{service['metadata']['name']}.{chart.NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
    )
    env["SERVING_URL"] = url
    return subprocess.run(
        [sys.executable, "-c", container["args"][0]], env=env, capture_output=True, text=True, timeout=60
    )


def test_passes_on_a_prediction(serving: str) -> None:
    Serving.status, Serving.received = 200, []
    result = run_test_pod(serving)
    assert result.returncode == 0, result.stdout + result.stderr
    path, content_type, body = Serving.received[-1]
    assert (path, content_type) == ("/serve/occupancy", "application/json")
    assert set(body) == {"date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio"}
    assert "200" in result.stdout


@pytest.mark.parametrize("status", [404, 500])
def test_fails_without_a_model_answer(serving: str, status: int) -> None:
    Serving.status = status
    result = run_test_pod(serving)
    assert result.returncode == 1
    assert f": {status} " in result.stdout


def test_no_model_yet_can_count_as_up(serving: str) -> None:
    Serving.status = 404
    assert run_test_pod(serving, "tests.expectModel=false").returncode == 0
    Serving.status = 500
    assert run_test_pod(serving, "tests.expectModel=false").returncode == 1


def test_unreachable_serving_fails() -> None:
    result = run_test_pod("http://127.0.0.1:9")
    assert result.returncode != 0
