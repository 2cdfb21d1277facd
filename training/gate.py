"""The evaluation gate: score the challenger against the champion, then submit or reject it.

The champion is the one the model registry (:mod:`training.registry`, the only owner of model states)
says it is. A challenger and the champion are scored on the same evaluation data; the verdict
(:func:`training.evaluate.decide`) is written where people look (the challenger's comment and
``gate_*`` metadata) and goes to the registry: a passing challenger is submitted (published, given a
version, a candidate for the canary controller, or the champion when there is none yet; in deploy
mode ``direct`` it becomes the champion at once), a failing one is rejected. The registry moves the
tags (``champion``, ``candidate``, ``rejected``...).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from training.bundle import ModelBundle
from training.data import LABEL_COLUMN
from training.evaluate import GateDecision, GatePolicy, Metrics, compute_metrics, decide
from training.registry import CHAMPION, ModelRegistry

CHAMPION_TAG = CHAMPION
ADOPTED = "adopted: the champion tagged before the model registry existed"


def find_champion(project: str, model_name: str, exclude: str | None = None) -> Any | None:
    """The newest published model tagged ``champion`` named ``model_name`` in ``project`` or any of its
    sub-projects, hidden ones included (pipeline steps register their models under
    ``<project>/.pipelines/<pipeline>``, where ``Model.query_models(project_name=...)`` does not look).

    Only for installations from before the registry: the registry adopts that model as its first
    champion. Everything else asks :meth:`ModelRegistry.read`, not the tags."""
    from clearml import Model

    from occupancy_mlops.clearml_api import ClearmlApi

    api = ClearmlApi()  # errors raise ApiCallError naming the call, never a KeyError on a bad answer
    projects = api.call(
        "projects.get_all", name=f"^{re.escape(project)}(/|$)", search_hidden=True, only_fields=["id"]
    )["projects"]
    if not projects:
        return None
    models = api.call(
        "models.get_all",
        project=[p["id"] for p in projects],
        name=f"^{re.escape(model_name)}$",
        tags=[CHAMPION_TAG],
        system_tags=["-archived"],
        ready=True,
        order_by=["-created"],
        page=0,
        page_size=5,
        only_fields=["id"],
    )["models"]
    for found in models:
        if found["id"] != exclude:
            return Model(model_id=found["id"])
    return None


def load_bundle(model: Any) -> ModelBundle:
    """The model package of a registered model, downloaded (cached) and loaded."""
    local = model.get_local_copy(extract_archive=True, raise_on_error=True)
    return ModelBundle.load(Path(local))


def score(bundle: ModelBundle, frame: pd.DataFrame) -> Metrics:
    return compute_metrics(frame[LABEL_COLUMN].to_numpy(), bundle.predict_proba(frame))


def _set_metadata(model: Any, decision: GateDecision) -> None:
    decided = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    model.set_metadata("gate_decided_at", decided, "str")
    model.set_metadata("gate_verdict", "published" if decision.publish else "rejected", "str")
    model.set_metadata("gate_reason", decision.reason, "str")
    model.set_metadata("eval_accuracy", f"{decision.challenger.accuracy:.6f}", "float")
    if decision.champion is not None:
        model.set_metadata("champion_eval_accuracy", f"{decision.champion.accuracy:.6f}", "float")


def current_champion(registry: ModelRegistry, model_id: str) -> str | None:
    """The registry's champion; an empty registry first adopts a champion tagged by the old gate."""
    state = registry.read()
    if state.generation == 0:
        legacy = find_champion(registry.project, registry.model_name, exclude=model_id)
        if legacy is not None:
            state = registry.submit(str(legacy.id), ADOPTED)
    return state.champion if state.champion != model_id else None


def gate(
    model_id: str,
    eval_frame: pd.DataFrame,
    policy: GatePolicy,
    project: str,
    model_name: str,
    deploy_mode: str = "canary",
) -> GateDecision:
    """Score the challenger and the champion on ``eval_frame``, then submit or reject the challenger.

    ``deploy_mode`` "canary": a passing challenger waits as a candidate for the canary controller
    (or becomes the champion when there is none); "direct": it becomes the champion at once."""
    from clearml import Model

    if deploy_mode not in ("canary", "direct"):
        raise ValueError(f"deploy_mode {deploy_mode!r} must be canary or direct")
    registry = ModelRegistry(project, model_name)
    challenger = Model(model_id=model_id)
    challenger_metrics = score(load_bundle(challenger), eval_frame)
    champion_id = current_champion(registry, model_id)
    champion = Model(model_id=champion_id) if champion_id else None
    champion_metrics = score(load_bundle(champion), eval_frame) if champion is not None else None
    decision = decide(challenger_metrics, champion_metrics, policy)
    _set_metadata(challenger, decision)
    challenger.comment = f"gate: {decision.reason}"
    if not decision.publish:
        registry.reject(model_id, decision.reason)
    elif deploy_mode == "direct":
        registry.submit_and_promote(model_id, decision.reason)
    else:
        registry.submit(model_id, decision.reason)
    return decision
