"""models.*: the model registry; ``ready`` means published."""

from __future__ import annotations

from .. import errors
from ..query import MODEL_OPTIONS, now_iso, run_query
from ..registry import COMPANY, USER, Context, endpoint, ids_of, merge_tags, new_id, require, string_list
from ..store import Doc, Transaction
from . import projects
from .tasks import change_status
from .tasks import save as save_task

EDITABLE = (
    "uri",
    "name",
    "comment",
    "tags",
    "system_tags",
    "framework",
    "design",
    "labels",
    "ready",
    "project",
    "parent",
    "task",
    "ui_cache",
)

# changing one of these moves ``last_update`` (what model triggers watch); any change moves ``last_change``
LAST_UPDATE_FIELDS = {"uri", "framework", "design", "labels", "ready", "metadata", "system_tags", "tags"}


def get_model(tx: Transaction, model_id: object) -> Doc:
    doc = tx.get("model", model_id) if isinstance(model_id, str) else None
    if doc is None:
        raise errors.invalid_model_id(model_id)
    return doc


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _metadata(items: object) -> dict[str, Doc]:
    if items is None:
        return {}
    if isinstance(items, dict):
        return {
            k: ({"key": k, **v} if isinstance(v, dict) else {"key": k, "value": _text(v), "type": "str"})
            for k, v in items.items()
        }
    if not isinstance(items, list):
        raise errors.fields_value("metadata must be a list of {key, type, value}", field="metadata")
    out: dict[str, Doc] = {}
    for item in items:
        if not isinstance(item, dict) or not item.get("key"):
            raise errors.fields_value("every metadata item needs a key", field="metadata")
        out[item["key"]] = dict(item)
    return out


def _apply(tx: Transaction, doc: Doc, body: Doc) -> Doc:
    fields: Doc = {}
    for key in EDITABLE:
        if key not in body:
            continue
        value = body[key]
        if key in ("tags", "system_tags"):
            value = merge_tags(None, string_list(body, key))
        elif key == "project" and value:
            projects.get_project(tx, value)
        elif key == "task" and value and tx.get("task", value) is None:
            raise errors.invalid_task_id(value)
        elif key == "ready":
            value = bool(value)
        fields[key] = value
    if "metadata" in body:
        fields["metadata"] = _metadata(body["metadata"])
    if body.get("iteration") is not None:
        fields["last_iteration"] = int(body["iteration"])
    doc.update(fields)
    now = now_iso()
    doc["last_change"] = now
    if LAST_UPDATE_FIELDS & set(fields):
        doc["last_update"] = now
    return fields


def _new(body: Doc) -> Doc:
    now = now_iso()
    return {
        "id": new_id(),
        "name": body.get("name") or "Untitled model",
        "user": USER["id"],
        "company": COMPANY,
        "created": now,
        "last_update": now,
        "last_change": now,
        "task": None,
        "parent": None,
        "project": None,
        "comment": "",
        "tags": [],
        "system_tags": [],
        "framework": None,
        "design": None,
        "labels": {},
        "uri": None,
        "ready": False,
        "ui_cache": None,
        "metadata": {},
        "last_iteration": 0,
        "last_metrics": {},
    }


@endpoint("models.create")
def create(ctx: Context, body: Doc) -> Doc:
    doc = _new(body)
    _apply(ctx.tx, doc, body)
    ctx.tx.put("model", doc)
    return {"id": doc["id"], "created": True}


@endpoint("models.update_for_task")
def update_for_task(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    task = ctx.tx.get("task", body["task"])
    if task is None:
        raise errors.invalid_task_id(body["task"])
    if body.get("override_model_id"):
        model = ctx.tx.mutable("model", get_model(ctx.tx, body["override_model_id"])["id"])
        created = False
    else:
        model = _new({"name": body.get("name") or task["name"]})
        model.update(task=task["id"], project=task.get("project"))
        created = True
    assert model is not None
    _apply(ctx.tx, model, {k: body[k] for k in ("uri", "name", "comment", "tags", "iteration") if k in body})
    ctx.tx.put("model", model)
    return {"id": model["id"], "created": created, "updated": 0 if created else 1}


@endpoint("models.get_by_id")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    return {"model": get_model(ctx.tx, body["model"])}


@endpoint("models.get_by_task_id")
def get_by_task_id(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    for model in ctx.tx.scan("model"):
        if model.get("task") == body["task"]:
            return {"model": model}
    raise errors.invalid_model_id(None)


@endpoint("models.get_all", "models.get_all_ex")
def get_all(ctx: Context, body: Doc) -> Doc:
    query = dict(body)
    if query.get("include_subprojects") and query.get("project"):
        wanted = query["project"] if isinstance(query["project"], list) else [query["project"]]
        query["project"] = list(wanted) + projects.descendants(ctx.tx, list(wanted))
    page = run_query(ctx.tx.scan("model"), query, MODEL_OPTIONS)
    result: Doc = {"models": page.items}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


@endpoint("models.edit", "models.update")
def edit(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    doc = ctx.tx.mutable("model", get_model(ctx.tx, body["model"])["id"])
    assert doc is not None
    fields = _apply(ctx.tx, doc, body)
    ctx.tx.put("model", doc)
    return {"updated": 1, "fields": fields}


def _publish(ctx: Context, model_id: str, publish_task: bool, force_publish_task: bool) -> Doc:
    doc = ctx.tx.mutable("model", get_model(ctx.tx, model_id)["id"])
    assert doc is not None
    doc["ready"] = True
    doc["last_update"] = doc["last_change"] = now_iso()
    ctx.tx.put("model", doc)
    published_task: Doc = {}
    task = ctx.tx.mutable("task", doc["task"]) if doc.get("task") and publish_task else None
    if task is not None and task["status"] != "published":
        fields = change_status(task, "published", force_publish_task)
        save_task(ctx.tx, task)
        published_task = {"id": task["id"], "data": {"updated": 1, "fields": fields}}
    return published_task


@endpoint("models.set_ready")
def set_ready(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    published = _publish(
        ctx, body["model"], bool(body.get("publish_task", True)), bool(body.get("force_publish_task"))
    )
    return {"updated": 1, "published_task": published or None}


@endpoint("models.publish_many")
def publish_many(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "ids")
    for model_id in ids:
        _publish(ctx, model_id, bool(body.get("publish_tasks", True)), bool(body.get("force_publish_task")))
    return {"succeeded": [{"id": i, "updated": 1} for i in ids], "failed": []}


@endpoint("models.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    doc = get_model(ctx.tx, body["model"])
    if doc.get("ready") and not body.get("force"):
        raise errors.ApiError(400, 203, "model is ready (published): delete needs force", id=doc["id"])
    ctx.tx.delete("model", doc["id"])
    return {"deleted": True, "url": doc.get("uri")}


def _set_archived(ctx: Context, ids: list[str], archived: bool) -> Doc:
    for model_id in ids:
        doc = ctx.tx.mutable("model", get_model(ctx.tx, model_id)["id"])
        assert doc is not None
        tags = set(doc.get("system_tags") or [])
        doc["system_tags"] = sorted(tags | {"archived"} if archived else tags - {"archived"})
        ctx.tx.put("model", doc)
    return {"succeeded": [{"id": i, "archived": archived} for i in ids], "failed": []}


@endpoint("models.archive_many")
def archive_many(ctx: Context, body: Doc) -> Doc:
    return _set_archived(ctx, ids_of(body, "ids"), True)


@endpoint("models.unarchive_many")
def unarchive_many(ctx: Context, body: Doc) -> Doc:
    return _set_archived(ctx, ids_of(body, "ids"), False)


@endpoint("models.add_or_update_metadata")
def add_or_update_metadata(ctx: Context, body: Doc) -> Doc:
    require(body, "model", "metadata")
    doc = ctx.tx.mutable("model", get_model(ctx.tx, body["model"])["id"])
    assert doc is not None
    current = {} if body.get("replace_metadata") else dict(doc.get("metadata") or {})
    current.update(_metadata(body["metadata"]))
    doc["metadata"] = current
    doc["last_update"] = doc["last_change"] = now_iso()
    ctx.tx.put("model", doc)
    return {"updated": 1}


@endpoint("models.delete_metadata")
def delete_metadata(ctx: Context, body: Doc) -> Doc:
    require(body, "model", "keys")
    doc = ctx.tx.mutable("model", get_model(ctx.tx, body["model"])["id"])
    assert doc is not None
    for key in body["keys"]:
        doc["metadata"].pop(key, None)
    ctx.tx.put("model", doc)
    return {"updated": 1}
