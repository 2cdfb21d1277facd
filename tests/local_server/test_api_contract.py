"""The wire contract the SDK relies on: envelope, auth claims, error messages, status machine."""

from __future__ import annotations

import jwt
import pytest
import requests

from local_server import LocalServer
from tests.conftest import login_token


class Api:
    def __init__(self, srv: LocalServer) -> None:
        self.base = srv.settings.base_url
        self.token = login_token(srv)

    def call(self, endpoint: str, body: object = None, raw: str | None = None) -> requests.Response:
        return requests.post(
            f"{self.base}/v2.31/{endpoint}",
            json=body if raw is None else None,
            data=raw,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def ok(self, endpoint: str, body: object = None) -> dict:
        res = self.call(endpoint, body)
        assert res.status_code == 200, res.text
        return res.json()["data"]

    def error(self, endpoint: str, body: object = None, raw: str | None = None) -> tuple[int, int, str]:
        res = self.call(endpoint, body, raw)
        meta = res.json()["meta"]
        assert res.status_code == meta["result_code"], "HTTP status must equal result_code"
        return meta["result_code"], meta["result_subcode"], meta["result_msg"]


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Api:
    return Api(server)


def test_login_token_carries_the_claims_the_sdk_reads(api):
    claims = jwt.decode(api.token, options={"verify_signature": False})
    assert claims["api_version"] == "2.31"
    assert tuple(int(x) for x in claims["server_version"].split(".")) >= (1, 16, 3)
    assert claims["feature_set"] == "basic"


def test_wrong_credentials_and_missing_token_are_refused(server):
    bad = requests.get(f"{server.settings.base_url}/v2.31/auth.login", auth=("nope", "nope"), timeout=10)
    assert bad.status_code == 401
    assert "invalid credentials" in bad.json()["meta"]["result_msg"]
    anon = requests.post(f"{server.settings.base_url}/v2.31/tasks.get_all", json={}, timeout=10)
    assert anon.status_code == 401
    assert "missing credentials" in anon.json()["meta"]["result_msg"]


def test_envelope_of_a_successful_call(api):
    body = api.call("projects.get_all", {}).json()
    assert body["meta"]["endpoint"]["name"] == "projects.get_all"
    assert body["meta"]["result_code"] == 200
    assert isinstance(body["data"]["projects"], list)


@pytest.mark.parametrize(
    ("endpoint", "body", "raw", "expected"),
    [
        ("tasks.fly_to_the_moon", {}, None, (400, 1, "tasks.fly_to_the_moon")),
        ("tasks.get_all", None, "{not json", (400, 12, "malformed JSON")),
        ("tasks.create", {"type": "training"}, None, (400, 11, "name")),
        ("tasks.get_by_id", {"task": "no-such-task"}, None, (400, 101, "no-such-task")),
        ("models.get_by_id", {"model": "no-such-model"}, None, (400, 201, "no-such-model")),
        ("queues.get_by_id", {"queue": "no-such-queue"}, None, (400, 701, "no-such-queue")),
        ("projects.get_by_id", {"project": "nope"}, None, (400, 401, "nope")),
        ("tasks.create", {"name": "x", "type": "cooking"}, None, (400, 12, "type must be one of")),
        ("tasks.get_all", {"name": "(unclosed"}, None, (400, 21, "(unclosed")),
    ],
)
def test_bad_requests_get_an_error_naming_the_problem(api, endpoint, body, raw, expected):
    code, subcode, msg = api.error(endpoint, body, raw)
    assert (code, subcode) == expected[:2]
    assert expected[2] in msg


def test_status_machine_and_force(api):
    project = api.ok("projects.create", {"name": "Contract/status"})["id"]
    task = api.ok("tasks.create", {"name": "t", "type": "training", "project": project})["id"]
    api.ok("tasks.edit", {"task": task, "comment": "draft edits need no force"})
    api.ok("tasks.started", {"task": task})
    api.ok("tasks.completed", {"task": task})
    code, subcode, msg = api.error("tasks.edit", {"task": task, "comment": "late"})
    assert (code, subcode) == (400, 110) and "force" in msg
    api.ok("tasks.edit", {"task": task, "comment": "forced", "force": True})
    assert api.ok("tasks.get_by_id", {"task": task})["task"]["comment"] == "forced"
    # completed -> queued is not a legal move
    queue = api.ok("queues.create", {"name": "contract-status"})["id"]
    code, subcode, _ = api.error("tasks.enqueue", {"task": task, "queue": queue})
    assert (code, subcode) == (400, 110)
    api.ok("tasks.publish", {"task": task})
    code, subcode, _ = api.error("tasks.edit", {"task": task, "comment": "no"})
    assert (code, subcode) == (400, 110), "a published task needs force, like any non-draft"
    code, subcode, _ = api.error(
        "tasks.edit_hyper_params",
        {"task": task, "hyperparams": [{"section": "Args", "name": "x", "value": "1"}], "force": True},
    )
    assert (code, subcode) == (400, 110), "parameters of a published task are frozen, even with force"


def test_failed_call_changes_nothing(api):
    project = api.ok("projects.create", {"name": "Contract/atomic"})["id"]
    task = api.ok("tasks.create", {"name": "t", "type": "training", "project": project})["id"]
    before = api.ok("tasks.get_by_id", {"task": task})["task"]
    # valid comment, invalid type: the call fails as a whole
    api.error("tasks.edit", {"task": task, "comment": "half", "type": "cooking"})
    assert api.ok("tasks.get_by_id", {"task": task})["task"] == before


def test_queue_is_fifo_and_get_next_task_pops_the_head(api):
    project = api.ok("projects.create", {"name": "Contract/fifo"})["id"]
    queue = api.ok("queues.create", {"name": "contract-fifo"})["id"]
    tasks = [
        api.ok("tasks.create", {"name": f"t{i}", "type": "training", "project": project})["id"]
        for i in range(3)
    ]
    for t in tasks:
        api.ok("tasks.enqueue", {"task": t, "queue": queue})
    code, subcode, _ = api.error("tasks.enqueue", {"task": tasks[0], "queue": queue})
    assert (code, subcode) == (400, 706)
    api.ok("tasks.dequeue", {"task": tasks[1]})
    popped = [api.ok("queues.get_next_task", {"queue": queue}).get("entry", {}).get("task") for _ in range(3)]
    assert popped == [tasks[0], tasks[2], None]


def test_hidden_objects_need_search_hidden_or_ids(api):
    hidden = api.ok("projects.create", {"name": "Contract/.datasets/sensors", "system_tags": ["hidden"]})[
        "id"
    ]
    visible = api.ok("projects.get_all", {"name": "^Contract/"})["projects"]
    assert hidden not in [p["id"] for p in visible]
    assert "Contract/.datasets" not in [p["name"] for p in visible], "auto-created .datasets parent is hidden"
    found = api.ok("projects.get_all", {"name": "^Contract/", "search_hidden": True})["projects"]
    assert hidden in [p["id"] for p in found]
    assert api.ok("projects.get_all", {"id": [hidden]})["projects"][0]["id"] == hidden


def test_clone_copies_configuration_but_not_outputs(api):
    project = api.ok("projects.create", {"name": "Contract/clone"})["id"]
    src = api.ok(
        "tasks.create",
        {
            "name": "src",
            "type": "training",
            "project": project,
            "hyperparams": {"General": {"LR": {"section": "General", "name": "LR", "value": "0.1"}}},
            "configuration": {"config": {"name": "config", "value": "a: 1", "type": "yaml"}},
            "script": {"entry_point": "train.py"},
        },
    )["id"]
    api.ok("tasks.started", {"task": src})
    model = api.ok("models.create", {"name": "m", "uri": "file:///m.bin", "task": src})["id"]
    api.ok("tasks.add_or_update_model", {"task": src, "name": "m", "model": model, "type": "output"})
    api.ok(
        "tasks.add_or_update_artifacts",
        {"task": src, "artifacts": [{"key": "data", "type": "custom", "uri": "x"}]},
    )
    clone_id = api.ok("tasks.clone", {"task": src, "new_task_name": "copy"})["id"]
    clone = api.ok("tasks.get_by_id", {"task": clone_id})["task"]
    assert clone["status"] == "created" and clone["parent"] == src
    assert clone["hyperparams"]["General"]["LR"]["value"] == "0.1"
    assert clone["configuration"]["config"]["value"] == "a: 1"
    assert clone["script"]["entry_point"] == "train.py"
    assert clone["models"]["output"] == [] and clone["execution"]["artifacts"] == []
    # the deep copy is independent of its source
    api.ok(
        "tasks.edit_hyper_params",
        {"task": clone_id, "hyperparams": [{"section": "General", "name": "LR", "value": "0.5"}]},
    )
    assert api.ok("tasks.get_by_id", {"task": src})["task"]["hyperparams"]["General"]["LR"]["value"] == "0.1"
