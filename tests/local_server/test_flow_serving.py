"""Flow d: model serving with the real clearml-serving CLI and inference app against the local server.

The user's path: create a serving service, register trained sklearn models, add endpoints with a
preprocess module, a canary and an auto-update (model monitoring) endpoint, then run the upstream
inference app (uvicorn ``clearml_serving.serving.main:app``) and call it over HTTP. A model published
while the app runs must show up as a new auto-update version at the next configuration poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from clearml.utilities.pyhocon import ConfigFactory

from local_server import LocalServer
from local_server.runner import free_port
from tests.conftest import run_python

PROJECT = "FlowServe"
MODEL_NAME = "occupancy-lr"
PROBE = {"Temperature": 21.5, "Light": 400.0, "CO2": 800.0}
POLL_MINUTES = 0.05  # CLEARML_SERVING_POLL_FREQ is in minutes: re-read the configuration every 3 s

# Occupancy is "lights on above a threshold": three model versions with different thresholds give
# different answers for PROBE, so the test can tell which model served a request.
TRAIN = """
import json
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(7)
X = np.column_stack([rng.normal(21, 1, 400), rng.uniform(0, 800, 400), rng.uniform(400, 1200, 400)])
probe = np.array([PROBE_ROW])  # Temperature, Light, CO2
out = {}
for version, threshold in ((1, 300), (2, 500), (3, 200)):
    y = (X[:, 1] > threshold).astype(int)
    model = LogisticRegression(max_iter=5000).fit(X, y)
    joblib.dump(model, f"model_v{version}.pkl")
    out[version] = int(model.predict(probe)[0])
print(json.dumps(out))
"""

PREPROCESS = '''
"""Pre/post-processing for the occupancy endpoints (runs inside the clearml-serving inference app)."""
from typing import Any, Callable, Optional

import numpy as np

FEATURES = ("Temperature", "Light", "CO2")


class Preprocess:
    def preprocess(self, body: dict, state: dict, collect_stats: Optional[Callable] = None) -> Any:
        return np.array([[float(body[name]) for name in FEATURES]])

    def postprocess(self, data: Any, state: dict, collect_stats: Optional[Callable] = None) -> dict:
        return {"occupancy": int(data[0])}
'''


# ---------------------------------------------------------------------------- helpers


def _cli(env: dict[str, str], command: str, timeout: float = 90) -> str:
    """Run the real clearml-serving CLI (``command`` as typed in a shell); it prints ``Error: ...``
    and exits 1 on failures."""
    proc = subprocess.run(
        [sys.executable, "-m", "clearml_serving", *shlex.split(command)],
        env=env,
        cwd=env["HOME"],
        stdin=subprocess.DEVNULL,  # an interactive question must fail, not hang
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or "\nError: " in proc.stdout:
        pytest.fail(f"clearml-serving {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _last_value(stdout: str, prefix: str) -> str:
    lines = [line for line in stdout.splitlines() if prefix in line]
    assert lines, f"{prefix!r} not in CLI output:\n{stdout}"
    return lines[-1].split(prefix, 1)[1].strip()


def _json_after(stdout: str, header: str) -> Any:
    start = stdout.index(header) + len(header)
    return json.JSONDecoder().raw_decode(stdout[start:].lstrip())[0]


def _api(env: dict[str, str], endpoint: str, **body: Any) -> Any:
    resp = requests.post(
        f"{env['CLEARML_API_HOST']}/{endpoint}",
        json=body,
        auth=(env["CLEARML_API_ACCESS_KEY"], env["CLEARML_API_SECRET_KEY"]),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def _configuration(task: dict[str, Any], name: str) -> dict[str, Any]:
    item = (task.get("configuration") or {}).get(name)
    assert item is not None, f"serving task has no configuration object {name!r}"
    return dict(ConfigFactory.parse_string(item.get("value") or "").as_plain_ordered_dict())


def _serve(url: str, endpoint: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}/serve/{endpoint}", json=body, timeout=30)


def _predict(url: str, endpoint: str) -> Any:
    resp = _serve(url, endpoint, PROBE)
    assert resp.status_code == 200, (endpoint, resp.status_code, resp.text)
    return resp.json()


def _wait_for(what: str, check: Callable[[], Any], timeout: float, app: InferenceApp) -> Any:
    """Retry ``check()`` (assertions) until it passes; fail with the app's log on timeout or exit."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if app.proc.poll() is not None:
            pytest.fail(f"inference app exited ({app.proc.returncode}) waiting for {what}:\n{app.log_tail()}")
        try:
            return check()
        except (AssertionError, requests.RequestException) as exc:
            last = exc
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what} ({last!r}):\n{app.log_tail()}")


@dataclass
class InferenceApp:
    """The upstream inference app started like its entrypoint.sh does (single uvicorn worker)."""

    proc: subprocess.Popen[bytes]
    url: str
    home: Path

    @property
    def log(self) -> Path:
        return self.home / "inference.log"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    @classmethod
    def start(cls, env: dict[str, str], service_id: str, home: Path) -> InferenceApp:
        port = free_port()
        home.mkdir(parents=True, exist_ok=True)
        app_env = dict(
            env,
            HOME=str(home),
            CLEARML_CACHE_DIR=str(home / "cache"),  # another machine: models come from the file server
            CLEARML_CONFIG_FILE=str(home / "clearml.conf"),
            CLEARML_SERVING_TASK_ID=service_id,
            CLEARML_SERVING_POLL_FREQ=str(POLL_MINUTES),
            CLEARML_SERVING_PORT=str(port),
            CLEARML_DEFAULT_BASE_SERVE_URL=f"http://127.0.0.1:{port}/serve",
        )
        cmd = (
            f"-m uvicorn clearml_serving.serving.main:app --host 127.0.0.1 --port {port} --log-level warning"
        )
        with (home / "inference.log").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *cmd.split()],
                env=app_env,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() reaches clearml's helpers too
            )
        return cls(proc=proc, url=f"http://127.0.0.1:{port}", home=home)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # leftovers of the group
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def serving_env(clearml_env: dict[str, str]) -> dict[str, str]:
    """The client environment without a default output URI: models and preprocess code go to the
    file server, as with a default clearml-serving setup."""
    env = dict(clearml_env)
    env.pop("CLEARML_DEFAULT_OUTPUT_URI", None)
    return env


@pytest.fixture
def start_app(serving_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], InferenceApp]]:
    """Starts the inference app for a serving service id; stopped at the end whatever happens."""
    apps: list[InferenceApp] = []

    def start(service_id: str) -> InferenceApp:
        apps.append(InferenceApp.start(serving_env, service_id, tmp_path / "inference"))
        return apps[-1]

    yield start
    for app in apps:
        app.stop()


# ---------------------------------------------------------------------------- the flow


def test_serving_cli_and_inference_app(
    serving_env: dict[str, str], start_app: Callable[[str], InferenceApp]
) -> None:
    env = serving_env
    home = Path(env["HOME"])
    files_host = env["CLEARML_FILES_HOST"]
    started = time.monotonic()

    # 1. a serving service: a control-plane task holding the whole configuration
    out = _cli(env, f"create --name 'occupancy serving' --project {PROJECT}")
    sid = _last_value(out, "New Serving Service created: id=")
    task = _api(env, "tasks.get_by_id", task=sid)["task"]
    assert task["type"] == "service" and task["status"] == "created"
    assert "serving-control-plane" in task["system_tags"]
    assert {"endpoints", "canary", "model_monitoring", "metric_logging"} <= set(task["configuration"])
    assert sid in _cli(env, "list"), "a draft serving service is listed"

    # 2. trained models registered (uploaded to the file server and published) with the CLI
    trained = run_python(TRAIN.replace("PROBE_ROW", json.dumps(list(PROBE.values()))), env)
    expected = {int(k): v for k, v in json.loads(trained.strip().splitlines()[-1]).items()}
    assert expected[1] != expected[2] != expected[3], f"the probe must tell the models apart: {expected}"

    def upload(weights: str, publish: bool = True) -> str:
        out = _cli(
            env,
            f"--id {sid} model upload --name {MODEL_NAME} --project {PROJECT} --framework scikitlearn "
            f"--path {shlex.quote(str(home / weights))}" + (" --publish" if publish else ""),
        )
        assert ("Published Model ID=" in out) == publish, out
        return _last_value(out, "new Model ID=")

    m1, m2 = upload("model_v1.pkl"), upload("model_v2.pkl")
    project_id = _api(env, "projects.get_all", name=f"^{PROJECT}$")["projects"][0]["id"]
    for model_id, weights in ((m1, "model_v1.pkl"), (m2, "model_v2.pkl")):
        model = _api(env, "models.get_by_id", model=model_id)["model"]
        assert model["ready"] is True and model["name"] == MODEL_NAME and model["project"] == project_id
        assert model["uri"].startswith(files_host), model["uri"]
        assert requests.get(model["uri"], timeout=10).content == (home / weights).read_bytes()

    # 3. endpoints with preprocess code, canaries and an auto-update endpoint
    preprocess = home / "preprocess.py"
    preprocess.write_text(PREPROCESS)
    code = shlex.quote(str(preprocess))
    add = f"--id {sid} model add --engine sklearn --endpoint occupancy --preprocess {code}"
    _cli(env, f"{add} --model-id {m1}")
    _cli(env, f"{add} --version 1 --model-id {m1}")
    _cli(env, f"{add} --version 2 --model-id {m2}")
    _cli(
        env,
        f"--id {sid} model canary --endpoint occupancy_canary --weights 0.1 0.9 "
        "--input-endpoints occupancy/1 occupancy/2",
    )
    _cli(
        env,
        f"--id {sid} model auto-update --engine sklearn --endpoint occupancy_auto --name {MODEL_NAME} "
        f"--project {PROJECT} --max-versions 2 --published --preprocess {code}",
    )
    # "the latest auto-update version" as a canary on the prefix (the first weight: the highest version)
    _cli(
        env,
        f"--id {sid} model canary --endpoint occupancy_latest --weights 1 0 "
        "--input-endpoint-prefix occupancy_auto",
    )

    listing = _cli(env, f"--id {sid} model list")
    endpoints = _json_after(listing, "Endpoints:")
    assert {k: (v["model_id"], v["engine_type"], v["preprocess_artifact"]) for k, v in endpoints.items()} == {
        "occupancy": (m1, "sklearn", "py_code_occupancy"),
        "occupancy/1": (m1, "sklearn", "py_code_occupancy_1"),
        "occupancy/2": (m2, "sklearn", "py_code_occupancy_2"),
    }
    monitoring = _json_after(listing, "Model Monitoring:")
    assert list(monitoring) == ["occupancy_auto"]
    auto_update = monitoring["occupancy_auto"]
    assert (
        auto_update["engine_type"] == "sklearn"
        and auto_update["preprocess_artifact"] == "py_code_occupancy_auto"
    )
    assert (auto_update["monitor_name"], auto_update["monitor_project"]) == (MODEL_NAME, PROJECT)
    assert auto_update["max_versions"] == 2 and auto_update["only_published"] is True
    canary = _json_after(listing, "Canary:")
    assert canary["occupancy_canary"]["weights"] == [0.1, 0.9]
    assert canary["occupancy_canary"]["load_endpoints"] == ["occupancy/1", "occupancy/2"]
    assert canary["occupancy_latest"]["load_endpoint_prefix"] == "occupancy_auto"

    # ... which is the serving task's configuration objects, plus artifacts on the file server
    task = _api(env, "tasks.get_by_id", task=sid)["task"]
    assert sorted(_configuration(task, "endpoints")) == ["occupancy", "occupancy/1", "occupancy/2"]
    assert sorted(_configuration(task, "canary")) == ["occupancy_canary", "occupancy_latest"]
    assert _configuration(task, "model_monitoring")["occupancy_auto"]["monitor_name"] == MODEL_NAME
    artifacts = {a["key"]: a for a in task["execution"]["artifacts"]}
    assert sorted(artifacts) == [
        "py_code_occupancy",
        "py_code_occupancy_1",
        "py_code_occupancy_2",
        "py_code_occupancy_auto",
    ]
    for artifact in artifacts.values():
        assert artifact["uri"].startswith(files_host), artifact
        assert requests.get(artifact["uri"], timeout=10).text == PREPROCESS
    # models attach as input models named by the endpoint without its version: the last add wins
    assert {m["name"]: m["model"] for m in task["models"]["input"]} == {"occupancy": m2}

    # 4. the upstream inference app serves the endpoints
    app = start_app(sid)

    def first_answer() -> requests.Response:
        resp = _serve(app.url, "occupancy", PROBE)
        assert resp.ok, (resp.status_code, resp.text)
        return resp

    assert _wait_for("the first prediction", first_answer, 60, app).json() == {"occupancy": expected[1]}
    for endpoint, version in (
        ("occupancy/1", 1),
        ("occupancy/2", 2),
        ("occupancy_auto/1", 1),
        ("occupancy_auto/2", 2),
        ("occupancy_latest", 2),
    ):
        assert _predict(app.url, endpoint) == {"occupancy": expected[version]}, endpoint
    assert _serve(app.url, "no_such_endpoint", PROBE).status_code == 404
    assert _serve(app.url, "occupancy", {"Temperature": 21.0}).status_code == 500  # KeyError in preprocess
    # the canary is a weighted random choice per request (0.1 / 0.9)
    answers = Counter(_predict(app.url, "occupancy_canary")["occupancy"] for _ in range(40))
    assert set(answers) <= {expected[1], expected[2]}, answers
    assert answers[expected[2]] >= 25, f"0.9 of the traffic must go to occupancy/2: {answers}"
    # the models were downloaded from the file server into the app's own cache
    cached = {p.read_bytes() for p in (app.home / "cache").rglob("*.pkl")}
    assert {(home / f"model_v{v}.pkl").read_bytes() for v in (1, 2)} <= cached

    # the app marked the service running, registered its instance and wrote the auto-update versions
    task = _api(env, "tasks.get_by_id", task=sid)["task"]
    assert task["status"] == "in_progress"
    auto = _configuration(task, "model_monitoring_eps")
    assert {k: v["model_id"] for k, v in auto.items()} == {"occupancy_auto/1": m1, "occupancy_auto/2": m2}
    assert {m["name"] for m in task["models"]["input"]} == {"occupancy", "occupancy_auto"}
    instances = _api(
        env,
        "tasks.get_all",
        name="^occupancy serving - serve instance$",
        project=[project_id],
        only_fields=["id", "type", "status", "system_tags"],
    )["tasks"]
    assert len(instances) == 1 and instances[0]["type"] == "inference", instances
    assert "service" in instances[0]["system_tags"] and instances[0]["status"] == "in_progress"

    # 5. a running service follows changes: a draft model is ignored (--published), the newly
    # published one becomes occupancy_auto/3 at the next poll and version 1 is retired
    (home / "model_draft.pkl").write_bytes((home / "model_v1.pkl").read_bytes())
    draft = upload("model_draft.pkl", publish=False)
    m3 = upload("model_v3.pkl")

    def rolled_over() -> None:
        answers = {ep: _serve(app.url, ep, PROBE) for ep in ("occupancy_auto/1", "occupancy_auto/3")}
        details = {ep: (r.status_code, r.text[:300]) for ep, r in answers.items()}
        assert [r.status_code for r in answers.values()] == [404, 200], details

    _wait_for("the auto-update to serve the new model", rolled_over, 45, app)
    assert _predict(app.url, "occupancy_auto/3") == {"occupancy": expected[3]}
    assert _predict(app.url, "occupancy_auto/2") == {"occupancy": expected[2]}
    assert _predict(app.url, "occupancy_latest") == {"occupancy": expected[3]}
    assert _predict(app.url, "occupancy/1") == {"occupancy": expected[1]}  # static endpoints stay
    auto = _configuration(_api(env, "tasks.get_by_id", task=sid)["task"], "model_monitoring_eps")
    assert {k: v["model_id"] for k, v in auto.items()} == {"occupancy_auto/2": m2, "occupancy_auto/3": m3}
    assert draft not in {v["model_id"] for v in auto.values()}

    # an endpoint added with the CLI while the app runs is served after the next poll. Not at the same
    # time as a model roll-over: the app and the CLI both rewrite the task's whole configuration
    # (reload + tasks.edit), so one of two concurrent writes is lost, with a real server as well.
    _cli(env, f"{add} --version 3 --model-id {m3}")

    def added() -> None:
        resp = _serve(app.url, "occupancy/3", PROBE)
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])

    _wait_for("the new endpoint", added, 30, app)
    assert _predict(app.url, "occupancy/3") == {"occupancy": expected[3]}

    # what the app reported: sync messages in the service's console log, its layout on the instance
    def log_lines() -> list[str]:
        events = _api(env, "events.get_task_log", task=sid, batch_size=500)["events"]
        return [e.get("msg", "") for e in events]

    def reported() -> None:
        text = "\n".join(log_lines())
        assert "Launching - configuration sync every 3.0 sec" in text and "Model monitoring synced" in text, (
            text
        )
        plots = {e["metric"] for e in _api(env, "events.get_task_plots", task=instance_id)["plots"]}
        assert {"Serving Endpoint Configuration", "Serving Endpoints Layout"} <= plots, plots

    instance_id = instances[0]["id"]
    _wait_for("the app's reports (log lines, layout plots)", reported, 30, app)

    # 6. stopping the app (SIGTERM, as a container stop) closes its instance task; the service stays
    app.stop()
    instance = _api(env, "tasks.get_by_id", task=instance_id)["task"]
    assert instance["status"] in ("completed", "stopped"), instance["status"]
    assert time.monotonic() - started < 150


def test_edit_updates_embedded_documents_like_the_real_server(server: LocalServer) -> None:
    """``tasks.edit`` of execution/script/output/models updates the stored document's top-level keys
    (clearml-server: ``d = field.to_mongo().to_dict(); d.update(value)``). clearml-serving relies on
    it: ``set_input_model`` sends ``execution`` while the preprocess code lives in its artifacts."""
    env = server.env
    tid = _api(env, "tasks.create", name="edit-merge", type="service")["id"]
    mid = _api(env, "models.create", name="edit-merge", uri="file:///tmp/w.pkl")["id"]
    artifact = {"key": "py_code_x", "type": "custom", "mode": "output", "uri": "http://files/x.py"}
    _api(env, "tasks.add_or_update_artifacts", task=tid, artifacts=[artifact])
    _api(env, "tasks.add_or_update_model", task=tid, name="out", model=mid, type="output")
    _api(env, "tasks.edit", task=tid, script={"entry_point": "serve.py", "working_dir": "."})

    _api(env, "tasks.edit", task=tid, execution={"model_labels": {"occupied": 1}}, script={"diff": "x"})
    _api(env, "tasks.edit", task=tid, models={"input": [{"name": "occupancy", "model": mid}]})
    task = _api(env, "tasks.get_by_id", task=tid)["task"]
    assert [a["key"] for a in task["execution"]["artifacts"]] == ["py_code_x"]
    assert task["execution"]["model_labels"] == {"occupied": 1}
    assert (task["script"]["entry_point"], task["script"]["diff"]) == ("serve.py", "x")
    # (add_or_update_model also stamps the entry with ``updated``, as the real server does)
    assert [(m["name"], m["model"]) for m in task["models"]["output"]] == [("out", mid)]
    assert task["models"]["input"] == [{"name": "occupancy", "model": mid}]

    # a key that is sent replaces the stored value (the SDK sends the whole execution it reloaded)
    _api(env, "tasks.edit", task=tid, execution={"artifacts": []})
    assert _api(env, "tasks.get_by_id", task=tid)["task"]["execution"]["artifacts"] == []
