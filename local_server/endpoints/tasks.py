"""tasks.*: creation, editing, the status machine, clone, queues, parameters, artifacts, models.

What the real server does for older clients is done here too, by the API version of the request
(``/v2.9/tasks.create``): before 2.3 the tags of a request are split into ``tags`` and
``system_tags`` and answered merged; before 2.9 the legacy hyperparameters and configuration are
answered as ``execution.parameters``/``execution.model_desc``; before 2.13 ``execution.model``,
``output.model`` and ``execution.docker_cmd`` stand for ``models.input``, ``models.output`` and
``container``. Legacy ``execution.parameters``/``model_desc`` in a request are stored, in every
version, as the ``Args`` hyperparameters and configuration items of type ``legacy``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .. import errors
from ..query import TASK_OPTIONS, list_predicate, now_iso, project, run_query
from ..registry import COMPANY, USER, Context, endpoint, ids_of, merge_tags, new_id, require, string_list
from ..schemas import TASK_TYPES
from ..store import Doc, Transaction
from . import projects
from .queues import create as create_queue
from .queues import enqueue_entry, get_queue, remove_entry, resolve_default_queue
from .visibility import set_public

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
STATUSES = (*TRANSITIONS, "unknown")
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
DEVELOPMENT = "development"
DELETED_PREFIX = "__DELETED__"
LEGACY = "legacy"
TF_DEFINE = "TF_DEFINE"
# the real server's partition_tags: tags that old (< 2.3) clients send in ``tags`` but are system tags
SYSTEM_TAG_NAMES = frozenset({"active", "archived", "development"})
SYSTEM_TAG_PREFIXES = ("annotat",)
# a task whose last report is older than this has no active worker (apiserver.workers.task_update_timeout)
TASK_UPDATE_TIMEOUT_S = 600


# ---------------------------------------------------------------------------- helpers


def get_task(tx: Transaction, task_id: object) -> Doc:
    doc = tx.get("task", task_id) if isinstance(task_id, str) else None
    if doc is None:
        raise errors.invalid_task_id(task_id)
    return doc


def mutable_task(tx: Transaction, task_id: object) -> Doc:
    """A copy of the task to change; a public task cannot be changed (403/21)."""
    doc = copy.deepcopy(get_task(tx, task_id))
    if doc.get("company") == "":
        raise errors.ApiError(
            403, 21, "forbidden (modification not allowed): cannot modify public task(s)", ids=doc["id"]
        )
    return doc


def save(tx: Transaction, doc: Doc, changed: bool = True) -> None:
    now = now_iso()
    doc["last_update"] = now
    if changed:
        doc["last_change"] = now
        doc["last_changed_by"] = USER["id"]
    tx.put("task", doc)


def api_version(ctx: Context) -> tuple[int, int]:
    """The API version the client asked for (``/v2.9/...``); an unreadable one counts as the newest."""
    major, _, minor = ctx.version.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (999, 0)


def run_batch(
    ids: Iterable[str], tx: Transaction, func: Callable[[str], Any]
) -> tuple[list[tuple[str, Any]], list[Doc]]:
    """Like the real server's batch calls (``*_many``): each id on its own; what fails for one id is
    reported in ``failed`` with its error codes, and changes nothing, while the others go through."""
    results: list[tuple[str, Any]] = []
    failures: list[Doc] = []
    for item in ids:
        try:
            with tx.savepoint():
                results.append((item, func(item)))
        except errors.ApiError as exc:
            failures.append(
                {"id": item, "error": {"codes": [exc.code, exc.subcode], "msg": exc.msg, "data": {}}}
            )
    return results, failures


def check_editable(doc: Doc, force: bool) -> None:
    """The real server's ``get_task_for_update``: a draft, or with ``force`` a queued or running task
    (400/110 otherwise, a published task included)."""
    allowed = ("created", "queued", "in_progress") if force else ("created",)
    if doc["status"] not in allowed:
        raise errors.invalid_task_status(
            "only draft (created) tasks can be edited (queued or running ones with force)",
            id=doc["id"],
            expected="created",
            status=doc["status"],
        )


def change_status(doc: Doc, new_status: str, force: bool, reason: str = "", message: str = "") -> Doc:
    """Move a task along the status machine; returns the changed fields. As in the real server a move
    to ``queued`` drops the ``development`` system tag (an enqueued task is no longer a local run)."""
    current = doc["status"]
    if current != new_status and new_status not in TRANSITIONS.get(current, set()) and not force:
        raise errors.invalid_task_status(
            "Invalid status change", id=doc["id"], current_status=current, new_status=new_status
        )
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
    if new_status == "queued" and DEVELOPMENT in (doc.get("system_tags") or []):
        doc["system_tags"] = [t for t in doc["system_tags"] if t != DEVELOPMENT]
    doc.update(fields)
    return fields


def _check_type(value: object) -> str:
    if value not in TYPES:
        raise errors.validation(f"task type must be one of {sorted(TYPES)}", type=value)
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
                result.setdefault(section, {})[name] = _param_order(p)
        return result
    if not isinstance(items, list):
        raise errors.fields_value("expected a list of parameters", field=field)
    for param in items:
        if not isinstance(param, dict) or not param.get("name"):
            raise errors.fields_value("every parameter needs a name", field=field)
        section = param.get("section") or "General"
        result.setdefault(section, {})[param["name"]] = _param_order({**param, "section": section})
    return result


_PARAM_FIELDS = ("section", "name", "value", "type", "description")


def _param_order(param: Doc) -> Doc:
    """The fields of a parameter in the stored order of the real server (ordering compares them so)."""
    return {
        **{k: param[k] for k in _PARAM_FIELDS if k in param},
        **{k: v for k, v in param.items() if k not in _PARAM_FIELDS},
    }


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


# ---------------------------------------------------------------------------- API versions and legacy fields


def partition_tags(tags: Iterable[str]) -> tuple[list[str], list[str]]:
    """The real server's split of an old client's ``tags`` into user tags and system tags."""
    tag_set = set(tags)
    system = {t for t in tag_set if t in SYSTEM_TAG_NAMES or t.lower().startswith(SYSTEM_TAG_PREFIXES)}
    return sorted(tag_set - system), sorted(system)


def _check_tag_values(fields: Doc) -> None:
    for key in ("tags", "system_tags"):
        values = fields.get(key)
        values = [values] if isinstance(values, str) else values or []
        bad = [t for t in values if isinstance(t, str) and t.startswith("__$")]
        if bad:
            raise errors.fields_value("unsupported tag prefix", values=bad)


def _split_legacy_name(full_name: str, default_section: str | None) -> tuple[str | None, str]:
    if default_section is None:
        return None, full_name
    section, _, name = full_name.partition("/")
    if section != TF_DEFINE:
        return default_section, full_name
    if not name:
        raise errors.validation("Parameter name cannot be empty")
    return section, name


def _without_legacy(data: Doc, with_sections: bool) -> int:
    removed = 0
    if with_sections:
        for section, params in list(data.items()):
            if isinstance(params, dict):
                removed += _without_legacy(params, False)
                if not params:
                    del data[section]
        return removed
    for key, param in list(data.items()):
        if isinstance(param, dict) and param.get("type") == LEGACY:
            removed += 1
            del data[key]
    return removed


def prepare_fields(ctx: Context, body: Doc, previous: Doc | None = None) -> Doc:
    """A request's task fields as the real server stores them (``prepare_for_save``)."""
    fields = copy.deepcopy(body)
    _check_tag_values(fields)
    version = api_version(ctx)
    if version < (2, 3) and fields.get("tags") is not None and not fields.get("system_tags"):
        tags = [fields["tags"]] if isinstance(fields["tags"], str) else fields["tags"]
        fields["tags"], fields["system_tags"] = partition_tags(tags)
    execution = fields.get("execution")
    if isinstance(execution, dict):
        for old, new, default_section in (
            ("parameters", "hyperparams", "Args"),
            ("model_desc", "configuration", None),
        ):
            legacy = execution.pop(old, None)
            if not isinstance(legacy, dict):
                continue
            to_dict = _hyperparams_dict if new == "hyperparams" else _configuration_dict
            current: Doc = to_dict(fields[new]) if fields.get(new) else {}
            if not fields.get(new) and previous and previous.get(new):
                current = copy.deepcopy(previous[new])
                removed = _without_legacy(current, with_sections=default_section is not None)
                if not legacy and not removed:
                    continue
            for full_name, value in legacy.items():
                section, name = _split_legacy_name(str(full_name), default_section)
                param: Doc = {"name": name, "type": LEGACY, "value": str(value)}
                if section is None:
                    current[name] = param
                else:
                    param["section"] = section
                    current.setdefault(section, {})[name] = param
            fields[new] = current
        labels = execution.get("model_labels")
        if isinstance(labels, dict):
            execution["model_labels"] = {k: int(v) for k, v in labels.items() if isinstance(v, int | float)}
        artifacts = execution.get("artifacts")
        if isinstance(artifacts, list):  # one artifact per key and mode, the last given wins
            keyed = {(a.get("key"), a.get("mode", "output")): a for a in artifacts if isinstance(a, dict)}
            execution["artifacts"] = list(keyed.values())
    if version < (2, 13):
        now = now_iso()
        for mode, (holder, key) in (("input", ("execution", "model")), ("output", ("output", "model"))):
            container = fields.get(holder)
            if not isinstance(container, dict) or container.get(key) is None:
                continue
            model_id = container.pop(key)
            models: Doc = fields["models"] if isinstance(fields.get("models"), dict) else {}
            models[mode] = [{"name": mode, "model": model_id, "updated": now}] if model_id else []
            fields["models"] = models
        docker_cmd = execution.pop("docker_cmd", None) if isinstance(execution, dict) else None
        if isinstance(docker_cmd, str):
            image, _, arguments = docker_cmd.partition(" ")
            fields["container"] = {**(fields.get("container") or {}), "image": image, "arguments": arguments}
    return fields


def conform(ctx: Context, task: Doc) -> Doc:
    """A stored task as the real server answers it to the client's API version (a copy)."""
    out = copy.deepcopy(task)
    version = api_version(ctx)
    execution = out.get("execution")
    if isinstance(execution, dict) and isinstance(execution.get("artifacts"), list):
        execution["artifacts"] = sorted(execution["artifacts"], key=lambda a: str(a.get("key", "")))
    if version < (2, 3) and out.get("system_tags"):
        out["tags"] = sorted(set(out.get("tags") or []) | set(out["system_tags"]))
    if version < (2, 13):
        models: Doc = out["models"] if isinstance(out.get("models"), dict) else {}
        for mode, (holder, key), pick in (
            ("input", ("execution", "model"), 0),
            ("output", ("output", "model"), -1),
        ):
            refs = models.get(mode)
            target = out.setdefault(holder, {}) if refs and isinstance(refs, list) else None
            if isinstance(target, dict) and isinstance(refs, list):
                target[key] = refs[pick].get("model")
        container = out.get("container")
        if isinstance(container, dict) and container.get("image"):
            docker_cmd = " ".join(v for v in (container.get("image"), container.get("arguments")) if v)
            out.setdefault("execution", {})["docker_cmd"] = docker_cmd
    if version < (2, 9):
        hyperparams = out.get("hyperparams")
        if isinstance(hyperparams, dict):
            legacy = {
                (
                    f"{TF_DEFINE}/{p.get('name')}" if p.get("section") == TF_DEFINE else str(p.get("name"))
                ): p.get("value")
                for section in hyperparams.values()
                if isinstance(section, dict)
                for p in section.values()
                if isinstance(p, dict) and p.get("type") == LEGACY
            }
            if legacy:
                out.setdefault("execution", {})["parameters"] = legacy
        configuration = out.get("configuration")
        if isinstance(configuration, dict):
            legacy = {
                str(c.get("name")): c.get("value")
                for c in configuration.values()
                if isinstance(c, dict) and c.get("type") == LEGACY
            }
            if legacy:
                out.setdefault("execution", {})["model_desc"] = legacy
    return out


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


# ---------------------------------------------------------------------------- references (get_all_ex)

# reference fields of a task and model: ``get_all_ex`` answers them as ``{"id": ...}``, joined with
# the referenced document's projected fields when asked (``only_fields: ["project.name"]``)
TASK_REFERENCES = {
    "project": "project",
    "parent": "task",
    "execution.queue": "queue",
    "user": "user",
    "company": "company",
}


def _referenced(tx: Transaction, kind: str, ref_id: str) -> Doc | None:
    if kind == "user":
        return dict(USER) if ref_id == USER["id"] else {"id": ref_id}
    if kind == "company":
        return {"id": ref_id, "name": ref_id}
    return tx.get(kind, ref_id)


def split_projection(
    projection: Any, references: dict[str, str]
) -> tuple[list[str] | None, dict[str, list[str]]]:
    """The document's own projection and, per reference field, the projection of the joined document
    (the real server's ``ProjectionHelper``): a joined reference is added to the document's projection;
    ``*`` stands for every field."""
    if projection is None:
        return None, {}
    fields = [projection] if isinstance(projection, str) else list(projection)
    own: list[str] = []
    joined: dict[str, list[str]] = {}
    for field in fields:
        if not isinstance(field, str):
            raise errors.validation("only_fields must be a list of field names", field="only_fields")
        bare = field.lstrip("-")
        ref = next((r for r in references if bare.startswith(r + ".")), None)
        if ref is None:
            own.append(field)
        else:
            joined.setdefault(ref, []).append(("-" if field.startswith("-") else "") + bare[len(ref) + 1 :])
    includes = [f for f in own if not f.startswith("-")]
    if "*" in includes:
        own = [f for f in own if f.startswith("-")]
    elif joined:
        for ref in joined:
            if not any(ref == f or ref.startswith(f + ".") for f in includes):
                own.append(ref)
    return own, joined


def expand_references(
    tx: Transaction, doc: Doc, references: dict[str, str], joined: dict[str, list[str]]
) -> None:
    for path, kind in references.items():
        head, _, tail = path.partition(".")
        holder = doc.get(head) if tail else doc
        key = tail or head
        if not isinstance(holder, dict) or not isinstance(holder.get(key), str) or not holder[key]:
            continue
        ref_id = holder[key]
        value: Doc = {"id": ref_id}
        if path in joined:
            target = _referenced(tx, kind, ref_id)
            if target is not None:
                value.update(project(target, joined[path]))
        holder[key] = value


def _legacy_path(field: str) -> str:
    """The real server's ``escape_paths``: legacy field paths name where the data lives now."""
    for old, new in (
        ("execution.parameters", "hyperparams.Args"),
        ("execution.model_desc", "configuration"),
        ("execution.docker_cmd", "container"),
    ):
        field = field.replace(old, new)
    return field


def query_tasks(ctx: Context, body: Doc, with_references: bool) -> Doc:
    query = dict(body)
    extra = []
    if not (query.get("search_hidden") or query.get("id")):
        extra.append(list_predicate("system_tags", ["-hidden"]))
    if query.get("include_subprojects") and query.get("project"):
        wanted = query["project"] if isinstance(query["project"], list) else [query["project"]]
        query["project"] = list(wanted) + projects.descendants(ctx.tx, list(wanted))
    for key in ("order_by", "only_fields", "projection"):
        if isinstance(query.get(key), list):
            query[key] = [_legacy_path(f) if isinstance(f, str) else f for f in query[key]]
    joined: dict[str, list[str]] = {}
    if with_references:
        own, joined = split_projection(
            query.pop("projection", None) or query.pop("only_fields", None), TASK_REFERENCES
        )
        query["only_fields"] = own
    page = run_query(ctx.tx.scan("task"), query, TASK_OPTIONS, extra)
    tasks = [conform(ctx, t) for t in page.items]
    if with_references:
        for task in tasks:
            expand_references(ctx.tx, task, TASK_REFERENCES, joined)
    result: Doc = {"tasks": tasks}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


# ---------------------------------------------------------------------------- create / read / edit


def _validate_references(
    tx: Transaction, fields: Doc, parent: bool = True, project_: bool = True, models: bool = True
) -> None:
    """The real server's ``TaskBLL.validate``: the parent task, the project and the input models exist."""
    parent_id = fields.get("parent")
    if (
        parent
        and isinstance(parent_id, str)
        and parent_id
        and not parent_id.startswith(DELETED_PREFIX)
        and tx.get("task", parent_id) is None
    ):
        raise errors.ApiError(400, 101, "invalid task id: invalid parent", parent=parent_id)
    if project_ and fields.get("project"):
        projects.get_project(tx, fields["project"])
    if models:
        refs = (fields.get("models") or {}).get("input") or []
        missing = sorted(
            {
                str(r.get("model"))
                for r in refs
                if isinstance(r, dict) and tx.get("model", str(r.get("model"))) is None
            }
        )
        if missing:
            raise errors.ApiError(400, 201, "invalid model id", models=missing)


@endpoint("tasks.create")
def create(ctx: Context, body: Doc) -> Doc:
    require(body, "name", "type")
    fields = prepare_fields(ctx, body)
    doc = new_task_doc(str(fields["name"]), _check_type(fields["type"]), None)
    _apply_fields(ctx.tx, doc, fields)
    if fields.get("output_dest"):
        doc["output"]["destination"] = fields["output_dest"]
    _validate_references(ctx.tx, doc)
    save(ctx.tx, doc)
    return {"id": doc["id"]}


@endpoint("tasks.get_by_id")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    return {"task": conform(ctx, get_task(ctx.tx, body["task"]))}


@endpoint("tasks.get_all")
def get_all(ctx: Context, body: Doc) -> Doc:
    return query_tasks(ctx, body, with_references=False)


@endpoint("tasks.get_all_ex", "tasks.get_by_id_ex")
def get_all_ex(ctx: Context, body: Doc) -> Doc:
    return query_tasks(ctx, body, with_references=True)


@endpoint("tasks.edit")
def edit(ctx: Context, body: Doc) -> Doc:
    """Any status without ``force`` is refused with 400/110 unless the task is a draft; with ``force``
    every field can be set, ``status`` included (the real server writes it as given)."""
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    if not body.get("force") and doc["status"] != "created":
        raise errors.invalid_task_status(
            "only draft (created) tasks can be edited without force", expected="created", status=doc["status"]
        )
    given = {k: body[k] for k in (*EDITABLE, "status", "output_dest") if k in body}
    fields = prepare_fields(ctx, given, previous=doc)
    fields = _apply_fields(ctx.tx, doc, fields)
    if "output_dest" in given:
        doc["output"] = {**(doc.get("output") or {}), "destination": given["output_dest"]}
        fields["output"] = doc["output"]
    if "status" in given:
        if given["status"] not in STATUSES:
            raise errors.validation(f"status must be one of {list(STATUSES)}", status=given["status"])
        doc["status"] = fields["status"] = given["status"]
    _validate_references(ctx.tx, fields, models="models" in fields)
    if not fields:
        return {"updated": 0}
    save(ctx.tx, doc)
    fields.update(last_change=doc["last_change"], last_changed_by=doc["last_changed_by"])
    return {"updated": 1, "fields": conform(ctx, fields)}


@endpoint("tasks.update")
def update(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    given = prepare_fields(
        ctx, {k: body[k] for k in ("name", "comment", "project", "tags", "system_tags") if k in body}
    )
    fields: Doc = {}
    for key, value in given.items():
        fields.update(_apply_fields(ctx.tx, doc, {key: value}))
    for key in ("status_message", "status_reason"):
        if key in body:
            doc[key] = fields[key] = body[key]
    if "output__error" in body:
        doc["output"]["error"] = body["output__error"]
        fields["output"] = doc["output"]
    if not fields:
        return {"updated": 0}
    save(ctx.tx, doc)
    return {"updated": 1, "fields": conform(ctx, fields)}


@endpoint("tasks.set_requirements")
def set_requirements(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "requirements")
    doc = mutable_task(ctx.tx, body["task"])
    doc.setdefault("script", {})["requirements"] = body["requirements"]
    save(ctx.tx, doc)
    return {"updated": 1, "fields": {"script.requirements": body["requirements"]}}


@endpoint("tasks.validate")
def validate(ctx: Context, body: Doc) -> Doc:
    """Check a task's fields (as ``create`` would: type, parent, project, input models) without
    storing anything; a parent named ``__DELETED__...`` is accepted."""
    require(body, "name", "type")
    fields = prepare_fields(ctx, {k: body[k] for k in (*EDITABLE, "output_dest") if k in body})
    doc = new_task_doc(str(fields["name"]), _check_type(fields["type"]), None)
    _apply_fields(ctx.tx, doc, fields)
    _validate_references(ctx.tx, doc)
    return {}


@endpoint("tasks.make_public")
def make_public(ctx: Context, body: Doc) -> Doc:
    return set_public(ctx.tx, "task", ids_of(body, "ids"), True, errors.invalid_task_id)


@endpoint("tasks.make_private")
def make_private(ctx: Context, body: Doc) -> Doc:
    return set_public(ctx.tx, "task", ids_of(body, "ids"), False, errors.invalid_task_id)


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
    """``published`` tells whether ``publish`` published the task too (0 when not asked)."""
    result = _status_call(ctx, body, "completed")
    result["published"] = 0
    if body.get("publish"):
        published = _publish_one(ctx, body["task"], body, bool(body.get("force")))
        result["published"] = published["updated"]
        result["fields"]["status"] = published["fields"]["status"]
    return result


def _run_by_worker(doc: Doc) -> bool:
    """A worker runs the task: it has one, and the task was updated within the task update timeout."""
    if not doc.get("last_worker") or not doc.get("last_update"):
        return False
    try:
        updated = datetime.fromisoformat(doc["last_update"])
    except (TypeError, ValueError):
        return False
    return (datetime.now(UTC) - updated).total_seconds() < TASK_UPDATE_TIMEOUT_S


def pipeline_steps(tx: Transaction, task_id: str) -> list[str]:
    """The steps of a pipeline controller task (its children); none for other task types."""
    task = tx.get("task", task_id)
    if task is None or task.get("type") != "controller":
        return []
    return [t["id"] for t in tx.scan("task") if t.get("parent") == task_id]


def _with_steps(ctx: Context, task_id: str, body: Doc, one: Callable[[str, Doc], Any]) -> Any:
    """``one`` on the steps first (forced) when ``include_pipeline_steps``, then on the task."""
    if body.get("include_pipeline_steps"):
        for step in pipeline_steps(ctx.tx, task_id):
            one(step, {**body, "force": True})
    return one(task_id, body)


def _stop_one(ctx: Context, task_id: str, body: Doc) -> Doc:
    return _with_steps(ctx, task_id, body, lambda i, b: _stop_core(ctx, i, b))


def _stop_core(ctx: Context, task_id: str, body: Doc) -> Doc:
    """Like the real server's ``stop_task``: a queued task, a development task or one no worker runs is
    stopped at once (``status_message`` "Stopped by <user>"); a task a worker runs keeps its status and
    gets ``status_message: stopping`` for the worker to act on. Other statuses follow the status machine
    (a draft needs ``force``)."""
    doc = mutable_task(ctx.tx, task_id)
    queued = doc["status"] == "queued"
    if queued or DEVELOPMENT in (doc.get("system_tags") or []) or not _run_by_worker(doc):
        if queued:
            _remove_from_all_queues(ctx.tx, doc["id"])
        new_status, message = "stopped", f"Stopped by {USER['name']}"
    else:
        new_status, message = doc["status"], "stopping"
    fields = change_status(doc, new_status, bool(body.get("force")), body.get("status_reason") or "", message)
    save(ctx.tx, doc)
    fields.update(last_update=doc["last_update"], last_change=doc["last_change"], last_changed_by=USER["id"])
    return {"updated": 1, "fields": fields}


@endpoint("tasks.stop")
def stop(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    return _stop_one(ctx, body["task"], body)


def _publish_model(tx: Transaction, model_id: object) -> None:
    model = tx.mutable("model", model_id) if isinstance(model_id, str) else None
    if model is not None and not model.get("ready"):
        model["ready"] = True
        model["last_update"] = model["last_change"] = now_iso()
        tx.put("model", model)


def _publish_one(ctx: Context, task_id: str, body: Doc, force: bool) -> Doc:
    """Like the real server's ``publish_task``: the task's last output model is published (unless
    ``publish_model`` is false), then the task."""
    doc = mutable_task(ctx.tx, task_id)
    if not force and "published" not in TRANSITIONS.get(doc["status"], set()):  # published again too
        raise errors.invalid_task_status(
            "Invalid status change", id=doc["id"], current_status=doc["status"], new_status="published"
        )
    outputs = (doc.get("models") or {}).get("output") or []
    if body.get("publish_model", True) and outputs:
        _publish_model(ctx.tx, outputs[-1].get("model"))
    fields = change_status(
        doc, "published", force, body.get("status_reason") or "", body.get("status_message") or ""
    )
    save(ctx.tx, doc)
    return {"updated": 1, "fields": fields}


@endpoint("tasks.publish")
def publish(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    return _publish_one(ctx, body["task"], body, bool(body.get("force")))


def _models_of(tx: Transaction, doc: Doc) -> tuple[list[Doc], list[Doc]]:
    """(published, draft) models the task made: those naming it as their task and its output models."""
    found: dict[str, Doc] = {m["id"]: m for m in tx.scan("model") if m.get("task") == doc["id"]}
    for ref in (doc.get("models") or {}).get("output") or []:
        model = tx.get("model", str(ref.get("model"))) if isinstance(ref, dict) else None
        if model is not None:
            found[model["id"]] = model
    published = [m for m in found.values() if m.get("ready")]
    draft = [m for m in found.values() if not m.get("ready")]
    return published, draft


def _set_model_task(tx: Transaction, model_id: str, task: str | None) -> None:
    model = tx.mutable("model", model_id)
    if model is not None:
        model["task"] = task
        model["last_change"] = now_iso()
        tx.put("model", model)


def cleanup_task(
    tx: Transaction, doc: Doc, force: bool, update_children: bool, delete_output_models: bool
) -> Doc:
    """The real server's ``cleanup_task`` before a task is deleted or reset: refuse (400/123, unless
    forced) a task with published children or published output models; delete its draft output models
    (those no other task uses as input), hand published ones over to the deleted task's id (delete) or
    detach them (reset); point its children at ``__DELETED__<id>``. Returns the counts and the urls."""
    task_id = doc["id"]
    if not force:
        children = sum(
            1 for t in tx.scan("task") if t.get("parent") == task_id and t["status"] == "published"
        )
        if children:
            raise errors.ApiError(
                400,
                123,
                "task cannot be deleted: has children, use force=True",
                task=task_id,
                children=children,
            )
    published, draft = _models_of(tx, doc)
    if published and not force:
        raise errors.ApiError(
            400,
            123,
            "task cannot be deleted: has output models, use force=True",
            task=task_id,
            models=len(published),
        )
    draft_ids = {m["id"] for m in draft}
    in_use = {
        ref.get("model")
        for t in tx.scan("task")
        for ref in (t.get("models") or {}).get("input") or []
        if isinstance(ref, dict) and ref.get("model") in draft_ids
    }
    artifacts = (doc.get("execution") or {}).get("artifacts") or []
    artifact_urls = sorted(
        {a["uri"] for a in artifacts if a.get("mode", "output") == "output" and a.get("uri")}
    )
    model_urls = sorted({m["uri"] for m in draft if m.get("uri") and m["id"] not in in_use})
    deleted_task = f"{DELETED_PREFIX}{task_id}"
    updated_children = 0
    if update_children:
        for child in [t for t in tx.scan("task") if t.get("parent") == task_id]:
            child = copy.deepcopy(child)
            child["parent"] = deleted_task
            save(tx, child)
            updated_children += 1
    deleted_models = updated_models = 0
    for models, may_delete in ((draft, True), (published, False)):
        if not models:
            continue
        if delete_output_models and may_delete:
            for model in models:
                if model["id"] in in_use:
                    _set_model_task(tx, model["id"], None)
                else:
                    tx.delete("model", model["id"])
                    tx.delete_events(model["id"])  # the model's own events go with it
                    deleted_models += 1
            continue
        for model in models:
            _set_model_task(tx, model["id"], deleted_task if update_children else None)
            updated_models += 1 if update_children else 0
    return {
        "updated_children": updated_children,
        "updated_models": updated_models,
        "deleted_models": deleted_models,
        "urls": {"model_urls": model_urls, "artifact_urls": artifact_urls, "event_urls": []},
    }


def _cleanup_answer(cleanup: Doc, return_file_urls: bool) -> Doc:
    return {**cleanup, "urls": cleanup["urls"] if return_file_urls else None}


def _reset_one(ctx: Context, task_id: str, body: Doc) -> tuple[Doc, Doc, Doc]:
    """Like the real server's ``reset_task``: back to ``created`` with its run's results cleared
    (a published task needs ``force``: 400/110); returns (dequeued, cleanup, update)."""
    doc = mutable_task(ctx.tx, task_id)
    force = bool(body.get("force"))
    if doc["status"] == "published" and not force:
        raise errors.invalid_task_status("", task_id=doc["id"], status=doc["status"])
    dequeued: Doc = {}
    if doc["status"] == "queued" and doc["execution"].get("queue"):
        dequeued = {"removed": remove_entry(ctx.tx, doc["execution"]["queue"], doc["id"])}
    _remove_from_all_queues(ctx.tx, doc["id"])
    cleanup = cleanup_task(ctx.tx, doc, force, False, body.get("delete_output_models", True) is not False)
    ctx.tx.delete_events(doc["id"])  # the run's logs, metrics, plots and debug images
    fields = change_status(doc, "created", force, "reset", "reset")
    doc.update(
        started=None,
        completed=None,
        published=None,
        last_iteration=0,
        last_metrics={},
        last_worker=None,
        active_duration=None,
        enqueue_status=None,
        runtime={},
    )
    doc["models"] = {**(doc.get("models") or {}), "output": []}
    output = {k: v for k, v in (doc.get("output") or {}).items() if k not in ("result", "error")}
    doc["output"] = output
    if body.get("clear_all"):
        doc["execution"] = {"queue": None, "parameters": {}, "artifacts": []}
        doc["script"] = {"binary": "python", "repository": "", "entry_point": ""}  # Script() defaults
    else:
        doc["execution"]["queue"] = None
        artifacts = doc["execution"].get("artifacts", [])
        doc["execution"]["artifacts"] = [a for a in artifacts if a.get("mode") == "input"]
    save(ctx.tx, doc)
    fields.update(last_update=doc["last_update"], last_change=doc["last_change"], last_changed_by=USER["id"])
    return dequeued, cleanup, {"updated": 1, "fields": fields}


@endpoint("tasks.reset")
def reset(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    dequeued, cleanup, update_ = _reset_one(ctx, body["task"], body)
    return {**update_, **_cleanup_answer(cleanup, bool(body.get("return_file_urls"))), "dequeued": dequeued}


def _enqueue_one(ctx: Context, task_id: str, body: Doc) -> Doc:
    """Like the real server's ``enqueue_task``: a queued task may be enqueued to another queue (it
    leaves the old one and keeps the status to return to); its own queue again is 400/706."""
    doc = mutable_task(ctx.tx, task_id)
    if body.get("queue") and body.get("queue_name"):
        raise errors.validation("Either queue id or queue name should be provided")
    update_queue = body.get("update_execution_queue", True) is not False
    if not update_queue and not (doc["status"] == "queued" and doc["execution"].get("queue")):
        raise errors.validation(
            "Cannot skip setting execution queue for a task that is not enqueued "
            "or does not have execution queue set"
        )
    if body.get("queue"):
        queue = get_queue(ctx.tx, body["queue"])
    elif body.get("queue_name"):
        # the real server creates a queue that is enqueued to by a name it does not know yet
        if not any(q["name"] == body["queue_name"] for q in ctx.tx.scan("queue")):
            create_queue(ctx, {"name": body["queue_name"]})
        queue = get_queue(ctx.tx, body["queue_name"], by_name=True)
    else:
        queue = resolve_default_queue(ctx.tx)
    if any(e["task"] == doc["id"] for e in queue.get("entries") or []):
        raise errors.task_already_queued(doc["id"])
    before = (
        doc.get("enqueue_status")
        if doc["status"] == "queued" and doc.get("enqueue_status")
        else doc["status"]
    )
    fields = change_status(
        doc, "queued", bool(body.get("force")), body.get("status_reason", ""), body.get("status_message", "")
    )
    # the status to return to when the task leaves the queue without running (tasks.dequeue)
    doc["enqueue_status"] = before
    if update_queue:
        doc["execution"]["queue"] = queue["id"]
        fields["execution.queue"] = queue["id"]
    save(ctx.tx, doc)
    enqueue_entry(ctx.tx, queue["id"], doc["id"])
    _remove_from_all_queues(ctx.tx, doc["id"], keep=queue["id"])  # it waits in one queue only
    return {"queued": 1, "updated": 1, "fields": fields}


@endpoint("tasks.enqueue")
def enqueue(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    return {**_enqueue_one(ctx, body["task"], body), "queue_watched": True}


def _remove_from_all_queues(tx: Transaction, task_id: str, keep: str | None = None) -> None:
    queues = [
        q["id"]
        for q in tx.scan("queue")
        if q["id"] != keep and any(e["task"] == task_id for e in q["entries"])
    ]
    for queue_id in queues:
        remove_entry(tx, queue_id, task_id)


def _dequeue_one(ctx: Context, task_id: str, body: Doc) -> Doc:
    """Like the real server's ``TaskBLL.dequeue_and_change_status``: take the task out of its queue if it
    is queued; a queued *or running* task then moves to ``new_status`` or back to the status it had
    before it was enqueued (``created`` by default); any other status is left alone (``updated: 0``).
    clearml-agent ``execute`` calls it with ``new_status=in_progress`` on the task it was handed, which
    the daemon has already set running: it must succeed with ``updated: 1``."""
    new_status = body.get("new_status")
    if new_status and new_status not in STATUSES:
        raise errors.validation(f"Invalid task status: {new_status}")
    found = ctx.tx.get("task", task_id) if isinstance(task_id, str) else None
    if found is None:
        _remove_from_all_queues(ctx.tx, str(task_id))
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


@endpoint("tasks.dequeue")
def dequeue(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    return _dequeue_one(ctx, body["task"], body)


@endpoint("tasks.edit_runtime")
def edit_runtime(ctx: Context, body: Doc) -> Doc:
    """Add, update or remove keys of ``runtime`` (a draft, queued or running task: the real server
    always edits it as forced)."""
    require(body, "task")
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, True)
    add = body.get("add_or_update") or {}
    remove = string_list(body, "remove") or []
    if not (add or remove):
        return {"updated": 0}
    runtime = {**(doc.get("runtime") or {}), **add}
    for key in remove:
        runtime.pop(key, None)
    doc["runtime"] = runtime
    save(ctx.tx, doc)
    return {"updated": 1}


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
    """Like the real server's ``TaskBLL.clone_task``: the clone's parent is the source's parent when it
    has one (else the source), ``development`` and ``archived`` system tags are not copied, output
    artifacts and models are not copied; ``validate_references`` (and any new parent, project or input
    models) makes a missing parent (400/101), project (400/401) or input model (400/201) an error."""
    require(body, "task")
    src = get_task(ctx.tx, body["task"])
    result: Doc = {}
    project_id = body.get("new_task_project")
    if not project_id and body.get("new_project_name"):
        project_id = projects.ensure_project(ctx.tx, body["new_project_name"])["id"]
        result["new_project"] = {"id": project_id, "name": body["new_project_name"]}
    input_models = copy.deepcopy(body.get("new_task_input_models") or [])
    container = copy.deepcopy(body.get("new_task_container") or {})
    execution = copy.deepcopy(src.get("execution") or {})
    overrides = copy.deepcopy(body.get("execution_overrides") or {})
    if overrides:
        model_id = overrides.pop("model", None)
        if not input_models and model_id:
            input_models = [{"name": "input", "model": model_id, "updated": now_iso()}]
        docker_cmd = overrides.pop("docker_cmd", None)
        if not container and docker_cmd:
            image, _, arguments = docker_cmd.partition(" ")
            container = {"image": image, "arguments": arguments}
        overrides.pop("parameters", None)
        overrides.pop("model_desc", None)
        labels = overrides.get("model_labels")
        if isinstance(labels, dict):
            overrides["model_labels"] = {k: int(v) for k, v in labels.items() if isinstance(v, int | float)}
        execution.update(overrides)
    execution["queue"] = None
    execution["artifacts"] = [
        a for a in execution.get("artifacts") or [] if a.get("mode", "output") != "output"
    ]
    parent = src.get("parent")
    default_parent = parent if parent and not parent.startswith(DELETED_PREFIX) else src["id"]
    tags = body.get("new_task_tags")
    system_tags = body.get("new_task_system_tags")
    doc = new_task_doc(
        body.get("new_task_name") or src["name"], src["type"], project_id or src.get("project")
    )
    doc.update(
        comment=body.get("new_task_comment") or src.get("comment", ""),
        parent=body.get("new_task_parent") or default_parent,
        script=copy.deepcopy(src.get("script") or {}),
        execution=execution,
        hyperparams=copy.deepcopy(src.get("hyperparams") or {}),
        configuration=copy.deepcopy(src.get("configuration") or {}),
        container=container or copy.deepcopy(src.get("container") or {}),
        output={"destination": (src.get("output") or {}).get("destination")},
        tags=merge_tags(None, tags or src.get("tags") or []),
        system_tags=merge_tags(
            None, system_tags or [t for t in src.get("system_tags") or [] if t not in (DEVELOPMENT, ARCHIVED)]
        ),
        models={
            "input": input_models or copy.deepcopy((src.get("models") or {}).get("input") or []),
            "output": [],
        },
        input=copy.deepcopy(src.get("input") or {}),
        runtime={},
    )
    if body.get("new_task_hyperparams"):
        doc["hyperparams"] = _hyperparams_dict(body["new_task_hyperparams"])
    if body.get("new_task_configuration"):
        doc["configuration"] = _configuration_dict(body["new_task_configuration"])
    validate_all = bool(body.get("validate_references"))
    _validate_references(
        ctx.tx,
        doc,
        parent=validate_all or bool(body.get("new_task_parent")),
        project_=validate_all or bool(project_id),
        models=validate_all or bool(input_models),
    )
    save(ctx.tx, doc)
    result["id"] = doc["id"]
    return result


def _delete_one(ctx: Context, task_id: str, body: Doc) -> Doc:
    """Like the real server's ``delete_task``: only a draft or an archived task goes without ``force``
    (400/123); the task leaves its queues, its outputs are cleaned up (see :func:`cleanup_task`);
    with ``include_pipeline_steps`` a controller's steps go too."""
    doc = get_task(ctx.tx, task_id)
    if doc.get("company") == "":
        mutable_task(ctx.tx, task_id)  # a public task cannot be deleted (403)
    force = bool(body.get("force"))
    if doc["status"] != "created" and ARCHIVED not in (doc.get("system_tags") or []) and not force:
        raise errors.ApiError(
            400,
            123,
            "task cannot be deleted: due to status, use force=True",
            task=doc["id"],
            expected="created",
            current=doc["status"],
        )
    delete_models = body.get("delete_output_models", True) is not False
    steps = pipeline_steps(ctx.tx, doc["id"]) if body.get("include_pipeline_steps") else []
    for step in steps:
        _remove_from_all_queues(ctx.tx, step)
        cleanup_task(ctx.tx, get_task(ctx.tx, step), True, True, delete_models)
        ctx.tx.delete("task", step)
        ctx.tx.delete_events(step)
    _remove_from_all_queues(ctx.tx, doc["id"])
    cleanup = cleanup_task(ctx.tx, doc, force, True, delete_models)
    ctx.tx.delete("task", doc["id"])
    ctx.tx.delete_events(doc["id"])
    return cleanup


@endpoint("tasks.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    require(body, "task")
    cleanup = _delete_one(ctx, body["task"], body)
    return {"deleted": True, **_cleanup_answer(cleanup, bool(body.get("return_file_urls")))}


def _archive_one(ctx: Context, task_id: str, body: Doc, archived: bool = True) -> int:
    return _with_steps(ctx, task_id, body, lambda i, b: _archive_core(ctx, i, b, archived))


def _archive_core(ctx: Context, task_id: str, body: Doc, archived: bool = True) -> int:
    """Like the real server's ``archive_task``: a queued task leaves its queue (back to the status it had
    before), a running one is stopped; ``status_message``/``status_reason`` are set as given."""
    doc = mutable_task(ctx.tx, task_id)
    if archived:
        _remove_from_all_queues(ctx.tx, doc["id"])
        if doc["status"] in ("queued", "in_progress"):
            new_status = (
                "stopped" if doc["status"] == "in_progress" else doc.get("enqueue_status") or "created"
            )
            change_status(doc, new_status, True)
            doc["enqueue_status"] = None
    tags = set(doc.get("system_tags") or [])
    doc["system_tags"] = sorted(tags | {ARCHIVED} if archived else tags - {ARCHIVED})
    doc["status_message"] = body.get("status_message") or ""
    doc["status_reason"] = body.get("status_reason") or ""
    save(ctx.tx, doc)
    return 1


@endpoint("tasks.archive")
def archive(ctx: Context, body: Doc) -> Doc:
    ids = ids_of(body, "tasks", "ids")
    missing = [i for i in ids if ctx.tx.get("task", i) is None]
    if missing:
        raise errors.ApiError(400, 101, "invalid task id", ids=missing)
    return {"archived": sum(_archive_one(ctx, i, body) for i in ids)}


def _many(ctx: Context, body: Doc, one: Callable[[str], Doc]) -> Doc:
    results, failures = run_batch(ids_of(body, "ids"), ctx.tx, one)
    return {"succeeded": [{"id": i, **r} for i, r in results], "failed": failures}


@endpoint("tasks.archive_many")
def archive_many(ctx: Context, body: Doc) -> Doc:
    return _many(ctx, body, lambda i: {"archived": bool(_archive_one(ctx, i, body))})


@endpoint("tasks.unarchive_many")
def unarchive_many(ctx: Context, body: Doc) -> Doc:
    return _many(ctx, body, lambda i: {"unarchived": bool(_archive_one(ctx, i, body, archived=False))})


@endpoint("tasks.delete_many")
def delete_many(ctx: Context, body: Doc) -> Doc:
    return_urls = bool(body.get("return_file_urls"))
    return _many(
        ctx, body, lambda i: {"deleted": True, **_cleanup_answer(_delete_one(ctx, i, body), return_urls)}
    )


@endpoint("tasks.stop_many")
def stop_many(ctx: Context, body: Doc) -> Doc:
    return _many(ctx, body, lambda i: _stop_one(ctx, i, body))


@endpoint("tasks.publish_many")
def publish_many(ctx: Context, body: Doc) -> Doc:
    return _many(ctx, body, lambda i: _publish_one(ctx, i, body, bool(body.get("force"))))


@endpoint("tasks.enqueue_many")
def enqueue_many(ctx: Context, body: Doc) -> Doc:
    def one(task_id: str) -> Doc:
        res = _enqueue_one(ctx, task_id, body)
        return {"queued": bool(res["queued"]), "updated": res["updated"], "fields": res["fields"]}

    return _many(ctx, body, one)


@endpoint("tasks.dequeue_many")
def dequeue_many(ctx: Context, body: Doc) -> Doc:
    def one(task_id: str) -> Doc:
        res = _dequeue_one(ctx, task_id, body)
        return {**res, "dequeued": bool(res["dequeued"])}

    return _many(ctx, body, one)


@endpoint("tasks.reset_many")
def reset_many(ctx: Context, body: Doc) -> Doc:
    return_urls = bool(body.get("return_file_urls"))

    def one(task_id: str) -> Doc:
        dequeued, cleanup, update_ = _reset_one(ctx, task_id, body)
        return {**update_, **_cleanup_answer(cleanup, return_urls), "dequeued": bool(dequeued.get("removed"))}

    return _many(ctx, body, one)


def move_under_project(ctx: Context, kind: str, body: Doc) -> str | None:
    """The real server's ``move_under_project``: into ``project`` or a project named ``project_name``
    (created if missing); ``project: null`` moves to the root."""
    ids = ids_of(body, "ids")
    if "project" not in body and not body.get("project_name"):
        raise errors.missing_field("project or project_name")
    project_id: str | None = None
    if body.get("project_name"):
        project_id = projects.ensure_project(ctx.tx, body["project_name"])["id"]
    elif body.get("project"):
        project_id = projects.get_project(ctx.tx, body["project"])["id"]
    for item in ids:
        doc = mutable_task(ctx.tx, item) if kind == "task" else ctx.tx.mutable(kind, item)
        if doc is None:
            continue  # the real server updates those it finds
        doc["project"] = project_id
        doc["last_change"] = now_iso()
        ctx.tx.put(kind, doc)
    return project_id


def edit_entity_tags(ctx: Context, kind: str, body: Doc) -> int:
    """The real server's ``update_tags``: add and/or remove user tags of tasks or models; the count
    is per operation (an add and a remove on one object count 2)."""
    ids = ids_of(body, "ids")
    add, remove = string_list(body, "add_tags") or [], string_list(body, "remove_tags") or []
    if not ids:
        raise errors.validation("No entity ids provided for editing tags")
    if not (add or remove):
        raise errors.validation("Either add tags or remove tags should be provided")
    updated = 0
    for item in ids:
        doc = ctx.tx.mutable(kind, item)
        if doc is None:
            continue
        tags = list(doc.get("tags") or [])
        if add:
            tags = merge_tags(None, [*tags, *add])
            updated += 1
        if remove:
            tags = [t for t in tags if t not in remove]
            updated += 1
        doc["tags"] = tags
        doc["last_change"] = now_iso()
        ctx.tx.put(kind, doc)
    return updated


@endpoint("tasks.update_tags")
def update_tags(ctx: Context, body: Doc) -> Doc:
    missing = [i for i in ids_of(body, "ids") if ctx.tx.get("task", i) is None]
    if missing:
        raise errors.ApiError(400, 101, "invalid task id", ids=missing)
    return {"updated": edit_entity_tags(ctx, "task", body)}


@endpoint("tasks.move")
def move(ctx: Context, body: Doc) -> Doc:
    missing = [i for i in ids_of(body, "ids") if ctx.tx.get("task", i) is None]
    if missing:
        raise errors.ApiError(400, 101, "invalid task id", ids=missing)
    return {"project_id": move_under_project(ctx, "task", body)}


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
    whole = {item.get("section") for item in body["hyperparams"] if not item.get("name")}
    if any(item.get("name") and item.get("section") in whole for item in body["hyperparams"]):
        raise errors.ApiError(
            400,
            15,
            "conflicting fields: Cannot delete section field if the whole section was scheduled for deletion",
        )
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
    """Every parameter, sorted by section and name (as the real server lists them)."""
    params = [p for section in (doc.get("hyperparams") or {}).values() for p in section.values()]
    return sorted(params, key=lambda p: (str(p.get("section", "")), str(p.get("name", ""))))


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
        items = sorted(
            (v for k, v in conf.items() if not names or k in names), key=lambda c: str(c.get("name", ""))
        )
        out.append({"task": task_id, "configuration": items})
    return {"configurations": out}


@endpoint("tasks.get_configuration_names")
def get_configuration_names(ctx: Context, body: Doc) -> Doc:
    """Names of the configuration items; with ``skip_empty`` (the default) not those without a value."""
    ids = ids_of(body, "tasks")
    skip_empty = body.get("skip_empty", True) is not False
    out = []
    for task_id in ids:
        conf = get_task(ctx.tx, task_id).get("configuration") or {}
        names = [k for k, v in conf.items() if not skip_empty or (v or {}).get("value") not in (None, "")]
        out.append({"task": task_id, "names": sorted(names)})
    return {"configurations": out}


# ---------------------------------------------------------------------------- artifacts and models


@endpoint("tasks.add_or_update_artifacts")
def add_or_update_artifacts(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "artifacts")
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, True)
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
    check_editable(doc, True)
    drop = {(a.get("key"), a.get("mode", "output")) for a in body["artifacts"]}
    before = doc["execution"].get("artifacts", [])
    doc["execution"]["artifacts"] = [a for a in before if (a.get("key"), a.get("mode", "output")) not in drop]
    save(ctx.tx, doc)
    return {"deleted": len(before) - len(doc["execution"]["artifacts"])}


@endpoint("tasks.add_or_update_model")
def add_or_update_model(ctx: Context, body: Doc) -> Doc:
    """Like the real server: the model id is not checked (a task may name a model another server
    holds), the entry with that name is replaced in place or appended, ``last_iteration`` only rises."""
    require(body, "task", "name", "model", "type")
    if body["type"] not in ("input", "output"):
        raise errors.fields_value("model type must be input or output", type=body["type"])
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, True)
    entry = {"name": body["name"], "model": body["model"], "updated": now_iso()}
    refs = list(doc["models"].get(body["type"]) or [])
    at = next((i for i, m in enumerate(refs) if m.get("name") == body["name"]), None)
    if at is None:
        refs.append(entry)
    else:
        refs[at] = entry
    doc["models"][body["type"]] = refs
    if body.get("iteration") is not None:
        doc["last_iteration"] = max(doc.get("last_iteration") or 0, int(body["iteration"]))
    save(ctx.tx, doc)
    return {"updated": 1}


@endpoint("tasks.delete_models")
def delete_models(ctx: Context, body: Doc) -> Doc:
    require(body, "task", "models")
    doc = mutable_task(ctx.tx, body["task"])
    check_editable(doc, True)
    for item in body["models"]:
        kind = item.get("type", "output")
        doc["models"][kind] = [m for m in doc["models"].get(kind, []) if m.get("name") != item.get("name")]
    save(ctx.tx, doc)
    return {"updated": 1}
