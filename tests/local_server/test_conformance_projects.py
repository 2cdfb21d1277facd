"""projects.*: the real ClearML server's behaviour (issue 12), pinned call by call.

Written from clearml-server's documented behaviour (``apiserver/schema/services/projects.conf``, its
error codes and API tests): renames keep the location and rename the sub-projects, ``move`` and
``merge`` reorganise the tree, ``delete`` refuses active content unless forced and detaches what it
leaves, ``validate_delete`` counts what ``delete`` would meet, and ``get_all_ex`` reports statistics.
"""

from __future__ import annotations

import time
import uuid

import pytest

from local_server import LocalServer
from tests.local_server.helpers import Api


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Api:
    return Api(server)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _code(api: Api, endpoint: str, body: dict) -> tuple[int, int]:
    meta = api.call(endpoint, body).json()["meta"]
    return meta["result_code"], meta["result_subcode"]


def _project(api: Api, name: str, **fields: object) -> str:
    return str(api.ok("projects.create", {"name": name, "description": "", **fields})["id"])


def _task(api: Api, project: str | None = None, **fields: object) -> str:
    body = {"name": _name("t"), "type": "testing", **fields}
    if project:
        body["project"] = project
    return str(api.ok("tasks.create", body)["id"])


def _by_id(api: Api, project: str) -> dict:
    return api.ok("projects.get_by_id", {"project": project})["project"]


def test_rename_succeeds_renames_sub_projects_and_refuses_a_taken_name(api: Api) -> None:
    root = _name("rename")
    parent = _project(api, f"{root}/Pr1")
    child = _project(api, f"{root}/Pr1/Pr2")
    taken = _project(api, f"{root}/Taken")

    assert api.ok("projects.update", {"project": parent, "name": f"{root}/Renamed"})["updated"] == 1
    assert _by_id(api, parent)["basename"] == "Renamed"
    assert _by_id(api, child)["name"] == f"{root}/Renamed/Pr2"
    # another location is a move, not a rename; a name in use is a unique violation
    assert _code(api, "projects.update", {"project": parent, "name": f"{_name('else')}/Renamed"}) == (
        400,
        408,
    )
    assert _code(api, "projects.update", {"project": taken, "name": f"{root}/Renamed"}) == (400, 801)
    assert _code(api, "projects.create", {"name": f"{root}/Renamed/Pr2"}) == (400, 801)
    assert _code(api, "projects.create", {"name": "/"}) == (400, 407)


def test_move_and_merge_reorganise_the_tree(api: Api) -> None:
    root = _name("tree")
    pr1 = _project(api, f"{root}/A/Pr1")
    child = _project(api, f"{root}/A/Pr1/Pr2")

    assert api.ok("projects.move", {"project": pr1, "new_location": f"{root}/B"})["moved"] == 2
    moved = _by_id(api, child)
    assert moved["name"] == f"{root}/B/Pr1/Pr2" and moved["basename"] == "Pr2"
    new_parent = _by_id(api, pr1)["parent"]
    assert _by_id(api, new_parent)["name"] == f"{root}/B", "the new location was created"
    assert pr1 in moved["path"] and new_parent in moved["path"]
    assert _code(api, "projects.move", {"project": pr1, "new_location": f"{root}/B"}) == (400, 410)
    assert _code(api, "projects.move", {"project": pr1, "new_location": f"{root}/B/Pr1/Pr2"}) == (400, 411)

    # merge: the source's active content and sub-projects go to the destination, the source is gone
    source = _project(api, f"{root}/Src")
    inner = _project(api, f"{root}/Src/Inner")
    active = _task(api, source)
    archived = _task(api, source, system_tags=["archived"])
    assert _code(api, "projects.merge", {"project": pr1, "destination_project": child}) == (400, 412)
    merged = api.ok("projects.merge", {"project": source, "destination_project": pr1})
    assert merged == {"moved_entities": 1, "moved_projects": 1}
    assert _by_id(api, inner)["name"] == f"{root}/B/Pr1/Inner"
    assert _code(api, "projects.get_by_id", {"project": source}) == (400, 401)
    assert api.ok("tasks.get_by_id", {"task": active})["task"]["project"] == pr1
    assert api.ok("tasks.get_by_id", {"task": archived})["task"]["project"] == source, "archived stay"


def test_delete_refuses_active_content_and_detaches_what_it_leaves(api: Api) -> None:
    project = _project(api, _name("del"))
    sub = _project(api, f"{_by_id(api, project)['name']}/sub")
    task = _task(api, sub)
    archived = _task(api, project, system_tags=["archived"])

    assert api.ok("projects.validate_delete", {"project": project}) == {
        "tasks": 2,
        "non_archived_tasks": 1,
        "models": 0,
        "non_archived_models": 0,
        "reports": 0,
        "non_archived_reports": 0,
        "pipelines": 0,
        "datasets": 0,
    }
    assert _code(api, "projects.delete", {"project": project}) == (400, 402)
    res = api.ok("projects.delete", {"project": project, "force": True})
    assert res["deleted"] == 2 and res["disassociated_tasks"] == 2
    for task_id in (task, archived):
        assert api.ok("tasks.get_by_id", {"task": task_id})["task"].get("project") is None
    assert _code(api, "projects.get_by_id", {"project": sub}) == (400, 401)


def test_delete_checks_models_datasets_and_deletes_contents_on_request(api: Api) -> None:
    name = _name("delc")
    project = _project(api, name)
    model = api.ok("models.create", {"name": "m", "uri": "file:///m.pkl", "project": project})["id"]
    assert api.ok("projects.validate_delete", {"project": project})["non_archived_models"] == 1
    assert _code(api, "projects.delete", {"project": project}) == (400, 405)

    other = _project(api, _name("ds"))
    dataset = _project(api, f"{_by_id(api, other)['name']}/.datasets/d", system_tags=["dataset"])
    version = _task(api, dataset, system_tags=["dataset"])
    assert api.ok("projects.validate_delete", {"project": other})["datasets"] == 1
    assert _code(api, "projects.delete", {"project": other}) == (400, 406)
    api.ok("tasks.delete", {"task": version, "force": True})
    assert api.ok("projects.validate_delete", {"project": other})["datasets"] == 0
    api.ok("projects.delete", {"project": other})

    task = _task(api, project)
    api.ok(
        "tasks.add_or_update_artifacts",
        {"task": task, "artifacts": [{"key": "a", "type": "str", "mode": "output", "uri": "file:///a.txt"}]},
    )
    res = api.ok("projects.delete", {"project": project, "force": True, "delete_contents": True})
    assert res["deleted_tasks"] == 1 and res["deleted_models"] == 1
    assert res["urls"]["model_urls"] == ["file:///m.pkl"]
    assert res["urls"]["artifact_urls"] == ["file:///a.txt"]
    assert _code(api, "tasks.get_by_id", {"task": task}) == (400, 101)
    assert _code(api, "models.get_by_id", {"model": model}) == (400, 201)


def test_get_all_ex_reports_stats_and_own_contents(api: Api) -> None:
    root = _name("stats")
    top = _project(api, root)
    leaf = _project(api, f"{root}/p3/p4")
    done = _task(api, leaf)
    _task(api, leaf, system_tags=["archived"])
    api.ok("tasks.started", {"task": done})
    time.sleep(1.1)
    api.ok("tasks.stopped", {"task": done})
    api.ok("models.create", {"name": "m", "uri": "file:///x", "project": top})

    [p] = api.ok("projects.get_all_ex", {"id": [top], "include_stats": True, "check_own_contents": True})[
        "projects"
    ]
    active = p["stats"]["active"]
    assert active["status_count"]["stopped"] == 1 and active["total_tasks"] == 1, "archived not counted"
    assert active["total_runtime"] == 1 and active["completed_tasks_24h"] == 1
    assert [s["name"] for s in p["sub_projects"]] == [f"{root}/p3", f"{root}/p3/p4"]
    assert (p["own_tasks"], p["own_models"]) == (0, 1)
    [leaf_ex] = api.ok("projects.get_all_ex", {"id": [leaf]})["projects"]
    assert leaf_ex["parent"]["name"] == f"{root}/p3", "get_all_ex joins the parent's name"
    assert "stats" not in _by_id(api, top), "listing left the project as it was"


def test_task_tags_and_parents_follow_the_projects_filter(api: Api) -> None:
    p1, p2 = _project(api, _name("tags1")), _project(api, _name("tags2"))
    parent = _task(api, p1, tags=["t1"], system_tags=["s1"])
    _task(api, p1, tags=["t2"], parent=parent)
    _task(api, p2, tags=["t3"])

    assert api.ok("projects.get_task_tags", {"projects": [p1]})["tags"] == ["t1", "t2"]
    assert api.ok("projects.get_task_tags", {"projects": [p2]})["tags"] == ["t3"]
    both = api.ok("projects.get_task_tags", {"projects": [p1, p2], "include_system": True})
    assert both["tags"] == ["t1", "t2", "t3"] and both["system_tags"] == ["s1"]
    filtered = api.ok("projects.get_task_tags", {"projects": [p1], "filter": {"system_tags": ["-s1"]}})
    assert filtered["tags"] == ["t2"]

    parents = api.ok("projects.get_task_parents", {"projects": [p1]})["parents"]
    assert [p["id"] for p in parents] == [parent]
    assert parents[0]["project"]["id"] == p1
    assert api.ok("projects.get_task_parents", {"projects": [p2]})["parents"] == []
    other = _task(api, p1)
    _task(api, p1, parent=other, system_tags=["archived"])
    assert {p["id"] for p in api.ok("projects.get_task_parents", {"projects": [p1]})["parents"]} == {
        parent,
        other,
    }
    active = api.ok("projects.get_task_parents", {"projects": [p1], "tasks_state": "active"})["parents"]
    assert [p["id"] for p in active] == [parent]
    archived = api.ok("projects.get_task_parents", {"projects": [p1], "tasks_state": "archived"})["parents"]
    assert [p["id"] for p in archived] == [other]


def test_a_public_project_is_listed_but_cannot_be_changed(api: Api) -> None:
    project = _project(api, _name("public"))
    assert _code(api, "projects.make_private", {"ids": [project]}) == (400, 401), "not public"
    assert api.ok("projects.make_public", {"ids": [project]})["updated"] == 1
    assert [p["id"] for p in api.ok("projects.get_all", {"id": [project]})["projects"]] == [project]
    assert _code(api, "projects.update", {"project": project, "description": "x"}) == (403, 21)
    assert api.ok("projects.make_private", {"ids": [project]})["updated"] == 1
    api.ok("projects.update", {"project": project, "description": "x"})


def test_clients_before_api_2_3_send_and_get_system_tags_in_tags(api: Api) -> None:
    def old(endpoint: str, body: dict) -> dict:
        res = api.session.post(f"{api.base}/v2.2/{endpoint}", json=body, timeout=30)
        assert res.status_code == 200, res.text
        return res.json()["data"]

    name = _name("oldtags")
    project = old("projects.create", {"name": name, "tags": ["public", "test"]})["id"]
    assert _by_id(api, project)["tags"] == ["test"] and _by_id(api, project)["system_tags"] == ["public"]
    assert sorted(old("projects.get_by_id", {"project": project})["project"]["tags"]) == ["public", "test"]
    assert old("projects.get_all", {"name": f"^{name}$", "tags": ["-public"]})["projects"] == []
    old("projects.update", {"project": project, "tags": ["test"]})
    assert _by_id(api, project)["system_tags"] == []

    queue = old("queues.create", {"name": _name("oldq"), "tags": ["default", "q"]})["id"]
    stored = api.ok("queues.get_by_id", {"queue": queue})["queue"]
    assert (stored["tags"], stored["system_tags"]) == (["q"], ["default"])
    assert sorted(old("queues.get_by_id", {"queue": queue})["queue"]["tags"]) == ["default", "q"]
    api.ok("queues.delete", {"queue": queue})
