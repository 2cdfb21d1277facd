"""events.*: logs, scalars, plots and debug images reported by tasks.

Scalars also update the task's ``last_metrics`` (keyed by the md5 of metric and variant names, as
the real server does) and ``last_iteration``; that is what the SDK reads back.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from .. import errors
from ..registry import Context, endpoint, require
from ..store import Doc
from .tasks import save as save_task

SCALAR = "training_stats_scalar"
KNOWN_TYPES = {SCALAR, "log", "plot", "training_debug_image", "training_stats_vector", "task_hyperparams"}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


@endpoint("events.add_batch")
def add_batch(ctx: Context, body: Doc) -> Doc:
    events = body.get("requests")
    if not isinstance(events, list):
        raise errors.validation("events.add_batch expects JSON lines, one event per line")
    if not events:
        raise errors.ApiError(400, 17, "batch request contains no items")
    touched: dict[str, Doc] = {}
    added = 0
    errors_info: dict[str, int] = defaultdict(int)
    for event in events:
        if not isinstance(event, dict) or not event.get("task") or event.get("type") not in KNOWN_TYPES:
            errors_info["invalid event (needs task and a known type)"] += 1
            continue
        task_id = event["task"]
        task = touched.get(task_id) or ctx.tx.mutable("task", task_id)
        if task is None:
            errors_info[f"invalid task id {task_id}"] += 1
            continue
        touched[task_id] = task
        ctx.tx.add_event(task_id, event["type"], event)
        added += 1
        iteration = event.get("iter")
        if isinstance(iteration, int):
            task["last_iteration"] = max(task.get("last_iteration") or 0, iteration)
        if event["type"] == SCALAR and isinstance(event.get("value"), int | float):
            _update_last_metrics(task, event)
    for task in touched.values():
        save_task(ctx.tx, task, changed=False)
    return {"added": added, "errors": sum(errors_info.values()), "errors_info": dict(errors_info)}


def _update_last_metrics(task: Doc, event: Doc) -> None:
    metric, variant = str(event.get("metric", "")), str(event.get("variant", ""))
    value = float(event["value"])
    metrics = task.setdefault("last_metrics", {}).setdefault(_md5(metric), {})
    entry = metrics.get(_md5(variant)) or {"metric": metric, "variant": variant}
    entry["value"] = value
    entry["min_value"] = min(value, entry.get("min_value", value))
    entry["max_value"] = max(value, entry.get("max_value", value))
    entry["count"] = entry.get("count", 0) + 1
    entry["x_axis_label"] = event.get("x_axis_label")
    metrics[_md5(variant)] = entry


def _task_events(ctx: Context, body: Doc, types: list[str]) -> list[Doc]:
    require(body, "task")
    if ctx.tx.get("task", body["task"]) is None:
        raise errors.invalid_task_id(body["task"])
    return ctx.tx.events(body["task"], types)


@endpoint("events.get_task_log")
def get_task_log(ctx: Context, body: Doc) -> Doc:
    logs = _task_events(ctx, body, ["log"])
    size = max(1, body.get("batch_size") or 500)
    chosen = logs[-size:] if body.get("navigate_earlier", True) else logs[:size]
    return {
        "events": list(reversed(chosen)) if body.get("navigate_earlier", True) else chosen,
        "returned": len(chosen),
        "total": len(logs),
    }


@endpoint("events.get_task_events")
def get_task_events(ctx: Context, body: Doc) -> Doc:
    types = body.get("event_type")
    events = _task_events(ctx, body, [types] if isinstance(types, str) else sorted(KNOWN_TYPES))
    return {"events": events, "returned": len(events), "total": len(events), "scroll_id": None}


@endpoint("events.get_task_plots", "events.get_task_latest_scalar_values")
def get_task_plots(ctx: Context, body: Doc) -> Doc:
    plots = _task_events(ctx, body, ["plot"])
    return {"plots": plots, "returned": len(plots), "total": len(plots), "scroll_id": None}


@endpoint("events.get_multi_task_plots")
def get_multi_task_plots(ctx: Context, body: Doc) -> Doc:
    plots: list[Doc] = []
    for task_id in body.get("tasks") or []:
        plots.extend(_task_events(ctx, {"task": task_id}, ["plot"]))
    return {"plots": plots, "returned": len(plots), "total": len(plots), "scroll_id": None}


@endpoint("events.debug_images", "events.get_debug_image_sample")
def debug_images(ctx: Context, body: Doc) -> Doc:
    task_ids = [m.get("task") for m in body.get("metrics") or []] or [body.get("task")]
    images: list[Doc] = []
    for task_id in task_ids:
        if task_id:
            images.extend(_task_events(ctx, {"task": task_id}, ["training_debug_image"]))
    return {"metrics": [{"task": task_ids[0], "iterations": [{"events": images}]}], "events": images}


@endpoint("events.scalar_metrics_iter_histogram")
def scalar_metrics_iter_histogram(ctx: Context, body: Doc) -> Doc:
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for event in _task_events(ctx, body, [SCALAR]):
        metric, variant = event.get("metric", ""), event.get("variant", "")
        series = result.setdefault(metric, {}).setdefault(variant, {"name": variant, "x": [], "y": []})
        series["x"].append(event.get("iter", 0))
        series["y"].append(event.get("value"))
    return result


@endpoint("events.get_scalar_metrics_and_variants")
def get_scalar_metrics_and_variants(ctx: Context, body: Doc) -> Doc:
    metrics: dict[str, dict[str, Doc]] = {}
    for event in _task_events(ctx, body, [SCALAR]):
        metrics.setdefault(event.get("metric", ""), {})[event.get("variant", "")] = {}
    return {"metrics": metrics}


@endpoint("events.delete_for_task")
def delete_for_task(ctx: Context, body: Doc) -> Doc:
    return {"deleted": 0}
