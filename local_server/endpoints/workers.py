"""workers.*: agents register, report status, and hold runtime properties."""

from __future__ import annotations

import time
from typing import Any

from .. import errors
from ..query import now_iso
from ..registry import COMPANY, USER, Context, endpoint, require
from ..store import Doc

DEFAULT_TIMEOUT_S = 600


def _worker(ctx: Context, worker_id: str) -> Doc:
    doc = ctx.tx.mutable("worker", worker_id)
    if doc is None:
        now = now_iso()
        doc = {
            "id": worker_id,
            "key": worker_id,
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
    return doc


def _touch(ctx: Context, doc: Doc) -> None:
    doc["last_activity_time"] = now_iso()
    doc["last_activity_epoch"] = time.time()
    ctx.tx.put("worker", doc)


@endpoint("workers.register")
def register(ctx: Context, body: Doc) -> Doc:
    require(body, "worker")
    doc = _worker(ctx, body["worker"])
    doc["register_timeout"] = int(body.get("timeout") or DEFAULT_TIMEOUT_S)
    doc["queues"] = list(body.get("queues") or [])
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
    doc["task"] = None
    doc["queue"] = body.get("queue")
    if task is not None:
        doc["task"] = {"id": task["id"], "name": task["name"], "last_iteration": task.get("last_iteration")}
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
    if body.get("queues") is not None:
        doc["queues"] = list(body["queues"])
    if body.get("machine_stats"):
        doc["machine_stats"] = body["machine_stats"]
    doc["last_report_time"] = now_iso()
    _touch(ctx, doc)
    return {}


def _public(ctx: Context, doc: Doc) -> Doc:
    queues = []
    for qid in doc.get("queues") or []:
        q = ctx.tx.get("queue", qid)
        if q is not None:
            queues.append({"id": q["id"], "name": q["name"], "num_tasks": len(q["entries"])})
    hidden = ("runtime_properties", "last_activity_epoch")
    public: dict[str, Any] = {k: v for k, v in doc.items() if k not in hidden}
    public["queues"] = queues
    public["queue"] = next((q for q in queues if q["id"] == doc.get("queue")), None)
    return public


@endpoint("workers.get_all")
def get_all(ctx: Context, body: Doc) -> Doc:
    now = time.time()
    alive = [
        d
        for d in ctx.tx.scan("worker")
        if now - d.get("last_activity_epoch", 0) <= d.get("register_timeout", DEFAULT_TIMEOUT_S)
    ]
    return {"workers": [_public(ctx, d) for d in sorted(alive, key=lambda d: d["id"])]}


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


@endpoint("workers.get_activity_report", "workers.get_stats", "workers.get_metric_keys")
def stats(ctx: Context, body: Doc) -> Doc:
    return {"total": [], "active": [], "workers": [], "categories": []}
