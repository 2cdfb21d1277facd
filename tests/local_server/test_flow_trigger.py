"""Flow e: the real ``clearml.automation.TriggerScheduler`` against the local server.

The user's path: a template training task with a ``General/CLEARML_DATASET_ID`` parameter and a queue
exist; a trigger scheduler watches a dataset project (new versions tagged ``Production``) and a model
project (published models). New dataset versions are finalized and a model is published; on the next
poll the scheduler clones the template once per event, fills in the event's id and enqueues the clone.

The scheduler runs in its own process (as it would as a service), driven one poll at a time exactly as
``BaseScheduler.start()`` does (sync the configuration, ``_step()``, on a fire serialize the state and
update the plots), so the test needs no sleeps: it waits on files with deadlines. The user's actions run
in another process, between the scheduler's polls.

SDK behaviour these tests pin down (it is the same against a real server):

- the first poll only sets the reference time ("now"): anything that happened before it is never seen;
- ``trigger_project`` is resolved to the ``P/.datasets/*`` sub-projects at registration, so a dataset
  must exist before ``add_dataset_trigger`` (otherwise the trigger watches nothing);
- ``${dataset.id}``/``${model.id}`` are substituted only in ``task_parameters``; the blog's
  ``task_overrides={'General/CLEARML_DATASET_ID': '${dataset.id}'}`` raises inside ``_step`` after the
  event was marked handled: nothing is queued, a draft clone is left behind, the event is lost;
- a model trigger fails computing its reference time (the SDK's model objects have no ``last_change``)
  on every poll that finds a model: the job still launches once (an in-memory set stops repeats), but the
  reference time never advances, so every later poll reports work done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from local_server import LocalServer
from tests.conftest import login_token, run_python

DEADLINE = 90.0  # seconds any single wait may take before the test fails

SETUP = """
import json, os
from pathlib import Path
from clearml import Dataset, Task
from clearml.backend_api.session.client import APIClient

p = json.loads(os.environ["FLOW_PARAMS"])
template = Task.create(project_name=p["project"], task_name="training", task_type="training",
                       add_task_init_call=False, detect_repository=False)
template.set_parameters({"General/CLEARML_DATASET_ID": "", "General/EPOCHS": "3"})
APIClient().queues.create(name=p["queue"])

# a first dataset version: add_dataset_trigger(trigger_project=...) only watches dataset sub-projects
# that exist when it is registered
folder = Path("v1")
folder.mkdir()
(folder / "day1.csv").write_text("date,Light,Occupancy\\n2015-02-04 10:00,400,1\\n")
ds = Dataset.create(dataset_project=p["project"], dataset_name="sensors")
ds.add_files(path=str(folder))
ds.finalize(auto_upload=True)
print(json.dumps({"template": template.id, "v1": ds.id}))
"""

SCHEDULER = """
import json, os, time
from pathlib import Path
from clearml import Task
from clearml.automation import TriggerScheduler

p = json.loads(os.environ["FLOW_PARAMS"])
work = Path(p["work"])
# the scheduler's own service task; without it TriggerScheduler calls Task.init from inside the SDK, whose
# requirement analysis then scans clearml/automation and takes minutes at close
Task.init(project_name=p["project"] + "-services", task_name="trigger-scheduler",
          task_type=Task.TaskTypes.service, auto_connect_frameworks=False, auto_resource_monitoring=False)
scheduler = TriggerScheduler(pooling_frequency_minutes=0.01)
logged = []
original_log = scheduler._log
def record_log(message, level=20):
    logged.append(str(message))
    original_log(message, level=level)
scheduler._log = record_log

scheduler.add_dataset_trigger(
    name="production-dataset",
    schedule_task_id=p["template"],
    schedule_queue=p["queue"],
    trigger_project=p["project"],
    trigger_on_tags=["Production"],
    **p["dataset_trigger"],
)
if p["model_trigger"]:
    scheduler.add_model_trigger(
        name="published-model",
        schedule_task_id=p["template"],
        schedule_queue=p["queue"],
        trigger_project=p["project"],
        trigger_on_publish=True,
        task_parameters={"General/MODEL_ID": "${model.id}"},
    )

# BaseScheduler.start() run locally: store the configuration and state, then each loop iteration
# syncs the configuration (the first one only: sync_frequency_minutes is 15), polls, and after a
# poll that scheduled something stores the state and updates the plots.
scheduler._serialize_state()
scheduler._serialize()
scheduler._deserialize()

def poll():
    before = len(logged)
    try:
        fired = scheduler._step()
        if fired:
            scheduler._serialize_state()
            scheduler._update_execution_plots()
        error = None
    except Exception as ex:
        fired, error = None, f"{type(ex).__name__}: {ex}"
    return {"fired": fired, "error": error, "log": logged[before:]}

def write(name, data):
    tmp = work / (name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(work / name)

baseline = poll()
write("ready.json", {
    "baseline": baseline,
    "dataset_triggers": [t.project for t in scheduler._dataset_triggers],
    "model_triggers": [t.project for t in scheduler._model_triggers],
})
deadline = time.monotonic() + float(p["deadline"])
while not (work / "go").exists():
    if time.monotonic() > deadline:
        raise SystemExit("no go signal from the test")
    time.sleep(0.05)
first = poll()
second = poll()
write("result.json", {
    "first": first,
    "second": second,
    "executed": [[e.trigger, e.name, e.task_id] for e in scheduler._executed_triggers],
    "handled": {t.name: sorted(t._triggered_instances or {}) for t in scheduler.get_triggers()},
})
scheduler._task.close()
"""

EVENTS = """
import json, os
from pathlib import Path
from clearml import Dataset, OutputModel, Task

p = json.loads(os.environ["FLOW_PARAMS"])
ids = {}
parent = p["v1"]
# v2 tagged Production when created, v3 untagged, v4 tagged Production after it was finalized
for version, tag_at_creation, tag_after_finalize in (("v2", True, False), ("v3", False, False),
                                                     ("v4", False, True)):
    folder = Path(version)
    folder.mkdir()
    (folder / f"{version}.csv").write_text(f"date,Light,Occupancy\\n{version},0,0\\n")
    ds = Dataset.create(dataset_project=p["project"], dataset_name="sensors", parent_datasets=[parent],
                        dataset_tags=["Production"] if tag_at_creation else None)
    ds.add_files(path=str(folder))
    ds.finalize(auto_upload=True)
    if tag_after_finalize:
        ds.add_tags(["Production"])
    ids[version] = parent = ds.id

if p["model_trigger"]:
    task = Task.init(project_name=p["project"], task_name="train-run", auto_connect_frameworks=False,
                     auto_resource_monitoring=False)
    Path("model.txt").write_text("weights")
    model = OutputModel(task=task, name="occupancy", framework="custom")
    model.update_weights(weights_filename="model.txt", auto_delete_file=False)
    model.publish()
    ids["model"] = model.id
    task.close()
print(json.dumps(ids))
"""


class Api:
    """Direct calls to the local server, to check what the scheduler left there."""

    def __init__(self, srv: LocalServer) -> None:
        self.base = srv.settings.base_url
        self.token = login_token(srv)

    def __call__(self, endpoint: str, **body: Any) -> dict[str, Any]:
        res = requests.post(
            f"{self.base}/v2.31/{endpoint}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert res.status_code == 200, res.text
        data: dict[str, Any] = res.json()["data"]
        return data


def _last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"scheduler exited ({proc.returncode}) before writing {path.name}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"scheduler wrote no {path.name} in {timeout}s:\n{_tail(log)}")
        time.sleep(0.05)
    return json.loads(path.read_text())


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-6000:] if log.exists() else ""


def run_trigger_flow(
    env: dict[str, str], work: Path, dataset_trigger: dict[str, Any], model_trigger: bool
) -> dict[str, Any]:
    """Set up, start the scheduler, let it take its baseline poll, act as the user, let it poll again."""
    work.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {
        "project": f"FlowTrigger-{uuid.uuid4().hex[:8]}",
        "work": str(work),
        "deadline": DEADLINE,
        "dataset_trigger": dataset_trigger,
        "model_trigger": model_trigger,
    }
    params["queue"] = f"{params['project']}-training"
    setup = _last_json(run_python(SETUP, {**env, "FLOW_PARAMS": json.dumps(params)}))
    params.update(setup)
    env = {**env, "FLOW_PARAMS": json.dumps(params)}

    log = work / "scheduler.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(SCHEDULER)],
            env=env,
            cwd=env["HOME"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = _wait_for(work / "ready.json", proc, log)
        events_env = {**env, "CLEARML_CACHE_DIR": str(Path(env["HOME"]) / "events-cache")}
        events = _last_json(run_python(EVENTS, events_env, timeout=DEADLINE))
        (work / "go").touch()
        result = _wait_for(work / "result.json", proc, log)
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"params": params, "ready": ready, "events": events, "result": result, "log": _tail(log)}


def _queued_tasks(api: Api, queue_name: str) -> tuple[str, list[dict[str, Any]]]:
    queues = api("queues.get_all", name=f"^{queue_name}$")["queues"]
    assert len(queues) == 1, queues
    queue = api("queues.get_by_id", queue=queues[0]["id"])["queue"]
    ids = [entry["task"] for entry in queue["entries"]]
    if not ids:
        return queue["id"], []
    tasks = api(
        "tasks.get_all",
        id=ids,
        only_fields=["id", "name", "status", "parent", "tags", "hyperparams", "execution.queue"],
    )["tasks"]
    by_id = {t["id"]: t for t in tasks}
    return queue["id"], [by_id[i] for i in ids]


def _param(task: dict[str, Any], name: str) -> str | None:
    value = task.get("hyperparams", {}).get("General", {}).get(name, {}).get("value")
    return None if value is None else str(value)


def test_dataset_and_model_triggers_fire_on_one_poll(
    server: LocalServer, clearml_env: dict[str, str], tmp_path: Path
) -> None:
    flow = run_trigger_flow(
        clearml_env,
        tmp_path / "flow",
        dataset_trigger={"task_parameters": {"General/CLEARML_DATASET_ID": "${dataset.id}"}},
        model_trigger=True,
    )
    params, ready, events, result = flow["params"], flow["ready"], flow["events"], flow["result"]
    api = Api(server)

    # registration resolved the project names, the baseline poll saw nothing (it only sets "now")
    assert len(ready["dataset_triggers"]) == 1 and ready["dataset_triggers"][0], flow["log"]
    assert ready["model_triggers"][0], "the model project must be resolved, else every project is watched"
    assert ready["baseline"]["fired"] is False, ready["baseline"]
    assert ready["baseline"]["error"] is None

    # one poll after the user's actions launched everything
    first = result["first"]
    assert first["fired"] is True and first["error"] is None, first
    queue_id, queued = _queued_tasks(api, params["queue"])
    assert len(queued) == 3, f"two Production datasets and one published model: {queued}\n{flow['log']}"
    for task in queued:
        assert task["parent"] == params["template"]
        assert task["status"] == "queued"
        assert task["execution"]["queue"] == queue_id
        assert _param(task, "EPOCHS") == "3", "the clone keeps the template's other parameters"

    dataset_jobs = [t for t in queued if "production-dataset" in t["tags"]]
    model_jobs = [t for t in queued if "published-model" in t["tags"]]
    assert sorted(_param(t, "CLEARML_DATASET_ID") or "" for t in dataset_jobs) == sorted(
        [events["v2"], events["v4"]]
    ), "exactly one job per Production version, with that version's id"
    assert events["v3"] not in {_param(t, "CLEARML_DATASET_ID") for t in queued}, "untagged version"
    assert params["v1"] not in {_param(t, "CLEARML_DATASET_ID") for t in queued}, "before the baseline"
    assert len(model_jobs) == 1
    assert _param(model_jobs[0], "MODEL_ID") == events["model"]
    assert _param(model_jobs[0], "CLEARML_DATASET_ID") == "", "model jobs keep the template's value"

    assert sorted(result["handled"]["production-dataset"]) == sorted([events["v2"], events["v4"]])
    assert result["handled"]["published-model"] == [events["model"]]
    assert sorted(task_id for _, _, task_id in result["executed"]) == sorted(t["id"] for t in queued)

    # Dataset.create sets its "version" user property while in progress (a properties-only edit, which
    # the server allows in any status)
    versions = api(
        "tasks.get_all", id=[events["v2"], events["v3"], events["v4"]], only_fields=["hyperparams.properties"]
    )["tasks"]
    assert all(t["hyperparams"]["properties"]["version"]["value"] for t in versions), versions

    # the template itself is untouched
    template = api("tasks.get_by_id", task=params["template"])["task"]
    assert template["status"] == "created"
    assert template["hyperparams"]["General"]["CLEARML_DATASET_ID"]["value"] == ""

    # SDK quirk: the model trigger's reference time cannot be computed (no last_change on the SDK's
    # model objects), so it never advances: the next poll finds the model again and reports work done,
    # but the in-memory set of handled ids stops a second launch
    second = result["second"]
    assert second["error"] is None
    model_error = "not supported between instances of 'int' and 'datetime.datetime'"
    for poll in (first, second):
        assert any("published-model" in line and model_error in line for line in poll["log"]), poll
    assert second["fired"] is True, "the model trigger keeps finding the same model"
    _, queued_after = _queued_tasks(api, params["queue"])
    assert [t["id"] for t in queued_after] == [t["id"] for t in queued], "no job is launched twice"


def test_blog_task_overrides_form_loses_the_event(
    server: LocalServer, clearml_env: dict[str, str], tmp_path: Path
) -> None:
    """``task_overrides={'General/CLEARML_DATASET_ID': '${dataset.id}'}`` (the form in ClearML's blog) must
    not be used: ``${dataset.id}`` is not substituted there and the override is not a task field, so
    ``_step`` raises after marking the dataset handled; nothing is queued, ever."""
    flow = run_trigger_flow(
        clearml_env,
        tmp_path / "flow",
        dataset_trigger={"task_overrides": {"General/CLEARML_DATASET_ID": "${dataset.id}"}},
        model_trigger=False,
    )
    params, events, result = flow["params"], flow["events"], flow["result"]
    api = Api(server)

    first = result["first"]
    assert first["fired"] is None, f"the poll must fail: {first}"
    assert "Unsupported keyword arguments" in first["error"]
    assert "General/CLEARML_DATASET_ID" in first["error"]
    # the first Production version was marked handled before the failure; the poll stopped there
    handled = result["handled"]["production-dataset"]
    assert len(handled) == 1 and handled[0] in (events["v2"], events["v4"])

    # the next poll does not retry it: the reference time already moved past both versions
    assert result["second"] == {"fired": False, "error": None, "log": []}
    assert result["executed"] == []
    _, queued = _queued_tasks(api, params["queue"])
    assert queued == [], "the event is lost: nothing was ever queued"

    # what is left: one draft clone of the template, never enqueued, without the dataset id
    clones = api(
        "tasks.get_all",
        parent=[params["template"]],
        only_fields=["id", "status", "tags", "hyperparams"],
    )["tasks"]
    assert len(clones) == 1, clones
    assert clones[0]["status"] == "created"
    assert "production-dataset" in clones[0]["tags"]
    assert _param(clones[0], "CLEARML_DATASET_ID") == ""
