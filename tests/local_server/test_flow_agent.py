"""Flow: the real ``clearml-agent daemon`` runs two queued tasks against the local server.

The user's path: a training script run once with ``Task.init`` (it connects a config dict) is the
template; it is cloned twice, each clone gets its own hyperparameters and is enqueued on ``training``;
``clearml-agent daemon --queue training --foreground`` (in this interpreter: no venv, no pip, no git)
pulls both, runs the stored script and marks them completed. Each run proves it saw the parameters
of its clone: it prints them (the agent ships the output to the task log), reports one as a scalar
and stores the other in an artifact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.conftest import api_client, run_python

QUEUE = "training"
DEADLINE_S = 90.0  # both tasks, from the agent's start to their completion

SCRIPT = """\
from clearml import Task

config = {"LEARNING_RATE": 0.1, "RUN_TAG": "template"}
task = Task.init(project_name="FlowAgent", task_name="agent template", auto_connect_frameworks=False,
                 auto_resource_monitoring=False)
task.connect(config)
print(f"AGENT_FLOW task={task.id}")
print(f"AGENT_FLOW saw RUN_TAG={config['RUN_TAG']} LEARNING_RATE={config['LEARNING_RATE']!r}")
task.get_logger().report_scalar("seen", "learning_rate", value=float(config["LEARNING_RATE"]), iteration=0)
task.upload_artifact("seen", artifact_object={"run_tag": config["RUN_TAG"]})
"""

RUNS = {"run-a": 0.5, "run-b": 0.25}

T = TypeVar("T")


def _wait_for(what: str, check: Callable[[], T | None], deadline: float, log: Path) -> T:
    """Poll ``check`` until it returns a value, or fail with the agent's output after ``deadline``."""
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; agent output:\n{log.read_text()[-6000:]}")
        time.sleep(0.5)


@pytest.fixture
def agent_log(tmp_path: Path) -> Path:
    return tmp_path / "agent.log"


@pytest.fixture
def start_agent(
    clearml_env: dict[str, str], agent_log: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start ``clearml-agent daemon --queue training --foreground``; stop its process group at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(worker_id: str) -> subprocess.Popen[bytes]:
        env = dict(
            clearml_env,
            CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL="1",
            CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=sys.executable,
            CLEARML_WORKER_ID=worker_id,
        )
        agent = str(Path(sys.executable).with_name("clearml-agent"))
        with agent_log.open("wb") as out:
            proc = subprocess.Popen(
                [agent, "daemon", "--queue", QUEUE, "--foreground"],
                env=env,
                cwd=clearml_env["HOME"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the task processes die with it
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the agent unregisters its worker), then SIGKILL to the whole group if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_agent_daemon_runs_two_queued_clones(clearml_env, start_agent, agent_log):
    home = Path(clearml_env["HOME"])
    api = api_client(clearml_env)
    if not api.queues.get_all(name=f"^{QUEUE}$"):
        api.queues.create(name=QUEUE)

    # 1. the user runs the training script once: that is the template
    (home / "train_job.py").write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "train_job.py"],
        env=clearml_env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "AGENT_FLOW saw RUN_TAG=template LEARNING_RATE=0.1" in proc.stdout
    template_id = proc.stdout.split("AGENT_FLOW task=")[1].split()[0]
    assert api.tasks.get_by_id(task=template_id).script.entry_point == "train_job.py"

    # 2. clone it twice, each clone with its own parameters, and enqueue both
    out = run_python(
        f"""
        import json
        from clearml import Task
        template = Task.get_task(task_id={template_id!r})
        ids = {{}}
        for tag, lr in {RUNS!r}.items():
            clone = Task.clone(source_task=template, name=f"agent {{tag}}")
            clone.set_parameter("General/RUN_TAG", tag)
            clone.set_parameter("General/LEARNING_RATE", lr)
            Task.enqueue(clone, queue_name={QUEUE!r})
            ids[tag] = clone.id
        print(json.dumps(ids))
        """,
        clearml_env,
        timeout=60,
    )
    ids: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    queue = api.queues.get_all(name=f"^{QUEUE}$")[0]
    assert [e.task for e in queue.entries] == [ids["run-a"], ids["run-b"]], "only our two tasks are queued"

    # 3. the agent pulls and runs both, in queue order
    worker_id = f"flow-agent-{uuid.uuid4().hex[:8]}"
    agent = start_agent(worker_id)
    deadline = time.monotonic() + DEADLINE_S
    seen_worker: dict[str, Any] = {}

    def both_done() -> list[Any] | None:
        for worker in api.workers.get_all():
            if worker.id == worker_id:
                seen_worker["queues"] = [q.name for q in worker.queues or []]
                if worker.task is not None:
                    seen_worker.setdefault("tasks", set()).add(worker.task.id)
        tasks = api.tasks.get_all(id=list(ids.values()), only_fields=["id", "status"])
        bad = [t for t in tasks if str(t.status) in ("failed", "stopped")]
        if bad:
            pytest.fail(f"task {bad[0].id} {bad[0].status}; agent output:\n{agent_log.read_text()[-6000:]}")
        return tasks if all(str(t.status) == "completed" for t in tasks) else None

    _wait_for("both tasks to complete", both_done, deadline, agent_log)

    # the worker was registered while it ran them, listening to the training queue
    assert seen_worker.get("queues") == [QUEUE], seen_worker
    assert seen_worker.get("tasks", set()) <= set(ids.values())
    # the queue is drained
    assert api.queues.get_all(name=f"^{QUEUE}$")[0].entries == []

    for tag, lr in RUNS.items():
        task = api.tasks.get_by_id(task=ids[tag])
        assert task.last_worker == worker_id
        assert task.started and task.completed and task.started <= task.completed
        assert task.hyperparams["General"]["RUN_TAG"].value == tag
        # the script saw the injected parameters: scalar, artifact, and its printed output in the log
        [variants] = task.last_metrics.values()
        [scalar] = variants.values()
        assert (scalar["metric"], scalar["variant"], scalar["value"]) == ("seen", "learning_rate", lr)
        [artifact] = [a for a in task.execution.artifacts if a.key == "seen"]
        stored = Path(artifact.uri.removeprefix("file://"))
        assert json.loads(stored.read_text()) == {"run_tag": tag}
        line = f"AGENT_FLOW saw RUN_TAG={tag} LEARNING_RATE={lr!r}"

        def logged(task_id: str = ids[tag], line: str = line) -> bool | None:
            events = api.events.get_task_log(task=task_id, batch_size=1000).events
            return True if any(line in e.get("msg", "") for e in events) else None

        _wait_for(f"{line!r} in the task log", logged, deadline, agent_log)

    # stopping the agent (SIGTERM) unregisters its worker
    _stop(agent)
    assert worker_id not in [w.id for w in api.workers.get_all()]


def test_agent_status_calls_follow_the_real_server(server):
    """The calls the agent makes around a run, with the real server's answers (no agent needed)."""

    def call(endpoint: str, **body: Any) -> dict[str, Any]:
        res = requests.post(
            f"{server.settings.base_url}/v2.31/{endpoint}",
            json=body,
            auth=(server.settings.access_key, server.settings.secret_key),
            timeout=10,
        )
        assert res.status_code == 200, res.text
        data: dict[str, Any] = res.json()["data"]
        return data

    def task(task_id: str) -> dict[str, Any]:
        return call("tasks.get_by_id", task=task_id)["task"]

    project = call("projects.create", name=f"FlowAgent/contract-{uuid.uuid4().hex[:6]}")["id"]
    queue = call("queues.create", name=f"agent-contract-{uuid.uuid4().hex[:6]}")["id"]
    run = call("tasks.create", name="run", type="training", project=project)["id"]

    # daemon: pop the task, mark it started; `execute`: dequeue with new_status=in_progress, started again
    call("tasks.enqueue", task=run, queue=queue)
    assert call("queues.get_next_task", queue=queue)["entry"]["task"] == run
    call("tasks.started", task=run, status_message="pulled by agent", force=True)
    first_start = task(run)["started"]
    dequeued = call("tasks.dequeue", task=run, new_status="in_progress")
    assert (dequeued["dequeued"], dequeued["updated"]) == (1, 1), (
        "a running task is 'dequeued' into in_progress"
    )
    call("tasks.started", task=run, status_reason="starting execution soon", force=True)
    assert task(run)["status"] == "in_progress"
    assert task(run)["started"] == first_start, "started again while running: the run keeps its start"
    call("workers.status_report", worker="contract-worker", task=run, queue=queue, timestamp=0)
    assert task(run)["last_worker"] == "contract-worker"
    call("tasks.ping", task=run)
    assert isinstance(task(run)["active_duration"], int)
    call("tasks.completed", task=run, status_reason="worker execution done", force=True)
    assert task(run)["completed"] >= first_start
    # dequeue of a task that is neither queued nor running changes nothing
    assert call("tasks.dequeue", task=run)["updated"] == 0
    assert task(run)["status"] == "completed"
    call("workers.unregister", worker="contract-worker")

    # a failed task enqueued again and dequeued goes back to failed; run again, it is a new run
    call("tasks.enqueue", task=run, queue=queue, force=True)
    call("queues.get_next_task", queue=queue)
    call("tasks.started", task=run, force=True)
    call("tasks.failed", task=run, force=True)
    call("tasks.enqueue", task=run, queue=queue)
    assert call("tasks.dequeue", task=run)["updated"] == 1
    assert task(run)["status"] == "failed", "dequeue returns a task to its status before enqueue"
    assert call("queues.get_by_id", queue=queue)["queue"]["entries"] == []
    call("tasks.enqueue", task=run, queue=queue)
    call("queues.get_next_task", queue=queue)
    call("tasks.started", task=run, force=True)
    rerun = task(run)
    assert rerun["completed"] is None and rerun["started"] > first_start
