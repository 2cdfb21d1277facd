"""tasks.*: the real ClearML server's behaviour (issue 12), pinned call by call.

Written from clearml-server's documented behaviour (``apiserver/schema/services/tasks.conf``, its
error codes ``apierrors/errors.conf`` and what its API tests assert): the status machine and its
result codes, what ``stop``, ``delete``, ``reset``, ``archive``, ``clone`` and ``enqueue`` do to a
task, the batch calls (``*_many``), ``get_all_ex`` (filters, joined references, projection, numeric
ordering of user values) and what older API versions send and get (legacy parameters, tags).
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest

from local_server import LocalServer
from tests.local_server.helpers import Api, VersionedApi


@pytest.fixture(scope="module")
def api(server: LocalServer) -> VersionedApi:
    return VersionedApi(server)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _codes(api: Api, endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    res = api.call(endpoint, body)
    meta = res.json()["meta"]
    assert res.status_code == meta["result_code"]
    return meta["result_code"], meta["result_subcode"]


def _task(api: Api, **fields: Any) -> str:
    return str(api.ok("tasks.create", {"name": _name("task"), "type": "testing", **fields})["id"])


def _get(api: Api, task: str) -> dict[str, Any]:
    return api.ok("tasks.get_by_id", {"task": task})["task"]


def _queue(api: Api) -> str:
    return str(api.ok("queues.create", {"name": _name("queue")})["id"])


def _published(api: Api, **fields: Any) -> str:
    task = _task(api, **fields)
    api.ok("tasks.started", {"task": task})
    api.ok("tasks.stopped", {"task": task})
    api.ok("tasks.publish", {"task": task})
    return task


# ---------------------------------------------------------------------------- Tasks


def test_stop_stops_a_task_no_worker_runs_and_asks_a_worker_run_task_to_stop(api: VersionedApi) -> None:
    alone = _task(api)
    api.ok("tasks.started", {"task": alone})
    res = api.ok("tasks.stop", {"task": alone})
    assert res["fields"]["status"] == "stopped"
    stored = _get(api, alone)
    assert stored["status"] == "stopped" and stored["status_message"].startswith("Stopped by")

    development = _task(api, system_tags=["development"])
    api.ok("tasks.started", {"task": development})
    assert api.ok("tasks.stop", {"task": development})["fields"]["status"] == "stopped"

    # a worker reports it runs the task: the worker is asked to stop it, the status stays
    run = _task(api)
    api.ok("tasks.started", {"task": run})
    worker = _name("worker")
    api.ok("workers.register", {"worker": worker})
    api.ok("workers.status_report", {"worker": worker, "task": run, "timestamp": 1})
    res = api.ok("tasks.stop", {"task": run})
    assert res["fields"]["status"] == "in_progress" and res["fields"]["status_message"] == "stopping"
    assert _get(api, run)["status"] == "in_progress"

    # a draft cannot be stopped without force
    assert _codes(api, "tasks.stop", {"task": _task(api)}) == (400, 110)


def test_delete_needs_force_for_a_published_task_and_answers_urls(api: VersionedApi) -> None:
    published = _published(api)
    assert _codes(api, "tasks.delete", {"task": published}) == (400, 123)
    assert _get(api, published)["status"] == "published"
    res = api.ok("tasks.delete", {"task": published, "force": True})
    assert res["deleted"] is True and "urls" in res and res["urls"] is None

    task = _task(api)
    artifact = {"key": "a", "type": "custom", "mode": "output", "uri": "file:///x/a.bin"}
    api.ok("tasks.add_or_update_artifacts", {"task": task, "artifacts": [artifact]})
    res = api.ok("tasks.delete", {"task": task, "return_file_urls": True})
    assert res["urls"]["artifact_urls"] == ["file:///x/a.bin"]
    assert res["urls"]["model_urls"] == []
    assert _codes(api, "tasks.get_by_id", {"task": task}) == (400, 101)


def test_delete_with_published_children_needs_force_and_reparents_them(api: VersionedApi) -> None:
    parent = _task(api)
    child = _published(api, parent=parent)
    assert _codes(api, "tasks.delete", {"task": parent}) == (400, 123)
    res = api.ok("tasks.delete", {"task": parent, "force": True})
    assert res["updated_children"] == 1
    assert _get(api, child)["parent"] == f"__DELETED__{parent}"


def test_reset_of_a_published_task_is_an_invalid_status(api: VersionedApi) -> None:
    task = _published(api)
    assert _codes(api, "tasks.reset", {"task": task}) == (400, 110)
    res = api.ok("tasks.reset", {"task": task, "force": True})
    assert res["fields"]["status"] == "created"
    assert _get(api, task)["status"] == "created"


def test_edit_with_force_sets_the_status(api: VersionedApi) -> None:
    task = _task(api)
    api.ok("tasks.edit", {"task": task, "status": "completed"})
    assert _get(api, task)["status"] == "completed"
    assert _codes(api, "tasks.edit", {"task": task, "status": "created"}) == (400, 110)
    api.ok("tasks.edit", {"task": task, "status": "created", "force": True})
    assert _get(api, task)["status"] == "created"


def test_enqueue_and_clone_drop_the_development_tag(api: VersionedApi) -> None:
    task = _task(api, system_tags=["development", "keep"])
    clone = api.ok("tasks.clone", {"task": task})["id"]
    assert _get(api, clone)["system_tags"] == ["keep"]
    api.ok("tasks.enqueue", {"task": task, "queue": _queue(api)})
    assert _get(api, task)["system_tags"] == ["keep"]


def test_clone_with_validate_references_refuses_a_missing_input_model(api: VersionedApi) -> None:
    model = api.ok("models.create", {"name": _name("m"), "uri": "file:///m.bin"})["id"]
    task = _task(api, models={"input": [{"name": "input", "model": model}]})
    api.ok("models.delete", {"model": model, "force": True})
    assert api.ok("tasks.clone", {"task": task})["id"]  # not checked unless asked
    assert _codes(api, "tasks.clone", {"task": task, "validate_references": True}) == (400, 201)
    overrides = {"task": task, "execution_overrides": {"model": "no-such-model"}}
    assert _codes(api, "tasks.clone", overrides) == (400, 201), "a new input model is always checked"


def test_clone_parent_is_the_source_parent_when_it_has_one(api: VersionedApi) -> None:
    origin = _task(api)
    first = api.ok("tasks.clone", {"task": origin})["id"]
    second = api.ok("tasks.clone", {"task": first})["id"]
    assert _get(api, first)["parent"] == origin
    assert _get(api, second)["parent"] == origin


def test_archive_sets_status_message_and_reason_and_dequeues(api: VersionedApi) -> None:
    queue = _queue(api)
    queued, draft = _task(api), _task(api)
    api.ok("tasks.enqueue", {"task": queued, "queue": queue})
    res = api.ok(
        "tasks.archive", {"tasks": [queued, draft], "status_message": "msg-x", "status_reason": "reason-y"}
    )
    assert res == {"archived": 2}
    for task in (queued, draft):
        doc = _get(api, task)
        assert "archived" in doc["system_tags"]
        assert (doc["status_message"], doc["status_reason"]) == ("msg-x", "reason-y")
    assert _get(api, queued)["status"] == "created"
    assert api.ok("queues.get_by_id", {"queue": queue})["queue"]["entries"] == []
    assert _codes(api, "tasks.archive", {"tasks": ["no-such-task"]}) == (400, 101)


def test_completed_answers_whether_it_published(api: VersionedApi) -> None:
    task = _task(api)
    api.ok("tasks.started", {"task": task})
    res = api.ok("tasks.completed", {"task": task})
    assert res["published"] == 0
    other = _task(api)
    api.ok("tasks.started", {"task": other})
    res = api.ok("tasks.completed", {"task": other, "publish": True})
    assert res["published"] == 1 and res["fields"]["status"] == "published"
    assert _get(api, other)["status"] == "published"


def test_create_with_an_unsupported_type_is_a_validation_error(api: VersionedApi) -> None:
    assert _codes(api, "tasks.create", {"name": "x", "type": "Unsupported"}) == (400, 12)
    task = _task(api)
    assert _codes(api, "tasks.edit", {"task": task, "type": "Unsupported"}) == (400, 12)


def test_artifacts_come_sorted_by_key(api: VersionedApi) -> None:
    task = _task(api)
    artifacts = [{"key": k, "type": "custom", "mode": "output"} for k in ("b", "c", "a")]
    api.ok("tasks.add_or_update_artifacts", {"task": task, "artifacts": artifacts})
    assert [a["key"] for a in _get(api, task)["execution"]["artifacts"]] == ["a", "b", "c"]


def test_legacy_parameters_and_model_desc_become_hyperparams_and_configuration(api: VersionedApi) -> None:
    execution = {"parameters": {"lr": 0.5, "TF_DEFINE/depth": 3}, "model_desc": {"design": "hello"}}
    task = api.ok_at(
        "2.8", "tasks.create", {"name": _name("legacy"), "type": "testing", "execution": execution}
    )["id"]
    doc = _get(api, task)
    assert doc["hyperparams"]["Args"]["lr"] == {
        "section": "Args",
        "name": "lr",
        "value": "0.5",
        "type": "legacy",
    }
    assert doc["hyperparams"]["TF_DEFINE"]["depth"]["value"] == "3"
    assert doc["configuration"]["design"] == {"name": "design", "value": "hello", "type": "legacy"}
    assert "parameters" not in doc["execution"] or not doc["execution"]["parameters"]
    # an old client (API < 2.9) reads them back where it wrote them
    old = api.ok_at("2.8", "tasks.get_by_id", {"task": task})["task"]
    assert old["execution"]["parameters"] == {"lr": "0.5", "TF_DEFINE/depth": "3"}
    assert old["execution"]["model_desc"] == {"design": "hello"}


def test_old_clients_send_system_tags_in_tags(api: VersionedApi) -> None:
    task = api.ok_at(
        "2.2", "tasks.create", {"name": _name("tags"), "type": "testing", "tags": ["development", "t"]}
    )["id"]
    doc = _get(api, task)
    assert (doc["tags"], doc["system_tags"]) == (["t"], ["development"])
    assert api.ok_at("2.2", "tasks.get_by_id", {"task": task})["task"]["tags"] == ["development", "t"]


def test_old_clients_name_the_input_model_in_execution(api: VersionedApi) -> None:
    model = api.ok("models.create", {"name": _name("m"), "uri": "file:///m.bin"})["id"]
    task = api.ok_at(
        "2.12", "tasks.create", {"name": _name("t"), "type": "testing", "execution": {"model": model}}
    )["id"]
    assert [m["model"] for m in _get(api, task)["models"]["input"]] == [model]
    assert api.ok_at("2.12", "tasks.get_by_id", {"task": task})["task"]["execution"]["model"] == model


def test_add_or_update_model_takes_a_model_id_it_does_not_know(api: VersionedApi) -> None:
    task = _task(api)
    res = api.ok(
        "tasks.add_or_update_model", {"task": task, "name": "out", "type": "output", "model": "elsewhere"}
    )
    assert res["updated"] == 1
    assert [(m["name"], m["model"]) for m in _get(api, task)["models"]["output"]] == [("out", "elsewhere")]


# ---------------------------------------------------------------------------- get_all_ex


def test_get_all_ex_filters_list_fields(api: VersionedApi) -> None:
    tags = ["a", "b", "c", "d"]
    tasks = [_task(api, tags=tags[:i]) for i in range(len(tags) + 1)]

    def ids(filters: dict[str, Any]) -> set[str]:
        return {t["id"] for t in api.ok("tasks.get_all_ex", {"id": tasks, "filters": filters})["tasks"]}

    assert ids({"tags": {"any": {"include": ["a", "b"]}}}) == set(tasks[1:])
    assert ids({"tags": {"any": {"exclude": ["c", "d"]}}}) == set(tasks[:-1])
    assert ids({"tags": {"all": {"include": ["a", "b"]}}}) == set(tasks[2:])
    assert ids({"tags": {"all": {"exclude": ["c", "d"]}}}) == set(tasks[:-2])
    assert ids({"tags": {"all": {"include": [None]}}}) == {tasks[0]}
    assert ids({"tags": {"any": {"include": ["a", "b"]}, "all": {"exclude": ["c", "d"]}}}) == set(tasks[1:-2])
    assert _codes(api, "tasks.get_all_ex", {"filters": {"tags": {"test": ["1"]}}}) == (400, 12)


def test_get_all_ex_answers_references_as_objects(api: VersionedApi) -> None:
    project_name = _name("Refs")
    project = api.ok("projects.create", {"name": project_name, "description": ""})["id"]
    queue = _queue(api)
    task = _task(api, project=project)
    api.ok("tasks.enqueue", {"task": task, "queue": queue})

    doc = api.ok("tasks.get_all_ex", {"id": [task]})["tasks"][0]
    assert doc["project"] == {"id": project} and doc["execution"]["queue"] == {"id": queue}
    assert api.ok("tasks.get_all", {"id": [task]})["tasks"][0]["project"] == project

    joined = api.ok("tasks.get_all_ex", {"id": [task], "only_fields": ["project.name"]})["tasks"][0]
    assert joined == {"id": task, "project": {"id": project, "name": project_name}}


def test_get_all_ex_star_projection_returns_every_field(api: VersionedApi) -> None:
    task = _task(api, comment="all of it")
    doc = api.ok("tasks.get_all_ex", {"id": [task], "only_fields": ["*", "execution.*"]})["tasks"][0]
    assert doc["comment"] == "all of it" and doc["name"].startswith("task-") and "execution" in doc


def test_get_all_ex_orders_hyperparameters_as_numbers(api: VersionedApi) -> None:
    tasks = [
        _task(api, hyperparams={"s": {"p": {"section": "s", "name": "p", "value": v, "type": "str"}}})
        for v in ("1", "2", "10")
    ]
    up = api.ok("tasks.get_all_ex", {"id": tasks, "order_by": ["hyperparams.s.p.value"]})["tasks"]
    assert [t["id"] for t in up] == tasks
    down = api.ok("tasks.get_all_ex", {"id": tasks, "order_by": ["-hyperparams.s.p"]})["tasks"]
    assert [t["id"] for t in down] == tasks[::-1]


# ---------------------------------------------------------------------------- *_many


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


def test_batch_calls_report_each_id(api: VersionedApi) -> None:
    tasks = [_task(api) for _ in range(2)]
    missing = uuid.uuid4().hex
    ids = [*tasks, missing]

    def status() -> set[str]:
        return {t["status"] for t in api.ok("tasks.get_all_ex", {"id": tasks})["tasks"]}

    res = api.ok("tasks.enqueue_many", {"ids": ids, "queue_name": _name("batch")})
    assert _ids(res["succeeded"]) == set(tasks) and all(s["queued"] for s in res["succeeded"])
    assert [(f["id"], f["error"]["codes"]) for f in res["failed"]] == [(missing, [400, 101])]
    assert status() == {"queued"}

    for task in tasks:
        api.ok("tasks.started", {"task": task})
    res = api.ok("tasks.stop_many", {"ids": ids})
    assert _ids(res["succeeded"]) == set(tasks) and _ids(res["failed"]) == {missing}
    assert status() == {"stopped"}

    res = api.ok("tasks.publish_many", {"ids": ids, "publish_model": False})
    assert _ids(res["succeeded"]) == set(tasks) and _ids(res["failed"]) == {missing}
    assert status() == {"published"}

    res = api.ok("tasks.reset_many", {"ids": ids})
    assert res["succeeded"] == [] and _ids(res["failed"]) == set(ids), "published: force needed"
    assert {f["error"]["codes"][1] for f in res["failed"]} == {110, 101}
    res = api.ok("tasks.reset_many", {"ids": ids, "force": True, "return_file_urls": True})
    assert _ids(res["succeeded"]) == set(tasks)
    assert all(
        s["urls"] == {"model_urls": [], "artifact_urls": [], "event_urls": []} for s in res["succeeded"]
    )
    assert status() == {"created"}

    res = api.ok("tasks.archive_many", {"ids": ids})
    assert res["succeeded"] == [{"id": t, "archived": True} for t in tasks] and _ids(res["failed"]) == {
        missing
    }
    res = api.ok("tasks.unarchive_many", {"ids": ids})
    assert res["succeeded"] == [{"id": t, "unarchived": True} for t in tasks]

    res = api.ok("tasks.delete_many", {"ids": ids})
    assert _ids(res["succeeded"]) == set(tasks) and _ids(res["failed"]) == {missing}
    assert api.ok("tasks.get_all_ex", {"id": ids})["tasks"] == []


def test_a_failing_item_of_a_batch_changes_nothing(api: VersionedApi) -> None:
    """Each id runs on its own: one refused (a published task without force) leaves the others done
    and itself unchanged."""
    draft, published = _task(api), _published(api)
    res = api.ok("tasks.delete_many", {"ids": [draft, published]})
    assert _ids(res["succeeded"]) == {draft}
    assert [f["error"]["codes"] for f in res["failed"]] == [[400, 123]]
    assert _get(api, published)["status"] == "published"


def test_move_to_a_project_by_name_or_to_the_root(api: VersionedApi) -> None:
    task = _task(api)
    name = _name("Moved")
    project = api.ok("tasks.move", {"ids": [task], "project_name": name})["project_id"]
    assert _get(api, task)["project"] == project
    assert api.ok("projects.get_by_id", {"project": project})["project"]["name"] == name
    assert api.ok("tasks.move", {"ids": [task], "project": None})["project_id"] is None
    assert _get(api, task)["project"] is None
    assert _codes(api, "tasks.move", {"ids": [task]}) == (400, 11)


def test_update_tags_adds_and_removes_user_tags(api: VersionedApi) -> None:
    task = _task(api, tags=["old", "keep"])
    res = api.ok("tasks.update_tags", {"ids": [task], "add_tags": ["new"], "remove_tags": ["old"]})
    assert res["updated"] == 2
    assert _get(api, task)["tags"] == ["keep", "new"]
    assert _codes(api, "tasks.update_tags", {"ids": [task]}) == (400, 12)


def test_hyperparameter_names_with_dots_are_addressed_escaped(api: VersionedApi) -> None:
    params = {"sec.tion": {"p": {"section": "sec.tion", "name": "p", "value": "1", "type": "str"}}}
    task = _task(api, hyperparams=params)
    doc = api.ok("tasks.get_all_ex", {"id": [task], "only_fields": ["hyperparams.sec%2Etion"]})["tasks"][0]
    assert doc["hyperparams"] == params


def test_pipeline_steps_follow_their_controller_when_asked(api: VersionedApi) -> None:
    controller = _task(api, type="controller")
    steps = [_task(api, parent=controller) for _ in range(2)]
    api.ok("tasks.archive", {"tasks": [controller], "include_pipeline_steps": True})
    assert all("archived" in _get(api, t)["system_tags"] for t in (controller, *steps))
    api.ok("tasks.delete", {"task": controller, "include_pipeline_steps": True, "force": True})
    assert api.ok("tasks.get_all_ex", {"id": [controller, *steps]})["tasks"] == []


def test_reset_and_delete_remove_the_task_events(api: VersionedApi) -> None:
    def log(task: str) -> list[dict[str, Any]]:
        return list(api.ok("events.get_task_log", {"task": task})["events"])

    def report(task: str) -> None:
        res = api.call("events.add_batch", raw=f'{{"task": "{task}", "type": "log", "msg": "hello"}}')
        assert res.status_code == 200, res.text

    task = _task(api)
    api.ok("tasks.started", {"task": task})
    report(task)
    assert [e["msg"] for e in log(task)] == ["hello"]
    api.ok("tasks.reset", {"task": task})
    assert log(task) == []
    report(task)
    api.ok("tasks.delete", {"task": task})
    with sqlite3.connect(api.srv.settings.db_path) as db:  # no API reads events of a deleted task
        assert db.execute("SELECT COUNT(*) FROM events WHERE task=?", (task,)).fetchone() == (0,)


def test_edit_runtime_adds_updates_and_removes_keys(api: VersionedApi) -> None:
    task = _task(api)
    api.ok("tasks.edit", {"task": task, "runtime": {"a": "1", "b": "2"}})
    res = api.ok("tasks.edit_runtime", {"task": task, "add_or_update": {"b": "3", "c": "4"}, "remove": ["a"]})
    assert res["updated"] == 1
    assert _get(api, task)["runtime"] == {"b": "3", "c": "4"}


def test_a_queued_task_moves_to_another_queue_but_not_twice_into_one(api: VersionedApi) -> None:
    first, second = _queue(api), _queue(api)
    task = _task(api)
    api.ok("tasks.enqueue", {"task": task, "queue": first})
    assert _codes(api, "tasks.enqueue", {"task": task, "queue": first}) == (400, 706)
    api.ok("tasks.enqueue", {"task": task, "queue": second})
    entries = {q: api.ok("queues.get_by_id", {"queue": q})["queue"]["entries"] for q in (first, second)}
    assert entries[first] == [] and [e["task"] for e in entries[second]] == [task]
    api.ok("tasks.dequeue", {"task": task})
    assert _get(api, task)["status"] == "created", "back to the status before the first enqueue"


def test_publishing_a_published_task_again_needs_force(api: VersionedApi) -> None:
    task = _published(api)
    assert _codes(api, "tasks.publish", {"task": task}) == (400, 110)
    assert api.ok("tasks.publish", {"task": task, "force": True})["updated"] == 1
