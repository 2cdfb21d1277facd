"""The evaluation gate's outcomes in the model registry of the local server, with real models:
first model, a regression, a better challenger, and a model trained on corrupted labels; in deploy
mode "direct" (the better challenger is champion at once) and "canary" (it waits as a candidate)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_python
from training.config import TrainingConfig
from training.data import LABEL_COLUMN, load_labeled
from training.train import train_model

GATE = """
import json
from pathlib import Path
from clearml import Model, Task
from training.data import load_labeled
from training.evaluate import GatePolicy
from training.gate import gate
from training.registry import ModelRegistry
from training.train import TrainedModel

project, folders, eval_file = {project!r}, {folders!r}, {eval_file!r}
eval_frame = load_labeled([Path(eval_file)])
task = Task.init(project_name=project, task_name="register models", auto_connect_frameworks=False)
policy = GatePolicy(floor=0.95, tolerance=0.005)
out = {{}}
plan = [(project, "direct", name) for name in ("corrupt", "good", "weak", "better")]
plan += [(project + "-canary", "canary", name) for name in ("good", "better")]
for target, mode, name in plan:
    from clearml import OutputModel
    model = OutputModel(task=task, name="occupancy-mlp", framework="Keras")
    model.update_weights_package(weights_path=folders[name], target_filename=name + ".zip",
                                 auto_delete_file=False)
    task.flush(wait_for_uploads=True)
    decision = gate(model.id, eval_frame, policy, target, "occupancy-mlp", mode)
    key = name if mode == "direct" else mode + "-" + name
    out[key] = {{"id": model.id, "publish": decision.publish, "reason": decision.reason, "project": target}}
for name, entry in out.items():
    m = Model(model_id=entry["id"])
    state = ModelRegistry(entry["project"]).read()
    entry.update(published=m.published, tags=sorted(m.tags), comment=m.comment,
                 verdict=m.get_metadata("gate_verdict"), accuracy=float(m.get_metadata("eval_accuracy")),
                 state=state.state_of(m.id), version=state.version_of(m.id),
                 registry_state=m.get_metadata("registry_state"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory, occupancy_dir) -> dict[str, str]:
    frame = load_labeled([occupancy_dir / "datatraining.txt"])
    inverted = frame.copy()
    inverted[LABEL_COLUMN] = 1 - inverted[LABEL_COLUMN]  # an annotator's export with labels swapped
    root = tmp_path_factory.mktemp("gate-models")
    plans = {
        "corrupt": (inverted, {}),
        "good": (frame, {}),
        "weak": (frame, {"MAX_EPOCHS": 1}),  # stopped after one epoch
        "better": (frame, {"RANDOM_STATE": 43}),
    }
    folders = {}
    for name, (data, overrides) in plans.items():
        trained = train_model(data, TrainingConfig.from_mapping(overrides))
        if name == "corrupt":
            # judged on its own (swapped) labels it looks excellent: only a fixed evaluation set tells
            assert trained.validation.accuracy > 0.97
        folders[name] = str(trained.save(root / name))
    return folders


def test_gate_outcomes(clearml_env, model_folders, occupancy_dir):
    project = f"Gate-{uuid.uuid4().hex[:6]}"
    code = GATE.format(project=project, folders=model_folders, eval_file=str(occupancy_dir / "datatest.txt"))
    out = json.loads(run_python(code, clearml_env, timeout=300).strip().splitlines()[-1])
    corrupt, good, weak, better = (out[k] for k in ("corrupt", "good", "weak", "better"))

    # corrupted labels: below the floor, never published, even with no champion to beat
    assert corrupt["accuracy"] < 0.5
    assert not corrupt["published"] and corrupt["verdict"] == "rejected" and "rejected" in corrupt["tags"]
    assert "below the floor" in corrupt["comment"]

    # the first model that clears the floor becomes champion
    assert good["accuracy"] > 0.97
    assert good["published"] and "first model" in good["reason"]

    # a challenger that clears the floor but regresses beyond the tolerance is kept, not published
    assert 0.95 <= weak["accuracy"] < good["accuracy"] - 0.005, weak
    assert not weak["published"] and weak["tags"] == ["rejected"] and "regresses" in weak["comment"]

    # direct mode: an at-least-as-good challenger is published and takes the champion tag over
    assert better["accuracy"] >= good["accuracy"] - 0.005
    assert better["published"] and "champion" in better["tags"] and better["state"] == "champion"
    assert good["tags"] == ["former-champion"], "the previous champion hands its tag over"
    assert (good["version"], better["version"]) == (1, 2), "versions count submitted models only"
    assert corrupt["state"] == weak["state"] == "rejected" and corrupt["version"] is None
    assert better["registry_state"] == "champion"
    assert Path(model_folders["good"], "model.npz").is_file()

    # canary mode: the better challenger is published and waits as a candidate for the controller
    first, waiting = out["canary-good"], out["canary-better"]
    assert first["state"] == "champion" and first["tags"] == ["champion"]
    assert waiting["published"] and waiting["state"] == "candidate" and waiting["tags"] == ["candidate"]
    assert waiting["verdict"] == "published" and waiting["version"] == 2
