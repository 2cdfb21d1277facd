"""The evaluation gate: score the challenger against the champion, then submit or reject it.

The champion is the one the model registry (:mod:`training.registry`, the only owner of model states)
says it is. The evaluation set is cut into windows (:func:`training.evaluate.split_windows`: one per
file, calendar day or ISO week). The challenger, the champion and the ``recent - 1`` newest former
champions are scored on the same windows; the verdict (:func:`training.evaluate.decide`) refuses a
challenger that loses more than the tolerance on ANY window, to the champion or to the best recent
champion, naming the window. It is written where people look (the challenger's comment and
``gate_*`` metadata, a table on the gate's task) and goes to the registry: a passing challenger is
submitted (published, given a version, a candidate for the canary controller, or the champion when
there is none yet; in deploy mode ``direct`` it becomes the champion at once), a failing one is
rejected. The registry moves the tags (``champion``, ``candidate``, ``rejected``...).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from training.bundle import ModelBundle
from training.data import LABEL_COLUMN
from training.evaluate import (
    EvalWindow,
    GateDecision,
    GatePolicy,
    Metrics,
    Scores,
    compute_metrics,
    decide,
    score_windows,
    split_windows,
)
from training.registry import CHAMPION, ModelRegistry, RegistryState

CHAMPION_TAG = CHAMPION
ADOPTED = "adopted: the champion tagged before the model registry existed"


class GateError(RuntimeError):
    """The gate cannot decide (the champion's package cannot be scored): the challenger stays
    undecided, and the gate can run again."""


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


class Registry(Protocol):
    """What the gate needs of :class:`training.registry.ModelRegistry`."""

    project: str
    model_name: str

    def read(self) -> RegistryState: ...
    def submit(self, model_id: str, reason: str) -> RegistryState: ...
    def submit_and_promote(self, model_id: str, reason: str) -> RegistryState: ...
    def reject(self, model_id: str, reason: str) -> RegistryState: ...


class ModelStore(Protocol):
    """Where the gate gets model packages and writes its verdict (ClearML: :class:`ClearmlModels`)."""

    def bundle(self, model_id: str) -> ModelBundle: ...
    def record(self, model_id: str, decision: GateDecision, metadata: dict[str, str]) -> None: ...
    def legacy_champion(self, project: str, model_name: str, exclude: str) -> str | None: ...


class ClearmlModels:
    """The models of the ClearML server the SDK is configured for."""

    def bundle(self, model_id: str) -> ModelBundle:
        from clearml import Model

        return load_bundle(Model(model_id=model_id))

    def record(self, model_id: str, decision: GateDecision, metadata: dict[str, str]) -> None:
        from clearml import Model

        model = Model(model_id=model_id)
        for key, value in metadata.items():
            model.set_metadata(key, value, "float" if key.endswith(("accuracy", "brier", "ece")) else "str")
        model.comment = f"gate: {decision.reason}"

    def legacy_champion(self, project: str, model_name: str, exclude: str) -> str | None:
        found = find_champion(project, model_name, exclude=exclude)
        return str(found.id) if found is not None else None


def _float(value: float) -> str:
    return f"{value:.6f}" if math.isfinite(value) else "nan"


def gate_metadata(decision: GateDecision, window_kind: str) -> dict[str, str]:
    """The ``gate_*`` and ``eval_*`` metadata of the challenger (a model's metadata are strings)."""
    meta = {
        "gate_decided_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
        "gate_verdict": "published" if decision.publish else "rejected",
        "gate_reason": decision.reason,
        "eval_accuracy": _float(decision.challenger.accuracy),
        "eval_brier": _float(decision.challenger.brier),
        "eval_ece": _float(decision.challenger.ece),
        "eval_window": window_kind,
        "gate_windows": json.dumps([v.as_dict() for v in decision.windows], allow_nan=True),
    }
    if decision.champion is not None:
        meta["champion_eval_accuracy"] = _float(decision.champion.accuracy)
    if decision.best_recent_id is not None and decision.best_recent is not None:
        meta["best_recent_champion"] = decision.best_recent_id
        meta["best_recent_eval_accuracy"] = _float(decision.best_recent.accuracy)
    if decision.notes:
        meta["gate_notes"] = "; ".join(decision.notes)
    return meta


def windows_table(decision: GateDecision) -> pd.DataFrame:
    """One row per evaluation window: rows, the challenger's accuracy, Brier score and ECE, the
    champion's and the best recent champion's accuracy, and the verdict."""
    return pd.DataFrame(
        [
            {
                "window": v.window,
                "rows": v.rows,
                "accuracy": round(v.challenger.accuracy, 4),
                "brier": round(v.challenger.brier, 4),
                "ece": round(v.challenger.ece, 4),
                "champion": round(v.champion.accuracy, 4) if v.champion else None,
                "best recent champion": round(v.best_recent.accuracy, 4) if v.best_recent else None,
                "verdict": "ok" if v.passed else "; ".join(v.problems),
            }
            for v in decision.windows
        ]
    ).set_index("window")


def report_to_task(decision: GateDecision) -> None:
    """The windows table and the overall metrics on the running ClearML task (the pipeline's
    evaluate step), if there is one."""
    from clearml import Task

    task: Any = Task.current_task()
    if task is None:
        return
    logger = task.get_logger()
    logger.report_table("gate", "evaluation windows", iteration=0, table_plot=windows_table(decision))
    for key in ("accuracy", "brier", "ece"):
        logger.report_single_value(f"gate/{key}", getattr(decision.challenger, key))


def current_champion(registry: Registry, model_id: str, store: ModelStore | None = None) -> str | None:
    """The registry's champion; an empty registry first adopts a champion tagged by the old gate."""
    state = registry.read()
    if state.generation == 0:
        legacy = (store or ClearmlModels()).legacy_champion(registry.project, registry.model_name, model_id)
        if legacy is not None:
            state = registry.submit(legacy, ADOPTED)
    return state.champion if state.champion != model_id else None


def recent_champions(state: RegistryState, model_id: str, recent: int) -> list[str]:
    """The ``recent - 1`` newest former champions (the current one is compared anyway)."""
    return [m for m in state.former if m != model_id and m != state.champion][: max(0, recent - 1)]


def _scores(store: ModelStore, model_id: str, frame: pd.DataFrame, windows: list[EvalWindow]) -> Scores:
    proba = store.bundle(model_id).predict_proba(frame)
    return score_windows(model_id, frame[LABEL_COLUMN].to_numpy(), proba, windows)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def gate(
    model_id: str,
    eval_frame: pd.DataFrame,
    policy: GatePolicy,
    project: str,
    model_name: str,
    deploy_mode: str = "canary",
    *,
    registry: Registry | None = None,
    store: ModelStore | None = None,
    report: bool = True,
) -> GateDecision:
    """Score the challenger and the recent champions on the windows of ``eval_frame``, then submit
    or reject the challenger.

    ``deploy_mode`` "canary": a passing challenger waits as a candidate for the canary controller
    (or becomes the champion when there is none); "direct": it becomes the champion at once.
    A former champion whose package is missing or unreadable is skipped (the reason says so); a
    champion that cannot be scored raises :class:`GateError` before anything is decided."""
    if deploy_mode not in ("canary", "direct"):
        raise ValueError(f"deploy_mode {deploy_mode!r} must be canary or direct")
    registry = registry or ModelRegistry(project, model_name)
    store = store or ClearmlModels()
    frame = eval_frame.reset_index(drop=True)
    windows, notes = split_windows(frame, policy.window, policy.min_rows)
    challenger = _scores(store, model_id, frame, windows)
    champion_id = current_champion(registry, model_id, store)
    champion = None
    if champion_id is not None:
        try:
            champion = _scores(store, champion_id, frame, windows)
        except Exception as exc:
            raise GateError(
                f"the champion {champion_id} cannot be scored ({_why(exc)}): the challenger {model_id} "
                "is left undecided; fix the champion's package or roll it back, then run the gate again"
            ) from exc
    recent = []
    for former in recent_champions(registry.read(), model_id, policy.recent) if champion else []:
        try:
            recent.append(_scores(store, former, frame, windows))
        except Exception as exc:
            notes.append(f"former champion {former[:8]} skipped: its package cannot be scored ({_why(exc)})")
    decision = decide(challenger, champion, policy, recent, notes)
    store.record(model_id, decision, gate_metadata(decision, policy.window))
    if report:
        report_to_task(decision)
    if not decision.publish:
        registry.reject(model_id, decision.reason)
    elif deploy_mode == "direct":
        registry.submit_and_promote(model_id, decision.reason)
    else:
        registry.submit(model_id, decision.reason)
    return decision
