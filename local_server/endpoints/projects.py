"""projects.*: a hierarchy by name ("a/b/c"); parents are created on the fly."""

from __future__ import annotations

from .. import errors
from ..query import PROJECT_OPTIONS, list_predicate, now_iso, run_query
from ..registry import COMPANY, USER, Context, endpoint, merge_tags, new_id, require, string_list
from ..store import Doc, Transaction

HIDDEN = "hidden"


def _clean_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip("/ "):
        raise errors.ApiError(400, 407, "invalid project name", name=name)
    parts = [p.strip() for p in name.split("/")]
    if any(not p for p in parts):
        raise errors.ApiError(400, 407, "invalid project name: empty path segment", name=name)
    return "/".join(parts)


def find_by_name(tx: Transaction, name: str) -> Doc | None:
    for doc in tx.scan("project"):
        if doc["name"] == name:
            return doc
    return None


def get_project(tx: Transaction, project_id: object) -> Doc:
    doc = tx.get("project", project_id) if isinstance(project_id, str) else None
    if doc is None:
        raise errors.invalid_project_id(project_id)
    return doc


def ensure_project(tx: Transaction, name: str, fields: Doc | None = None) -> Doc:
    """The project with this full name, created with its missing parents if needed."""
    name = _clean_name(name)
    found = find_by_name(tx, name)
    if found is not None:
        return found
    parent_name, _, basename = name.rpartition("/")
    parent = ensure_project(tx, parent_name) if parent_name else None
    now = now_iso()
    doc: Doc = {
        "id": new_id(),
        "name": name,
        "basename": basename,
        "description": "",
        "user": USER["id"],
        "company": COMPANY,
        "created": now,
        "last_update": now,
        "tags": [],
        "system_tags": [HIDDEN] if basename.startswith(".") else [],
        "default_output_destination": None,
        "parent": parent["id"] if parent else None,
        "path": [*parent["path"], parent["id"]] if parent else [],
    }
    doc.update(fields or {})
    tx.put("project", doc)
    return doc


def descendants(tx: Transaction, project_ids: list[str]) -> list[str]:
    wanted = set(project_ids)
    return [d["id"] for d in tx.scan("project") if wanted & set(d.get("path", []))]


@endpoint("projects.create")
def create(ctx: Context, body: Doc) -> Doc:
    require(body, "name")
    name = _clean_name(body["name"])
    if find_by_name(ctx.tx, name) is not None:
        raise errors.unique_violation("project with the same name already exists", name=name)
    fields: Doc = {
        "description": body.get("description") or "",
        "tags": merge_tags(None, string_list(body, "tags")),
        "system_tags": merge_tags(None, string_list(body, "system_tags")),
        "default_output_destination": body.get("default_output_destination"),
    }
    doc = ensure_project(ctx.tx, name, fields)
    return {"id": doc["id"]}


@endpoint("projects.get_by_id")
def get_by_id(ctx: Context, body: Doc) -> Doc:
    require(body, "project")
    return {"project": get_project(ctx.tx, body["project"])}


@endpoint("projects.get_all", "projects.get_all_ex")
def get_all(ctx: Context, body: Doc) -> Doc:
    query = dict(body)
    extra = []
    if not (query.get("search_hidden") or query.get("id")):
        extra.append(list_predicate("system_tags", [f"-{HIDDEN}"]))
    if query.get("shallow_search"):
        if "parent" not in query:
            extra.append(lambda d: not d.get("parent"))
    elif "parent" in query:
        query["path"] = query.pop("parent")
    page = run_query(ctx.tx.scan("project"), query, PROJECT_OPTIONS, extra, default_order=["name"])
    result: Doc = {"projects": page.items}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


@endpoint("projects.update")
def update(ctx: Context, body: Doc) -> Doc:
    require(body, "project")
    doc = ctx.tx.mutable("project", get_project(ctx.tx, body["project"])["id"])
    assert doc is not None
    fields: Doc = {}
    for key in ("description", "default_output_destination"):
        if key in body:
            fields[key] = body[key]
    for key in ("tags", "system_tags"):
        if key in body:
            fields[key] = merge_tags(None, string_list(body, key))
    if "name" in body and _clean_name(body["name"]) != doc["name"]:
        raise errors.ApiError(400, 408, "Cannot update project location. Use projects.move instead")
    doc.update(fields)
    doc["last_update"] = now_iso()
    ctx.tx.put("project", doc)
    return {"updated": 1, "fields": fields}


@endpoint("projects.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    require(body, "project")
    project = get_project(ctx.tx, body["project"])
    ids = [project["id"], *descendants(ctx.tx, [project["id"]])]
    tasks = [t for t in ctx.tx.scan("task") if t.get("project") in ids]
    if tasks and not body.get("force"):
        raise errors.project_has_tasks(project["id"], len(tasks))
    for pid in ids:
        ctx.tx.delete("project", pid)
    if body.get("delete_contents"):
        for t in tasks:
            ctx.tx.delete("task", t["id"])
    return {"deleted": 1, "disassociated_tasks": 0 if body.get("delete_contents") else len(tasks)}


@endpoint("projects.get_hyper_parameters")
def get_hyper_parameters(ctx: Context, body: Doc) -> Doc:
    require(body, "project")
    seen: dict[tuple[str, str], Doc] = {}
    for task in ctx.tx.scan("task"):
        if task.get("project") != body["project"]:
            continue
        for section, params in (task.get("hyperparams") or {}).items():
            for name in params:
                seen[(section, name)] = {"section": section, "name": name}
    return {"parameters": list(seen.values()), "remaining": 0, "total": len(seen)}


@endpoint("projects.get_task_tags", "projects.get_model_tags")
def get_tags(ctx: Context, body: Doc) -> Doc:
    kind = "model" if ctx.endpoint.endswith("model_tags") else "task"
    tags: set[str] = set()
    system_tags: set[str] = set()
    for doc in ctx.tx.scan(kind):
        tags.update(doc.get("tags") or [])
        system_tags.update(doc.get("system_tags") or [])
    return {"tags": sorted(tags), "system_tags": sorted(system_tags)}
