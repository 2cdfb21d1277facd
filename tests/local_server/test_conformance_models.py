"""models.*: the real ClearML server's behaviour (issue 12), pinned call by call.

Written from clearml-server's documented behaviour (``apiserver/schema/services/models.conf``, its
error codes and what its API tests assert): a new model is ready (published) unless created with
``ready: false``; publishing a ready model again is refused; ``update_for_task`` (API <= 2.13) makes
the model the task's output model, so publishing the task publishes it and resetting the task deletes
it; an ``iteration`` raises the task's ``last_iteration``; ``get_all_ex`` has statistics on request.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from local_server import LocalServer
from tests.local_server.helpers import Api, VersionedApi

OLD = "2.13"  # the last API version with models.update_for_task


@pytest.fixture(scope="module")
def api(server: LocalServer) -> VersionedApi:
    return VersionedApi(server)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _codes(res: requests.Response) -> tuple[int, int]:
    meta = res.json()["meta"]
    assert res.status_code == meta["result_code"]
    return meta["result_code"], meta["result_subcode"]


def _model(api: Api, **fields: Any) -> str:
    return str(api.ok("models.create", {"name": _name("model"), "uri": "file:///m.bin", **fields})["id"])


def _ready(api: Api, model: str) -> bool:
    return bool(api.ok("models.get_by_id", {"model": model})["model"]["ready"])


def _running_task(api: Api) -> str:
    task = str(api.ok("tasks.create", {"name": _name("task"), "type": "training"})["id"])
    api.ok("tasks.started", {"task": task})
    return task


def _task(api: Api, task: str) -> dict[str, Any]:
    return api.ok("tasks.get_by_id", {"task": task})["task"]


def test_a_new_model_is_ready_unless_created_as_a_draft(api: VersionedApi) -> None:
    assert _ready(api, _model(api))
    assert not _ready(api, _model(api, ready=False))


def test_publishing_a_ready_model_is_refused(api: VersionedApi) -> None:
    model = _model(api, ready=False)
    assert api.ok("models.set_ready", {"model": model})["updated"] == 1
    assert _codes(api.call("models.set_ready", {"model": model})) == (400, 203)
    res = api.ok("models.publish_many", {"ids": [model, _model(api, ready=False)]})
    assert [f["id"] for f in res["failed"]] == [model] and res["failed"][0]["error"]["codes"] == [400, 203]
    assert len(res["succeeded"]) == 1


def test_update_for_task_makes_the_output_model_published_with_the_task_and_deleted_on_reset(
    api: VersionedApi,
) -> None:
    task = _running_task(api)
    model = api.ok_at(OLD, "models.update_for_task", {"task": task, "uri": "file:///out.bin"})["id"]
    assert [m["model"] for m in _task(api, task)["models"]["output"]] == [model]
    # before API 2.13 the task names it as output.model
    assert api.ok_at("2.12", "tasks.get_by_id", {"task": task})["task"]["output"]["model"] == model
    assert not _ready(api, model), "a model made for a running task is a draft"
    # a second call updates the same model
    again = api.ok_at(OLD, "models.update_for_task", {"task": task, "uri": "file:///out2.bin"})
    assert (again["id"], again["created"]) == (model, False)

    api.ok("tasks.stopped", {"task": task})
    api.ok("tasks.publish", {"task": task})
    assert _ready(api, model), "publishing the task publishes its output model"

    draft_task = _running_task(api)
    draft = api.ok_at(OLD, "models.update_for_task", {"task": draft_task, "uri": "file:///d.bin"})["id"]
    api.ok("tasks.reset", {"task": draft_task})
    assert _codes(api.call("models.get_by_id", {"model": draft})) == (400, 201), "reset deletes the draft"
    assert _task(api, draft_task)["models"]["output"] == []


def test_update_for_task_is_gone_from_newer_api_versions(api: VersionedApi) -> None:
    res = api.call("models.update_for_task", {"task": _running_task(api), "uri": "file:///x.bin"})
    assert _codes(res) == (301, 1)


def test_an_iteration_raises_the_task_last_iteration(api: VersionedApi) -> None:
    task = _running_task(api)
    api.ok_at(OLD, "models.update_for_task", {"task": task, "uri": "file:///a.bin", "iteration": 999})
    assert _task(api, task)["last_iteration"] == 999
    api.ok_at(OLD, "models.update_for_task", {"task": task, "uri": "file:///b.bin", "iteration": 500})
    assert _task(api, task)["last_iteration"] == 999, "it never falls"

    other = _running_task(api)
    model = _model(api)
    api.ok("models.update", {"model": model, "task": other, "iteration": 1000})
    assert _task(api, other)["last_iteration"] == 1000
    api.ok("models.update", {"model": model, "task": other, "iteration": 10})
    assert _task(api, other)["last_iteration"] == 1000


def test_get_all_ex_counts_labels_on_request(api: VersionedApi) -> None:
    models = [_model(api, labels={"a": 1, "b": 2}), _model(api, labels={"c": 1}), _model(api)]
    plain = api.ok("models.get_all_ex", {"id": models})["models"]
    assert len(plain) == 3 and all("stats" not in m for m in plain)
    with_stats = api.ok("models.get_all_ex", {"id": models, "include_stats": True})["models"]
    assert {m["id"]: m["stats"]["labels_count"] for m in with_stats} == dict(
        zip(models, (2, 1, 0), strict=True)
    )


def test_delete_refuses_a_model_in_use_or_of_a_published_task(api: VersionedApi) -> None:
    used = _model(api)
    user = api.ok(
        "tasks.create",
        {"name": _name("t"), "type": "testing", "models": {"input": [{"name": "in", "model": used}]}},
    )["id"]
    assert _codes(api.call("models.delete", {"model": used})) == (400, 205)
    api.ok("models.delete", {"model": used, "force": True})
    assert _task(api, user)["models"]["input"][0]["model"] == f"__DELETED__{used}"

    task = _running_task(api)
    made = api.ok_at(OLD, "models.update_for_task", {"task": task, "uri": "file:///p.bin"})["id"]
    api.ok("tasks.stopped", {"task": task})
    api.ok("tasks.publish", {"task": task, "publish_model": False})
    assert _codes(api.call("models.delete", {"model": made})) == (400, 206)
    assert api.ok("models.delete", {"model": made, "force": True}) == {
        "deleted": True,
        "url": "file:///p.bin",
    }
    assert _task(api, task)["models"]["output"][0]["model"] == f"__DELETED__{made}"


def test_move_update_tags_and_frameworks(api: VersionedApi) -> None:
    name = _name("ModelsMoved")
    model = _model(api, tags=["old"], framework="sklearn-x")
    project = api.ok("models.move", {"ids": [model], "project_name": name})["project_id"]
    assert api.ok("models.get_by_id", {"model": model})["model"]["project"] == project
    api.ok("models.update_tags", {"ids": [model], "add_tags": ["new"], "remove_tags": ["old"]})
    assert api.ok("models.get_by_id", {"model": model})["model"]["tags"] == ["new"]
    assert api.ok("models.get_frameworks", {"projects": [project]})["frameworks"] == ["sklearn-x"]
