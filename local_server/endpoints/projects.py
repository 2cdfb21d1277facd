"""projects.*: a hierarchy by name ("a/b/c"); parents are created on the fly.

As in the real server: a project's ``path`` lists its ancestors' ids, renaming (``update``) keeps the
location and renames the sub-projects, ``move`` changes the location, ``merge`` moves the contents
and sub-projects into another project and deletes the source, and ``delete`` refuses a project with
active (non-archived) tasks, models, dataset versions or pipeline controllers unless forced, then
detaches (or, with ``delete_contents``, deletes) what is inside.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import errors
from ..documents import STATUSES
from ..query import PROJECT_OPTIONS, compile_regex, list_predicate, now_iso, parse_date, run_query
from ..registry import COMPANY, USER, Context, endpoint, ids_of, merge_tags, new_id, require, string_list
from ..store import Doc, Transaction
from . import compat
from .visibility import set_public

HIDDEN = "hidden"
ARCHIVED = "archived"
DATASET_TAG, PIPELINE_TAG, REPORTS_TAG = "dataset", "pipeline", "reports"
DATASETS_NAME, PIPELINES_NAME = ".datasets", ".pipelines"
MAX_DEPTH = 10  # the real server's services.projects.sub_projects.max_depth


def _split(name: object) -> list[str]:
    if not isinstance(name, str):
        raise errors.ApiError(400, 407, "invalid project name", name=name)
    return [p.strip() for p in name.split("/") if p]


def _clean_name(name: object) -> str:
    """The name without redundant "/" (as the real server cleans it); 400/407 when nothing is left."""
    parts = _split(name)
    if not parts:
        raise errors.ApiError(400, 407, "invalid project name", name=name)
    if any(not p for p in parts):
        raise errors.validation("Project name cannot be blank", name=name)
    if len(parts) > MAX_DEPTH:
        raise errors.ApiError(400, 409, "Project path exceed the maximum allowed depth", max_depth=MAX_DEPTH)
    return "/".join(parts)


def _location(name: str) -> str:
    return name.rpartition("/")[0]


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


def _writable(tx: Transaction, project_id: object) -> Doc:
    """A copy of the project to change; a public project cannot be changed (403/21)."""
    doc = copy.deepcopy(get_project(tx, project_id))
    if doc.get("company") == "":
        raise errors.ApiError(
            403, 21, "forbidden (modification not allowed): cannot modify a public project", id=doc["id"]
        )
    return doc


def _touch(tx: Transaction, project_id: str | None) -> None:
    if project_id:
        doc = tx.mutable("project", project_id)
        if doc is not None:
            doc["last_update"] = now_iso()
            tx.put("project", doc)


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
    if parent is not None:
        _touch(tx, parent["id"])
    return doc


def descendants(tx: Transaction, project_ids: Iterable[str]) -> list[str]:
    wanted = set(project_ids)
    return [d["id"] for d in tx.scan("project") if wanted & set(d.get("path") or [])]


def with_children(tx: Transaction, project_ids: Iterable[str]) -> set[str]:
    ids = set(project_ids)
    return ids | set(descendants(tx, ids))


def _with_parents(tx: Transaction, project_ids: Iterable[str]) -> set[str]:
    result: set[str] = set()
    for pid in project_ids:
        doc = tx.get("project", pid)
        if doc is not None:
            result.add(pid)
            result.update(doc.get("path") or [])
    return result


def _archived(doc: Doc) -> bool:
    return ARCHIVED in (doc.get("system_tags") or [])


def _reposition(tx: Transaction, project: Doc, parent: Doc | None) -> int:
    """Put ``project`` (a mutable copy) under ``parent`` with its sub-projects; the number moved."""
    old_name, old_path = project["name"], list(project.get("path") or [])
    children = [d for d in tx.scan("project") if project["id"] in (d.get("path") or [])]
    project["name"] = f"{parent['name']}/{project['basename']}" if parent else project["basename"]
    project["parent"] = parent["id"] if parent else None
    project["path"] = [*parent["path"], parent["id"]] if parent else []
    project["last_update"] = now_iso()
    tx.put("project", project)
    return 1 + _rename_children(tx, project, children, old_name, old_path)


def _rename_children(
    tx: Transaction, project: Doc, children: list[Doc], old_name: str, old_path: list[str] | None = None
) -> int:
    depth = len(old_name.split("/"))
    for found in children:
        child = dict(found)
        child["name"] = "/".join([project["name"], *child["name"].split("/")[depth:]])
        if old_path is not None:
            child["path"] = [*project["path"], *child["path"][len(old_path) :]]
        child["last_update"] = now_iso()
        tx.put("project", child)
    return len(children)


# ---------------------------------------------------------------------------- create, read, update


@endpoint("projects.create")
def create(ctx: Context, body: Doc) -> Doc:
    require(body, "name")
    body = compat.conform_request(ctx, body, "project")
    name = _clean_name(body["name"])
    if find_by_name(ctx.tx, name) is not None:
        raise errors.unique_violation("Project with the same name already exists", name=name)
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
    project = dict(get_project(ctx.tx, body["project"]))
    compat.conform_output(ctx, [project])
    return {"project": project}


@endpoint("projects.update")
def update(ctx: Context, body: Doc) -> Doc:
    """Like ``ProjectBLL.update``: a new name must keep the location (else 400/408, use
    ``projects.move``) and be free (400/801); the sub-projects are renamed with it."""
    require(body, "project")
    body = compat.conform_request(ctx, body, "project")
    doc = _writable(ctx.tx, body["project"])
    fields: Doc = {}
    for key in ("description", "default_output_destination"):
        if key in body:
            fields[key] = body[key]
    for key in ("tags", "system_tags"):
        if key in body:
            fields[key] = merge_tags(None, string_list(body, key))
    old_name = doc["name"]
    if body.get("name"):
        new_name = _clean_name(body["name"])
        if _location(new_name) != _location(old_name):
            raise errors.ApiError(
                400, 408, "Cannot update project location. Use projects.move instead", name=new_name
            )
        other = find_by_name(ctx.tx, new_name)
        if other is not None and other["id"] != doc["id"]:
            raise errors.unique_violation("Project with the same name already exists", name=new_name)
        fields["name"] = new_name
        fields["basename"] = new_name.rpartition("/")[2]
    doc.update(fields)
    doc["last_update"] = now_iso()
    ctx.tx.put("project", doc)
    if doc["name"] != old_name:
        children = [d for d in ctx.tx.scan("project") if doc["id"] in (d.get("path") or [])]
        _rename_children(ctx.tx, doc, children, old_name)
    compat.conform_output(ctx, [fields])
    return {"updated": 1, "fields": fields}


# ---------------------------------------------------------------------------- listing, stats


def _children_type_ids(ctx: Context, body: Doc) -> set[str]:
    """``ProjectBLL.get_projects_with_selected_children``: the projects (with their parents) that hold
    children of ``children_type`` (or entities of ``active_users``)."""
    users = body.get("active_users") or []
    children_type = body.get("children_type")
    tags_filter = body.get("children_tags")

    def user_ok(doc: Doc) -> bool:
        return not users or doc.get("user") in users

    def tags_ok(doc: Doc) -> bool:
        return not tags_filter or list_predicate("tags", tags_filter)(doc)

    found: set[str] = set()
    if children_type in ("dataset", "pipeline"):
        tag, skip = (
            (DATASET_TAG, DATASETS_NAME) if children_type == "dataset" else (PIPELINE_TAG, PIPELINES_NAME)
        )
        for p in ctx.tx.scan("project"):
            if (
                tag in (p.get("system_tags") or [])
                and p.get("basename") != skip
                and user_ok(p)
                and tags_ok(p)
            ):
                found.add(p["id"])
    elif children_type == "report":
        for t in ctx.tx.scan("task"):
            if REPORTS_TAG in (t.get("system_tags") or []) and t.get("project") and user_ok(t) and tags_ok(t):
                found.add(t["project"])
    else:
        found = {p["id"] for p in ctx.tx.scan("project") if user_ok(p)}
        for kind in ("task", "model"):
            found |= {d["project"] for d in ctx.tx.scan(kind) if d.get("project") and user_ok(d)}
    selected = _with_parents(ctx.tx, found)
    requested = body.get("id")
    if requested:
        selected &= set([requested] if isinstance(requested, str) else requested)
    return selected


def _stats_filter(body: Doc) -> tuple[list[Callable[[Doc], bool]], bool]:
    preds: list[Callable[[Doc], bool]] = []
    search_hidden = bool(body.get("search_hidden"))
    children_type = body.get("children_type")
    if body.get("children_tags"):
        preds.append(list_predicate("tags", body["children_tags"]))
    if children_type == "pipeline":
        preds.append(lambda t: PIPELINE_TAG in (t.get("system_tags") or []) and t.get("type") == "controller")
        search_hidden = True
    elif children_type == "report":
        preds.append(lambda t: REPORTS_TAG in (t.get("system_tags") or []))
        search_hidden = True
    return preds, search_hidden


def _seconds(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(parse_date(str(value))).timestamp()
    except (ValueError, errors.ApiError):
        return None


def _task_stats(tasks: list[Doc]) -> Doc:
    counts = dict.fromkeys(STATUSES, 0)
    runtime = 0
    recent = 0
    threshold = (datetime.now(UTC) - timedelta(hours=24)).timestamp()
    last_run: str | None = None
    for t in tasks:
        status = t.get("status") or "unknown"
        counts[status] = counts.get(status, 0) + 1
        started, completed = _seconds(t.get("started")), _seconds(t.get("completed"))
        if started is not None and completed is not None and completed > started:
            runtime += math.floor(completed - started)
        if (
            completed is not None
            and completed > threshold
            and status not in ("queued", "in_progress", "failed")
        ):
            recent += 1
        if t.get("started") and (last_run is None or str(t["started"]) > last_run):
            last_run = str(t["started"])
    return {
        "status_count": counts,
        "total_tasks": sum(counts.values()),
        "total_runtime": runtime,
        "completed_tasks_24h": recent,
        "last_task_run": last_run,
    }


def _add_stats(ctx: Context, body: Doc, projects: list[Doc]) -> None:
    preds, search_hidden = _stats_filter(body)
    state = body.get("stats_for_state") or "active"
    with_children_stats = body.get("stats_with_children", True) is not False
    all_projects = list(ctx.tx.scan("project"))
    for project in projects:
        children = [
            p
            for p in all_projects
            if project["id"] in (p.get("path") or [])
            and (search_hidden or HIDDEN not in (p.get("system_tags") or []))
        ]
        ids = {project["id"], *(c["id"] for c in children)} if with_children_stats else {project["id"]}
        if body.get("children_type") == "dataset":
            datasets = [
                p
                for p in all_projects
                if p.get("parent") in ids and DATASET_TAG in (p.get("system_tags") or [])
            ]
            tags = sorted({tag for p in datasets for tag in p.get("tags") or []})
            project["stats"] = {"datasets": {"count": len(datasets), "tags": tags}}
        else:
            tasks = [
                t
                for t in ctx.tx.scan("task")
                if t.get("project") in ids
                and (_archived(t) if state == "archived" else not _archived(t))
                and all(p(t) for p in preds)
            ]
            project["stats"] = {state: _task_stats(tasks)}
        kids = children if with_children_stats else []
        project["sub_projects"] = sorted(
            ({"id": c["id"], "name": c["name"]} for c in kids), key=lambda c: c["name"]
        )


def _add_own_contents(ctx: Context, body: Doc, projects: list[Doc]) -> None:
    ids = {p["id"] for p in projects}
    if body.get("children_type") == "dataset":
        counts = dict.fromkeys(ids, 0)
        for p in ctx.tx.scan("project"):
            if p.get("parent") in ids and DATASET_TAG in (p.get("system_tags") or []):
                counts[p["parent"]] += 1
        for project in projects:
            project["own_datasets"] = counts[project["id"]]
        return
    preds, _ = _stats_filter(body)
    for kind, key in (("task", "own_tasks"), ("model", "own_models")):
        counts = dict.fromkeys(ids, 0)
        for doc in ctx.tx.scan(kind):
            if doc.get("project") in ids and not _archived(doc) and all(p(doc) for p in preds):
                counts[doc["project"]] += 1
        for project in projects:
            project[key] = counts[project["id"]]


def _dataset_stats(ctx: Context, project: Doc) -> Doc | None:
    latest: Doc | None = None
    for t in ctx.tx.scan("task"):
        if t.get("project") != project["id"] or _archived(t) or not t.get("runtime"):
            continue
        if latest is None or str(t.get("last_update") or "") >= str(latest.get("last_update") or ""):
            latest = t
    if latest is None:
        return None
    runtime = latest["runtime"]
    return {"file_count": runtime.get("ds_file_count", 0), "total_size": runtime.get("ds_total_size", 0)}


@endpoint("projects.get_all", "projects.get_all_ex")
def get_all(ctx: Context, body: Doc) -> Doc:
    query = compat.conform_request(ctx, dict(body), "project")
    extra = []
    requested = query.get("id")
    if not (query.get("search_hidden") or requested):
        extra.append(list_predicate("system_tags", [f"-{HIDDEN}"]))
    query.pop("path", None)
    if query.get("shallow_search"):
        if "parent" not in query:
            extra.append(lambda d: not d.get("parent"))
    elif "parent" in query:
        query["path"] = query.pop("parent")
    ex = ctx.endpoint == "projects.get_all_ex"
    if ex and (body.get("active_users") or body.get("children_type")):
        selected = _children_type_ids(ctx, body)
        if not selected:
            return {"projects": []}
        extra.append(lambda d: d["id"] in selected)
    page = run_query(ctx.tx.scan("project"), query, PROJECT_OPTIONS, extra, default_order=["name"])
    projects = [dict(p) for p in page.items]  # copies: the listed documents are the stored ones
    compat.conform_output(ctx, projects)
    if ex and projects:
        for p in projects:  # joined like the real server's get_all_ex: the parent's id and name
            if p.get("parent"):
                parent = ctx.tx.get("project", p["parent"])
                p["parent"] = {"id": p["parent"], "name": parent["name"] if parent else None}
        if body.get("search_hidden"):
            for p in projects:
                stored = ctx.tx.get("project", p.get("id", ""))
                if stored is not None and HIDDEN in (stored.get("system_tags") or []):
                    p["hidden"] = True
        if body.get("check_own_contents"):
            _add_own_contents(ctx, body, projects)
        if body.get("include_stats"):
            _add_stats(ctx, body, projects)
        if body.get("include_dataset_stats"):
            for p in projects:
                p["dataset_stats"] = _dataset_stats(ctx, p)
    result: Doc = {"projects": projects}
    if page.scroll_id:
        result["scroll_id"] = page.scroll_id
    return result


# ---------------------------------------------------------------------------- move, merge, delete


@endpoint("projects.move")
def move(ctx: Context, body: Doc) -> Doc:
    """Move a project with its sub-projects under ``new_location`` (created if missing; the root when
    empty). 400/410 when it is already there, 400/411 under itself."""
    require(body, "project")
    project = _writable(ctx.tx, body["project"])
    location = "/".join(_split(body.get("new_location") or ""))
    depth = len(location.split("/")) if location else 0
    subtree = [project, *(d for d in ctx.tx.scan("project") if project["id"] in (d.get("path") or []))]
    for p in subtree:
        if len(p.get("path") or []) + 1 - len(project.get("path") or []) + depth > MAX_DEPTH:
            raise errors.ApiError(
                400, 409, "Project path exceed the maximum allowed depth", max_depth=MAX_DEPTH
            )
    old_parent = project.get("parent")
    new_parent = ensure_project(ctx.tx, location) if location else None
    new_parent_id = new_parent["id"] if new_parent else None
    if old_parent == new_parent_id:
        raise errors.ApiError(
            400, 410, "Project has the same source and destination paths", location=location
        )
    if new_parent is not None and (
        new_parent["id"] == project["id"] or project["id"] in (new_parent.get("path") or [])
    ):
        raise errors.ApiError(
            400,
            411,
            "Project can not be moved under itself in the projects hierarchy",
            project=project["id"],
            parent=new_parent["id"],
        )
    moved = _reposition(ctx.tx, project, new_parent)
    _touch(ctx.tx, old_parent)
    _touch(ctx.tx, new_parent_id)
    return {"moved": moved}


@endpoint("projects.merge")
def merge(ctx: Context, body: Doc) -> Doc:
    """Move the active tasks and models and the sub-projects of ``project`` into
    ``destination_project`` (the root when not given), then delete it."""
    require(body, "project")
    source_id = body["project"]
    destination_id = body.get("destination_project")
    if source_id == destination_id:
        raise errors.ApiError(400, 410, "Project has the same source and destination paths", source=source_id)
    _writable(ctx.tx, source_id)
    destination = _writable(ctx.tx, destination_id) if destination_id else None
    if destination is not None and source_id in (destination.get("path") or []):
        raise errors.ApiError(
            400,
            412,
            "Project can not be merged into its own child",
            source=source_id,
            destination=destination_id,
        )
    moved_entities = 0
    for kind in ("task", "model"):
        for found in list(ctx.tx.scan(kind)):
            if found.get("project") == source_id and not _archived(found):
                doc = dict(found)
                doc["project"] = destination_id
                doc["last_change"] = now_iso()
                ctx.tx.put(kind, doc)
                moved_entities += 1
    moved_projects = 0
    for child in [d for d in ctx.tx.scan("project") if d.get("parent") == source_id]:
        _reposition(ctx.tx, dict(child), destination)
        moved_projects += 1
    ctx.tx.delete("project", source_id)
    _touch(ctx.tx, destination_id)
    return {"moved_entities": moved_entities, "moved_projects": moved_projects}


def _special_children(tx: Transaction, ids: set[str]) -> tuple[set[str], set[str]]:
    """The pipeline and dataset projects among ``ids`` (not the ``.pipelines``/``.datasets`` folders)."""
    pipelines, datasets = set(), set()
    for pid in ids:
        p = tx.get("project", pid)
        if p is None:
            continue
        tags = p.get("system_tags") or []
        if PIPELINE_TAG in tags and p.get("basename") != PIPELINES_NAME:
            pipelines.add(pid)
        if DATASET_TAG in tags and p.get("basename") != DATASETS_NAME:
            datasets.add(pid)
    return pipelines, datasets


def _projects_with(tx: Transaction, kind: str, ids: set[str], pred: Callable[[Doc], bool]) -> set[str]:
    return {d["project"] for d in tx.scan(kind) if d.get("project") in ids and pred(d)}


@endpoint("projects.validate_delete")
def validate_delete(ctx: Context, body: Doc) -> Doc:
    """What ``projects.delete`` would meet: counts of tasks, models and reports (all and active), and of
    dataset versions and pipelines that still have active content."""
    require(body, "project")
    project = get_project(ctx.tx, body["project"])
    ids = with_children(ctx.tx, [project["id"]])
    pipelines, datasets = _special_children(ctx.tx, ids)
    result: Doc = {
        "pipelines": len(
            _projects_with(
                ctx.tx, "task", pipelines, lambda t: t.get("type") == "controller" and not _archived(t)
            )
        ),
        "datasets": len(_projects_with(ctx.tx, "task", datasets, lambda t: not _archived(t))),
    }
    regular = ids - pipelines - datasets

    def count(kind: str, pred: Callable[[Doc], bool]) -> int:
        return sum(1 for d in ctx.tx.scan(kind) if d.get("project") in regular and pred(d))

    def report(d: Doc) -> bool:
        return REPORTS_TAG in (d.get("system_tags") or [])

    result["tasks"] = count("task", lambda d: not report(d))
    result["non_archived_tasks"] = count("task", lambda d: not report(d) and not _archived(d))
    result["models"] = count("model", lambda d: True)
    result["non_archived_models"] = count("model", lambda d: not _archived(d))
    result["reports"] = count("task", report)
    result["non_archived_reports"] = count("task", lambda d: report(d) and not _archived(d))
    return result


@endpoint("projects.delete")
def delete(ctx: Context, body: Doc) -> Doc:
    """Delete a project and its sub-projects. Without ``force``: 400/413 when a pipeline has an active
    controller, 400/406 when a dataset has versions, 400/402 (tasks) or 400/405 (models) when anything
    active is left. Their tasks and models are detached (``project: null``), or deleted with
    ``delete_contents`` (``urls`` then lists the files they uploaded)."""
    require(body, "project")
    project = _writable(ctx.tx, body["project"])
    ids = with_children(ctx.tx, [project["id"]])
    pipelines, datasets = _special_children(ctx.tx, ids)
    if not body.get("force"):
        active_controllers = _projects_with(
            ctx.tx, "task", pipelines, lambda t: t.get("type") == "controller" and not _archived(t)
        )
        if active_controllers:
            raise errors.ApiError(
                400,
                413,
                "project has associated pipelines with active controllers: "
                "please archive all the controllers or use force=true",
                id=project["id"],
            )
        if _projects_with(ctx.tx, "task", datasets, lambda t: not _archived(t)):
            raise errors.ApiError(
                400,
                406,
                "project has associated non-empty datasets: "
                "please delete all the dataset versions or use force=true",
                id=project["id"],
            )
        regular = ids - pipelines - datasets
        for kind, subcode, what in (("task", 402, "tasks"), ("model", 405, "models")):
            if _projects_with(ctx.tx, kind, regular, lambda d: not _archived(d)):
                raise errors.ApiError(
                    400, subcode, f"project has associated {what}: use force=true", id=project["id"]
                )
    result: Doc = {
        "deleted": 0,
        "disassociated_tasks": 0,
        "deleted_models": 0,
        "deleted_tasks": 0,
        "urls": None,
    }
    if not body.get("delete_contents"):
        for kind in ("task", "model"):
            for found in list(ctx.tx.scan(kind)):
                if found.get("project") in ids:
                    doc = dict(found)
                    doc["project"] = None
                    ctx.tx.put(kind, doc)
                    if kind == "task":
                        result["disassociated_tasks"] += 1
    else:
        result.update(_delete_contents(ctx.tx, ids))
    for pid in ids:
        ctx.tx.delete("project", pid)
    result["deleted"] = len(ids)
    return result


def _delete_contents(tx: Transaction, ids: set[str]) -> Doc:
    from .queues import remove_entry  # a task may still wait in a queue

    models = [m for m in tx.scan("model") if m.get("project") in ids]
    tasks = [t for t in tx.scan("task") if t.get("project") in ids]
    model_ids = {m["id"] for m in models}
    task_ids = {t["id"] for t in tasks}
    artifact_urls = sorted(
        {
            a["uri"]
            for t in tasks
            for a in (t.get("execution") or {}).get("artifacts") or []
            if isinstance(a, dict) and a.get("mode", "output") == "output" and a.get("uri")
        }
    )
    model_urls = sorted({m["uri"] for m in models if m.get("uri")})
    for found in list(tx.scan("task")):  # references from what stays behind
        if found["id"] in task_ids:
            continue
        changed = dict(found)
        if changed.get("parent") in task_ids:
            changed["parent"] = None
        refs = changed.get("models") or {}
        if any(r.get("model") in model_ids for side in ("input", "output") for r in refs.get(side) or []):
            changed["models"] = {
                side: [
                    {**r, "model": "__DELETED__"} if r.get("model") in model_ids else r
                    for r in refs.get(side) or []
                ]
                for side in ("input", "output")
            }
        if changed != found:
            tx.put("task", changed)
    for found in list(tx.scan("model")):
        if found["id"] not in model_ids and found.get("task") in task_ids:
            tx.put("model", {**found, "task": None})
    for t in tasks:
        if t.get("status") == "queued":
            remove_entry(tx, (t.get("execution") or {}).get("queue"), t["id"])
        tx.delete("task", t["id"])
    for m in models:
        tx.delete("model", m["id"])
    return {
        "deleted_models": len(models),
        "deleted_tasks": len(tasks),
        "urls": {"model_urls": model_urls, "artifact_urls": artifact_urls, "event_urls": []},
    }


# ---------------------------------------------------------------------------- aggregations


def _in_projects(tx: Transaction, body: Doc, include_subprojects: bool = True) -> Callable[[Doc], bool]:
    projects = body.get("projects") or ([body["project"]] if body.get("project") else [])
    if not projects:
        return lambda d: True
    ids = with_children(tx, projects) if include_subprojects else set(projects)
    return lambda d: d.get("project") in ids


@endpoint("projects.get_hyper_parameters")
def get_hyper_parameters(ctx: Context, body: Doc) -> Doc:
    inside = _in_projects(ctx.tx, body, body.get("include_subprojects", True) is not False)
    seen: dict[tuple[str, str], Doc] = {}
    for task in ctx.tx.scan("task"):
        if not inside(task):
            continue
        for section, params in (task.get("hyperparams") or {}).items():
            for name in params:
                seen[(section, name)] = {"section": section, "name": name}
    params = [seen[k] for k in sorted(seen)]
    page, size = int(body.get("page") or 0), int(body.get("page_size") or 500)
    chosen = params[page * size : (page + 1) * size]
    return {"parameters": chosen, "remaining": max(0, len(params) - (page + 1) * size), "total": len(params)}


@endpoint("projects.get_task_tags", "projects.get_model_tags")
def get_tags(ctx: Context, body: Doc) -> Doc:
    """The tags of the tasks (models) in ``projects`` and their sub-projects (every one when not
    given), among those matching ``filter`` (``{"system_tags": [...]}``, ``{"tags": [...]}``);
    system tags only with ``include_system``."""
    kind = "model" if ctx.endpoint.endswith("model_tags") else "task"
    inside = _in_projects(ctx.tx, body)
    preds = [
        list_predicate(k, v)
        for k, v in (body.get("filter") or {}).items()
        if k in ("tags", "system_tags") and v
    ]
    tags: set[str] = set()
    system_tags: set[str] = set()
    for doc in ctx.tx.scan(kind):
        if inside(doc) and all(p(doc) for p in preds):
            tags.update(doc.get("tags") or [])
            system_tags.update(doc.get("system_tags") or [])
    result: Doc = {"tags": sorted(tags)}
    if body.get("include_system"):
        result["system_tags"] = sorted(system_tags)
    return result


@endpoint("projects.get_task_parents")
def get_task_parents(ctx: Context, body: Doc) -> Doc:
    """The distinct parents of the tasks in ``projects`` (with sub-projects unless
    ``include_subprojects`` is false), of ``active`` or ``archived`` tasks only with ``tasks_state``,
    sorted by name."""
    inside = _in_projects(ctx.tx, body, body.get("include_subprojects", True) is not False)
    state = body.get("tasks_state")  # not given: the parents of tasks in any state
    parent_ids = set()
    for t in ctx.tx.scan("task"):
        if not inside(t) or not t.get("parent"):
            continue
        if (state == "active" and _archived(t)) or (state == "archived" and not _archived(t)):
            continue
        parent_ids.add(t["parent"])
    pattern = compile_regex(body["task_name"]) if body.get("task_name") else None
    parents = []
    for pid in parent_ids:
        parent = ctx.tx.get("task", pid)
        if parent is None:
            continue
        if pattern is not None and not pattern.search(parent.get("name") or ""):
            continue
        item: Doc = {"id": parent["id"], "name": parent.get("name")}
        project = ctx.tx.get("project", parent.get("project") or "")
        if project is not None:
            item["project"] = {"id": project["id"], "name": project["name"]}
        parents.append(item)
    return {"parents": sorted(parents, key=lambda p: p.get("name") or "")}


def _project_constraint(tx: Transaction, body: Doc, single: bool = True) -> Callable[[Doc], bool]:
    """``ProjectQueries._get_project_constraint``: ``project`` (or ``projects``) and, unless
    ``include_subprojects`` is false, their sub-projects; no project given means every entity, or
    only those outside any project when ``include_subprojects`` is false."""
    include = body.get("include_subprojects", True) is not False
    given = ([body["project"]] if body.get("project") else None) if single else (body.get("projects") or None)
    if include:
        if not given:
            return lambda d: True
        ids = with_children(tx, given)
    else:
        ids = set(given) if given else {None}  # type: ignore[arg-type]
    return lambda d: d.get("project") in ids


def _paged(values: list[Any], body: Doc) -> tuple[list[Any], int, int]:
    page, size = max(0, int(body.get("page") or 0)), max(1, int(body.get("page_size") or 500))
    chosen = values[page * size : (page + 1) * size]
    return chosen, len(values), max(0, len(values) - (page + 1) * size)


@endpoint("projects.get_unique_metric_variants")
def get_unique_metric_variants(ctx: Context, body: Doc) -> Doc:
    """The metrics and variants in the ``last_metrics`` of the tasks (models with ``model_metrics``)
    of a project or of the ``ids`` given, sorted by metric and variant."""
    inside = _project_constraint(ctx.tx, body)
    ids = set(body.get("ids") or [])
    seen: dict[tuple[str, str], Doc] = {}
    for doc in ctx.tx.scan("model" if body.get("model_metrics") else "task"):
        if not inside(doc) or (ids and doc["id"] not in ids):
            continue
        for metric_hash, variants in (doc.get("last_metrics") or {}).items():
            for variant_hash, entry in variants.items():
                key = (entry.get("metric"), entry.get("variant"))
                seen.setdefault(
                    key,
                    {
                        "metric": key[0],
                        "metric_hash": metric_hash,
                        "variant": key[1],
                        "variant_hash": variant_hash,
                    },
                )
    return {"metrics": [seen[k] for k in sorted(seen, key=lambda k: (str(k[0]), str(k[1])))]}


@endpoint("projects.get_model_metadata_keys")
def get_model_metadata_keys(ctx: Context, body: Doc) -> Doc:
    inside = _project_constraint(ctx.tx, body)
    keys = sorted({k for m in ctx.tx.scan("model") if inside(m) for k in (m.get("metadata") or {})})
    chosen, total, remaining = _paged(keys, body)
    return {"total": total, "remaining": remaining, "keys": chosen}


@endpoint("projects.get_model_metadata_values")
def get_model_metadata_values(ctx: Context, body: Doc) -> Doc:
    require(body, "key")
    inside = _project_constraint(ctx.tx, body, single=False)
    values = sorted(
        {
            str(item.get("value"))
            for m in ctx.tx.scan("model")
            if inside(m)
            for item in [(m.get("metadata") or {}).get(body["key"])]
            if isinstance(item, dict) and item.get("value") is not None
        }
    )
    chosen, total, _ = _paged(values, body)
    return {"total": total, "values": chosen}


@endpoint("projects.get_hyperparam_values")
def get_hyperparam_values(ctx: Context, body: Doc) -> Doc:
    require(body, "section", "name")
    inside = _project_constraint(ctx.tx, body, single=False)
    pattern = compile_regex(body["pattern"], ignore_case=True) if body.get("pattern") else None
    values = set()
    for t in ctx.tx.scan("task"):
        param = ((t.get("hyperparams") or {}).get(body["section"]) or {}).get(body["name"])
        if not (inside(t) and isinstance(param, dict)) or param.get("value") in (None, ""):
            continue
        if pattern is None or pattern.search(str(param["value"])):
            values.add(str(param["value"]))
    chosen, total, _ = _paged(sorted(values), body)
    return {"total": total, "values": chosen}


@endpoint("projects.get_project_tags")
def get_project_tags(ctx: Context, body: Doc) -> Doc:
    """The tags of the projects (``projects`` and their sub-projects, or all) matching ``filter``."""
    ids = with_children(ctx.tx, body["projects"]) if body.get("projects") else None
    filters = body.get("filter") or {}
    preds = [list_predicate(k, v) for k, v in filters.items() if k in ("tags", "system_tags") and v]
    tags: set[str] = set()
    system_tags: set[str] = set()
    for p in ctx.tx.scan("project"):
        if (ids is None or p["id"] in ids) and all(pred(p) for pred in preds):
            tags.update(p.get("tags") or [])
            system_tags.update(p.get("system_tags") or [])
    result: Doc = {"tags": sorted(tags)}
    if body.get("include_system"):
        result["system_tags"] = sorted(system_tags)
    return result


@endpoint("projects.get_user_names")
def get_user_names(ctx: Context, body: Doc) -> Doc:
    """The users who created the tasks (or models, ``entity: model``) in ``projects``."""
    inside = _in_projects(ctx.tx, body, body.get("include_subprojects", True) is not False)
    kind = "model" if body.get("entity") == "model" else "task"
    users = {str(d["user"]) for d in ctx.tx.scan(kind) if inside(d) and d.get("user")}
    return {"users": [{"id": u, "name": USER["name"] if u == USER["id"] else u} for u in sorted(users)]}


def _set_public(ctx: Context, ids: list[str], public: bool) -> Doc:
    """``make_public``: the projects belong to no company (readable, not writable);
    ``make_private`` only takes back projects this company made public (else 400/401)."""

    def invalid(wrong: list[str]) -> errors.ApiError:
        return errors.invalid_project_id(",".join(wrong))

    return set_public(ctx.tx, "project", ids, public, invalid, stamp="last_update")


@endpoint("projects.make_public")
def make_public(ctx: Context, body: Doc) -> Doc:
    return _set_public(ctx, ids_of(body, "ids"), True)


@endpoint("projects.make_private")
def make_private(ctx: Context, body: Doc) -> Doc:
    return _set_public(ctx, ids_of(body, "ids"), False)
