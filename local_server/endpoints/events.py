"""events.*: logs, scalars, plots and debug images reported by tasks (and models).

As in the real server (``EventBLL``): an event is validated one by one (a batch where none is valid
is refused with 400/131 and the reasons), a non-log event replaces an earlier one with the same task,
iteration, metric, variant (and key), events with ``model_event`` belong to a model, and scalars
update ``last_metrics`` (keyed by the md5 of the metric and variant names) with the last, min, max,
first and mean values and their iterations, and ``last_iteration``. Reading follows the real
endpoints: logs by timestamp pages, events and raw scalars by iteration with a scroll id, the latest
iterations of plots and debug images per metric (debug images whose file was overwritten by a later
one are left out), histograms sampled to ``samples`` points, and the per-variant sample
navigation of the UI. The navigation states live in memory for an hour (the real server keeps
them in Redis).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .. import errors
from ..registry import Context, endpoint, require
from ..store import Doc, Transaction
from .tasks import save as save_task

SCALAR, VECTOR, IMAGE, PLOT, LOG = (
    "training_stats_scalar",
    "training_stats_vector",
    "training_debug_image",
    "plot",
    "log",
)
KNOWN_TYPES = (SCALAR, VECTOR, IMAGE, PLOT, LOG)
LOCKED = ("publishing", "published")
MAX_LONG, MIN_LONG = 2**63 - 1, -(2**63)
SINGLE_VALUE_ITERATION = -(2**31)  # scalars reported once (Logger.report_single_value)
ID_FIELDS = ("task", "iter", "metric", "variant", "key")
STATE_TTL_S = 3600.0


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------- reading helpers


def _entity(ctx: Context, entity_id: object, model_events: bool = False) -> Doc:
    kind = "model" if model_events else "task"
    doc = ctx.tx.get(kind, entity_id) if isinstance(entity_id, str) else None
    if doc is None:
        raise errors.invalid_model_id(entity_id) if model_events else errors.invalid_task_id(entity_id)
    return doc


def _stored(tx: Transaction, entity_id: str, types: Iterable[str] | None) -> list[Doc]:
    """The events as the real server has them: a later non-log event with the same id (task,
    iteration, metric, variant, key) replaces the earlier one."""
    events = tx.events(entity_id, None if types is None else list(types))
    latest: dict[tuple[Any, ...], int] = {}
    for i, e in enumerate(events):
        if e.get("type") != LOG:
            latest[(e.get("type"), *(str(e.get(f)) for f in ID_FIELDS if f in e))] = i
    keep = set(latest.values())
    return [e for i, e in enumerate(events) if e.get("type") == LOG or i in keep]


def _metric_filter(metrics: Any) -> Callable[[Doc], bool]:
    """``[{metric, variants}]``: the events of those metrics (all their variants when none given)."""
    if not metrics:
        return lambda e: True
    wanted: dict[str, set[str]] = {}
    for m in metrics:
        if isinstance(m, dict) and m.get("metric") is not None:
            wanted.setdefault(m["metric"], set()).update(m.get("variants") or [])
    return lambda e: (
        e.get("metric") in wanted and (not wanted[e["metric"]] or e.get("variant") in wanted[e["metric"]])
    )


class _States:
    """Navigation states (the real server keeps them in Redis for an hour)."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[float, Doc]] = {}
        self._lock = threading.Lock()

    def get(self, state_id: object) -> Doc | None:
        with self._lock:
            now = time.monotonic()
            for key in [k for k, (t, _) in self._states.items() if now - t > STATE_TTL_S]:
                del self._states[key]
            found = self._states.get(state_id) if isinstance(state_id, str) else None
            return json.loads(json.dumps(found[1])) if found else None

    def put(self, state: Doc) -> str:
        with self._lock:
            state.setdefault("id", uuid.uuid4().hex)
            self._states[state["id"]] = (time.monotonic(), json.loads(json.dumps(state)))
            return str(state["id"])


_STATES = _States()


def _invalid_scroll(scroll_id: object, msg: str = "Invalid scroll id") -> errors.ApiError:
    return errors.ApiError(400, 1104, msg, scroll_id=scroll_id)


def _encode_scroll(data: Doc) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _decode_scroll(scroll_id: str) -> Doc:
    try:
        data = json.loads(base64.urlsafe_b64decode(scroll_id.encode()))
    except (ValueError, TypeError) as exc:
        raise _invalid_scroll(scroll_id) from exc
    if not isinstance(data, dict):
        raise _invalid_scroll(scroll_id)
    return data


# ---------------------------------------------------------------------------- adding events


def _add_events(ctx: Context, events: list[Any]) -> Doc:
    errors_info: dict[str, int] = defaultdict(int)
    prepared: list[tuple[Doc, bool, bool]] = []  # (event, model_event, allow_locked)
    for raw in events:
        if not isinstance(raw, dict):
            errors_info["Event must be an object"] += 1
            continue
        event = dict(raw)
        model_event = bool(event.get("model_event", False))
        if model_event and event.get("model") is not None:
            event["task"] = event.pop("model")
        event["model_event"] = model_event
        prepared.append((event, model_event, bool(event.pop("allow_locked", False))))

    touched: dict[tuple[str, str], Doc] = {}
    iteration: dict[tuple[str, str], int] = {}
    scalars: dict[tuple[str, str], dict[tuple[str, str], Doc]] = defaultdict(dict)
    added = 0
    for event, model_event, allow_locked in prepared:
        x_axis_label = event.pop("x_axis_label", None)
        etype = event.get("type")
        if etype is None:
            errors_info["Event must have a 'type' field"] += 1
            continue
        etype = str(etype).replace(" ", "_")
        if etype not in KNOWN_TYPES:
            errors_info[f"Invalid event type {etype}"] += 1
            continue
        if model_event and etype == LOG:
            errors_info["Task log events are not supported for models"] += 1
            continue
        entity_id = event.get("task")
        if entity_id is None:
            errors_info["Event must have a 'task' field"] += 1
            continue
        kind = "model" if model_event else "task"
        key = (kind, str(entity_id))
        doc = touched.get(key) or (ctx.tx.mutable(kind, entity_id) if isinstance(entity_id, str) else None)
        locked = doc is not None and (doc.get("ready") if model_event else doc.get("status") in LOCKED)
        if doc is None or (locked and not allow_locked):
            errors_info[f"Invalid {kind} id {entity_id}"] += 1
            continue
        touched[key] = doc
        event["type"] = etype
        if "ts" in event:
            event["timestamp"] = event.pop("ts")
        event.setdefault("timestamp", _now_ms())
        event.setdefault("worker", None)
        it = event.get("iter")
        if it is not None:
            it = int(it)
            if not MIN_LONG <= it <= MAX_LONG:
                errors_info[f"Iteration number should not exceed {MAX_LONG}"] += 1
                continue
            event["iter"] = it
        if "values" in event:
            event["value"] = event.pop("values")
        event["metric"] = event.get("metric") or ""
        event["variant"] = event.get("variant") or ""
        if etype == PLOT:
            plot_str = event.get("plot_str") or ""
            event["plot_len"] = len(plot_str)
        ctx.tx.add_event(str(entity_id), etype, event)
        added += 1
        if it is not None:
            iteration[key] = max(it, iteration.get(key, it))
        if etype == SCALAR and isinstance(event.get("value"), int | float):
            _batch_scalar(scalars[key], event, x_axis_label)
    if not added:
        detail = ", ".join(f"{k}: {v}" for k, v in errors_info.items())
        raise errors.ApiError(400, 131, f"events not added: no valid event in the requests ({detail})")
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    for key, doc in touched.items():
        if key in iteration:
            doc["last_iteration"] = max(doc.get("last_iteration") or 0, iteration[key])
        if scalars.get(key):
            _merge_last_metrics(doc, scalars[key])
        if key[0] == "task":
            save_task(ctx.tx, doc, changed=False)
        else:
            doc["last_update"] = now
            ctx.tx.put("model", doc)
    return {"added": added, "errors": sum(errors_info.values()), "errors_info": dict(errors_info)}


def _batch_scalar(batch: dict[tuple[str, str], Doc], event: Doc, x_axis_label: Any) -> None:
    """The summary of one batch's scalars per metric and variant (``EventBLL``'s per-call step)."""
    value = float(event["value"])
    it, ts = event.get("iter", 0) or 0, event.get("timestamp", 0) or 0
    s = batch.setdefault((event["metric"], event["variant"]), {"count": 0, "total": 0.0})
    s["count"] += 1
    s["total"] += value
    if (it, ts) >= (s.get("iter", it), s.get("timestamp", ts)):
        s.update(value=value, iter=it, timestamp=ts)
        if x_axis_label is not None:
            s["x_axis_label"] = x_axis_label
    if s.get("first_iter") is None or it < s["first_iter"]:
        s.update(first_value=value, first_iter=it)
    if s.get("min_value") is None or value < s["min_value"]:
        s.update(min_value=value, min_iter=it)
    if s.get("max_value") is None or value > s["max_value"]:
        s.update(max_value=value, max_iter=it)


def _merge_last_metrics(doc: Doc, batch: dict[tuple[str, str], Doc]) -> None:
    """Merge a batch summary into ``last_metrics`` the way the real server's update does: the
    batch's latest value wins, min/max keep their iteration, the first value is set once, the mean
    is rounded to 2 decimals."""
    last = doc.setdefault("last_metrics", {})
    # new entries in the order of their keys, as MongoDB applies a $set of several fields
    for (metric, variant), s in sorted(batch.items(), key=lambda kv: (_md5(kv[0][0]), _md5(kv[0][1]))):
        entry = last.setdefault(_md5(metric), {}).setdefault(_md5(variant), {})
        entry.update(metric=metric, variant=variant, value=s["value"])
        if "x_axis_label" in s:
            entry["x_axis_label"] = s["x_axis_label"]
        if entry.get("min_value") is None or s["min_value"] < entry["min_value"]:
            entry.update(min_value=s["min_value"], min_value_iteration=s["min_iter"])
        if entry.get("max_value") is None or s["max_value"] > entry["max_value"]:
            entry.update(max_value=s["max_value"], max_value_iteration=s["max_iter"])
        if entry.get("first_value") is None:
            entry.update(first_value=s["first_value"], first_value_iteration=s["first_iter"])
        count = entry.get("count") or 0
        mean = entry.get("mean_value") or 0
        entry["mean_value"] = round((mean * count + s["total"]) / (count + s["count"]), 2)
        entry["count"] = count + s["count"]


@endpoint("events.add_batch")
def add_batch(ctx: Context, body: Doc) -> Doc:
    events = body.get("requests")
    if not isinstance(events, list):
        raise errors.validation("events.add_batch expects JSON lines, one event per line")
    if not events:
        raise errors.ApiError(400, 17, "batch request contains no items")
    return _add_events(ctx, events)


@endpoint("events.add")
def add(ctx: Context, body: Doc) -> Doc:
    return _add_events(ctx, [body])


# ---------------------------------------------------------------------------- logs and raw events


@endpoint("events.get_task_log")
def get_task_log(ctx: Context, body: Doc) -> Doc:
    """Pages of ``batch_size`` log lines by timestamp, from the latest (``navigate_earlier``, the
    default) or from ``from_timestamp`` on; every line with the page's last timestamp comes along.
    ``order`` sorts the page."""
    _entity(ctx, body.get("task"))
    logs = [e for e in _stored(ctx.tx, body["task"], [LOG]) if _metric_filter(body.get("metrics"))(e)]
    earlier = body.get("navigate_earlier", True) is not False
    page, total = _page_by(
        logs, "timestamp", body.get("batch_size") or 5000, earlier, body.get("from_timestamp")
    )
    order = body.get("order")
    if order and ((earlier and order == "asc") or (not earlier and order == "desc")):
        page.reverse()
    return {"events": page, "returned": len(page), "total": total}


def _page_by(events: list[Doc], field: str, size: int, earlier: bool, after: Any) -> tuple[list[Doc], int]:
    """``EventsIterator._get_events``: sorted by ``field``, the ``size`` first after ``after``
    (a falsy value starts at the beginning), plus the rest of the events with the last value."""
    ordered = sorted(events, key=lambda e: e.get(field) or 0, reverse=earlier)
    if after:
        ordered = [
            e for e in ordered if ((e.get(field) or 0) < after if earlier else (e.get(field) or 0) > after)
        ]
    page = ordered[:size]
    if page:
        last = page[-1].get(field) or 0
        page += [e for e in ordered[size:] if (e.get(field) or 0) == last]
    return page, len(events)


@endpoint("events.get_task_events")
def get_task_events(ctx: Context, body: Doc) -> Doc:
    """Events of one type (or all, ``*``) by iteration, ``asc`` by default, ``batch_size`` per call
    and a scroll id to go on."""
    request = body
    total = None
    after: Any = None
    if body.get("scroll_id"):
        scroll = _decode_scroll(body["scroll_id"])
        if scroll.get("from") is None:
            return {"returned": 0, "total": scroll.get("total"), "scroll_id": body["scroll_id"], "events": []}
        after, total = scroll["from"], scroll.get("total")
        request = {
            **scroll.get("request", {}),
            "batch_size": body.get("batch_size") or scroll["request"].get("batch_size"),
        }
        request["task"] = body.get("task", request.get("task"))
    model_events = bool(request.get("model_events"))
    _entity(ctx, request.get("task"), model_events)
    etype = request.get("event_type") or "*"
    events = _stored(ctx.tx, request["task"], None if etype == "*" else [etype])
    events = [e for e in events if _metric_filter(request.get("metrics"))(e)]
    if request.get("count_total", True) and total is None:
        total = len(events)
    earlier = request.get("order") == "desc"
    page, _ = _page_by(events, "iter", min(int(request.get("batch_size") or 500), 10_000), earlier, after)
    scroll = {"from": page[-1].get("iter") if page else None, "total": total, "request": request}
    return {"returned": len(page), "total": total, "scroll_id": _encode_scroll(scroll), "events": page}


@endpoint("events.scalar_metrics_iter_raw")
def scalar_metrics_iter_raw(ctx: Context, body: Doc) -> Doc:
    """The raw values of one metric (its ``variants``, or all), by ``key`` (``iter`` by default) in
    ascending order, ``batch_size`` (10,000 by default) per call with a scroll id to go on:
    ``variants: {name: {"y": [...], key: [...]}}``."""
    request = body
    total = None
    after: Any = None
    if body.get("scroll_id"):
        scroll = _decode_scroll(body["scroll_id"])
        if scroll.get("from") is None:
            return {
                "returned": 0,
                "total": scroll.get("total"),
                "scroll_id": body["scroll_id"],
                "variants": {},
            }
        after, total = scroll["from"], scroll.get("total")
        request = {**scroll.get("request", {})}
        request["batch_size"] = body.get("batch_size") or request.get("batch_size")
    else:
        require(body, "task", "metric")
        request = {**body, "batch_size": body.get("batch_size") or 10_000}
    if isinstance(request.get("batch_size"), int) and request["batch_size"] < 0:
        raise errors.validation("batch_size should be non negative number")
    model_events = bool(request.get("model_events"))
    _entity(ctx, request.get("task"), model_events)
    key = request.get("key") or "iter"
    field = "iter" if key == "iter" else "timestamp"
    events = [e for e in _stored(ctx.tx, request["task"], [SCALAR]) if _metric_filter([request["metric"]])(e)]
    if request.get("count_total") and total is None:
        total = len(events)
    page, _ = _page_by(events, field, min(int(request["batch_size"]), 200_000), False, after)
    variants: dict[str, Doc] = {}
    for e in page:
        v = variants.setdefault(e.get("variant", ""), {"y": [], key: []})
        v["y"].append(e.get("value"))
        v[key].append(e.get(field))
    scroll = {"from": page[-1].get(field) if page else None, "total": total, "request": request}
    return {"returned": len(page), "total": total, "scroll_id": _encode_scroll(scroll), "variants": variants}


# ---------------------------------------------------------------------------- scalars


def _histogram(events: list[Doc], samples: int, key: str) -> dict[str, dict[str, Doc]]:
    """``EventMetrics.get_scalar_metrics_average_per_iter``: per metric and variant, the mean value
    in buckets sized so that there are at most ``samples`` of them (single values left out)."""
    field = "iter" if key == "iter" else "timestamp"
    per_variant: dict[tuple[str, str], list[Doc]] = defaultdict(list)
    for e in events:
        if (e.get("iter") or 0) > SINGLE_VALUE_ITERATION and isinstance(e.get("value"), int | float):
            per_variant[(e.get("metric", ""), e.get("variant", ""))].append(e)
    result: dict[str, dict[str, Doc]] = {}
    for (metric, variant), items in sorted(per_variant.items()):
        xs = [int(e.get(field) or 0) for e in items]
        interval = 1
        if len(items) >= samples:
            interval = max(1, math.ceil((max(xs) - min(xs) + 1) / samples))
        buckets: dict[int, list[float]] = defaultdict(list)
        for x, e in zip(xs, items, strict=True):
            buckets[x // interval * interval].append(float(e["value"]))
        keys = sorted(buckets)
        x_values: list[Any] = keys
        if key == "iso_time":
            x_values = [datetime.fromtimestamp(k / 1000, UTC).isoformat() for k in keys]
        result.setdefault(metric, {})[variant] = {
            "name": variant,
            "x": x_values,
            "y": [sum(buckets[k]) / len(buckets[k]) for k in keys],
        }
    return result


def _with_axis_labels(doc: Doc, data: dict[str, dict[str, Doc]]) -> dict[str, dict[str, Doc]]:
    for metric_data in (doc.get("last_metrics") or {}).values():
        for entry in metric_data.values():
            variant = data.get(entry.get("metric"), {}).get(entry.get("variant"))
            if variant is not None and entry.get("x_axis_label") is not None:
                variant["x_axis_label"] = entry["x_axis_label"]
    return data


def _samples(body: Doc) -> int:
    samples = body.get("samples")
    if samples is None:  # the SDK's optimizer sends null
        samples = 2000
    if not isinstance(samples, int) or not 1 <= samples <= 6000:
        raise errors.validation("samples must be between 1 and 6000", samples=samples)
    return samples


@endpoint("events.scalar_metrics_iter_histogram")
def scalar_metrics_iter_histogram(ctx: Context, body: Doc) -> Doc:
    doc = _entity(ctx, body.get("task"), bool(body.get("model_events")))
    events = [e for e in _stored(ctx.tx, body["task"], [SCALAR]) if _metric_filter(body.get("metrics"))(e)]
    return _with_axis_labels(doc, _histogram(events, _samples(body), body.get("key") or "iter"))


def _tasks_of(ctx: Context, ids: Any, model_events: bool) -> list[Doc]:
    ids = [s.strip() for s in ids.split(",")] if isinstance(ids, str) else list(ids or [])
    if not ids:
        raise errors.validation("tasks must not be empty")
    return [_entity(ctx, i, model_events) for i in dict.fromkeys(ids)]


@endpoint("events.multi_task_scalar_metrics_iter_histogram")
def multi_task_scalar_metrics_iter_histogram(ctx: Context, body: Doc) -> Doc:
    model_events = bool(body.get("model_events"))
    result: dict[str, dict[str, dict[str, Doc]]] = defaultdict(lambda: defaultdict(dict))
    for doc in _tasks_of(ctx, body.get("tasks"), model_events):
        events = [e for e in _stored(ctx.tx, doc["id"], [SCALAR]) if _metric_filter(body.get("metrics"))(e)]
        data = _with_axis_labels(doc, _histogram(events, _samples(body), body.get("key") or "iter"))
        for metric, variants in data.items():
            for variant, series in variants.items():
                result[metric][variant][doc["id"]] = {**series, "name": doc.get("name")}
    return {"metrics": result}


@endpoint("events.get_task_single_value_metrics")
def get_task_single_value_metrics(ctx: Context, body: Doc) -> Doc:
    tasks = []
    for doc in _tasks_of(ctx, body.get("tasks"), bool(body.get("model_events"))):
        values = [
            {f: e.get(f) for f in ("metric", "variant", "value", "timestamp")}
            for e in _stored(ctx.tx, doc["id"], [SCALAR])
            if e.get("iter") == SINGLE_VALUE_ITERATION and _metric_filter(body.get("metrics"))(e)
        ]
        if values:
            tasks.append({"task": doc["id"], "task_name": doc.get("name"), "values": values})
    return {"tasks": tasks}


@endpoint("events.get_scalar_metrics_and_variants", "events.get_vector_metrics_and_variants")
def get_metrics_and_variants(ctx: Context, body: Doc) -> Doc:
    etype = VECTOR if "vector" in ctx.endpoint else SCALAR
    _entity(ctx, body.get("task"), bool(body.get("model_events")))
    metrics: dict[str, set[str]] = defaultdict(set)
    for e in _stored(ctx.tx, body["task"], [etype]):
        metrics[e.get("metric", "")].add(e.get("variant", ""))
    return {"metrics": {m: sorted(v) for m, v in sorted(metrics.items())}}


@endpoint("events.vector_metrics_iter_histogram")
def vector_metrics_iter_histogram(ctx: Context, body: Doc) -> Doc:
    """The vectors reported for one metric and variant, by iteration."""
    require(body, "task", "metric", "variant")
    _entity(ctx, body["task"], bool(body.get("model_events")))
    events = [
        e
        for e in _stored(ctx.tx, body["task"], [VECTOR])
        if e.get("metric") == body["metric"] and e.get("variant") == body["variant"]
    ]
    events.sort(key=lambda e: e.get("iter") or 0)
    return {
        "metric": body["metric"],
        "variant": body["variant"],
        "vectors": [e.get("value") for e in events],
        "iterations": [e.get("iter") for e in events],
    }


@endpoint("events.get_scalar_metric_data")
def get_scalar_metric_data(ctx: Context, body: Doc) -> Doc:
    """The scalar events of one metric, latest iteration first."""
    require(body, "task", "metric")
    _entity(ctx, body["task"], bool(body.get("model_events")))
    events = [e for e in _stored(ctx.tx, body["task"], [SCALAR]) if e.get("metric") == body["metric"]]
    events.sort(key=lambda e: e.get("iter") or 0, reverse=True)
    return {"events": events, "returned": len(events), "total": len(events), "scroll_id": None}


@endpoint("events.clear_scroll")
def clear_scroll(ctx: Context, body: Doc) -> Doc:
    """Scroll ids carry their position here: nothing is kept to release."""
    return {}


@endpoint("events.get_task_latest_scalar_values")
def get_task_latest_scalar_values(ctx: Context, body: Doc) -> Doc:
    task = _entity(ctx, body.get("task"))
    events = _stored(ctx.tx, task["id"], None)
    per_variant: dict[str, dict[str, list[Doc]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if e.get("type") == SCALAR and isinstance(e.get("value"), int | float) and e["value"] > 0:
            per_variant[e.get("metric", "")][e.get("variant", "")].append(e)
    metrics = []
    for metric, variants in sorted(per_variant.items()):
        summary: Doc = {"name": metric, "variants": []}
        for variant, items in sorted(variants.items()):
            items = sorted(items, key=lambda e: e.get("iter") or 0, reverse=True)
            summary["variants"].append(
                {"name": variant, "last_value": items[0]["value"], "last_10_value": items[0]["value"]}
            )
        metrics.append(summary)
    iters = [e["iter"] for e in events if isinstance(e.get("iter"), int)]
    return {
        "metrics": metrics,
        "last_iter": max(iters) if iters else 0,
        "name": task.get("name"),
        "status": task.get("status"),
        "last_timestamp": max((e.get("timestamp") or 0 for e in events), default=0),
    }


@endpoint("events.get_task_metrics")
def get_task_metrics(ctx: Context, body: Doc) -> Doc:
    """Per task, the metrics that reported events of ``event_type``."""
    require(body, "event_type")
    etype = body["event_type"]
    result = []
    for doc in _tasks_of(ctx, body.get("tasks"), bool(body.get("model_events"))):
        events = _stored(ctx.tx, doc["id"], None if etype == "*" else [etype])
        names = sorted({e.get("metric", "") for e in events if (e.get("iter") or 0) > SINGLE_VALUE_ITERATION})
        result.append({"task": doc["id"], "metrics": names})
    return {"metrics": result}


@endpoint("events.get_multi_task_metrics")
def get_multi_task_metrics(ctx: Context, body: Doc) -> Doc:
    etype = body.get("event_type") or "*"
    metrics: dict[str, set[str]] = defaultdict(set)
    for doc in _tasks_of(ctx, body.get("tasks"), bool(body.get("model_events"))):
        for e in _stored(ctx.tx, doc["id"], None if etype == "*" else [etype]):
            metrics[e.get("metric", "")].add(e.get("variant", ""))
    return {"metrics": [{"metric": m, "variants": sorted(v)} for m, v in sorted(metrics.items())]}


# ---------------------------------------------------------------------------- plots


def _last_iterations(events: list[Doc], iters: int, group: Callable[[Doc], Any]) -> list[Doc]:
    """The events of the last ``iters`` iterations of each group."""
    by_group: dict[Any, list[Doc]] = defaultdict(list)
    for e in events:
        by_group[group(e)].append(e)
    chosen = []
    for items in by_group.values():
        last = sorted({e.get("iter") or 0 for e in items}, reverse=True)[:iters]
        chosen += [e for e in items if (e.get("iter") or 0) in last]
    return chosen


@endpoint("events.get_task_plots")
def get_task_plots(ctx: Context, body: Doc) -> Doc:
    """The plots of the last ``iters`` (1) iterations of each metric and variant."""
    _entity(ctx, body.get("task"), bool(body.get("model_events")))
    iters = max(1, int(body.get("iters") or 1))
    plots = [e for e in _stored(ctx.tx, body["task"], [PLOT]) if _metric_filter(body.get("metrics"))(e)]
    by_variant: dict[tuple[str, str], list[Doc]] = defaultdict(list)
    for e in plots:
        by_variant[(e.get("metric", ""), e.get("variant", ""))].append(e)
    chosen = []
    for _, items in sorted(by_variant.items()):
        chosen += sorted(items, key=lambda e: e.get("iter") or 0, reverse=True)[:iters]
    return {"plots": chosen, "returned": len(chosen), "total": len(chosen), "scroll_id": None}


@endpoint("events.get_multi_task_plots")
def get_multi_task_plots(ctx: Context, body: Doc) -> Doc:
    """The plots of the last ``iters`` iterations of each task and metric, nested as
    ``{metric: {variant: {task: {iteration: {name, plots}}}}}``."""
    tasks = _tasks_of(ctx, body.get("tasks"), bool(body.get("model_events")))
    names = {t["id"]: t.get("name") for t in tasks}
    iters = max(1, int(body.get("iters") or 1))
    events: list[Doc] = []
    for t in tasks:
        plots = [e for e in _stored(ctx.tx, t["id"], [PLOT]) if _metric_filter(body.get("metrics"))(e)]
        per_metric = body.get("last_iters_per_task_metric", True) is not False
        events += _last_iterations(plots, iters, (lambda e: e.get("metric")) if per_metric else (lambda e: 0))
    top: dict[tuple[str, str, str], list[Doc]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e.get("iter") or 0, reverse=True):
        group = top[(e.get("metric", ""), e.get("variant", ""), e["task"])]
        if len({g.get("iter") for g in group} | {e.get("iter")}) <= iters:
            group.append(e)
    result: dict[str, dict[str, dict[str, dict[str, Doc]]]] = {}
    for (metric, variant, task), items in sorted(top.items(), reverse=True):
        for e in items:
            it = result.setdefault(metric, {}).setdefault(variant, {}).setdefault(task, {})
            it.setdefault(str(e.get("iter")), {"name": names.get(task), "plots": []})["plots"].append(e)
    total = len(events)
    return {"plots": result, "returned": len(result), "total": total, "scroll_id": None}


# ---------------------------------------------------------------------------- metric iterators


def _image(e: Doc) -> bool:
    return bool(e.get("url"))


def _init_task_state(ctx: Context, task: str, metrics: dict[str, list[str]], etype: str) -> Doc:
    """``MetricEventsIterator._init_metric_states_for_task``: the metrics with events, their last
    timestamp, and per variant the last iteration whose image was overwritten since."""
    events = [e for e in _stored(ctx.tx, task, [etype]) if etype != IMAGE or _image(e)]
    if metrics:
        events = [
            e for e in events if _metric_filter([{"metric": m, "variants": v} for m, v in metrics.items()])(e)
        ]
    per_metric: dict[str, list[Doc]] = defaultdict(list)
    for e in events:
        per_metric[e.get("metric", "")].append(e)
    states = []
    for metric, items in sorted(per_metric.items()):
        variants = []
        for variant in sorted({e.get("variant", "") for e in items}):
            state: Doc = {"variant": variant, "last_invalid_iteration": None}
            if etype == IMAGE:
                urls: dict[str, list[int]] = defaultdict(list)
                for e in items:
                    if e.get("variant", "") == variant:
                        urls[e["url"]].append(e.get("iter") or 0)
                latest = max(urls.values(), key=max)
                iters = sorted(latest, reverse=True)
                if len(iters) > 1:
                    state["last_invalid_iteration"] = iters[1]
            variants.append(state)
        states.append(
            {"metric": metric, "timestamp": max(e.get("timestamp") or 0 for e in items), "variants": variants}
        )
    return {"task": task, "metrics": states, "last_min_iter": None, "last_max_iter": None}


def _rank(e: Doc, etype: str) -> tuple[str, float]:
    """Which of a variant's events on one iteration is shown: the real server's top hit by url
    (images) or by timestamp (plots)."""
    return (e.get("url") or "", 0.0) if etype == IMAGE else ("", float(e.get("timestamp") or 0))


def _task_metric_events(ctx: Context, state: Doc, iters: int, earlier: bool, etype: str) -> list[Doc]:
    """``MetricEventsIterator._get_task_metric_events``: the next ``iters`` iterations of the task's
    metrics, one event per variant (the latest written), invalid (overwritten) images left out."""
    if not state["metrics"]:
        return []
    if state["last_max_iter"] is None:
        earlier = True
    names = {m["metric"] for m in state["metrics"]}
    events = [
        e
        for e in _stored(ctx.tx, state["task"], [etype])
        if e.get("metric") in names and (etype != IMAGE or _image(e))
    ]
    if earlier and state["last_min_iter"] is not None:
        events = [e for e in events if (e.get("iter") or 0) < state["last_min_iter"]]
    elif not earlier and state["last_max_iter"] is not None:
        events = [e for e in events if (e.get("iter") or 0) > state["last_max_iter"]]
    chosen_iters = sorted({e.get("iter") or 0 for e in events}, reverse=earlier)[:iters]
    invalid = {
        (m["metric"], v["variant"]): v["last_invalid_iteration"]
        for m in state["metrics"]
        for v in m["variants"]
    }
    iterations = []
    for it in chosen_iters:
        best: dict[tuple[str, str], Doc] = {}
        for e in events:
            if (e.get("iter") or 0) != it:
                continue
            key = (e.get("metric", ""), e.get("variant", ""))
            current = best.get(key)
            if current is None or _rank(e, etype) > _rank(current, etype):
                best[key] = e
        valid = [best[k] for k in sorted(best) if k in invalid and (invalid[k] is None or it > invalid[k])]
        if valid:
            iterations.append({"iter": it, "events": valid})
    if not earlier:
        iterations.sort(key=lambda i: i["iter"], reverse=True)
    if iterations:
        state["last_max_iter"] = iterations[0]["iter"]
        state["last_min_iter"] = iterations[-1]["iter"]
    return iterations


def _metric_events(ctx: Context, body: Doc, etype: str) -> Doc:
    require(body, "metrics")
    model_events = bool(body.get("model_events"))
    task_metrics: dict[str, dict[str, list[str]]] = {}
    for m in body.get("metrics") or []:
        metrics = task_metrics.setdefault(m["task"], {})
        if m.get("metric") is None:
            metrics["\0all"] = []
        else:
            metrics[m["metric"]] = list(m.get("variants") or [])
    for task, metrics in task_metrics.items():
        _entity(ctx, task, model_events)
        if "\0all" in metrics:
            metrics.clear()
    state = _STATES.get(body.get("scroll_id")) if body.get("scroll_id") else None
    if state is None or state.get("kind") != etype or body.get("refresh"):
        fresh: Doc = {
            "kind": etype,
            "tasks": [_init_task_state(ctx, t, m, etype) for t, m in task_metrics.items()],
        }
        if state is not None and state.get("kind") == etype:
            fresh["id"] = state["id"]
        state = fresh
    iters = max(1, int(body.get("iters") or 1))
    earlier = body.get("navigate_earlier", True) is not False
    result = [
        {"task": t["task"], "iterations": _task_metric_events(ctx, t, iters, earlier, etype)}
        for t in state["tasks"]
    ]
    return {"scroll_id": _STATES.put(state), "metrics": result}


@endpoint("events.debug_images")
def debug_images(ctx: Context, body: Doc) -> Doc:
    """Per task, the latest ``iters`` iterations with debug images of the requested metrics, then
    earlier (or, with ``navigate_earlier: false``, later) ones with the scroll id; ``refresh`` takes
    new images into account and starts again from the latest."""
    if not body.get("metrics") and body.get("task"):  # the pre-2.7 form
        body = {**body, "metrics": [{"task": body["task"]}]}
    return _metric_events(ctx, body, IMAGE)


@endpoint("events.plots")
def plots(ctx: Context, body: Doc) -> Doc:
    """Like ``debug_images``, for plots."""
    return _metric_events(ctx, body, PLOT)


# ---------------------------------------------------------------------------- sample navigation


def _image_variant_states(ctx: Context, task: str, metric: str | None) -> list[Doc]:
    """Per variant with images: the valid iteration range (from the smallest last iteration of any
    of its image files, since the earlier ones were overwritten, to its last iteration)."""
    per_variant: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    last: dict[tuple[str, str], int] = {}
    for e in _stored(ctx.tx, task, [IMAGE]):
        if not _image(e) or (metric is not None and e.get("metric") != metric):
            continue
        key, it = (e.get("metric", ""), e.get("variant", "")), e.get("iter") or 0
        per_variant[key][e["url"]] = max(it, per_variant[key].get(e["url"], it))
        last[key] = max(it, last.get(key, it))
    return [
        {"metric": m, "name": v, "min_iteration": min(urls.values()), "max_iteration": last[(m, v)]}
        for (m, v), urls in sorted(per_variant.items())
    ]


def _sample_result(state: Doc, event: Doc | None, scroll_id: str | None) -> Doc:
    res: Doc = {"scroll_id": scroll_id, "event": event, "min_iteration": None, "max_iteration": None}
    if event is None:
        return res
    state.update(variant=event.get("variant"), metric=event.get("metric"), iteration=event.get("iter"))
    for vs in state["variant_states"]:
        if vs["name"] == state["variant"] and vs["metric"] == state["metric"]:
            res.update(min_iteration=vs["min_iteration"], max_iteration=vs["max_iteration"])
    return res


def _in_range(e: Doc, variants: list[Doc]) -> bool:
    return any(
        e.get("metric") == v["metric"]
        and e.get("variant") == v["name"]
        and (e.get("iter") or 0) >= v["min_iteration"]
        for v in variants
    )


def _sample_state(
    ctx: Context, body: Doc, kind: str, key: str, states: Callable[[Context, str, str | None], Any]
) -> Doc:
    """The navigation state of a ``get_*_sample`` call: the one its ``scroll_id`` names (refreshed
    with ``refresh``; 400 when it is for another task or metric), else a new one."""
    current_metric = body.get("navigate_current_metric", True) is not False
    metric = body["metric"] if current_metric else None
    state = _STATES.get(body.get("scroll_id")) if body.get("scroll_id") else None
    if state is None:
        return {
            "kind": kind,
            "task": body["task"],
            "metric": body["metric"],
            "navigate_current_metric": current_metric,
            key: states(ctx, body["task"], metric),
        }
    if (
        state.get("kind") != kind
        or state["task"] != body["task"]
        or state["navigate_current_metric"] != current_metric
        or (current_metric and state["metric"] != body["metric"])
    ):
        mismatch = "Task and metric stored in the state do not match the passed ones"
        raise _invalid_scroll(body["scroll_id"], mismatch)
    if body.get("refresh"):
        state[key] = states(ctx, body["task"], metric)
    return state


@endpoint("events.get_debug_image_sample")
def get_debug_image_sample(ctx: Context, body: Doc) -> Doc:
    """The image of ``metric``/``variant`` at ``iteration`` (or the last before it; the latest when
    not given), the variant's valid iteration range and a scroll id for ``next_debug_image_sample``."""
    require(body, "task", "metric", "variant")
    _entity(ctx, body["task"], bool(body.get("model_events")))
    state = _sample_state(ctx, body, "image_sample", "variant_states", _image_variant_states)
    found = next(
        (
            v
            for v in state["variant_states"]
            if v["name"] == body["variant"] and v["metric"] == body["metric"]
        ),
        None,
    )
    scroll_id = _STATES.put(state)
    res: Doc = {"scroll_id": scroll_id, "event": None, "min_iteration": None, "max_iteration": None}
    if found is None:
        return res
    res.update(min_iteration=found["min_iteration"], max_iteration=found["max_iteration"])
    iteration = body.get("iteration")
    candidates = [
        e
        for e in _stored(ctx.tx, body["task"], [IMAGE])
        if _image(e)
        and e.get("metric") == body["metric"]
        and e.get("variant") == body["variant"]
        and found["min_iteration"] <= (e.get("iter") or 0)
        and (iteration is None or (e.get("iter") or 0) <= iteration)
    ]
    if not candidates:
        return res
    event = max(candidates, key=lambda e: (e.get("iter") or 0, e.get("url") or ""))
    res = _sample_result(state, event, scroll_id)
    _STATES.put(state)
    return res


@endpoint("events.next_debug_image_sample")
def next_debug_image_sample(ctx: Context, body: Doc) -> Doc:
    """The next (``navigate_earlier: false``) or previous variant's image on the same iteration, else
    the first/last one of the next/previous iteration (``next_iteration`` skips the first step)."""
    require(body, "task")
    _entity(ctx, body["task"], bool(body.get("model_events")))
    state = _STATES.get(body.get("scroll_id"))
    if state is None or state.get("kind") != "image_sample" or state["task"] != body["task"]:
        raise _invalid_scroll(body.get("scroll_id"))
    earlier = body.get("navigate_earlier", True) is not False
    variants = state["variant_states"]
    if state["navigate_current_metric"]:
        variants = [v for v in variants if v["metric"] == state["metric"]]
    images = [e for e in _stored(ctx.tx, body["task"], [IMAGE]) if _image(e)]
    here = (state.get("metric"), state.get("variant"))
    sign = -1 if earlier else 1

    def order(e: Doc) -> tuple[Any, ...]:
        return (e.get("iter") or 0, e.get("metric", ""), e.get("variant", ""))

    event = None
    if state.get("iteration") is not None and not body.get("next_iteration"):
        same = [
            v
            for v in variants
            if ((v["metric"], v["name"]) < here if earlier else (v["metric"], v["name"]) > here)
            and v["min_iteration"] <= state["iteration"]
        ]
        hits = [e for e in images if (e.get("iter") or 0) == state["iteration"] and _in_range(e, same)]
        if hits:
            event = (max if earlier else min)(hits, key=lambda e: (e.get("metric", ""), e.get("variant", "")))
    if event is None and state.get("iteration") is not None:
        others = [v for v in variants if v["min_iteration"] < state["iteration"]] if earlier else variants
        hits = [
            e
            for e in images
            if sign * ((e.get("iter") or 0) - state["iteration"]) > 0 and _in_range(e, others)
        ]
        if hits:
            event = (max if earlier else min)(hits, key=order)
    res = _sample_result(state, event, body["scroll_id"])
    _STATES.put(state)
    return res


def _plot_metric_states(ctx: Context, task: str, metric: str | None) -> list[Doc]:
    ranges: dict[str, list[int]] = defaultdict(list)
    for e in _stored(ctx.tx, task, [PLOT]):
        if metric is None or e.get("metric") == metric:
            ranges[e.get("metric", "")].append(e.get("iter") or 0)
    return [{"name": m, "min_iteration": min(i), "max_iteration": max(i)} for m, i in sorted(ranges.items())]


def _plot_samples(plots: list[Doc], earlier: bool) -> list[Doc]:
    """The plots of the first iteration in the given direction, then of its first metric."""
    if not plots:
        return []
    pick = max if earlier else min
    it = pick(e.get("iter") or 0 for e in plots)
    at = [e for e in plots if (e.get("iter") or 0) == it]
    metric = pick(e.get("metric", "") for e in at)
    return sorted([e for e in at if e.get("metric", "") == metric], key=lambda e: e.get("variant", ""))[:100]


def _plot_result(state: Doc, events: list[Doc], scroll_id: str) -> Doc:
    res: Doc = {"scroll_id": scroll_id, "events": events, "min_iteration": None, "max_iteration": None}
    if events:
        state.update(metric=events[0].get("metric"), iteration=events[0].get("iter"))
        for ms in state["metric_states"]:
            if ms["name"] == state["metric"]:
                res.update(min_iteration=ms["min_iteration"], max_iteration=ms["max_iteration"])
    return res


@endpoint("events.get_plot_sample")
def get_plot_sample(ctx: Context, body: Doc) -> Doc:
    """The plots of ``metric`` at ``iteration`` (or the last before it; the latest when not given),
    the metric's iteration range and a scroll id for ``next_plot_sample``."""
    require(body, "task", "metric")
    _entity(ctx, body["task"], bool(body.get("model_events")))
    state = _sample_state(ctx, body, "plot_sample", "metric_states", _plot_metric_states)
    scroll_id = _STATES.put(state)
    found = next((m for m in state["metric_states"] if m["name"] == body["metric"]), None)
    res: Doc = {"scroll_id": scroll_id, "events": [], "min_iteration": None, "max_iteration": None}
    if found is None:
        return res
    res.update(min_iteration=found["min_iteration"], max_iteration=found["max_iteration"])
    iteration = body.get("iteration")
    plots = [
        e
        for e in _stored(ctx.tx, body["task"], [PLOT])
        if e.get("metric") == body["metric"] and (iteration is None or (e.get("iter") or 0) <= iteration)
    ]
    events = _plot_samples(plots, earlier=True)
    if not events:
        return res
    res = _plot_result(state, events, scroll_id)
    _STATES.put(state)
    return res


@endpoint("events.next_plot_sample")
def next_plot_sample(ctx: Context, body: Doc) -> Doc:
    """The plots of the next (``navigate_earlier: false``) or previous metric on the same iteration,
    else of the next/previous iteration (``next_iteration``: of the next/previous iteration only)."""
    require(body, "task")
    _entity(ctx, body["task"], bool(body.get("model_events")))
    state = _STATES.get(body.get("scroll_id"))
    if state is None or state.get("kind") != "plot_sample" or state["task"] != body["task"]:
        raise _invalid_scroll(body.get("scroll_id"))
    earlier = body.get("navigate_earlier", True) is not False
    res: Doc = {"scroll_id": body["scroll_id"], "events": [], "min_iteration": None, "max_iteration": None}
    if state.get("iteration") is None:
        return res
    here_it, here_metric = state["iteration"], state["metric"]
    plots = _stored(ctx.tx, body["task"], [PLOT])
    if state["navigate_current_metric"]:
        plots = [e for e in plots if e.get("metric") == here_metric]

    def later_iteration(e: Doc) -> bool:
        it = e.get("iter") or 0
        return it < here_it if earlier else it > here_it

    def later_metric(e: Doc) -> bool:
        same = (e.get("iter") or 0) == here_it
        metric = e.get("metric", "")
        return same and (metric < here_metric if earlier else metric > here_metric)

    if body.get("next_iteration") or state["navigate_current_metric"]:
        candidates = [e for e in plots if later_iteration(e)]
    else:
        candidates = [e for e in plots if later_iteration(e) or later_metric(e)]
    events = _plot_samples(candidates, earlier)
    if not events:
        return res
    res = _plot_result(state, events, body["scroll_id"])
    _STATES.put(state)
    return res


# ---------------------------------------------------------------------------- deleting


def _check_writable_task(ctx: Context, task_id: object, allow_locked: bool) -> Doc:
    task = _entity(ctx, task_id)
    if not allow_locked and task.get("status") in LOCKED:
        raise errors.ApiError(400, 101, "Cannot update events for a published task", id=task_id)
    return task


@endpoint("events.delete_for_task")
def delete_for_task(ctx: Context, body: Doc) -> Doc:
    task = _check_writable_task(ctx, body.get("task"), bool(body.get("allow_locked")))
    return {"deleted": ctx.tx.delete_events(task["id"], KNOWN_TYPES)}


@endpoint("events.delete_for_model")
def delete_for_model(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    model = _entity(ctx, body["model"], model_events=True)
    if not body.get("allow_locked") and model.get("ready"):
        raise errors.ApiError(400, 201, "Cannot update events for a published model", id=body["model"])
    return {"deleted": ctx.tx.delete_events(model["id"], KNOWN_TYPES)}


@endpoint("events.clear_task_log")
def clear_task_log(ctx: Context, body: Doc) -> Doc:
    """Delete a task's log lines (older than ``threshold_sec``; of ``include_metrics`` only, or but
    ``exclude_metrics``)."""
    task = _check_writable_task(ctx, body.get("task"), bool(body.get("allow_locked")))
    logs = _stored(ctx.tx, task["id"], [LOG])
    threshold = body.get("threshold_sec")
    include, exclude = body.get("include_metrics"), body.get("exclude_metrics")

    def doomed(e: Doc) -> bool:
        if threshold and (e.get("timestamp") or 0) >= _now_ms() - threshold * 1000:
            return False
        if include:
            return e.get("metric") in include
        return not (exclude and e.get("metric") in exclude)

    kept = [e for e in logs if not doomed(e)]
    ctx.tx.delete_events(task["id"], [LOG])
    for e in kept:
        ctx.tx.add_event(task["id"], LOG, e)
    return {"deleted": len(logs) - len(kept)}
