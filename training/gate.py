"""The evaluation gate in the model registry: champion lookup, verdict, publish or reject.

The champion is the newest published model of the project carrying the ``champion`` tag: the one
production serves. A challenger and the champion are scored on the same evaluation data; the
verdict (:func:`training.evaluate.decide`) is written where people look: a published challenger
takes the ``champion`` tag, a refused one is kept, tagged ``rejected``, with the reason in its
comment and metadata.
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

CHAMPION_TAG = "champion"
REJECTED_TAG = "rejected"
RETIRED_TAG = "former-champion"


def find_champion(project: str, model_name: str, exclude: str | None = None) -> Any | None:
    """The newest published ``champion`` model named ``model_name`` in ``project`` or any of its
    sub-projects, hidden ones included: pipeline steps register their models under
    ``<project>/.pipelines/<pipeline>``, where ``Model.query_models(project_name=...)`` does not look."""
    from clearml import Model
    from clearml.backend_api import Session
    from clearml.backend_api.session.client import APIClient

    session: Session = APIClient().session
    projects = session.send_request(
        "projects",
        "get_all",
        json={"name": f"^{re.escape(project)}(/|$)", "search_hidden": True, "only_fields": ["id"]},
    ).json()["data"]["projects"]
    if not projects:
        return None
    models = session.send_request(
        "models",
        "get_all",
        json={
            "project": [p["id"] for p in projects],
            "name": f"^{re.escape(model_name)}$",
            "tags": [CHAMPION_TAG],
            "system_tags": ["-archived"],
            "ready": True,
            "order_by": ["-created"],
            "page": 0,
            "page_size": 5,
            "only_fields": ["id"],
        },
    ).json()["data"]["models"]
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


def gate(
    model_id: str, eval_frame: pd.DataFrame, policy: GatePolicy, project: str, model_name: str
) -> GateDecision:
    """Score the challenger and the champion on ``eval_frame``, then publish or reject the challenger."""
    from clearml import Model

    challenger = Model(model_id=model_id)
    challenger_metrics = score(load_bundle(challenger), eval_frame)
    champion = find_champion(project, model_name, exclude=model_id)
    champion_metrics = score(load_bundle(champion), eval_frame) if champion is not None else None
    decision = decide(challenger_metrics, champion_metrics, policy)
    _set_metadata(challenger, decision)
    challenger.comment = f"gate: {decision.reason}"
    if decision.publish:
        challenger.publish()
        challenger.tags = sorted({*challenger.tags, CHAMPION_TAG} - {REJECTED_TAG})
        if champion is not None:
            # the SDK ignores an empty tag list (``tags or self.data.tags``), so the former champion
            # always gets a tag of its own; it stays published, for the record and a rollback
            champion.tags = sorted({*champion.tags, RETIRED_TAG} - {CHAMPION_TAG})
    else:
        challenger.tags = sorted({*challenger.tags, REJECTED_TAG})
    return decision
