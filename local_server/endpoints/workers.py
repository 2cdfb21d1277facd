"""workers.*: agents register, report status and machine statistics, and hold runtime properties.

As in the real server: a worker is known until its ``register_timeout`` passes without activity,
status reports of unknown workers register them, ``get_all`` filters by ``last_seen``, tags, system
tags (``-tag`` excludes) and a worker-id pattern, and the machine statistics of the status reports
feed ``get_stats``, ``get_metric_keys`` and ``get_activity_report`` (date histograms with buckets of at
least 40 s, the real server's ``min_chart_interval_sec``). The statistics live in the events table.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .. import errors
from ..query import now_iso
from ..registry import COMPANY, USER, Context, endpoint, require
from ..store import Doc
from . import samples

DEFAULT_TIMEOUT_S = 600
MIN_CHART_INTERVAL_S = 40
STATS_KEY, STATS_TYPE = "worker-stats", "worker_stats"  # in the events table, by day
KEYS_LOOKBACK_S = 31 * 24 * 3600  # get_metric_keys looks at the last month


def _key(worker_id: str) -> str:
    return f"worker_{COMPANY}_{USER['id']}_{worker_id}"


def _worker(ctx: Context, worker_id: str) -> Doc:
    doc = ctx.tx.mutable("worker", worker_id)
    if doc is None:
        now = now_iso()
        doc = {
            "id": worker_id,
            "key": _key(worker_id),
            "user": {"id": USER["id"], "name": USER["name"]},
            "company": {"id": COMPANY, "name": "Local"},
            "register_time": now,
            "register_timeout": DEFAULT_TIMEOUT_S,
            "queues": [],
            "tags": [],
            "system_tags": [],
            "task": None,
            "runtime_properties": {},
        }
    doc["key"] = _key(worker_id)
    if ctx.client_ip:
        doc["ip"] = ctx.client_ip
    return doc


def _touch(ctx: Context, doc: Doc) -> None:
    doc["last_activity_time"] = now_iso()
    doc["last_activity_epoch"] = time.time()
    ctx.tx.put("worker", doc)


def alive_workers(ctx: Context) -> list[Doc]:
    """Workers whose registration has not timed out, by id."""
    now = time.time()
    alive = [
        d
        for d in ctx.tx.scan("worker")
        if now - d.get("last_activity_epoch", 0) <= d.get("register_timeout", DEFAULT_TIMEOUT_S)
    ]
    return sorted(alive, key=lambda d: d["id"])


@endpoint("workers.register")
def register(ctx: Context, body: Doc) -> Doc:
    require(body, "worker")
    queues = list(body.get("queues") or [])
    missing = [q for q in queues if ctx.tx.get("queue", q) is None]
    if missing:
        raise errors.invalid_queue_id(",".join(missing))
    timeout = body.get("timeout") or DEFAULT_TIMEOUT_S
    doc = _worker(ctx, body["worker"])
    doc["register_time"] = now_iso()
    doc["register_timeout"] = int(timeout)
    doc["queues"] = queues
    doc["tags"] = list(body.get("tags") or [])
    doc["system_tags"] = list(body.get("system_tags") or [])
    _touch(ctx, doc)
    return {}


@endpoint("workers.unregister")
def unregister(ctx: Context, body: Doc) -> Doc:
    require(body, "worker")
    ctx.tx.delete("worker", body["worker"])
    return {}


@endpoint("workers.status_report")
def status_report(ctx: Context, body: Doc) -> Doc:
    require(body, "worker")
    doc = _worker(ctx, body["worker"])
    task_id = body.get("task")
    task = ctx.tx.mutable("task", task_id) if task_id else None
    if task_id and task is None:
        raise errors.invalid_task_id(task_id)
    for key in ("tags", "system_tags"):
        if body.get(key) is not None:
            doc[key] = list(body[key]) if isinstance(body[key], list) else [body[key]]
    if body.get("machine_stats"):
        samples.add(
            ctx.tx,
            STATS_KEY,
            STATS_TYPE,
            {
                "worker": body["worker"],
                "timestamp": body.get("timestamp") or int(time.time() * 1000),
                "task": task_id,
                "stats": body["machine_stats"],
            },
        )
    doc["task"] = None
    doc["project"] = None
    doc["queue"] = body.get("queue")
    if task is not None:
        doc["task"] = {"id": task["id"], "name": task["name"]}
        project = ctx.tx.get("project", task.get("project") or "")
        if project is not None:
            doc["project"] = {"id": project["id"], "name": project["name"]}
        # like the real server (WorkerBLL.status_report): the reported task remembers its worker
        now = now_iso()
        task.update(
            last_worker=body["worker"],
            last_worker_report=now,
            last_update=now,
            last_change=now,
            last_changed_by=USER["id"],
        )
        ctx.tx.put("task", task)
    if body.get("queues"):
        doc["queues"] = list(body["queues"])
    if body.get("machine_stats"):
        doc["machine_stats"] = body["machine_stats"]
    doc["last_report_time"] = now_iso()
    _touch(ctx, doc)
    return {}


def _queue_entry(ctx: Context, queue_id: str) -> Doc | None:
    q = ctx.tx.get("queue", queue_id)
    if q is None:
        return None
    entry: Doc = {"id": q["id"], "name": q["name"], "display_name": q.get("display_name"), "num_tasks": 0}
    entry["num_tasks"] = len(q["entries"])
    if q["entries"]:
        head = ctx.tx.get("task", q["entries"][0]["task"])
        entry["next_task"] = {"id": q["entries"][0]["task"], "name": head.get("name") if head else None}
    return entry


def _public(ctx: Context, doc: Doc) -> Doc:
    queues = [e for e in (_queue_entry(ctx, q) for q in doc.get("queues") or []) if e is not None]
    hidden = ("runtime_properties", "last_activity_epoch")
    public: dict[str, Any] = {k: v for k, v in doc.items() if k not in hidden}
    public["queues"] = queues
    public["queue"] = next((q for q in queues if q["id"] == doc.get("queue")), None)
    if doc.get("task"):
        task = ctx.tx.get("task", doc["task"]["id"])
        if task is not None:
            public["task"] = {
                **doc["task"],
                "running_time": int((task.get("active_duration") or 0) * 1000),
                "last_iteration": task.get("last_iteration"),
            }
    return public


def _tag_filter(field: str, tags: list[str]) -> Callable[[Doc], bool]:
    """The real server's worker tag filter: any of the included tags, none of the excluded."""
    include = [t for t in tags if not t.startswith("-")]
    exclude = [t[1:] for t in tags if t.startswith("-")]

    def match(doc: Doc) -> bool:
        have = set(doc.get(field) or [])
        return (not include or bool(have & set(include))) and not have & set(exclude)

    return match


def _selected(ctx: Context, body: Doc) -> list[Doc]:
    workers = alive_workers(ctx)
    for field in ("tags", "system_tags"):
        tags = body.get(field)
        if tags:
            match = _tag_filter(field, [tags] if isinstance(tags, str) else list(tags))
            workers = [w for w in workers if match(w)]
    pattern = body.get("worker_pattern")
    if pattern:
        regex = re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".?") + "$")
        workers = [w for w in workers if regex.search(w["id"])]
    last_seen = body.get("last_seen")
    if last_seen:
        since = time.time() - max(1, int(last_seen))
        workers = [w for w in workers if w.get("last_activity_epoch", 0) >= since]
    return workers


@endpoint("workers.get_all")
def get_all(ctx: Context, body: Doc) -> Doc:
    return {"workers": [_public(ctx, d) for d in _selected(ctx, body)]}


@endpoint("workers.get_count")
def get_count(ctx: Context, body: Doc) -> Doc:
    return {"count": len(_selected(ctx, body))}


@endpoint("workers.get_runtime_properties")
def get_runtime_properties(ctx: Context, body: Doc) -> Doc:
    require(body, "worker")
    doc = ctx.tx.get("worker", body["worker"]) or {}
    props = doc.get("runtime_properties") or {}
    return {"runtime_properties": list(props.values())}


@endpoint("workers.set_runtime_properties")
def set_runtime_properties(ctx: Context, body: Doc) -> Doc:
    require(body, "worker")
    doc = _worker(ctx, body["worker"])
    for prop in body.get("runtime_properties") or []:
        doc["runtime_properties"][prop["key"]] = prop
    _touch(ctx, doc)
    return {"added": [p["key"] for p in body.get("runtime_properties") or []], "removed": [], "errors": []}


# ---------------------------------------------------------------------------- statistics


def _samples(
    ctx: Context,
    worker_ids: list[str] | None = None,
    from_date: float | None = None,
    to_date: float | None = None,
) -> list[Doc]:
    """One document per reported value, as the real server writes them: category (``cpu`` of
    ``cpu_usage``), metric, variant (``total``, or the index of a per-device list) and value; of the
    days from ``from_date`` to ``to_date`` (the last 31 days when not given)."""
    to_date = time.time() if to_date is None else to_date
    from_date = to_date - KEYS_LOOKBACK_S if from_date is None else from_date
    rows = []
    for report in samples.read(ctx.tx, STATS_KEY, STATS_TYPE, from_date, to_date):
        if worker_ids and report.get("worker") not in worker_ids:
            continue
        for metric, value in (report.get("stats") or {}).items():
            if not value:
                continue
            values = value if isinstance(value, list) else [value]
            for i, v in enumerate(values):
                if not isinstance(v, int | float) or isinstance(v, bool):
                    continue
                rows.append(
                    {
                        "worker": report.get("worker"),
                        "timestamp": report.get("timestamp") or 0,
                        "task": report.get("task"),
                        "category": metric.partition("_")[0],
                        "metric": metric,
                        "variant": str(i) if isinstance(value, list) else "total",
                        "value": float(v),
                    }
                )
    return rows


def _range(body: Doc) -> tuple[float, float, int]:
    for name in ("from_date", "to_date", "interval"):
        require(body, name)
    from_date, to_date = float(body["from_date"]), float(body["to_date"])
    if from_date >= to_date:
        raise errors.fields_value("from_date must be less than to_date")
    return from_date, to_date, max(int(body["interval"]), MIN_CHART_INTERVAL_S)


def _bucket_keys(from_date: float, to_date: float, interval: int) -> list[int]:
    step = interval * 1000
    first = int(from_date) * 1000 // step * step
    return list(range(first, int(to_date) * 1000 + 1, step))


@endpoint("workers.get_metric_keys")
def get_metric_keys(ctx: Context, body: Doc) -> Doc:
    rows = _samples(ctx, body.get("worker_ids"))
    if not rows:
        raise errors.ApiError(
            400, 1005, "worker stats not found: no statistic metrics found", workers=body.get("worker_ids")
        )
    categories: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        categories[r["category"]].add(r["metric"])
    return {"categories": [{"name": c, "metric_keys": sorted(m)} for c, m in sorted(categories.items())]}


_AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "avg": statistics.fmean,
    "min": min,
    "max": max,
}


def _series(
    rows: list[Doc], keys: list[int], step: int, reduce: Callable[[list[float]], float]
) -> list[float]:
    per_bucket: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        per_bucket[r["timestamp"] // step * step].append(r["value"])
    return [reduce(per_bucket[k]) if per_bucket.get(k) else 0.0 for k in keys]


@endpoint("workers.get_stats")
def get_stats(ctx: Context, body: Doc) -> Doc:
    """For each worker, metric and aggregation (``avg``, ``min``, ``max``): the values per date bucket
    (0 where nothing was reported), the last incomplete bucket left out; ``split_by_resource`` gives
    a series per GPU for ``gpu_*`` metrics reported for more than one device."""
    from_date, to_date, interval = _range(body)
    keys = _bucket_keys(from_date, to_date, interval)
    cutoff = (to_date - 0.9 * interval) * 1000
    keys = [k for k in keys if k < cutoff]
    step = interval * 1000
    rows = _samples(ctx, body.get("worker_ids"), from_date, to_date)
    rows = [r for r in rows if from_date * 1000 <= r["timestamp"] <= to_date * 1000]
    result: dict[str, dict[str, list[Doc]]] = defaultdict(lambda: defaultdict(list))
    for item in body.get("items") or []:
        metric, aggregation = item.get("key"), item.get("aggregation", "avg")
        if aggregation not in _AGGREGATIONS:
            raise errors.validation(f"invalid aggregation {aggregation}")
        reduce = _AGGREGATIONS[aggregation]
        split = bool(body.get("split_by_resource")) and str(metric).startswith("gpu_")
        by_worker: dict[str, list[Doc]] = defaultdict(list)
        for r in rows:
            if r["metric"] == metric:
                by_worker[r["worker"]].append(r)
        for worker, worker_rows in by_worker.items():
            stats: Doc = {
                "aggregation": aggregation,
                "dates": keys,
                "values": _series(worker_rows, keys, step, reduce),
            }
            variants = sorted({r["variant"] for r in worker_rows})
            stats["resource_series"] = []
            if split and len(variants) > 1:
                for v in variants:
                    selected = [r for r in worker_rows if r["variant"] == v]
                    stats["resource_series"].append(
                        {"name": v, "values": _series(selected, keys, step, reduce)}
                    )
            result[worker][metric].append(stats)
    return {
        "workers": [
            {"worker": worker, "metrics": [{"metric": m, "stats": s} for m, s in metrics.items()]}
            for worker, metrics in result.items()
        ]
    }


@endpoint("workers.get_activity_report")
def get_activity_report(ctx: Context, body: Doc) -> Doc:
    """Per date bucket, how many workers reported statistics (``total``) and how many of them while
    running a task (``active``); the last incomplete bucket is left out."""
    from_date, to_date, interval = _range(body)
    step = interval * 1000
    rows = [
        r
        for r in _samples(ctx, None, from_date, to_date)
        if from_date * 1000 <= r["timestamp"] <= to_date * 1000
    ]

    def series(active_only: bool) -> Doc:
        keys = _bucket_keys(from_date, to_date, interval)
        workers: dict[int, set[str]] = defaultdict(set)
        for r in rows:
            if not active_only or r.get("task"):
                workers[r["timestamp"] // step * step].add(r["worker"])
        if not rows or (active_only and not workers):
            return {"dates": [], "counts": []}
        if keys and keys[-1] > (to_date - 0.9 * interval) * 1000:
            keys.pop()
        return {"dates": keys, "counts": [len(workers.get(k, ())) for k in keys]}

    return {"total": series(False), "active": series(True)}
