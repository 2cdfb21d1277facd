"""queues.*: FIFO queues of task ids; ``get_next_task`` pops the head.

As in the real server: a server with no queue gets a ``default`` queue (system tag ``default``) at
start, a task taken out of a queue by ``remove_task(update_task_status)``, ``clear_queue`` or a forced
``delete`` goes back to the status it had before it was enqueued, ``get_all_ex`` shows the entries'
task names and the workers listening and hides queues tagged ``k8s-glue``, and every change of a
queue's content samples its length and average waiting time for ``get_queue_metrics``.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from .. import errors
from ..query import QUEUE_OPTIONS, list_predicate, now_iso, parse_date, run_query
from ..registry import COMPANY, USER, Context, endpoint, merge_tags, new_id, require, string_list
from ..store import Doc, Store, Transaction
from . import compat, samples

DEFAULT = "default"
HIDDEN_TAGS = ("k8s-glue",)  # the real server's services.queues.hidden_tags
METRICS_KEY, METRICS_TYPE = "queue-metrics", "queue_metrics"  # samples live in the events table, by day
METRICS_BEFORE_FROM_DATE_S = 3600  # the real server's services.queues.metrics_before_from_date


def _metadata(items: object) -> dict[str, Doc]:
    """Queue metadata given as a list of ``{key, type, value}`` or an object keyed by key."""
    if isinstance(items, dict):
        items = [
            {"key": k, **v} if isinstance(v, dict) else {"key": k, "value": str(v)} for k, v in items.items()
        ]
    if not isinstance(items, list):
        return {}
    return {m["key"]: m for m in items if isinstance(m, dict) and m.get("key")}


def get_queue(tx: Transaction, ref: object, by_name: bool = False) -> Doc:
    if isinstance(ref, str):
        if not by_name:
            doc = tx.get("queue", ref)
            if doc is not None:
                return doc
        else:
            for doc in tx.scan("queue"):
                if doc["name"] == ref:
                    return doc
    raise errors.invalid_queue_id(ref)


def _new_queue(name: str, system_tags: list[str] | None = None) -> Doc:
    now = now_iso()
    return {
        "id": new_id(),
        "name": name,
        "display_name": None,
        "user": USER["id"],
        "company": COMPANY,
        "created": now,
        "last_update": now,
        "tags": [],
        "system_tags": system_tags or [],
        "entries": [],
        "metadata": {},
    }


def ensure_default_queue(store: Store) -> None:
    """Like the real server at start: a server without any queue gets ``default``, tagged as the
    default queue (what ``tasks.enqueue`` without a queue and ``clearml-agent daemon`` use)."""
    with store.transaction() as tx:
        if next(tx.scan("queue"), None) is None:
            tx.put("queue", _new_queue(DEFAULT, [DEFAULT]))


def resolve_default_queue(tx: Transaction) -> Doc:
    defaults = [q for q in tx.scan("queue") if DEFAULT in (q.get("system_tags") or [])]
    if not defaults:
        raise errors.no_default_queue()
    if len(defaults) > 1:
        raise errors.ApiError(400, 708, "more than one queue is tagged as the default queue")
    return defaults[0]


def _log_metrics(tx: Transaction, queue: Doc) -> None:
    """One sample of the queue's length and average waiting time (seconds), as the real server
    writes on every change of the queue."""
    now = datetime.now(UTC)
    waits = []
    for entry in queue["entries"]:
        try:
            waits.append((now - datetime.fromisoformat(parse_date(str(entry.get("added"))))).total_seconds())
        except errors.ApiError:
            continue
    sample = {
        "queue": queue["id"],
        "timestamp": int(now.timestamp() * 1000),
        "queue_length": len(waits),
        "avg_waiting_time": sum(waits) / len(waits) if waits else 0,
    }
    samples.add(tx, METRICS_KEY, METRICS_TYPE, sample)


def _save(tx: Transaction, queue: Doc, log_metrics: bool = True) -> None:
    queue["last_update"] = now_iso()
    tx.put("queue", queue)
    if log_metrics:
        _log_metrics(tx, queue)


def enqueue_entry(tx: Transaction, queue_id: str, task_id: str) -> None:
    queue = tx.mutable("queue", queue_id)
    if queue is None:
        raise errors.invalid_queue_id(queue_id)
    if any(e["task"] == task_id for e in queue["entries"]):
        raise errors.task_already_queued(task_id)
    queue["entries"].append({"task": task_id, "added": now_iso()})
    _save(tx, queue)


def remove_entry(tx: Transaction, queue_id: str | None, task_id: str) -> int:
    queue = tx.mutable("queue", queue_id) if queue_id else None
    if queue is None:
        return 0
    before = len(queue["entries"])
    queue["entries"] = [e for e in queue["entries"] if e["task"] != task_id]
    _save(tx, queue)
    return before - len(queue["entries"])


def _reset_tasks(tx: Transaction, task_ids: list[str], queue_id: str, reason: str) -> list[str]:
    """Tasks that were waiting in ``queue_id`` go back to the status they had before ``enqueue``
    (``created`` by default) and lose their execution queue; returns the ids changed."""
    from .tasks import change_status, save  # tasks imports this module

    changed = []
    for task_id in task_ids:
        found = tx.get("task", task_id)
        if found is None or (found.get("execution") or {}).get("queue") != queue_id:
            continue
        doc = copy.deepcopy(found)
        change_status(doc, doc.get("enqueue_status") or "created", True, reason, "")
        doc["enqueue_status"] = None
        doc["execution"]["queue"] = None
        save(tx, doc)
        changed.append(task_id)
    return changed


# ---------------------------------------------------------------------------- create, read, update


@endpoint("queues.create")
def create(ctx: Context, body: Doc) -> Doc:
    require(body, "name")
    body = compat.conform_request(ctx, body, "queue")
    name = str(body["name"]).strip()
    if any(q["name"] == name for q in ctx.tx.scan("queue")):
        raise errors.unique_violation("a queue with this name exists", name=name)
    doc = _new_queue(name)
    doc.update(
        display_name=body.get("display_name"),
        tags=merge_tags(None, string_list(body, "tags")),
        system_tags=merge_tags(None, string_list(body, "system_tags")),
        metadata=_metadata(body.get("metadata")),
    )
    ctx.tx.put("queue", doc)
    return {"id": doc["id"]}


def _limit_entries(queue: Doc, max_entries: Any) -> Doc:
    if isinstance(max_entries, int) and max_entries > 0 and "entries" in queue:
        queue = {**queue, "entries": queue["entries"][:max_entries]}
    return queue


@endpoint("queues.get_by_id")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "queue")
    queue = dict(_limit_entries(get_queue(ctx.tx, body["queue"]), body.get("max_task_entries")))
    compat.conform_output(ctx, [queue])
    return {"queue": queue}


def _workers_of(ctx: Context) -> dict[str, list[Doc]]:
    from .workers import alive_workers  # workers imports nothing from here at import time

    by_queue: dict[str, list[Doc]] = defaultdict(list)
    for worker in alive_workers(ctx):
        task = worker.get("task")
        entry = {
            "name": worker["id"],
            "ip": worker.get("ip"),
            "key": worker.get("key"),
            "task": {"id": task["id"], "name": task.get("name")} if task else None,
        }
        for queue_id in worker.get("queues") or []:
            by_queue[queue_id].append(entry)
    return by_queue


@endpoint("queues.get_all", "queues.get_all_ex")
def get_all(ctx: Context, body: Doc) -> Doc:
    """``max_task_entries`` limits the entries listed; ``get_all_ex`` also names each entry's task
    (``{id, name}``), lists the workers listening (``workers``) and hides queues tagged
    ``k8s-glue`` unless searched by id or name or with ``search_hidden``."""
    body = compat.conform_request(ctx, body, "queue")
    extra = []
    if not (body.get("search_hidden") or body.get("id") or body.get("name")):
        extra.append(list_predicate("system_tags", [f"-{t}" for t in HIDDEN_TAGS]))
    page = run_query(ctx.tx.scan("queue"), body, QUEUE_OPTIONS, extra, default_order=["name"])
    # copies: the listed documents are the stored ones
    queues = [dict(_limit_entries(q, body.get("max_task_entries"))) for q in page.items]
    compat.conform_output(ctx, queues)
    if ctx.endpoint == "queues.get_all_ex":
        workers = _workers_of(ctx)
        for queue in queues:
            if "entries" in queue:
                entries = []
                for e in queue["entries"]:
                    task = ctx.tx.get("task", e["task"])
                    name = task.get("name") if task else None
                    entries.append({**e, "task": {"id": e["task"], "name": name}})
                queue["entries"] = entries
            if "id" in queue:
                queue["workers"] = workers.get(queue["id"], [])
    result: Doc = {"queues": queues}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


@endpoint("queues.get_default")
def get_default(ctx: Context, body: Doc) -> Doc:
    queue = resolve_default_queue(ctx.tx)
    return {"id": queue["id"], "name": queue["name"]}


@endpoint("queues.update")
def update(ctx: Context, body: Doc) -> Doc:
    require(body, "queue")
    body = compat.conform_request(ctx, body, "queue")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    fields: Doc = {}
    if "name" in body:
        fields["name"] = str(body["name"]).strip()
    if "display_name" in body:
        fields["display_name"] = body["display_name"]
    if "metadata" in body:
        fields["metadata"] = _metadata(body["metadata"])
    for key in ("tags", "system_tags"):
        if key in body:
            fields[key] = merge_tags(None, string_list(body, key))
    queue.update(fields)
    _save(ctx.tx, queue, log_metrics=False)
    compat.conform_output(ctx, [fields])
    return {"updated": 1, "fields": fields}


@endpoint("queues.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    """A queue with tasks needs ``force``; its tasks then go back to their pre-enqueue status."""
    require(body, "queue")
    queue = get_queue(ctx.tx, body["queue"])
    if queue["entries"]:
        if not body.get("force"):
            raise errors.ApiError(400, 702, "queue is not empty: use force=true to delete", id=queue["id"])
        tasks = [e["task"] for e in queue["entries"]]
        _reset_tasks(ctx.tx, tasks, queue["id"], f"Queue {queue['id']} was deleted")
    ctx.tx.delete("queue", queue["id"])
    return {"deleted": 1}


# ---------------------------------------------------------------------------- entries


@endpoint("queues.add_task")
def add_task(ctx: Context, body: Doc) -> Doc:
    require(body, "queue", "task")
    queue = get_queue(ctx.tx, body["queue"])
    found = ctx.tx.get("task", body["task"])
    if found is None:
        raise errors.invalid_task_id(body["task"])
    enqueue_entry(ctx.tx, queue["id"], body["task"])
    if body.get("update_execution_queue", True):
        doc = copy.deepcopy(found)
        doc["execution"]["queue"] = queue["id"]
        ctx.tx.put("task", doc)
    return {"added": 1}


@endpoint("queues.remove_task")
def remove_task(ctx: Context, body: Doc) -> Doc:
    """With ``update_task_status`` the task also goes back to its pre-enqueue status."""
    require(body, "queue", "task")
    queue = get_queue(ctx.tx, body["queue"])
    removed = remove_entry(ctx.tx, queue["id"], body["task"])
    if not removed:
        raise errors.task_not_queued(queue["id"], body["task"])
    if body.get("update_task_status"):
        _reset_tasks(ctx.tx, [body["task"]], queue["id"], f"Task was removed from the queue {queue['id']}")
    return {"removed": removed}


@endpoint("queues.get_next_task")
def get_next_task(ctx: Context, body: Doc) -> Doc:
    """Pop the head of the queue, skipping entries whose task is no longer queued there. With
    ``task``, only if that task is at the head."""
    require(body, "queue")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    if body.get("task") and (not queue["entries"] or queue["entries"][0]["task"] != body["task"]):
        return {}
    result: Doc = {}
    if not queue["entries"]:
        return result  # an idle poll changes nothing (and writes nothing)
    while queue["entries"]:
        entry = queue["entries"].pop(0)
        task = ctx.tx.get("task", entry["task"])
        if task is not None and task["status"] in ("queued", "stopped"):
            if task["status"] == "stopped":  # the real server's fix of an agent's abort race
                fixed = copy.deepcopy(task)
                fixed["status"] = "queued"
                ctx.tx.put("task", fixed)
            result = {"entry": entry}
            if body.get("get_task_info"):
                result["task_info"] = {"company": COMPANY, "user": task.get("user")}
            break
    _save(ctx.tx, queue)
    return result


@endpoint("queues.peek_task")
def peek_task(ctx: Context, body: Doc) -> Doc:
    require(body, "queue")
    entries = get_queue(ctx.tx, body["queue"])["entries"]
    return {"task": entries[0]["task"] if entries else None}


@endpoint("queues.get_num_entries")
def get_num_entries(ctx: Context, body: Doc) -> Doc:
    require(body, "queue")
    return {"num": len(get_queue(ctx.tx, body["queue"])["entries"])}


@endpoint("queues.clear_queue")
def clear_queue(ctx: Context, body: Doc) -> Doc:
    """Empty the queue; its tasks go back to their pre-enqueue status (the ids returned)."""
    require(body, "queue")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    if not queue["entries"]:
        return {"removed_tasks": []}
    tasks = [e["task"] for e in queue["entries"]]
    removed = _reset_tasks(ctx.tx, tasks, queue["id"], f"Queue {queue['id']} was cleared")
    queue["entries"] = []
    _save(ctx.tx, queue)
    return {"removed_tasks": removed}


def _move(ctx: Context, body: Doc, where: str) -> Doc:
    require(body, "queue", "task")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    index = next((i for i, e in enumerate(queue["entries"]) if e["task"] == body["task"]), None)
    if index is None:
        raise errors.task_not_queued(queue["id"], body["task"])
    entry = queue["entries"].pop(index)
    count = int(body.get("count") or 1)
    position = {
        "front": 0,
        "back": len(queue["entries"]),
        "forward": max(0, index - count),
        "backward": min(len(queue["entries"]), index + count),
    }[where]
    queue["entries"].insert(position, entry)
    _save(ctx.tx, queue, log_metrics=False)
    return {"position": position}


@endpoint("queues.move_task_to_front")
def move_to_front(ctx: Context, body: Doc) -> Doc:
    return _move(ctx, body, "front")


@endpoint("queues.move_task_to_back")
def move_to_back(ctx: Context, body: Doc) -> Doc:
    return _move(ctx, body, "back")


@endpoint("queues.move_task_forward")
def move_forward(ctx: Context, body: Doc) -> Doc:
    return _move(ctx, body, "forward")


@endpoint("queues.move_task_backward")
def move_backward(ctx: Context, body: Doc) -> Doc:
    return _move(ctx, body, "backward")


# ---------------------------------------------------------------------------- metadata


@endpoint("queues.add_or_update_metadata")
def add_or_update_metadata(ctx: Context, body: Doc) -> Doc:
    require(body, "queue", "metadata")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    if body.get("replace_metadata"):
        queue["metadata"] = {}
    queue["metadata"].update(_metadata(body["metadata"]))
    _save(ctx.tx, queue, log_metrics=False)
    return {"updated": 1}


@endpoint("queues.delete_metadata")
def delete_metadata(ctx: Context, body: Doc) -> Doc:
    require(body, "queue", "keys")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    before = len(queue["metadata"])
    for key in body["keys"]:
        queue["metadata"].pop(key, None)
    _save(ctx.tx, queue, log_metrics=False)
    return {"updated": int(len(queue["metadata"]) != before)}


# ---------------------------------------------------------------------------- metrics


def _histogram(samples: list[Doc], interval_ms: int) -> dict[int, Doc]:
    """Date buckets of ``interval`` (aligned like Elasticsearch's fixed intervals); in each, the
    sample with the longest average waiting time (then the longest queue)."""
    buckets: dict[int, Doc] = {}
    for s in samples:
        key = s["timestamp"] // interval_ms * interval_ms
        best = buckets.get(key)
        if best is None or (s["avg_waiting_time"], s["queue_length"]) > (
            best["avg_waiting_time"],
            best["queue_length"],
        ):
            buckets[key] = s
    return dict(sorted(buckets.items()))


@endpoint("queues.get_queue_metrics")
def get_queue_metrics(ctx: Context, body: Doc) -> Doc:
    """Per queue (``queue_ids``) or averaged over every visible queue (``total``): for each date
    bucket of ``interval`` seconds, the queue length and average waiting time sampled at each change
    of the queue (``refresh`` samples now). Dates in epoch milliseconds."""
    for name in ("from_date", "to_date", "interval"):
        require(body, name)
    from_date, to_date, interval = float(body["from_date"]), float(body["to_date"]), int(body["interval"])
    if from_date >= to_date:
        raise errors.fields_value("from_date must be less than to_date")
    if interval <= 0:
        raise errors.fields_value("interval must be positive", interval=interval)
    per_queue = bool(body.get("queue_ids"))

    def wanted(q: Doc) -> bool:
        if per_queue:
            return q["id"] in body["queue_ids"]
        return not set(HIDDEN_TAGS) & set(q.get("system_tags") or [])

    queues = [q for q in ctx.tx.scan("queue") if wanted(q)]
    if not queues:
        return {"queues": []}
    ids = {q["id"] for q in queues}
    if body.get("refresh"):
        for q in queues:
            _log_metrics(ctx.tx, q)
    low, high = (from_date - METRICS_BEFORE_FROM_DATE_S) * 1000, to_date * 1000
    found = [
        s
        for s in samples.read(ctx.tx, METRICS_KEY, METRICS_TYPE, low / 1000, high / 1000)
        if s.get("queue") in ids and low <= s.get("timestamp", 0) <= high
    ]
    chart_start = (from_date - interval) * 1000
    interval_ms = interval * 1000
    if per_queue:
        result = []
        for queue_id in body["queue_ids"]:
            if queue_id not in ids:
                continue
            buckets = _histogram([s for s in found if s["queue"] == queue_id], interval_ms)
            points = [(k, s) for k, s in buckets.items() if k >= chart_start]
            if not points:
                continue
            result.append(
                {
                    "queue": queue_id,
                    "dates": [k for k, _ in points],
                    "avg_waiting_times": [s["avg_waiting_time"] for _, s in points],
                    "queue_lengths": [s["queue_length"] for _, s in points],
                }
            )
        return {"queues": result}
    per_date: dict[int, dict[str, Doc]] = defaultdict(dict)
    for queue_id in ids:
        for key, s in _histogram([s for s in found if s["queue"] == queue_id], interval_ms).items():
            per_date[key][queue_id] = s
    last: dict[str, Doc] = {}
    dates, waits, lengths = [], [], []
    for key in sorted(per_date):
        last.update(per_date[key])
        if key < chart_start:
            continue
        total = sum(s["queue_length"] for s in last.values())
        avg = sum(s["avg_waiting_time"] * s["queue_length"] / total for s in last.values()) if total else 0
        dates.append(key)
        waits.append(avg)
        lengths.append(total)
    if not dates:
        return {"queues": []}
    total = {"queue": "total", "dates": dates, "avg_waiting_times": waits, "queue_lengths": lengths}
    return {"queues": [total]}
