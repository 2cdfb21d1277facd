"""models.*: the model registry; ``ready`` means published.

As in the real server a new model is ready unless created with ``ready: false``; publishing a ready
model again is refused (400/203); ``update_for_task`` (API <= 2.13, later 301) makes the model the
task's output model.
"""

from __future__ import annotations

import copy

from .. import errors
from ..query import MODEL_OPTIONS, now_iso, run_query
from ..registry import COMPANY, USER, Context, endpoint, ids_of, merge_tags, new_id, require, string_list
from ..store import Doc, Transaction
from . import projects
from .tasks import (
    DELETED_PREFIX,
    _check_tag_values,
    _publish_one,
    api_version,
    edit_entity_tags,
    expand_references,
    move_under_project,
    partition_tags,
    run_batch,
    split_projection,
)
from .tasks import save as save_task
from .visibility import set_public

MODEL_REFERENCES = {
    "project": "project",
    "parent": "model",
    "task": "task",
    "user": "user",
    "company": "company",
}
LEGACY_MODEL_API = (2, 13)  # update_for_task and get_by_task_id: 301 for later API versions

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


def _prepare(ctx: Context, body: Doc) -> Doc:
    """Tags as the real server takes them: no ``__$`` prefix; before API 2.3 split into system tags."""
    _check_tag_values(body)
    if api_version(ctx) < (2, 3) and body.get("tags") is not None and not body.get("system_tags"):
        tags = [body["tags"]] if isinstance(body["tags"], str) else body["tags"]
        user_tags, system_tags = partition_tags(tags)
        body = {**body, "tags": user_tags, "system_tags": system_tags}
    return body


def conform(ctx: Context, model: Doc) -> Doc:
    """A stored model as the real server answers it to the client's API version (a copy)."""
    out = copy.deepcopy(model)
    version = api_version(ctx)
    if version < (2, 3) and out.get("system_tags"):
        out["tags"] = sorted(set(out.get("tags") or []) | set(out["system_tags"]))
    if version <= (2, 16) and "metadata" in out:
        out["metadata"] = []
    return out


def _raise_task_iteration(tx: Transaction, task_id: object, iteration: object) -> None:
    """``last_iteration`` of the model's task rises to ``iteration`` (never falls)."""
    task = tx.mutable("task", task_id) if isinstance(task_id, str) else None
    if task is None or not isinstance(iteration, int):
        return
    task["last_iteration"] = max(task.get("last_iteration") or 0, iteration)
    save_task(tx, task)


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
        "ready": True,
        "ui_cache": None,
        "metadata": {},
        "last_iteration": 0,
        "last_metrics": {},
    }


@endpoint("models.create")
def create(ctx: Context, body: Doc) -> Doc:
    doc = _new(body)
    _apply(ctx.tx, doc, _prepare(ctx, body))
    ctx.tx.put("model", doc)
    return {"id": doc["id"], "created": True}


def _legacy_only(ctx: Context, use: str) -> None:
    if api_version(ctx) > LEGACY_MODEL_API:
        raise errors.ApiError(
            301, 1, f"this endpoint is no longer supported for the requested API version ({use})"
        )


@endpoint("models.update_for_task")
def update_for_task(ctx: Context, body: Doc) -> Doc:
    """The real server's (API <= 2.13): exactly one of ``uri`` and ``override_model_id``; the task must
    be a draft or running (400/110). A ``uri`` updates the task's last output model, or creates one
    (named after the task, its project, framework and labels; ready only if the task is published); the
    model becomes the task's output model and the task's ``last_iteration`` rises to ``iteration``."""
    _legacy_only(ctx, "use tasks.add_or_update_model")
    require(body, "task")
    uri, override = body.get("uri"), body.get("override_model_id")
    if bool(uri) == bool(override):
        raise errors.missing_field("uri", "override_model_id")
    task = ctx.tx.mutable("task", body["task"]) if isinstance(body["task"], str) else None
    if task is None:
        raise errors.invalid_task_id(body["task"])
    if task["status"] not in ("created", "in_progress"):
        raise errors.invalid_task_status(
            "model can only be updated for tasks in the ['created', 'in_progress'] states", id=task["id"]
        )
    outputs = (task.get("models") or {}).get("output") or []
    if override:
        model_id = get_model(ctx.tx, override)["id"]
    elif outputs:
        model_id = outputs[-1]["model"]
        model = ctx.tx.mutable("model", get_model(ctx.tx, model_id)["id"])
        assert model is not None
        fields = _apply(
            ctx.tx,
            model,
            _prepare(
                ctx, {k: body[k] for k in ("uri", "name", "comment", "tags", "system_tags") if k in body}
            ),
        )
        ctx.tx.put("model", model)
        _raise_task_iteration(ctx.tx, task["id"], body.get("iteration"))
        return {"id": model_id, "created": False, "updated": 1, "fields": conform(ctx, fields)}
    else:
        execution = task.get("execution") or {}
        inputs = (task.get("models") or {}).get("input") or []
        model = _new({"name": body.get("name") or task["name"]})
        model.update(
            task=task["id"],
            project=task.get("project"),
            framework=execution.get("framework"),
            parent=inputs[0].get("model") if inputs else None,
            design=execution.get("model_desc") or None,
            labels=execution.get("model_labels") or {},
            ready=task["status"] == "published",
            comment=f"Created by task `{task['name']}` ({task['id']})",
        )
        _apply(
            ctx.tx,
            model,
            _prepare(
                ctx, {k: body[k] for k in ("uri", "name", "comment", "tags", "system_tags") if k in body}
            ),
        )
        ctx.tx.put("model", model)
        model_id = model["id"]
    task = ctx.tx.mutable("task", task["id"])
    assert task is not None
    task["models"] = {
        **(task.get("models") or {}),
        "output": [{"name": "output", "model": model_id, "updated": now_iso()}],
    }
    if isinstance(body.get("iteration"), int):
        task["last_iteration"] = max(task.get("last_iteration") or 0, body["iteration"])
    save_task(ctx.tx, task)
    return {"id": model_id, "created": True}


@endpoint("models.get_by_id")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    return {"model": conform(ctx, get_model(ctx.tx, body["model"]))}


@endpoint("models.get_by_task_id")
def get_by_task_id(ctx: Context, body: Doc) -> Doc:
    """The task's last output model (API <= 2.13)."""
    _legacy_only(ctx, "use models.get_by_id/get_all apis")
    require(body, "task")
    task = ctx.tx.get("task", body["task"]) if isinstance(body["task"], str) else None
    if task is None:
        raise errors.invalid_task_id(body["task"])
    outputs = (task.get("models") or {}).get("output") or []
    if not outputs:
        raise errors.ApiError(400, 122, "task is missing expected fields", field="models.output")
    return {"model": conform(ctx, get_model(ctx.tx, outputs[-1].get("model")))}


def _query_models(ctx: Context, body: Doc, with_references: bool) -> Doc:
    query = dict(body)
    if query.get("include_subprojects") and query.get("project"):
        wanted = query["project"] if isinstance(query["project"], list) else [query["project"]]
        query["project"] = list(wanted) + projects.descendants(ctx.tx, list(wanted))
    joined: dict[str, list[str]] = {}
    if with_references:
        projection = query.pop("projection", None) or query.pop("only_fields", None)
        query["only_fields"], joined = split_projection(projection, MODEL_REFERENCES)
    page = run_query(ctx.tx.scan("model"), query, MODEL_OPTIONS)
    models = [conform(ctx, m) for m in page.items]
    for model in models:
        if with_references:
            expand_references(ctx.tx, model, MODEL_REFERENCES, joined)
        if with_references and body.get("include_stats"):
            stored = ctx.tx.get("model", model["id"]) or {}
            model["stats"] = {"labels_count": len(stored.get("labels") or {})}
    result: Doc = {"models": models}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


@endpoint("models.get_all")
def get_all(ctx: Context, body: Doc) -> Doc:
    return _query_models(ctx, body, with_references=False)


@endpoint("models.get_all_ex", "models.get_by_id_ex")
def get_all_ex(ctx: Context, body: Doc) -> Doc:
    """With ``include_stats`` each model has ``stats.labels_count``."""
    return _query_models(ctx, body, with_references=True)


@endpoint("models.get_frameworks")
def get_frameworks(ctx: Context, body: Doc) -> Doc:
    wanted = set(body.get("projects") or [])
    frameworks = {
        m["framework"]
        for m in ctx.tx.scan("model")
        if m.get("framework") and (not wanted or m.get("project") in wanted)
    }
    return {"frameworks": sorted(frameworks)}


@endpoint("models.edit", "models.update")
def edit(ctx: Context, body: Doc) -> Doc:
    """``iteration`` raises the ``last_iteration`` of the model's task (``edit``: the model's task or
    the one given; ``update``: the one given)."""
    require(body, "model")
    doc = ctx.tx.mutable("model", get_model(ctx.tx, body["model"])["id"])
    assert doc is not None
    if doc.get("company") == "":  # public: readable, not writable (as a model of another company)
        raise errors.invalid_model_id(doc["id"])
    task_id = body.get("task") if ctx.endpoint == "models.update" else doc.get("task") or body.get("task")
    fields = _apply(ctx.tx, doc, _prepare(ctx, body))
    if body.get("iteration") is not None:
        _raise_task_iteration(ctx.tx, task_id, body["iteration"])
    ctx.tx.put("model", doc)
    return {"updated": 1, "fields": conform(ctx, fields)}


def _publish(ctx: Context, model_id: str, publish_task: bool, force_publish_task: bool) -> Doc | None:
    """The real server's ``ModelBLL.publish_model``: a ready model is refused (400/203); its task, if
    asked and not yet published, is published first (through the status machine unless forced)."""
    doc = ctx.tx.mutable("model", get_model(ctx.tx, model_id)["id"])
    assert doc is not None
    if doc.get("ready"):
        raise errors.ApiError(400, 203, "model is ready", model=model_id)
    published_task: Doc | None = None
    task = ctx.tx.get("task", doc["task"]) if publish_task and doc.get("task") else None
    if task is not None and task["status"] != "published":
        data = _publish_one(ctx, task["id"], {"publish_model": False}, force_publish_task)
        published_task = {"id": task["id"], "data": data}
    doc = ctx.tx.mutable("model", doc["id"])
    assert doc is not None
    doc["ready"] = True
    doc["last_update"] = doc["last_change"] = now_iso()
    ctx.tx.put("model", doc)
    return published_task


@endpoint("models.set_ready")
def set_ready(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    published = _publish(
        ctx, body["model"], bool(body.get("publish_task", True)), bool(body.get("force_publish_task"))
    )
    return {"updated": 1, "published_task": published}


@endpoint("models.publish_many")
def publish_many(ctx: Context, body: Doc) -> Doc:
    publish_task = bool(body.get("publish_task", body.get("publish_tasks", True)))
    force = bool(body.get("force_publish_task"))
    results, failures = run_batch(
        ids_of(body, "ids"), ctx.tx, lambda i: _publish(ctx, i, publish_task, force)
    )
    return {
        "succeeded": [{"id": i, "updated": True, "published_task": task} for i, task in results],
        "failed": failures,
    }


def _delete(ctx: Context, model_id: str, force: bool) -> Doc:
    """The real server's ``ModelBLL.delete_model``: a model other tasks use as input needs ``force``
    (400/205; they then name ``__DELETED__<id>``); the model of a published task too (400/206; the task
    keeps ``__DELETED__<id>`` as output and an ``output.error``); a draft task just loses it."""
    doc = get_model(ctx.tx, model_id)
    deleted_id = f"{DELETED_PREFIX}{doc['id']}"
    users = [
        t
        for t in ctx.tx.scan("task")
        if any(r.get("model") == doc["id"] for r in (t.get("models") or {}).get("input") or [])
    ]
    if users and not force:
        raise errors.ApiError(
            400,
            205,
            "model is used by tasks: as execution model, use force=True to delete",
            num_tasks=len(users),
        )
    for user_task in [copy.deepcopy(t) for t in users]:
        for ref in user_task["models"]["input"]:
            if ref.get("model") == doc["id"]:
                ref["model"] = deleted_id
        save_task(ctx.tx, user_task)
    task = ctx.tx.mutable("task", doc["task"]) if doc.get("task") else None
    if task is not None:
        outputs = (task.get("models") or {}).get("output") or []
        if task["status"] == "published":
            if not force:
                raise errors.ApiError(
                    400,
                    206,
                    "task that created this model exists: and published, use force=True to delete",
                    task=task["id"],
                )
            for ref in outputs:
                if ref.get("model") == doc["id"]:
                    ref["model"] = deleted_id
            task["output"] = {**(task.get("output") or {}), "error": f"model deleted on {now_iso()}"}
        else:
            task["models"]["output"] = [r for r in outputs if r.get("model") != doc["id"]]
        save_task(ctx.tx, task)
    ctx.tx.delete("model", doc["id"])
    return {"deleted": True, "url": doc.get("uri")}


@endpoint("models.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    require(body, "model")
    return _delete(ctx, body["model"], bool(body.get("force")))


@endpoint("models.delete_many")
def delete_many(ctx: Context, body: Doc) -> Doc:
    force = bool(body.get("force"))
    results, failures = run_batch(ids_of(body, "ids"), ctx.tx, lambda i: _delete(ctx, i, force))
    return {"succeeded": [{"id": i, **r} for i, r in results], "failed": failures}


def _set_archived(ctx: Context, ids: list[str], archived: bool) -> Doc:
    key = "archived" if archived else "unarchived"

    def one(model_id: str) -> bool:
        doc = ctx.tx.mutable("model", get_model(ctx.tx, model_id)["id"])
        assert doc is not None
        tags = set(doc.get("system_tags") or [])
        doc["system_tags"] = sorted(tags | {"archived"} if archived else tags - {"archived"})
        doc["last_change"] = now_iso()
        ctx.tx.put("model", doc)
        return True

    results, failures = run_batch(ids, ctx.tx, one)
    return {"succeeded": [{"id": i, key: r} for i, r in results], "failed": failures}


@endpoint("models.update_tags")
def update_tags(ctx: Context, body: Doc) -> Doc:
    return {"updated": edit_entity_tags(ctx, "model", body)}


@endpoint("models.move")
def move(ctx: Context, body: Doc) -> Doc:
    return {"project_id": move_under_project(ctx, "model", body)}


@endpoint("models.make_public")
def make_public(ctx: Context, body: Doc) -> Doc:
    return set_public(ctx.tx, "model", ids_of(body, "ids"), True, errors.invalid_model_id)


@endpoint("models.make_private")
def make_private(ctx: Context, body: Doc) -> Doc:
    return set_public(ctx.tx, "model", ids_of(body, "ids"), False, errors.invalid_model_id)


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
