"""Each finding of issue 9 against the local server, as a user or an attacker would hit it."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from local_server import LocalServer, ServerSettings, local_server
from local_server.documents import check_document
from local_server.errors import ApiError
from local_server.registry import ENDPOINTS
from local_server.runner import free_port
from local_server.schemas import MAX_TOKEN_LIFETIME_S, REQUESTS
from local_server.settings import UnsafeSettingsError
from local_server.store import Store
from tests.local_server.helpers import Api, basic_auth, peak_rss_mb, raw_exchange, write_poisoned_store


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Api:
    return Api(server)


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server of this module alone (its memory and files are measured)."""
    with local_server(tmp_path_factory.mktemp("hardening")) as srv:
        yield srv


def _task(api: Api, **fields: object) -> str:
    return str(api.ok("tasks.create", {"name": f"h-{uuid.uuid4().hex}", "type": "training", **fields})["id"])


def _names(api: Api, name: str) -> list[str]:
    return [t["id"] for t in api.ok("tasks.get_all", {"name": f"^{name}$", "only_fields": ["id"]})["tasks"]]


# ---------------------------------------------------------------------------- validation


def test_every_endpoint_has_a_request_schema() -> None:
    assert set(ENDPOINTS) == set(REQUESTS)


UNSTORABLE = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e999999": "1e999999",
    "5,000 digits": "9" * 5000,
    "2**64": str(2**64),
    "lone surrogate": '"a\\ud800b"',
}


@pytest.mark.parametrize("literal", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_values_are_refused_naming_the_field_and_nothing_is_stored(api: Api, literal: str) -> None:
    name = f"unstorable-{uuid.uuid4().hex}"
    raw = f'{{"name": "{name}", "type": "training", "comment": {literal}}}'
    code, msg = api.error("tasks.create", raw=raw)
    assert code == 400 and "comment" in msg
    assert _names(api, name) == []
    assert api.call("tasks.get_all", {}).status_code == 200, "listing still works"


def test_every_commit_refuses_what_cannot_be_stored(tmp_path: Path) -> None:
    """The guard behind the request schemas: a handler that would store a NaN or a wrong-typed field
    gets a 400 and nothing is written."""
    store = Store(tmp_path / "db.sqlite3", check=check_document)
    for bad in ({"comment": float("nan")}, {"comment": 5}, {"tags": "x"}, {"execution": {"queue": []}}):
        with pytest.raises(ApiError) as info, store.transaction() as tx:
            tx.put("task", {"id": "t", "name": "n", "type": "training", "status": "created", **bad})
        assert info.value.code == 400
        assert store.all("task") == []
    with store.transaction() as tx:
        tx.put("task", {"id": "t", "name": "n", "type": "training", "status": "created", "comment": ""})
    store.close()
    assert [d["id"] for d in Store(tmp_path / "db.sqlite3").all("task")] == ["t"]


def test_a_failed_edit_changes_nothing(api: Api) -> None:
    task = _task(api, comment="before")
    before = api.ok("tasks.get_by_id", {"task": task})["task"]
    code, msg = api.error("tasks.edit", raw=f'{{"task": "{task}", "comment": NaN, "name": "renamed"}}')
    assert code == 400 and "comment" in msg
    assert api.ok("tasks.get_by_id", {"task": task})["task"] == before


WRONG_TYPES = [
    ("tasks.get_by_id", {"task": ["a", "b"]}, "task"),
    ("tasks.get_all", {"order_by": 5}, "order_by"),
    ("tasks.get_all", {"only_fields": 5}, "only_fields"),
    ("tasks.get_all", {"name": ["a"]}, "name"),
    ("tasks.get_all", {"page_size": "10"}, "page_size"),
    ("tasks.delete_many", {"ids": 5}, "ids"),
    ("models.get_all", {"id": 5}, "id"),
    ("models.edit", {"model": "m", "iteration": "x"}, "iteration"),
    ("queues.move_task_forward", {"queue": "q", "task": "t", "count": "x"}, "count"),
    ("workers.register", {"worker": "w", "timeout": "x"}, "timeout"),
    ("events.get_task_log", {"task": "t", "batch_size": "x"}, "batch_size"),
    (
        "tasks.add_or_update_model",
        {"task": "t", "name": "n", "model": "m", "type": "output", "iteration": "x"},
        "iteration",
    ),
    ("tasks.create", {"name": "n", "type": "training", "comment": 5}, "comment"),
    ("tasks.create", {"name": "n", "type": "training", "tags": [1]}, "tags[0]"),
    ("tasks.create", {"name": "n", "type": "training", "hyperparams": 5}, "hyperparams"),
    ("tasks.create", {"name": "n", "type": "training", "execution": "x"}, "execution"),
    ("tasks.create", {"name": "n", "type": "training", "script": {"diff": 1}}, "script.diff"),
    (
        "tasks.create",
        {"name": "n", "type": "training", "configuration": {"c": {"value": 1}}},
        "configuration.c",
    ),
    ("tasks.edit", {"task": "t", "models": {"input": [{"name": "n"}]}}, "models.input[0].model"),
    ("models.create", {"name": "n", "labels": {"a": "b"}}, "labels.a"),
    ("auth.login", {"expiration_sec": "60"}, "expiration_sec"),
    ("projects.create", {"name": ["a"]}, "name"),
    ("queues.create", {"name": 5}, "name"),
    ("events.add_batch", [{"task": "t", "type": "log", "iter": "x"}], "requests[0].iter"),
]


@pytest.mark.parametrize(
    ("endpoint", "body", "field"), WRONG_TYPES, ids=[f"{e}:{f}" for e, _, f in WRONG_TYPES]
)
def test_wrong_types_are_a_400_naming_the_field(api: Api, endpoint: str, body: object, field: str) -> None:
    code, msg = api.error(endpoint, body)
    assert code == 400
    assert field in msg


def test_a_wrong_typed_task_is_not_stored_and_good_tasks_still_move(api: Api) -> None:
    name = f"typed-{uuid.uuid4().hex}"
    for bad in ({"comment": 1.5}, {"tags": {"a": 1}}, {"parent": ["x"]}, {"container": {"image": 3}}):
        assert api.call("tasks.create", {"name": name, "type": "training", **bad}).status_code == 400
    assert _names(api, name) == []
    task = _task(api)
    queue = api.ok("queues.create", {"name": f"typed-{uuid.uuid4().hex}"})["id"]
    api.ok("tasks.enqueue", {"task": task, "queue": queue})
    api.ok("tasks.clone", {"task": task})
    api.ok("tasks.reset", {"task": task})


def test_body_nested_990_levels_is_a_400(api: Api) -> None:
    code, msg = api.error("tasks.get_all", raw='{"name": ' + "[" * 990 + "]" * 990 + "}")
    assert code == 400 and "nested" in msg
    code, msg = api.error("tasks.edit", raw='{"task": "t", "runtime": ' + '{"a": ' * 80 + "1" + "}" * 81)
    assert code == 400 and "nested" in msg


# ---------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    "body",
    [
        {"runtime": {f"k{i}": {"a": "b"} for i in range(300_000)}},
        {"tags": ["a"] * 300_000},
        {"id": [1] * 300_000},
    ],
    ids=["objects", "strings", "integers"],
)
def test_a_body_of_too_many_values_is_refused_before_it_is_decoded(api: Api, body: dict) -> None:
    code, msg = api.error("tasks.get_all", body)
    assert code == 400 and "more than 250000 JSON values" in msg
    many_in_strings = {"name": "^x$", "search_text": "{[," * 400_000}  # brackets inside strings do not count
    assert api.call("tasks.get_all", many_in_strings).status_code == 200


def test_a_300_mb_body_is_refused_before_it_is_sent(own_server: LocalServer) -> None:
    head = (
        "POST /v2.31/tasks.get_all HTTP/1.1\r\n"
        f"Host: {own_server.settings.host}\r\nAuthorization: {basic_auth(own_server)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {300 * 1024 * 1024}\r\n\r\n"
    )
    status, sent = raw_exchange(own_server, head, [b"{" + b" " * 1023])
    assert status == 413
    assert sent <= 1024


def test_a_chunked_body_over_the_limit_is_refused_without_buffering_it(own_server: LocalServer) -> None:
    assert own_server.process is not None
    limit = own_server.settings.max_body_bytes
    head = (
        "POST /v2.31/tasks.get_all HTTP/1.1\r\n"
        f"Host: {own_server.settings.host}\r\nAuthorization: {basic_auth(own_server)}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    megabyte = b" " * (1 << 20)
    chunk = f"{len(megabyte):x}\r\n".encode() + megabyte + b"\r\n"
    status, sent = raw_exchange(own_server, head, [chunk] * 300)  # up to 300 MB
    assert status == 413
    assert sent < 300 << 20, "the server answered before the whole body was sent"
    assert sent >= limit
    assert peak_rss_mb(own_server.process.pid) < 300, "the body was not held in memory whole"


def test_an_upload_over_the_limit_is_refused(own_server: LocalServer) -> None:
    head = (
        "POST /files/ HTTP/1.1\r\n"
        f"Host: {own_server.settings.host}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {own_server.settings.max_upload_bytes + 1}\r\n\r\n"
    )
    status, _ = raw_exchange(own_server, head, [b"--x\r\n"])
    assert status == 413


# ---------------------------------------------------------------------------- authentication


def test_authentication_comes_first(server: LocalServer) -> None:
    base = server.settings.base_url
    anon = requests.post(f"{base}/v2.31/tasks.no_such_endpoint", json={}, timeout=10)
    assert anon.status_code == 401, "an unknown endpoint tells nothing to a caller without credentials"
    ui = requests.get(f"{base}/ui", timeout=10).json()
    assert "objects" not in ui
    signed_in = requests.get(f"{base}/ui", timeout=10, headers={"Authorization": basic_auth(server)}).json()
    assert signed_in["objects"]["task"] >= 0


def test_the_token_secret_is_private_and_an_old_readable_one_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "server"
    data.mkdir()
    old = data / "token-secret"
    old.write_text("0123456789abcdef" * 4)
    old.chmod(0o644)
    with local_server(data):
        assert stat.S_IMODE(old.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh"
    with local_server(fresh):
        assert stat.S_IMODE((fresh / "token-secret").stat().st_mode) == 0o600


def _forged(secret: str, **claims: object) -> str:
    return jwt.encode({"user": "local-user", "company": "local", **claims}, secret, algorithm="HS256")


def test_tokens_need_exp_and_a_capped_lifetime(server: LocalServer) -> None:
    base = server.settings.base_url
    secret = (server.settings.data_dir / "token-secret").read_text().strip()
    now = int(time.time())

    def status(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.post(f"{base}/v2.31/tasks.get_all", json={}, headers=headers, timeout=10).status_code

    assert status(_forged(secret, iat=now, exp=now + 60)) == 200
    assert status(_forged(secret, iat=now)) == 401, "no exp"
    assert status(_forged(secret, iat=now, exp=now + 10**12)) == 401, "lifetime over the cap"
    assert status(_forged(secret, iat=now - 120, exp=now - 60)) == 401, "expired"
    assert status(_forged("not-the-secret", iat=now, exp=now + 60)) == 401
    login = f"{base}/v2.31/auth.login"
    creds = (server.settings.access_key, server.settings.secret_key)
    too_long = requests.post(login, json={"expiration_sec": 10**12}, auth=creds, timeout=10)
    assert too_long.status_code == 400 and "expiration_sec" in too_long.json()["meta"]["result_msg"]
    assert requests.post(login, json={"expiration_sec": 0}, auth=creds, timeout=10).status_code == 400
    capped = requests.post(login, json={"expiration_sec": MAX_TOKEN_LIFETIME_S}, auth=creds, timeout=10)
    claims = jwt.decode(capped.json()["data"]["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == MAX_TOKEN_LIFETIME_S


# ---------------------------------------------------------------------------- file server


def _upload(srv: LocalServer, name: str, content: bytes = b"data") -> requests.Response:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="'
        + name.encode("utf-8", "surrogatepass")
        + b'"; filename="f"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + b"\r\n--b--\r\n"
    )
    return requests.post(
        f"{srv.settings.files_url}/",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        timeout=10,
    )


def test_symlinks_out_of_the_file_root_are_never_followed(own_server: LocalServer, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private")
    files = own_server.settings.files_dir / "files"
    files.mkdir(parents=True, exist_ok=True)
    (files / "leak").symlink_to(outside, target_is_directory=True)
    (files / "leak-file").symlink_to(outside / "secret.txt")
    base = own_server.settings.files_url
    assert requests.get(f"{base}/leak/secret.txt", timeout=10).status_code == 404
    assert requests.get(f"{base}/leak-file", timeout=10).status_code == 404
    assert requests.delete(f"{base}/leak-file", timeout=10).status_code == 404
    assert _upload(own_server, "leak/planted.txt").status_code == 400
    assert _upload(own_server, "leak-file").status_code == 400
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "private"
    # a link that stays inside the root is still served
    assert _upload(own_server, "real/inside.txt", b"inside").status_code == 200
    (files / "alias").symlink_to(files / "real", target_is_directory=True)
    assert requests.get(f"{base}/alias/inside.txt", timeout=10).content == b"inside"


ODD_NAMES = [
    "",
    ".",
    "..",
    "a/../../b",
    "a\x00b",
    "a\x01b",
    "x" * 300,
    "d/" * 600,
    "lone\ud800",
    "file.txt/child",
    "folder",
]


def test_odd_part_names_are_refused_with_4xx(own_server: LocalServer) -> None:
    assert _upload(own_server, "file.txt").status_code == 200
    assert _upload(own_server, "folder/inner.txt").status_code == 200
    for name in ODD_NAMES:
        res = _upload(own_server, name)
        assert 400 <= res.status_code < 500, (name[:50], res.status_code, res.text[:200])
    base = own_server.settings.files_url
    for path in ["%00", "a%00b", "x" * 5000, "folder", "..%2f..%2fetc%2fpasswd"]:
        assert requests.get(f"{base}/{path}", timeout=10).status_code == 404, path[:50]
    assert requests.get(f"{base}/file.txt", timeout=10).content == b"data"


# ---------------------------------------------------------------------------- exposure


def test_beyond_loopback_the_built_in_credentials_are_refused(tmp_path: Path) -> None:
    for extra in ([], ["--access-key", "mine"]):
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "local_server", "--host", "0.0.0.0"),
                *("--port", str(free_port()), "--data", str(tmp_path / "data"), *extra),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "--secret-key" in lines[0] and "0.0.0.0" in lines[0]
        assert ("--access-key" in lines[0]) == (not extra)
    ServerSettings(tmp_path, host="0.0.0.0", access_key="a", secret_key="b").check_exposure()
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        ServerSettings(tmp_path, host=host).check_exposure()
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(UnsafeSettingsError):
            ServerSettings(tmp_path, host=host).check_exposure()


# ---------------------------------------------------------------------------- poisoned data


def test_a_data_directory_poisoned_by_an_older_version_is_repaired_at_start(tmp_path: Path) -> None:
    data = tmp_path / "server"
    data.mkdir()
    poisoned = write_poisoned_store(data / "server.sqlite3")
    with local_server(data) as srv:
        api = Api(srv)
        tasks = {t["id"]: t for t in api.ok("tasks.get_all", {})["tasks"]}
        assert {"poison-nan-comment", "poison-inf-comment", "poison-surrogate", "poison-types"} <= set(tasks)
        assert "poison-unreadable" not in tasks
        assert tasks["poison-nan-comment"]["comment"] == ""
        assert tasks["poison-surrogate"]["name"] == "lone \ufffd surrogate"
        assert isinstance(tasks["poison-types"]["tags"], list)
        assert api.ok("models.get_all", {})["models"][0]["id"] == "poison-model"
        assert [q["id"] for q in api.ok("queues.get_all", {})["queues"]] == ["poison-queue"]
        assert "poison-project" in [p["id"] for p in api.ok("projects.get_all", {})["projects"]]
        assert api.ok("events.get_task_log", {"task": "poison-nan-comment"})["total"] == 1
        # what answered 500 on such a task before: enqueue, clone, reset, publish
        api.ok("tasks.enqueue", {"task": "poison-types", "queue": "poison-queue"})
        api.ok("tasks.clone", {"task": "poison-types"})
        api.ok("tasks.reset", {"task": "poison-types"})
        api.ok("tasks.publish", {"task": "poison-types", "force": True})
    log = (data / "server.log").read_text()
    for kind, doc_id in poisoned:
        assert f"repaired {kind} {doc_id}" in log
    assert "repaired task poison-unreadable" in log
    with sqlite3.connect(data / "server.sqlite3") as db:
        kept = {row[0] for row in db.execute("SELECT id FROM quarantine")}
    assert {doc_id for _, doc_id in poisoned} <= kept, "the originals are kept"
    with local_server(data):  # a second start has nothing left to repair
        pass
    assert log.count("repaired task poison-nan-comment") == (data / "server.log").read_text().count(
        "repaired task poison-nan-comment"
    )


# ---------------------------------------------------------------------------- regular expressions


def test_a_catastrophic_regex_over_a_long_name_answers_at_once(api: Api) -> None:
    project = api.ok("projects.create", {"name": f"Regex/{uuid.uuid4().hex}"})["id"]
    long_name = "a" * 100_000
    task = _task(api, project=project)
    api.ok("tasks.edit", {"task": task, "name": long_name})
    started = time.monotonic()
    found = api.ok("tasks.get_all", {"project": [project], "name": r"(\w+)+!x", "only_fields": ["id"]})
    assert found["tasks"] == []
    assert api.ok("tasks.get_all", {"project": [project], "name": r"^(a+)+$", "only_fields": ["id"]})["tasks"]
    assert time.monotonic() - started < 30, "the old server stalled for more than 14 minutes"
    for unsupported in (r"(?=a)", r"(a)\1"):
        code, msg = api.error("tasks.get_all", {"name": unsupported})
        assert code == 400 and "regular expression" in msg
    code, _ = api.error("tasks.get_all", {"name": "a" * 20_000})
    assert code == 400


def test_json_lines_batches_name_the_line(api: Api) -> None:
    task = _task(api)
    good = json.dumps({"task": task, "type": "log", "msg": "ok"})
    code, msg = api.error("events.add_batch", raw=f'{good}\n{{"task": "{task}", "type": "log", "iter": NaN}}')
    assert code == 400 and "line 2" in msg
    assert api.ok("events.get_task_log", {"task": task})["total"] == 0, "nothing of the batch is stored"
