"""Flows b and c: a tracked task with config, scalar and a published model; clone and enqueue."""

from __future__ import annotations

import json

from tests.conftest import api_client, run_python

TRACKED = """
import json
from pathlib import Path
from clearml import OutputModel, Task

config = {"CLEARML_DATASET_ID": "", "RANDOM_STATE": 42, "LAYER_SIZE": 255, "DROPOUT": 0.3, "PATIENCE": 5}
task = Task.init(project_name="FlowB", task_name="train", auto_connect_frameworks=False,
                 auto_resource_monitoring=False)
task.connect(config)
for epoch in range(3):
    task.get_logger().report_scalar("loss", "val", value=1.0 / (epoch + 1), iteration=epoch)
Path("model.txt").write_text("weights")
model = OutputModel(task=task, name="occupancy", framework="custom")
model.update_weights(weights_filename="model.txt", auto_delete_file=False)
model.publish()
task.flush(wait_for_uploads=True)
print(json.dumps({"task": task.id, "model": model.id}))
task.close()
"""


def test_tracked_task_config_scalars_and_published_model(clearml_env):
    ids = json.loads(run_python(TRACKED, clearml_env).strip().splitlines()[-1])
    out = run_python(
        f"""
        import json
        from clearml import Model, Task
        task = Task.get_task(task_id={ids["task"]!r})
        model = Model(model_id={ids["model"]!r})
        print(json.dumps({{
            "status": str(task.get_status()),
            "params": task.get_parameters_as_dict(),
            "scalars": task.get_last_scalar_metrics(),
            "published": model.published,
            "model_task": model.task,
            "url": model.url, "weights": open(model.get_local_copy() or "/dev/null").read(),
            "output_models": [m.id for m in task.models["output"]],
        }}))
        """,
        clearml_env,
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["status"] == "completed"
    assert got["params"]["General"]["LAYER_SIZE"] == "255"
    assert got["params"]["General"]["DROPOUT"] == "0.3"
    assert got["scalars"]["loss"]["val"]["last"] == 1.0 / 3
    assert got["scalars"]["loss"]["val"]["min"] == 1.0 / 3
    assert got["published"] is True
    assert got["model_task"] == ids["task"]
    assert got["weights"] == "weights"
    assert got["output_models"] == [ids["model"]]


def test_clone_change_parameter_enqueue(clearml_env):
    ids = json.loads(run_python(TRACKED.replace("FlowB", "FlowC"), clearml_env).strip().splitlines()[-1])
    api = api_client(clearml_env)
    if not api.queues.get_all(name="^training-c$"):
        api.queues.create(name="training-c")
    out = run_python(
        f"""
        import json
        from clearml import Task
        template = Task.get_task(task_id={ids["task"]!r})
        clone = Task.clone(source_task=template, name="retrain on new data")
        clone.set_parameter("General/CLEARML_DATASET_ID", "dataset-123")
        Task.enqueue(clone, queue_name="training-c")
        print(json.dumps({{"clone": clone.id}}))
        """,
        clearml_env,
    )
    clone_id = json.loads(out.strip().splitlines()[-1])["clone"]
    clone = api.tasks.get_by_id(task=clone_id)
    assert str(clone.status) == "queued"
    assert clone.parent == ids["task"]
    params = clone.hyperparams["General"]
    assert params["CLEARML_DATASET_ID"].value == "dataset-123"
    assert params["LAYER_SIZE"].value == "255", "clone keeps every other parameter"
    assert clone.script.entry_point == api.tasks.get_by_id(task=ids["task"]).script.entry_point
    assert not clone.models.output, "a clone must not inherit output models"
    queue = api.queues.get_all(name="^training-c$")[0]
    assert [e.task for e in queue.entries] == [clone_id]
