"""queues.*: FIFO queues of task ids; ``get_next_task`` pops the head."""

from __future__ import annotations

from .. import errors
from ..query import QUEUE_OPTIONS, now_iso, run_query
from ..registry import COMPANY, USER, Context, endpoint, merge_tags, new_id, require, string_list
from ..store import Doc, Transaction

DEFAULT = "default"


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


def resolve_default_queue(tx: Transaction) -> Doc:
    defaults = [q for q in tx.scan("queue") if DEFAULT in (q.get("system_tags") or [])]
    if not defaults:
        raise errors.no_default_queue()
    if len(defaults) > 1:
        raise errors.ApiError(400, 708, "more than one queue is tagged as the default queue")
    return defaults[0]


def enqueue_entry(tx: Transaction, queue_id: str, task_id: str) -> None:
    queue = tx.mutable("queue", queue_id)
    if queue is None:
        raise errors.invalid_queue_id(queue_id)
    if any(e["task"] == task_id for e in queue["entries"]):
        raise errors.task_already_queued(task_id)
    queue["entries"].append({"task": task_id, "added": now_iso()})
    queue["last_update"] = now_iso()
    tx.put("queue", queue)


def remove_entry(tx: Transaction, queue_id: str | None, task_id: str) -> int:
    queue = tx.mutable("queue", queue_id) if queue_id else None
    if queue is None:
        return 0
    before = len(queue["entries"])
    queue["entries"] = [e for e in queue["entries"] if e["task"] != task_id]
    queue["last_update"] = now_iso()
    tx.put("queue", queue)
    return before - len(queue["entries"])


@endpoint("queues.create")
def create(ctx: Context, body: Doc) -> Doc:
    require(body, "name")
    name = str(body["name"]).strip()
    if any(q["name"] == name for q in ctx.tx.scan("queue")):
        raise errors.unique_violation("a queue with this name exists", name=name)
    now = now_iso()
    doc = {
        "id": new_id(),
        "name": name,
        "display_name": body.get("display_name"),
        "user": USER["id"],
        "company": COMPANY,
        "created": now,
        "last_update": now,
        "tags": merge_tags(None, string_list(body, "tags")),
        "system_tags": merge_tags(None, string_list(body, "system_tags")),
        "entries": [],
        "metadata": _metadata(body.get("metadata")),
    }
    ctx.tx.put("queue", doc)
    return {"id": doc["id"]}


@endpoint("queues.get_by_id")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "queue")
    return {"queue": get_queue(ctx.tx, body["queue"])}


@endpoint("queues.get_all", "queues.get_all_ex")
def get_all(ctx: Context, body: Doc) -> Doc:
    page = run_query(ctx.tx.scan("queue"), body, QUEUE_OPTIONS, default_order=["name"])
    result: Doc = {"queues": page.items}
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
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    fields: Doc = {}
    if "name" in body:
        fields["name"] = str(body["name"]).strip()
    if "metadata" in body:
        fields["metadata"] = _metadata(body["metadata"])
    for key in ("tags", "system_tags"):
        if key in body:
            fields[key] = merge_tags(None, string_list(body, key))
    queue.update(fields)
    queue["last_update"] = now_iso()
    ctx.tx.put("queue", queue)
    return {"updated": 1, "fields": fields}


@endpoint("queues.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    require(body, "queue")
    queue = get_queue(ctx.tx, body["queue"])
    if queue["entries"] and not body.get("force"):
        raise errors.ApiError(400, 702, "queue is not empty", queue=queue["id"], tasks=len(queue["entries"]))
    ctx.tx.delete("queue", queue["id"])
    return {"deleted": 1}


@endpoint("queues.add_task")
def add_task(ctx: Context, body: Doc) -> Doc:
    require(body, "queue", "task")
    queue = get_queue(ctx.tx, body["queue"])
    if ctx.tx.get("task", body["task"]) is None:
        raise errors.invalid_task_id(body["task"])
    enqueue_entry(ctx.tx, queue["id"], body["task"])
    return {"added": 1}


@endpoint("queues.remove_task")
def remove_task(ctx: Context, body: Doc) -> Doc:
    require(body, "queue", "task")
    queue = get_queue(ctx.tx, body["queue"])
    removed = remove_entry(ctx.tx, queue["id"], body["task"])
    if not removed:
        raise errors.task_not_queued(queue["id"], body["task"])
    return {"removed": removed}


@endpoint("queues.get_next_task")
def get_next_task(ctx: Context, body: Doc) -> Doc:
    """Pop the head of the queue, skipping entries whose task is no longer queued there."""
    require(body, "queue")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    result: Doc = {}
    while queue["entries"]:
        entry = queue["entries"].pop(0)
        task = ctx.tx.get("task", entry["task"])
        if task is not None and task["status"] == "queued":
            result = {"entry": entry}
            if body.get("get_task_info"):
                result["task_info"] = {"company": COMPANY, "user": task.get("user")}
            break
    queue["last_update"] = now_iso()
    ctx.tx.put("queue", queue)
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
    require(body, "queue")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    removed = [e["task"] for e in queue["entries"]]
    queue["entries"] = []
    ctx.tx.put("queue", queue)
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
    ctx.tx.put("queue", queue)
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


@endpoint("queues.add_or_update_metadata")
def add_or_update_metadata(ctx: Context, body: Doc) -> Doc:
    require(body, "queue", "metadata")
    queue = ctx.tx.mutable("queue", get_queue(ctx.tx, body["queue"])["id"])
    assert queue is not None
    if body.get("replace_metadata"):
        queue["metadata"] = {}
    queue["metadata"].update(_metadata(body["metadata"]))
    ctx.tx.put("queue", queue)
    return {"updated": 1}


@endpoint("queues.get_queue_metrics")
def get_queue_metrics(ctx: Context, body: Doc) -> Doc:
    return {"queues": []}
