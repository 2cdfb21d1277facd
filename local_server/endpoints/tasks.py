"""tasks.*: creation, editing, the status machine, clone, queues, parameters, artifacts, models."""

from __future__ import annotations

import contextlib
import copy
from datetime import UTC, datetime
from typing import Any

from .. import errors
from ..query import TASK_OPTIONS, list_predicate, now_iso, run_query
from ..registry import COMPANY, USER, Context, endpoint, ids_of, merge_tags, new_id, require, string_list
from ..schemas import TASK_TYPES
from ..store import Doc, Transaction
from . import projects
from .queues import create as create_queue
from .queues import enqueue_entry, get_queue, remove_entry, resolve_default_queue

# The real server's state machine: status -> statuses it may move to without ``force``.
TRANSITIONS: dict[str, set[str]] = {
    "created": {"queued", "in_progress"},
    "queued": {"created", "in_progress", "stopped"},
    "in_progress": {"stopped", "failed", "created", "completed"},
    "stopped": {
        "closed",
        "created",
        "failed",
        "queued",
        "in_progress",
        "published",
        "publishing",
        "completed",
    },
    "closed": {"created", "failed", "published", "publishing", "stopped"},
    "failed": {"created", "stopped", "published", "queued"},
    "publishing": {"published"},
    "published": set(),
    "completed": {"published", "in_progress", "created"},
}
TYPES = frozenset(TASK_TYPES)
EDITABLE = (
    "name",
    "tags",
    "system_tags",
    "type",
    "comment",
    "parent",
    "project",
    "input",
    "output",
    "execution",
    "script",
    "hyperparams",
    "configuration",
    "models",
    "container",
    "runtime",
)
ARCHIVED = "archived"


# ---------------------------------------------------------------------------- helpers


def get_task(tx: Transaction, task_id: object) -> Doc:
    doc = tx.get("task", task_id) if isinstance(task_id, str) else None
    if doc is None:
        raise errors.invalid_task_id(task_id)
    return doc


def mutable_task(tx: Transaction, task_id: object) -> Doc:
    doc = copy.deepcopy(get_task(tx, task_id))
    return doc


def save(tx: Transaction, doc: Doc, changed: bool = True) -> None:
    now = now_iso()
    doc["last_update"] = now
    if changed:
        doc["last_change"] = now
        doc["last_changed_by"] = USER["id"]
    tx.put("task", doc)


def check_editable(doc: Doc, force: bool) -> None:
    status = doc["status"]
    if status == "published":
        raise errors.task_published(doc["id"])
    if status != "created" and not force:
        raise errors.invalid_task_status(
            "only draft (created) tasks can be edited without force", id=doc["id"], status=status
        )


def change_status(doc: Doc, new_status: str, force: bool, reason: str = "", message: str = "") -> Doc:
    """Move a task along the status machine; returns the changed fields."""
    current = doc["status"]
    if current != new_status and new_status not in TRANSITIONS.get(current, set()) and not force:
        raise errors.invalid_task_status(f"cannot change status from {current} to {new_status}", id=doc["id"])
    now = now_iso()
    fields: Doc = {
        "status": new_status,
        "status_changed": now,
        "status_reason": reason or "",
        "status_message": message or "",
    }
    if new_status == "in_progress" and not doc.get("started"):
        fields["started"] = now
    if new_status in ("completed", "stopped", "failed", "published") and not doc.get("completed"):
        fields["completed"] = now
    if new_status == "published":
        fields["published"] = now
    doc.update(fields)
    return fields


def _check_type(value: object) -> str:
    if value not in TYPES:
        raise errors.fields_value(f"task type must be one of {sorted(TYPES)}", type=value)
    return str(value)


def _check_project(tx: Transaction, project_id: object) -> None:
    if project_id:
        projects.get_project(tx, project_id)


def _hyperparams_dict(items: Any, field: str = "hyperparams") -> dict[str, dict[str, Doc]]:
    """Accept the list form ([{section, name, value, type}]) or the nested dict form."""
    result: dict[str, dict[str, Doc]] = {}
    if isinstance(items, dict):
        for section, params in items.items():
            if not isinstance(params, dict):
                raise errors.fields_value("hyperparameter section must be an object", section=section)
            for name, param in params.items():
                p = dict(param) if isinstance(param, dict) else {"value": param}
                p.update(section=section, name=name)
                result.setdefault(section, {})[name] = p
        return result
    if not isinstance(items, list):
        raise errors.fields_value("expected a list of parameters", field=field)
    for param in items:
        if not isinstance(param, dict) or not param.get("name"):
            raise errors.fields_value("every parameter needs a name", field=field)
        section = param.get("section") or "General"
        result.setdefault(section, {})[param["name"]] = {**param, "section": section}
    return result


def _configuration_dict(items: Any) -> dict[str, Doc]:
    if isinstance(items, dict):
        return {
            name: {**(v if isinstance(v, dict) else {"value": v}), "name": name} for name, v in items.items()
        }
    if not isinstance(items, list):
        raise errors.fields_value("expected a list of configuration items", field="configuration")
    result: dict[str, Doc] = {}
    for item in items:
        if not isinstance(item, dict) or not item.get("name"):
            raise errors.fields_value("every configuration item needs a name", field="configuration")
        result[item["name"]] = dict(item)
    return result


def new_task_doc(name: str, task_type: str, project: str | None) -> Doc:
    now = now_iso()
    return {
        "id": new_id(),
        "name": name,
        "user": USER["id"],
        "company": COMPANY,
        "type": task_type,
        "status": "created",
        "comment": "",
        "created": now,
        "started": None,
        "completed": None,
        "published": None,
        "parent": None,
        "project": project,
        "input": {},
        "output": {"destination": None},
        "execution": {"queue": None, "parameters": {}, "artifacts": []},
        "script": {},
        "tags": [],
        "system_tags": [],
        "status_changed": now,
        "status_reason": "",
        "status_message": "",
        "last_update": now,
        "last_change": now,
        "last_changed_by": USER["id"],
        "last_iteration": 0,
        "last_metrics": {},
        "hyperparams": {},
        "configuration": {},
        "runtime": {},
        "models": {"input": [], "output": []},
        "container": {},
        "last_worker": None,
        "active_duration": None,
    }


def _apply_fields(tx: Transaction, doc: Doc, body: Doc) -> Doc:
    fields: Doc = {}
    for key in EDITABLE:
        if key not in body:
            continue
        value = body[key]
        if key == "type":
            value = _check_type(value)
        elif key == "project":
            _check_project(tx, value)
        elif key in ("tags", "system_tags"):
            value = merge_tags(None, string_list(body, key))
        elif key == "hyperparams":
            value = _hyperparams_dict(value or {})
        elif key == "configuration":
            value = _configuration_dict(value or {})
        elif key == "name" and (not isinstance(value, str) or len(value.strip()) < 1):
            raise errors.fields_value("task name must be a non-empty string", name=value)
        elif key in ("execution", "script", "output", "models") and isinstance(value, dict):
            # embedded documents: the real server updates the stored document's top-level keys
            # (tasks.edit: ``d = field.to_mongo().to_dict(); d.update(value)``), it does not replace it
            value = {**(doc.get(key) or {}), **value}
            if key == "execution":
                value.setdefault("artifacts", [])
            elif key == "models":
                value = {**value, "input": value.get("input") or [], "output": value.get("output") or []}
        fields[key] = value
    doc.update(fields)
    return fields


# ---------------------------------------------------------------------------- create / read / edit


@endpoint("tasks.create")
def create(ctx: Context, body: Doc) -> Doc:
    require(body, "name", "type")
    doc = new_task_doc(str(body["name"]), _check_type(body["type"]), None)
    _apply_fields(ctx.tx, doc, body)
    if body.get("output_dest"):
        doc["output"]["destination"] = body["output_dest"]
    save(ctx.tx, doc)
    return {"id": doc["id"]}


@endpoint("tasks.get_by_id", "tasks.get_by_id_ex")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    return {"task": get_task(ctx.tx, body["task"])}


@endpoint("tasks.get_all", "tasks.get_all_ex")
def get_all(ctx: Context, body: Doc) -> Doc:
    query = dict(body)
    extra = []
    if not (query.get("search_hidden") or query.get("id")):
        extra.append(list_predicate("system_tags", ["-hidden"]))
    if query.get("include_subprojects") and query.get("project"):
        wanted = query["project"] if isinstance(query["project"], list) else [query["project"]]
        query["project"] = list(wanted) + projects.descendants(ctx.tx, list(wanted))
    page = run_query(ctx.tx.scan("task"), query, TASK_OPTIONS, extra)
    result: Doc = {"tasks": page.items}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


@endpoint("tasks.edit")
def edit(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, bool(body.get("force")))
    fields = _apply_fields(ctx.tx, doc, body)
    save(ctx.tx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.update")
def update(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    fields: Doc = {}
    for key in ("name", "comment", "project", "tags", "system_tags"):
        if key in body:
            fields.update(_apply_fields(ctx.tx, doc, {key: body[key]}))
    if "output__error" in body:
        doc["output"]["error"] = body["output__error"]
        fields["output"] = doc["output"]
    save(ctx.tx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.set_requirements")
def set_requirements(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "requirements")
    doc = mutable_task(ctx.tx, body["task"])
    if doc["status"] == "published":
        raise errors.task_published(doc["id"])
    doc.setdefault("script", {})["requirements"] = body["requirements"]
    save(ctx.tx, doc)
    return {"updated": 1, "fields": {"script": doc["script"]}}


@endpoint("tasks.get_types")
def get_types(ctx: Context, body: Doc) -> Doc:
    wanted = set(body.get("projects") or [])
    types = {t["type"] for t in ctx.tx.scan("task") if not wanted or t.get("project") in wanted}
    return {"types": sorted(types)}


# ---------------------------------------------------------------------------- status machine


def _status_call(ctx: Context, body: Doc, new_status: str) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    force = bool(body.get("force"))
    was_queued = doc["status"] == "queued"
    fields = change_status(
        doc, new_status, force, body.get("status_reason", ""), body.get("status_message", "")
    )
    if was_queued and new_status != "in_progress" and doc["execution"].get("queue"):
        remove_entry(ctx.tx, doc["execution"]["queue"], doc["id"])
    if new_status == "in_progress":
        doc["last_worker"] = body.get("worker") or doc.get("last_worker")
    save(ctx.tx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.started")
def started(ctx: Context, body: Doc) -> Doc:
    """Like the real server: a task that is not yet running (e.g. a failed task enqueued again) starts a
    new run, ``started`` is now and ``completed``/``active_duration`` are cleared; a running task keeps
    its ``started`` (the agent calls ``started`` up to three times per run)."""
    require(body, "task")
    current = get_task(ctx.tx, body["task"])
    new_run = not (current["status"] == "in_progress" and current.get("started"))
    result = _status_call(ctx, body, "in_progress")
    if new_run:
        doc = mutable_task(ctx.tx, current["id"])
        run_fields = {"started": doc["status_changed"], "completed": None, "active_duration": None}
        doc.update(run_fields)
        ctx.tx.put("task", doc)
        result["fields"].update(run_fields)
    result["started"] = 1
    return result


@endpoint("tasks.stopped")
def stopped(ctx: Context, body: Doc) -> Doc:
    return _status_call(ctx, body, "stopped")


@endpoint("tasks.failed")
def failed(ctx: Context, body: Doc) -> Doc:
    return _status_call(ctx, body, "failed")


@endpoint("tasks.close")
def close(ctx: Context, body: Doc) -> Doc:
    return _status_call(ctx, body, "closed")


@endpoint("tasks.completed")
def completed(ctx: Context, body: Doc) -> Doc:
    result = _status_call(ctx, body, "completed")
    if body.get("publish"):
        publish(ctx, {"task": body["task"], "force": body.get("force")})
    return result


@endpoint("tasks.stop")
def stop(ctx: Context, body: Doc) -> Doc:
    """A stop request: a running task is asked to stop (its process sees ``status_message``)."""
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    if doc["status"] == "in_progress" and not body.get("force"):
        doc["status_message"] = "stopping"
        doc["status_reason"] = body.get("status_reason") or "stopped by user"
        save(ctx.tx, doc)
        return {"updated": 1, "fields": {"status_message": "stopping"}}
    return _status_call(ctx, {**body, "force": True}, "stopped")


@endpoint("tasks.publish")
def publish(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    fields = change_status(doc, "published", bool(body.get("force")), body.get("status_reason", ""))
    save(ctx.tx, doc)
    if body.get("publish_model", True):
        for ref in doc["models"].get("output", []):
            model = ctx.tx.mutable("model", ref.get("model"))
            if model is not None and not model.get("ready"):
                model["ready"] = True
                model["last_update"] = now_iso()
                ctx.tx.put("model", model)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.reset")
def reset(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    if doc["status"] == "published" and not body.get("force"):
        raise errors.task_published(doc["id"])
    dequeued = 0
    if doc["status"] == "queued" and doc["execution"].get("queue"):
        remove_entry(ctx.tx, doc["execution"]["queue"], doc["id"])
        dequeued = 1
    change_status(doc, "created", True)
    doc.update(
        started=None,
        completed=None,
        published=None,
        last_iteration=0,
        last_metrics={},
        last_worker=None,
        active_duration=None,
        enqueue_status=None,
    )
    doc["execution"]["queue"] = None
    artifacts = doc["execution"].get("artifacts", [])
    doc["execution"]["artifacts"] = [a for a in artifacts if a.get("mode") == "input"]
    deleted_models = 0
    if body.get("delete_output_models", True):
        for ref in doc["models"].get("output", []):
            model = ctx.tx.get("model", ref.get("model"))
            if model is not None and not model.get("ready"):
                ctx.tx.delete("model", model["id"])
                deleted_models += 1
    doc["models"]["output"] = []
    doc["output"] = {"destination": doc.get("output", {}).get("destination")}
    save(ctx.tx, doc)
    return {
        "updated": 1,
        "dequeued": {"removed": dequeued},
        "deleted_models": deleted_models,
        "fields": {"status": "created"},
    }


@endpoint("tasks.enqueue")
def enqueue(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    if doc["status"] == "queued":
        raise errors.task_already_queued(doc["id"])
    if body.get("queue") and body.get("queue_name"):
        raise errors.validation("Either queue id or queue name should be provided")
    if body.get("queue"):
        queue = get_queue(ctx.tx, body["queue"])
    elif body.get("queue_name"):
        # the real server creates a queue that is enqueued to by a name it does not know yet
        if not any(q["name"] == body["queue_name"] for q in ctx.tx.scan("queue")):
            create_queue(ctx, {"name": body["queue_name"]})
        queue = get_queue(ctx.tx, body["queue_name"], by_name=True)
    else:
        queue = resolve_default_queue(ctx.tx)
    before = doc["status"]
    fields = change_status(
        doc, "queued", bool(body.get("force")), body.get("status_reason", ""), body.get("status_message", "")
    )
    # the status to return to when the task leaves the queue without running (tasks.dequeue)
    doc["enqueue_status"] = before
    doc["execution"]["queue"] = queue["id"]
    fields["execution.queue"] = queue["id"]
    save(ctx.tx, doc)
    enqueue_entry(ctx.tx, queue["id"], doc["id"])
    return {"queued": 1, "updated": 1, "fields": fields, "queue_watched": True}


def _remove_from_all_queues(tx: Transaction, task_id: str) -> None:
    for queue_id in [q["id"] for q in tx.scan("queue") if any(e["task"] == task_id for e in q["entries"])]:
        remove_entry(tx, queue_id, task_id)


@endpoint("tasks.dequeue")
def dequeue(ctx: Context, body: Doc) -> Doc:
    """Like the real server's ``TaskBLL.dequeue_and_change_status``: take the task out of its queue if it
    is queued; a queued *or running* task then moves to ``new_status`` or back to the status it had
    before it was enqueued (``created`` by default); any other status is left alone (``updated: 0``).
    clearml-agent ``execute`` calls it with ``new_status=in_progress`` on the task it was handed, which
    the daemon has already set running: it must succeed with ``updated: 1``."""
    require(body, "task")
    new_status = body.get("new_status")
    if new_status and new_status not in (*TRANSITIONS, "unknown"):
        raise errors.validation(f"Invalid task status: {new_status}")
    found = ctx.tx.get("task", body["task"]) if isinstance(body["task"], str) else None
    if found is None:
        _remove_from_all_queues(ctx.tx, str(body["task"]))
        return {"dequeued": 1, "updated": 0}
    doc = copy.deepcopy(found)
    if doc["status"] == "queued" and doc["execution"].get("queue"):
        remove_entry(ctx.tx, doc["execution"]["queue"], doc["id"])
    if body.get("remove_from_all_queues"):
        _remove_from_all_queues(ctx.tx, doc["id"])
    if doc["status"] not in ("queued", "in_progress"):
        return {"dequeued": 1, "updated": 0}
    fields = change_status(
        doc,
        new_status or doc.get("enqueue_status") or "created",
        True,
        body.get("status_reason", ""),
        body.get("status_message", ""),
    )
    doc["enqueue_status"] = None
    save(ctx.tx, doc)
    return {"dequeued": 1, "updated": 1, "fields": fields}


@endpoint("tasks.ping")
def ping(ctx: Context, body: Doc) -> Doc:
    """Like the real server (``TaskBLL.set_last_update``): a running task's ``active_duration`` (seconds
    since ``started``) and its ``last_update``/``last_change`` move on."""
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    if doc["status"] == "in_progress" and doc.get("started"):
        with contextlib.suppress(ValueError, TypeError):
            started_at = datetime.fromisoformat(doc["started"])
            doc["active_duration"] = max(0, int((datetime.now(UTC) - started_at).total_seconds()))  # seconds
    save(ctx.tx, doc)
    return {}


# ---------------------------------------------------------------------------- clone / delete / archive


@endpoint("tasks.clone")
def clone(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    src = get_task(ctx.tx, body["task"])
    project = src.get("project")
    result: Doc = {}
    if body.get("new_project_name"):
        project = projects.ensure_project(ctx.tx, body["new_project_name"])["id"]
        result["new_project"] = {"id": project, "name": body["new_project_name"]}
    elif body.get("new_task_project"):
        _check_project(ctx.tx, body["new_task_project"])
        project = body["new_task_project"]
    doc = new_task_doc(body.get("new_task_name") or src["name"], src["type"], project)
    execution = copy.deepcopy(src.get("execution") or {})
    execution["queue"] = None
    execution["artifacts"] = [a for a in execution.get("artifacts", []) if a.get("mode") == "input"]
    overrides = body.get("execution_overrides") or {}
    execution.update(copy.deepcopy(overrides))
    doc.update(
        comment=body.get("new_task_comment", src.get("comment", "")),
        parent=body.get("new_task_parent") or src["id"],
        script=copy.deepcopy(src.get("script") or {}),
        execution=execution,
        hyperparams=copy.deepcopy(src.get("hyperparams") or {}),
        configuration=copy.deepcopy(src.get("configuration") or {}),
        container=copy.deepcopy(body.get("new_task_container") or src.get("container") or {}),
        output={"destination": (src.get("output") or {}).get("destination")},
        tags=merge_tags(None, body.get("new_task_tags") if "new_task_tags" in body else src.get("tags")),
        system_tags=merge_tags(
            None, body.get("new_task_system_tags", [t for t in src.get("system_tags", []) if t != ARCHIVED])
        ),
        models={
            "input": copy.deepcopy(body.get("new_task_input_models") or src["models"].get("input", [])),
            "output": [],
        },
        input=copy.deepcopy(src.get("input") or {}),
        runtime={},
    )
    if body.get("new_task_hyperparams") is not None:
        doc["hyperparams"] = _hyperparams_dict(body["new_task_hyperparams"])
    if body.get("new_task_configuration") is not None:
        doc["configuration"] = _configuration_dict(body["new_task_configuration"])
    save(ctx.tx, doc)
    result["id"] = doc["id"]
    return result


@endpoint("tasks.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = get_task(ctx.tx, body["task"])
    if doc["status"] == "in_progress" and not body.get("force"):
        raise errors.ApiError(400, 123, "task cannot be deleted: it is in progress (use force)", id=doc["id"])
    if doc["status"] == "queued":
        remove_entry(ctx.tx, doc["execution"].get("queue"), doc["id"])
    ctx.tx.delete("task", doc["id"])
    return {"deleted": 1, "updated_children": 0, "updated_models": 0}


@endpoint("tasks.delete_many")
def delete_many(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "ids")
    for task_id in ids:
        delete(ctx, {"task": task_id, "force": body.get("force")})
    return {"succeeded": [{"id": i, "deleted": True} for i in ids], "failed": []}


def _set_archived(ctx: Context, ids: list[str], archived: bool) -> Doc:
    for task_id in ids:
        doc = mutable_task(ctx.tx, task_id)
        tags = set(doc.get("system_tags") or [])
        tags = tags | {ARCHIVED} if archived else tags - {ARCHIVED}
        doc["system_tags"] = sorted(tags)
        if archived and doc["status"] == "queued":
            remove_entry(ctx.tx, doc["execution"].get("queue"), doc["id"])
            change_status(doc, "created", True)
        save(ctx.tx, doc)
    return {"succeeded": [{"id": i, "archived": archived} for i in ids], "failed": [], "archived": len(ids)}


@endpoint("tasks.archive", "tasks.archive_many")
def archive(ctx: Context, body: Doc) -> Doc:
    return _set_archived(ctx, ids_of(body, "ids", "tasks"), True)


@endpoint("tasks.unarchive_many")
def unarchive(ctx: Context, body: Doc) -> Doc:
    return _set_archived(ctx, ids_of(body, "ids"), False)


@endpoint("tasks.move")
def move(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "ids")
    if body.get("project_name"):
        project = projects.ensure_project(ctx.tx, body["project_name"])["id"]
    else:
        require(body, "project")
        project = projects.get_project(ctx.tx, body["project"])["id"]
    for task_id in ids:
        doc = mutable_task(ctx.tx, task_id)
        doc["project"] = project
        save(ctx.tx, doc)
    return {"project_id": project}


# ---------------------------------------------------------------------------- hyperparameters / configuration


PROPERTIES_SECTION = "properties"


def _properties_only(items: Any) -> bool:
    """Like the real server's ``HyperParams._normalize_params``: lower-case the ``properties`` section
    (user properties) and tell whether it is the only one. Such edits are allowed in any task status
    (``Dataset`` sets its ``version`` property while in progress) and move only ``last_change``."""
    if not isinstance(items, list):
        return False
    for item in items:
        if isinstance(item, dict) and str(item.get("section") or "").lower() == PROPERTIES_SECTION:
            item["section"] = PROPERTIES_SECTION
    return all(isinstance(i, dict) and i.get("section") == PROPERTIES_SECTION for i in items)


def _save_properties(tx: Transaction, doc: Doc) -> None:
    doc["last_change"] = now_iso()
    doc["last_changed_by"] = USER["id"]
    tx.put("task", doc)


@endpoint("tasks.edit_hyper_params")
def edit_hyper_params(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    properties_only = _properties_only(body.get("hyperparams") or [])
    if not properties_only:
        check_editable(doc, bool(body.get("force")))
    incoming = _hyperparams_dict(body.get("hyperparams") or [])
    mode = body.get("replace_hyperparams") or "none"
    if mode not in ("none", "section", "all"):
        raise errors.fields_value("replace_hyperparams must be none, section or all", value=mode)
    current = {} if mode == "all" else doc.get("hyperparams") or {}
    for section, params in incoming.items():
        if mode == "section" or section not in current:
            current[section] = {}
        current[section].update(params)
    doc["hyperparams"] = current
    if properties_only:
        _save_properties(ctx.tx, doc)
    else:
        save(ctx.tx, doc)
    return {"updated": 1}


@endpoint("tasks.delete_hyper_params")
def delete_hyper_params(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "hyperparams")
    doc = mutable_task(ctx.tx, body["task"])
    properties_only = _properties_only(body["hyperparams"])
    if not properties_only:
        check_editable(doc, bool(body.get("force")))
    for item in body["hyperparams"]:
        section = doc["hyperparams"].get(item.get("section"), {})
        if item.get("name"):
            section.pop(item["name"], None)
        else:
            doc["hyperparams"].pop(item.get("section"), None)
    if properties_only:
        _save_properties(ctx.tx, doc)
    else:
        save(ctx.tx, doc)
    return {"deleted": 1}


def _param_list(doc: Doc) -> list[Doc]:
    return [p for section in (doc.get("hyperparams") or {}).values() for p in section.values()]


@endpoint("tasks.get_hyper_params")
def get_hyper_params(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "tasks")
    return {"params": [{"task": i, "hyperparams": _param_list(get_task(ctx.tx, i))} for i in ids]}


@endpoint("tasks.edit_configuration")
def edit_configuration(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, bool(body.get("force")))
    incoming = _configuration_dict(body.get("configuration") or [])
    current = {} if body.get("replace_configuration") else doc.get("configuration") or {}
    current.update(incoming)
    doc["configuration"] = current
    save(ctx.tx, doc)
    return {"updated": 1}


@endpoint("tasks.delete_configuration")
def delete_configuration(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "configuration")
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, bool(body.get("force")))
    for name in body["configuration"]:
        doc["configuration"].pop(name, None)
    save(ctx.tx, doc)
    return {"deleted": 1}


@endpoint("tasks.get_configurations")
def get_configurations(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "tasks")
    names = body.get("names")
    out = []
    for task_id in ids:
        conf = get_task(ctx.tx, task_id).get("configuration") or {}
        items = [v for k, v in conf.items() if not names or k in names]
        out.append({"task": task_id, "configuration": items})
    return {"configurations": out}


@endpoint("tasks.get_configuration_names")
def get_configuration_names(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "tasks")
    return {
        "configurations": [
            {"task": i, "names": sorted((get_task(ctx.tx, i).get("configuration") or {}).keys())} for i in ids
        ]
    }


# ---------------------------------------------------------------------------- artifacts and models


@endpoint("tasks.add_or_update_artifacts")
def add_or_update_artifacts(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "artifacts")
    doc = mutable_task(ctx.tx, body["task"])
    if doc["status"] == "published" and not body.get("force"):
        raise errors.task_published(doc["id"])
    artifacts = {(a.get("key"), a.get("mode", "output")): a for a in doc["execution"].get("artifacts", [])}
    for art in body["artifacts"]:
        if not isinstance(art, dict) or not art.get("key") or not art.get("type"):
            raise errors.fields_value("every artifact needs a key and a type", field="artifacts")
        art = {"mode": "output", **art}
        artifacts[(art["key"], art["mode"])] = art
    doc["execution"]["artifacts"] = list(artifacts.values())
    save(ctx.tx, doc)
    return {"updated": 1}


@endpoint("tasks.delete_artifacts")
def delete_artifacts(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "artifacts")
    doc = mutable_task(ctx.tx, body["task"])
    drop = {(a.get("key"), a.get("mode", "output")) for a in body["artifacts"]}
    before = doc["execution"].get("artifacts", [])
    doc["execution"]["artifacts"] = [a for a in before if (a.get("key"), a.get("mode", "output")) not in drop]
    save(ctx.tx, doc)
    return {"deleted": len(before) - len(doc["execution"]["artifacts"])}


@endpoint("tasks.add_or_update_model")
def add_or_update_model(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "name", "model", "type")
    if body["type"] not in ("input", "output"):
        raise errors.fields_value("model type must be input or output", type=body["type"])
    doc = mutable_task(ctx.tx, body["task"])
    if ctx.tx.get("model", body["model"]) is None:
        raise errors.invalid_model_id(body["model"])
    refs = [m for m in doc["models"].get(body["type"], []) if m.get("name") != body["name"]]
    refs.append({"name": body["name"], "model": body["model"]})
    doc["models"][body["type"]] = refs
    if body.get("iteration") is not None:
        doc["last_iteration"] = max(doc.get("last_iteration") or 0, int(body["iteration"]))
    save(ctx.tx, doc)
    return {"updated": 1}


@endpoint("tasks.delete_models")
def delete_models(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "models")
    doc = mutable_task(ctx.tx, body["task"])
    for item in body["models"]:
        kind = item.get("type", "output")
        doc["models"][kind] = [m for m in doc["models"].get(kind, []) if m.get("name") != item.get("name")]
    save(ctx.tx, doc)
    return {"updated": 1}
