"""The preview of every version says the input drift of its new readings against the champion's
training data: no champion yet, a champion from before drift references, drift for a day whose light
sensor reads double. The sync never fails over it."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from tests.conftest import run_python
from tests.labeling.helpers import label, plots, versions
from tests.serving.models import REGISTER, write_bundle
from training.data import load_labeled
from training.drift import build_reference
from training.features import DEFAULT_SCHEMA

CROWN = """
from training.registry import ModelRegistry
print(ModelRegistry({project!r}).submit_and_promote({model_id!r}, "the champion of the test").champion)
"""


def crown(env: dict[str, str], project: str, model_id: str) -> None:
    out = run_python(CROWN.format(project=project, model_id=model_id), env)
    assert out.strip().splitlines()[-1] == model_id, out


def register(env: dict[str, str], project: str, references: list[dict[str, Any] | None]) -> list[str]:
    """Publish one tiny model per drift reference (None: a model from before drift references)."""
    models = []
    for i, reference in enumerate(references):
        folder = write_bundle(Path(env["HOME"]) / f"model-{i}", dataset_id="ds", drift_reference=reference)
        models.append({"folder": str(folder), "metadata": {}, "publish": True, "tags": []})
    spec = {"project": project, "name": "occupancy-mlp", "models": models}
    out = run_python(REGISTER.replace("SPEC", repr(json.dumps(spec))), env)
    return json.loads(next(x for x in out.splitlines() if x.startswith("MODEL_IDS=")).split("=", 1)[1])


def sync(env: dict[str, str], folder: Path, project: str, name: str) -> str:
    proc = label(env, "sync", str(folder), "--project", project, "--dataset", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def test_each_version_logs_the_drift_of_its_new_readings(clearml_env, days, occupancy_dir):
    project, name = f"Drift-{uuid.uuid4().hex[:6]}", f"sensors-{uuid.uuid4().hex[:6]}"
    folder = Path(clearml_env["HOME"]) / "labeled"
    folder.mkdir()

    # no champion yet: said, and the version is made
    shutil.copyfile(days[1], folder / days[1].name)
    out = sync(clearml_env, folder, project, name)
    assert f"input drift: no champion occupancy-mlp in {project} yet" in out, out

    # both models registered at once (one child process): one from before drift references, one
    # with the training week's reference
    reference = build_reference(load_labeled([occupancy_dir / "datatraining.txt"]), DEFAULT_SCHEMA).to_dict()
    older, champion = register(clearml_env, project, [None, reference])

    # a champion trained before drift references: said
    crown(clearml_env, project, older)
    shutil.copyfile(days[2], folder / days[2].name)
    out = sync(clearml_env, folder, project, name)
    assert f"input drift: champion {older} was trained before drift references existed" in out, out

    # a champion with the training week's reference (a day of that week is no drift there:
    # tests/training/test_drift.py): the day with the light sensor reading double is drift, in Light
    crown(clearml_env, project, champion)
    frame = pd.read_csv(days[2])
    frame.assign(Light=frame["Light"] * 2).to_csv(folder / days[2].name, index=False)
    out = sync(clearml_env, folder, project, name)
    line = next(x for x in out.splitlines() if "input drift" in x)
    assert f"input drift against champion {champion}: drift in " in line, out
    assert re.search(r"rows \(Light[,)]", line) and line.endswith(", 1440 readings"), line

    *_, last = versions(clearml_env, project, name)
    logged = plots(clearml_env, last["id"])
    assert "input drift" in logged and "version summary" in logged, logged
