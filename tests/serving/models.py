"""Tiny occupancy model bundles for serving tests, without TensorFlow.

A real :class:`training.bundle.ModelBundle` folder (``model.npz`` + ``metadata.json`` with the
default feature schema) whose portable model is one sigmoid unit on the schema's Light input ``x``
(``log1p(Light)`` when the schema logs it, else lux / 300: about the same slope around 300 lux):
``p = sigmoid(4 * (x(Light) - x(300)) + bias_shift)``, occupied above ~300 lux.
``bias_shift`` moves every probability (a skewed challenger for canary tests); ``threshold`` (the
bundle's decision threshold, 0.5 by default) changes the decisions and not the probabilities (a
challenger whose distribution looks right and whose answers are wrong).

:func:`register_bundle` uploads such a folder as a ClearML model package and publishes it, as the
training task does (``OutputModel.update_weights_package`` + metadata ``dataset_id``); it runs in a
child process with the client environment ``env`` (the SDK keeps per-process state).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import run_python
from training.bundle import schema_to_dict, write_metadata
from training.features import DEFAULT_SCHEMA
from training.portable import DenseLayer, PortableModel

LIGHT_THRESHOLD = 300.0
STEEPNESS = 4.0


def light_input(light: float) -> float:
    """The Light feature as the default schema computes it, on the scale the tiny model uses."""
    return math.log1p(light) if "Light" in DEFAULT_SCHEMA.log_columns else light / LIGHT_THRESHOLD


def tiny_model(bias_shift: float = 0.0) -> PortableModel:
    n = len(DEFAULT_SCHEMA.feature_names)
    weights = np.zeros((n, 1))
    scale = 1.0 if "Light" in DEFAULT_SCHEMA.log_columns else 1.0 / LIGHT_THRESHOLD
    weights[DEFAULT_SCHEMA.feature_names.index("Light"), 0] = STEEPNESS * scale
    bias = np.array([-STEEPNESS * light_input(LIGHT_THRESHOLD) + bias_shift])
    return PortableModel([DenseLayer(weights, bias, "sigmoid")])


def expected_probability(light: float, bias_shift: float = 0.0) -> float:
    z = STEEPNESS * (light_input(light) - light_input(LIGHT_THRESHOLD)) + bias_shift
    return 1.0 / (1.0 + math.exp(-z))


def write_bundle(
    folder: Path,
    *,
    bias_shift: float = 0.0,
    dataset_id: str | None = None,
    threshold: float = 0.5,
    drift_reference: dict[str, Any] | None = None,
) -> Path:
    """A valid model folder (what ``ModelBundle.load`` and serving read); ``drift_reference``: the
    ``metadata["drift_reference"]`` of a trained model (:mod:`training.drift`), none by default."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(bias_shift).save(folder / "model.npz")
    metadata: dict[str, Any] = {
        "model_name": "occupancy-mlp",
        "feature_schema": schema_to_dict(DEFAULT_SCHEMA),
        "threshold": threshold,
        "bias_shift": bias_shift,
    }
    if dataset_id is not None:
        metadata["dataset_id"] = dataset_id
    if drift_reference is not None:
        metadata["drift_reference"] = drift_reference
    write_metadata(folder, metadata)
    return folder


REGISTER = """
import json
from clearml import OutputModel, Task

spec = json.loads(SPEC)
ids = []
for item in spec["models"]:
    # one task per model, as training does: a task's models share one upload path per name
    task = Task.create(project_name=spec["project"], task_name="train " + spec["name"], task_type="training")
    model = OutputModel(task=task, name=spec["name"], framework="Keras", tags=item["tags"] or None)
    model.set_upload_destination(uri=task.get_logger().get_default_upload_destination())
    model.update_weights_package(weights_path=item["folder"], auto_delete_file=False)
    task.flush(wait_for_uploads=True)
    for key, value in item["metadata"].items():
        model.set_metadata(key, value, "str")
    if item["publish"]:
        model.publish()
    ids.append(model.id)
print("MODEL_IDS=" + json.dumps(ids))
"""


def register_bundles(
    env: dict[str, str],
    project: str,
    name: str,
    bias_shifts: list[float],
    *,
    dataset_id: str = "dataset-test",
    publish: bool = True,
    tags: list[str] | None = None,
    broken: bool = False,
    thresholds: list[float] | None = None,
    drift_reference: dict[str, Any] | None = None,
) -> list[str]:
    """Register one bundle per bias shift (one child process); their model ids in order.
    ``broken``: packages without ``model.npz`` (serving cannot load them); ``thresholds``: the
    bundles' decision thresholds (default 0.5 each)."""
    home = Path(env["HOME"])
    models = []
    for i, shift in enumerate(bias_shifts):
        folder = home / f"bundle-{name}-{len(list(home.glob('bundle-*')))}-{i}"
        threshold = thresholds[i] if thresholds else 0.5
        write_bundle(
            folder,
            bias_shift=shift,
            dataset_id=dataset_id,
            threshold=threshold,
            drift_reference=drift_reference,
        )
        if broken:
            (folder / "model.npz").unlink()
        models.append(
            {
                "folder": str(folder),
                "metadata": {"dataset_id": dataset_id, "bias_shift": str(shift)},
                "publish": publish,
                "tags": tags or [],
            }
        )
    spec = {"project": project, "name": name, "models": models}
    out = run_python(REGISTER.replace("SPEC", repr(json.dumps(spec))), env)
    line = [x for x in out.splitlines() if x.startswith("MODEL_IDS=")][-1]
    return [str(x) for x in json.loads(line.split("=", 1)[1])]


def register_bundle(
    env: dict[str, str], project: str, name: str, *, bias_shift: float = 0.0, dataset_id: str = "dataset-test"
) -> str:
    """Write, upload and publish one tiny bundle as a ClearML model; its model id."""
    return register_bundles(env, project, name, [bias_shift], dataset_id=dataset_id)[0]
