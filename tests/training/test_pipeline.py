"""The retraining pipeline (preprocess → train → evaluate+gate) with its steps run by a
clearml-agent daemon on a queue, against the local server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from occupancy_mlops.agent import local_agent
from tests.conftest import api_client, run_python
from tests.training.test_task import MAKE_DATASETS


def test_pipeline_steps_run_through_an_agent_and_publish_the_first_model(clearml_env, occupancy_dir):
    project = f"PipeFlow-{uuid.uuid4().hex[:6]}"
    out = run_python(
        MAKE_DATASETS.replace("sys.argv[1]", repr(str(occupancy_dir))).replace("sys.argv[2]", repr(project)),
        clearml_env,
    )
    ids = json.loads(out.strip().splitlines()[-1])
    queue = f"steps-{uuid.uuid4().hex[:6]}"
    api = api_client(clearml_env)
    api.queues.create(name=queue)
    with local_agent(queue, clearml_env, Path(clearml_env["HOME"]), f"w-{queue}") as log:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "training.pipeline",
                "--dataset-id",
                ids["train-full"],
                "--eval-dataset-id",
                ids["eval"],
                "--project",
                project,
                "--queue",
                queue,
            ],
            env=clearml_env,
            cwd=clearml_env["HOME"],
            capture_output=True,
            text=True,
            timeout=400,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + log.read_text()[-3000:]
    controller_id = proc.stdout.strip().splitlines()[-1]
    steps = [
        t
        for t in api.tasks.get_all(parent=controller_id, only_fields=["id", "name", "status", "last_worker"])
    ]
    assert sorted(t.name for t in steps) == ["evaluate", "preprocess", "train"]
    assert all(str(t.status) == "completed" for t in steps)
    assert all(t.last_worker == f"w-{queue}" for t in steps), "every step ran on the agent"
    models = api.models.get_all(tags=["champion"], only_fields=["id", "ready", "metadata", "comment"])
    mine = [
        m for m in models if m.metadata and m.metadata.get("dataset_id", {}).get("value") == ids["train-full"]
    ]
    assert len(mine) == 1 and mine[0].ready, "the first model clears the floor and is published as champion"
    assert "first model" in mine[0].comment


def test_register_stores_a_draft_template_the_scheduler_finds(clearml_env):
    from occupancy_mlops.clearml_api import ClearmlApi
    from services.scheduler.settings import load_settings
    from services.scheduler.template import find_template

    project = f"PipeTemplate-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "occupancy_mlops.cli", "pipeline", "--register"),
            *("--project", project, "--queue", "steps-q", "--eval-dataset-id", "e" * 32),
        ],
        env=clearml_env,
        cwd=clearml_env["HOME"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    template_id = proc.stdout.strip().splitlines()[-1]
    api = api_client(clearml_env)
    task = api.tasks.get_by_id(task=template_id)
    assert str(task.status) == "created", "a draft: cloned per dataset version, never run itself"
    assert "retrain-template" in task.tags and "pipeline" in task.system_tags
    assert task.script.entry_point == "-m training.pipeline", "what an agent runs for a clone"
    args = {k: v.value for k, v in task.hyperparams["Args"].items()}
    assert args["dataset_id"] == "" and args["eval_dataset_id"] == "e" * 32 and args["project"] == project
    assert task.hyperparams["pipeline"]["default_queue"].value == "steps-q", "the steps' queue"
    from clearml.backend_api import Session

    session = Session(
        api_key=clearml_env["CLEARML_API_ACCESS_KEY"],
        secret_key=clearml_env["CLEARML_API_SECRET_KEY"],
        host=clearml_env["CLEARML_API_HOST"],
    )
    found = find_template(ClearmlApi(session), load_settings(environ={}, project=project))
    assert found == template_id
