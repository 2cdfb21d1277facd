"""The loop's timeline, read back from ClearML: per dataset version, when it was finalized, when its
retrain was launched, what the gate decided about the model trained on it, and (from the model
registry's event log) when it went live as a canary and was promoted or rolled back.

Everything comes from the server (the dataset tasks, the runs holding the scheduler's idempotency key
``retrain-of:<version>``, the models tagged ``dataset:<version>`` with the gate's metadata), so the
answer to "which data was this model trained on, and what happened to it" is the same for every
client, at any time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.table import Table

from occupancy_mlops.clearml_api import LABELED_AT, ClearmlApi
from services.scheduler.reconcile import idempotency_key, parse_time
from training.registry import CHAMPION, ROLLED_BACK, ModelRegistry

EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class VersionTimeline:
    dataset_id: str
    dataset_name: str
    tags: list[str]
    finalized: datetime | None
    run_id: str | None = None
    run_status: str | None = None
    launched: datetime | None = None
    """When the scheduler created the retraining run (it enqueues it in the same pass)."""
    started: datetime | None = None
    """When an agent started the retraining run."""
    model_id: str | None = None
    verdict: str | None = None
    """``published`` or ``rejected`` (the gate's), None while no model was gated."""
    reason: str = ""
    state: str | None = None
    """The model registry's state of the model now (``champion``, ``candidate``, ``canary``,
    ``former-champion``, ``rejected``, ``rolled-back``), as projected onto the model's metadata."""
    version: str | None = None
    """The registry's version number of a published model."""
    accuracy: float | None = None
    champion_accuracy: float | None = None
    decided: datetime | None = None
    canary_live: datetime | None = None
    """When the model started serving a share of the traffic as the canary."""
    canary_decided: datetime | None = None
    """When the canary was promoted to champion or rolled back."""
    labeled: datetime | None = None
    """When the round's newest labels were written (the version's ``labeled_at`` user property, set
    by ``label sync`` and ``label watch``)."""

    def seconds_after_finalize(self, moment: datetime | None) -> float | None:
        if moment is None or self.finalized is None:
            return None
        return (moment - self.finalized).total_seconds()


def _meta(model: dict[str, Any], key: str) -> str | None:
    item = (model.get("metadata") or {}).get(key)
    return None if item is None else str(item.get("value"))


def _labeled_at(doc: dict[str, Any]) -> datetime | None:
    item = ((doc.get("hyperparams") or {}).get("properties") or {}).get(LABELED_AT) or {}
    return parse_time(item.get("value")) if isinstance(item, dict) else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def read_timeline(
    api: ClearmlApi, project: str, dataset: str | None = None, last: int = 20, ids: list[str] | None = None
) -> list[VersionTimeline]:
    """The newest ``last`` finalized versions of the datasets of ``project`` (or exactly ``ids``)."""
    name = re.escape(dataset) + "$" if dataset else ""
    projects = api.call(
        "projects.get_all",
        name=f"^{re.escape(project)}/\\.datasets/{name}",
        search_hidden=True,
        only_fields=["id"],
    )["projects"]
    if not projects:
        return []
    query: dict[str, Any] = {
        "project": [p["id"] for p in projects],
        "system_tags": ["dataset"],
        "status": ["completed", "published"],
        "search_hidden": True,
        "order_by": ["-created"],
        "page": 0,
        "page_size": last,
        "only_fields": ["id", "name", "tags", "completed", "last_update", "hyperparams"],
    }
    if ids is not None:
        query["id"] = ids
    docs = api.call("tasks.get_all", **query)["tasks"]
    rows = {
        d["id"]: VersionTimeline(
            d["id"],
            d.get("name", ""),
            list(d.get("tags") or []),
            parse_time(d.get("completed")) or parse_time(d.get("last_update")),
            labeled=_labeled_at(d),
        )
        for d in docs
    }
    if not rows:
        return []
    keys = {idempotency_key(i): i for i in rows}
    runs = api.call(
        "tasks.get_all",
        tags=list(keys),
        search_hidden=True,
        only_fields=["id", "status", "created", "started", "tags"],
    )["tasks"]
    for run in sorted(runs, key=lambda r: str(r.get("created")), reverse=True):
        for tag in run.get("tags") or []:
            if tag in keys:
                row = rows[keys[tag]]
                row.run_id, row.run_status = run["id"], str(run.get("status"))
                row.launched = parse_time(run.get("created"))
                row.started = parse_time(run.get("started"))
    models = api.call(
        "models.get_all",
        tags=[f"dataset:{i}" for i in rows],
        order_by=["created"],
        only_fields=["id", "ready", "tags", "metadata", "created"],
    )["models"]
    for model in models:  # oldest first: the newest model of a version wins
        dataset_id = _meta(model, "dataset_id")
        target = rows.get(dataset_id or "")
        if target is None:
            continue
        target.model_id = model["id"]
        target.verdict = _meta(model, "gate_verdict")
        target.reason = _meta(model, "gate_reason") or ""
        target.state = _meta(model, "registry_state")
        target.version = _meta(model, "registry_version")
        target.accuracy = _float(_meta(model, "eval_accuracy"))
        target.champion_accuracy = _float(_meta(model, "champion_eval_accuracy"))
        target.decided = parse_time(_meta(model, "gate_decided_at"))
    return sorted(rows.values(), key=lambda r: (r.finalized or EARLIEST, r.dataset_id))


def add_registry_times(rows: list[VersionTimeline], registry: ModelRegistry, limit: int = 200) -> None:
    """Fill ``canary_live`` and ``canary_decided`` of ``rows`` from the model registry's event log."""
    history = list(reversed(registry.history(limit)))  # oldest first
    by_model = {r.model_id: r for r in rows if r.model_id}
    for state, _reason in history:
        if state.canary is not None and state.canary.model_id in by_model:
            row = by_model[state.canary.model_id]
            if row.canary_live is None:
                row.canary_live = datetime.fromtimestamp(state.canary.started_at, UTC)
        for model_id, row in by_model.items():
            decided = state.states.get(model_id) in (CHAMPION, ROLLED_BACK)
            if decided and row.canary_live is not None and row.canary_decided is None:
                row.canary_decided = datetime.fromtimestamp(state.updated_at, UTC)


def _after(row: VersionTimeline, moment: datetime | None) -> str:
    """Seconds after the finalize: one decimal under 100 s, whole seconds above."""
    seconds = row.seconds_after_finalize(moment)
    if seconds is None:
        return "-"
    return f"{seconds:+.1f}" if abs(seconds) < 100 else f"{seconds:+.0f}"


VERDICT_COLOURS = {"champion": "green", "rolled-back": "yellow", "rejected": "red", "published": "green"}


def _verdict(r: VersionTimeline) -> str:
    if r.verdict is None:
        return "[dim]pending[/dim]" if r.run_id else "[dim]not launched[/dim]"
    if r.verdict == "published" and r.state:  # what the registry made of it since
        text = f"{r.state}{f' v{r.version}' if r.version else ''}"
    else:
        text = r.verdict
    colour = VERDICT_COLOURS.get(r.state or r.verdict, "cyan")
    return f"[{colour}]{text}[/{colour}]"


TIME_COLUMNS = ("labeled", "launched", "started", "gated", "canary", "decided")
"""Seconds relative to the finalize: labeled (the round's newest labels written), launched (the
scheduler created and enqueued the retraining run), started (an agent began it), gated (the gate's
verdict), canary (the model began serving a share of the traffic), decided (promoted or rolled
back)."""


def timeline_table(
    rows: list[VersionTimeline], title: str = "The loop, per dataset version", wide: bool = False
) -> Table:
    """Per dataset version: the finalize (clock time) and each later stage in seconds after it (see
    :data:`TIME_COLUMNS`; a stage no version reached is left out), then the model's verdict or
    registry state and its accuracy on the evaluation set. Fits 80 columns; ``wide`` adds the tags,
    the finalize's clock time, the run's status, the model id and the champion's accuracy at the
    time of the gate."""
    table = Table(
        title=title,
        title_justify="left",
        caption="times: seconds after the version was finalized",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),
    )
    moments = {
        "labeled": lambda r: r.labeled,
        "launched": lambda r: r.launched,
        "started": lambda r: r.started,
        "gated": lambda r: r.decided,
        "canary": lambda r: r.canary_live,
        "decided": lambda r: r.canary_decided,
    }
    shown = [c for c in TIME_COLUMNS if any(moments[c](r) for r in rows)]
    show_dataset = len({r.dataset_name for r in rows}) > 1
    table.add_column("version", no_wrap=True)
    if show_dataset:
        table.add_column("dataset", no_wrap=True)
    if wide:
        table.add_column("tags", min_width=10)
        table.add_column("finalized", no_wrap=True)
    for column in shown:
        table.add_column(column, justify="right", no_wrap=True)
    if wide:
        table.add_column("run", no_wrap=True)
        table.add_column("model", no_wrap=True)
    table.add_column("verdict", no_wrap=wide, min_width=15)
    table.add_column("accuracy" + (" (champion)" if wide else ""), justify="right", no_wrap=not wide)
    for r in rows:
        accuracy = "-" if r.accuracy is None else f"{r.accuracy:.2%}"
        if wide and r.champion_accuracy is not None:
            accuracy += f" ({r.champion_accuracy:.2%})"
        cells = [r.dataset_id[:8], *([r.dataset_name] if show_dataset else [])]
        if wide:
            cells.append(", ".join(sorted(r.tags)))
            cells.append(r.finalized.strftime("%H:%M:%S") if r.finalized else "-")
        cells += [_after(r, moments[c](r)) for c in shown]
        if wide:
            cells += [r.run_status or "-", (r.model_id or "-")[:8]]
        cells += [_verdict(r), accuracy]
        table.add_row(*cells)
    return table
