"""The tracked training task against the local server: run directly, then cloned with another
dataset id and executed by a clearml-agent daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from occupancy_mlops.agent import local_agent
from tests.conftest import api_client, run_python

MAKE_DATASETS = """
import json, shutil, sys
from pathlib import Path
from clearml import Dataset

src = Path(sys.argv[1])
ids = {}
for name, files in (("train-full", ["datatraining.txt"]), ("train-small", ["datatraining.txt"]),
                    ("eval", ["datatest.txt"])):
    folder = Path(name); folder.mkdir()
    for f in files:
        text = (src / f).read_text()
        if name == "train-small":  # the first 4,000 readings only
            text = "\\n".join(text.splitlines()[:4001]) + "\\n"
        (folder / f).write_text(text)
    ds = Dataset.create(dataset_project=sys.argv[2], dataset_name=name)
    ds.add_files(str(folder))
    ds.upload(show_progress=False)
    ds.finalize()
    ids[name] = ds.id
print(json.dumps(ids))
"""


def _run_module(env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "training.task", *args],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def datasets(clearml_env, occupancy_dir):
    project = f"TaskFlow-{uuid.uuid4().hex[:6]}"
    out = run_python(
        MAKE_DATASETS.replace("sys.argv[1]", repr(str(occupancy_dir))).replace("sys.argv[2]", repr(project)),
        clearml_env,
    )
    return project, json.loads(out.strip().splitlines()[-1])


def test_tracked_training_then_clone_run_by_an_agent(clearml_env, datasets):
    project, ids = datasets
    first = _run_module(
        clearml_env, "--dataset-id", ids["train-full"], "--eval-dataset-id", ids["eval"], "--project", project
    )
    api = api_client(clearml_env)
    task = api.tasks.get_by_id(task=first["task_id"])
    assert str(task.status) == "completed"
    assert task.hyperparams["General"]["CLEARML_DATASET_ID"].value == ids["train-full"]
    assert task.hyperparams["General"]["LAYER_SIZE"].value == "255"
    model = api.models.get_by_id(model=first["model_id"])
    assert model.task == first["task_id"] and not model.ready, "training alone never publishes"
    assert model.metadata["dataset_id"]["value"] == ids["train-full"]
    assert model.metadata["training_task_id"]["value"] == first["task_id"]
    assert first["evaluation"]["accuracy"] > 0.95
    scalars = api.session.send_request(
        "events", "scalar_metrics_iter_histogram", json={"task": first["task_id"]}
    ).json()["data"]
    assert len(scalars["loss"]["validation"]["x"]) >= 2, "per-epoch learning curves are reported"
    plots = api.session.send_request("events", "get_task_plots", json={"task": first["task_id"]}).json()[
        "data"
    ]["plots"]
    assert any("confusion" in p["metric"] for p in plots) and any("ROC" in p["metric"] for p in plots)

    # the scheduler's move: clone with another dataset id, enqueue, let an agent run it
    queue = f"train-{uuid.uuid4().hex[:6]}"
    api.queues.create(name=queue)
    clone = (
        run_python(
            f"""
        from clearml import Task
        clone = Task.clone(source_task={first["task_id"]!r}, name="retrain")
        clone.set_parameter("General/CLEARML_DATASET_ID", {ids["train-small"]!r})
        Task.enqueue(clone, queue_name={queue!r})
        print(clone.id)
        """,
            clearml_env,
        )
        .strip()
        .splitlines()[-1]
    )
    home = Path(clearml_env["HOME"])
    with local_agent(queue, clearml_env, home, f"w-{queue}") as log:
        deadline = time.monotonic() + 240
        while str(api.tasks.get_by_id(task=clone).status) not in ("completed", "failed", "stopped"):
            assert time.monotonic() < deadline, log.read_text()[-5000:]
            time.sleep(1)
    done = api.tasks.get_by_id(task=clone)
    assert str(done.status) == "completed", log.read_text()[-5000:]
    [ref] = done.models.output
    retrained = api.models.get_by_id(model=ref.model)
    assert retrained.metadata["dataset_id"]["value"] == ids["train-small"], (
        "the clone trained on its own data"
    )
    assert retrained.metadata["training_task_id"]["value"] == clone
