"""The whole trigger: a Production dataset version of real data → the scheduler registers the pipeline
template and launches a clone → an agent runs the controller, another the steps → the model is gated
and published."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from occupancy_mlops.agent import local_agent
from tests.conftest import api_client, run_python
from tests.scheduler.conftest import wait_for

MAKE_DATA = """
import json, sys
from pathlib import Path
from clearml import Dataset

src, project = Path(sys.argv[1]), sys.argv[2]
ids = {}
for name, f, tags in (("room-sensors-eval", "datatest.txt", ["evaluation"]),
                      ("room-sensors", "datatraining.txt", ["Production"])):
    folder = Path(name); folder.mkdir()
    (folder / f).write_text((src / f).read_text())
    ds = Dataset.create(dataset_project=project, dataset_name=name)
    ds.add_files(str(folder))
    ds.add_tags(tags)
    ds.finalize(auto_upload=True)
    ids[name] = ds.id
print(json.dumps(ids))
"""


def test_a_production_version_is_retrained_by_agents_and_published(clearml_env, occupancy_dir, schedulers):
    project = f"Loop-{uuid.uuid4().hex[:6]}"
    suffix = uuid.uuid4().hex[:6]
    controllers, steps = f"services-{suffix}", f"training-{suffix}"
    api = api_client(clearml_env)
    for queue in (controllers, steps):
        api.queues.create(name=queue)
    out = run_python(
        MAKE_DATA.replace("sys.argv[1]", repr(str(occupancy_dir))).replace("sys.argv[2]", repr(project)),
        clearml_env,
    )
    ids = json.loads(out.strip().splitlines()[-1])
    scheduler = schedulers(
        {
            "project": project,
            "queue": controllers,
            "steps_queue": steps,
            "parameters": {"Args/eval_dataset_id": ids["room-sensors-eval"]},
            "poll_interval_seconds": 0.5,
        }
    )
    scheduler.wait_listening(timeout=180)  # its first poll registers the pipeline template
    home = Path(clearml_env["HOME"])
    with (
        local_agent(controllers, clearml_env, home, f"c-{suffix}") as controller_log,
        local_agent(steps, clearml_env, home, f"s-{suffix}") as steps_log,
    ):

        def published():
            models = api.models.get_all(tags=["champion"], only_fields=["id", "ready", "metadata", "task"])
            return [
                m
                for m in models
                if m.ready and (m.metadata or {}).get("dataset_id", {}).get("value") == ids["room-sensors"]
            ]

        def finished():
            runs = api.tasks.get_all(
                tags=[f"retrain-of:{ids['room-sensors']}"],
                search_hidden=True,
                only_fields=["id", "status", "system_tags"],
            )
            return runs if runs and str(runs[0].status) in ("completed", "failed", "stopped") else None

        try:
            [model] = wait_for(published, 400, "the retrained model to be published", scheduler.log)
            runs = wait_for(finished, 60, "the pipeline controller to finish", scheduler.log)
        finally:
            logs = controller_log.read_text()[-3000:] + steps_log.read_text()[-3000:]
    assert len(runs) == 1, logs
    assert str(runs[0].status) == "completed" and "pipeline" in runs[0].system_tags
    [train_step] = api.tasks.get_all(parent=runs[0].id, name="^train$", only_fields=["id"])
    assert model.task == train_step.id, "the model comes from the launched pipeline's train step"
    assert "occupancy_scheduler_launches_total 1.0" in scheduler.get("/metrics").text

    # what a user reads back: which data the model was trained on and what the gate decided
    proc = subprocess.run(
        [sys.executable, "-m", "occupancy_mlops.cli", "timeline", "--project", project, "--json"],
        env=clearml_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["dataset_id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    row = rows[ids["room-sensors"]]
    assert (row["run_id"], row["run_status"]) == (runs[0].id, "completed")
    assert (row["model_id"], row["verdict"]) == (model.id, "published")
    assert row["accuracy"] > 0.95 and row["finalized"] < row["launched"] < row["decided"]
    assert rows[ids["room-sensors-eval"]]["run_id"] is None, "the untagged evaluation set is not launched"
