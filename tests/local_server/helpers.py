"""Helpers for the tests that attack the local server: raw API calls, raw sockets, poisoned stores."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import requests

from local_server import LocalServer
from local_server.store import Store


class Api:
    """Calls with a bearer token, bodies given as JSON values or as raw bytes."""

    def __init__(self, srv: LocalServer) -> None:
        self.srv = srv
        self.base = srv.settings.base_url
        self.session = requests.Session()
        res = self.session.get(
            f"{self.base}/v2.31/auth.login",
            auth=(srv.settings.access_key, srv.settings.secret_key),
            timeout=10,
        )
        res.raise_for_status()
        self.token = str(res.json()["data"]["token"])
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, endpoint: str, body: Any = None, raw: bytes | str | None = None) -> requests.Response:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.session.post(
            f"{self.base}/v2.31/{endpoint}",
            data=data.encode() if isinstance(data, str) else data,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )

    def ok(self, endpoint: str, body: Any = None) -> dict[str, Any]:
        res = self.call(endpoint, body)
        assert res.status_code == 200, f"{endpoint}: {res.status_code} {res.text[:500]}"
        return res.json()["data"]

    def error(self, endpoint: str, body: Any = None, raw: bytes | str | None = None) -> tuple[int, str]:
        res = self.call(endpoint, body, raw)
        assert res.status_code != 200, f"{endpoint} accepted {str(body or raw)[:200]}"
        meta = res.json()["meta"]
        assert res.status_code == meta["result_code"], "HTTP status must equal result_code"
        return res.status_code, meta["result_msg"]


def basic_auth(srv: LocalServer) -> str:
    pair = f"{srv.settings.access_key}:{srv.settings.secret_key}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def raw_exchange(
    srv: LocalServer, head: str, body_chunks: list[bytes] | None = None, timeout: float = 10.0
) -> tuple[int, int]:
    """Send ``head`` (request line and headers) and then ``body_chunks`` one by one, stopping as soon
    as the server has answered; returns (HTTP status, body bytes sent)."""
    sent = 0
    with socket.create_connection((srv.settings.host, srv.settings.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        sock.settimeout(0.0)
        answer = b""
        for chunk in body_chunks or []:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.settimeout(timeout)
                sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            finally:
                sock.settimeout(0.0)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while b"\r\n" not in answer and time.monotonic() < deadline:
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            answer += more
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    assert status_line.startswith("HTTP/1.1 "), f"no HTTP answer: {answer[:200]!r}"
    return int(status_line.split()[1]), sent


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# Rows the way the version before issue 9 stored them: ``json.dumps`` with its defaults writes NaN,
# Infinity and escaped lone surrogates, and nothing checked the types of the fields.
POISONED: dict[str, dict[str, Any]] = {
    "task": {
        "poison-nan-comment": {
            "name": "nan comment",
            "type": "training",
            "status": "created",
            "comment": float("nan"),
        },
        "poison-inf-comment": {
            "name": "inf comment",
            "type": "training",
            "status": "created",
            "comment": float("inf"),
        },
        "poison-surrogate": {
            "name": "lone \ud800 surrogate",
            "type": "training",
            "status": "created",
            "comment": "",
        },
        "poison-types": {
            "name": 5,
            "type": "training",
            "status": "created",
            "tags": "not-a-list",
            "hyperparams": [1, 2],
            "execution": "oops",
            "models": None,
            "last_iteration": "x",
        },
    },
    "model": {
        "poison-model": {
            "name": "m",
            "comment": float("-inf"),
            "tags": [1],
            "labels": {"a": "b"},
            "ready": "yes",
        },
    },
    "queue": {
        "poison-queue": {
            "name": "q \udfff",
            "entries": "none",
            "tags": [],
            "system_tags": [],
            "metadata": {},
        },
    },
    "project": {
        "poison-project": {
            "name": "poisoned",
            "basename": "poisoned",
            "description": 2**70,
            "path": [],
            "tags": [],
        },
    },
}


def write_poisoned_store(db_path: Path) -> list[tuple[str, str]]:
    """A data directory an older version could have left: poisoned documents and one event with NaN."""
    Store(db_path).close()  # the tables, as the server creates them
    rows = []
    with sqlite3.connect(db_path) as db:
        for kind, docs in POISONED.items():
            for doc_id, doc in docs.items():
                db.execute(
                    "INSERT INTO docs (kind, id, body) VALUES (?, ?, ?)",
                    (kind, doc_id, json.dumps({"id": doc_id, **doc})),
                )
                rows.append((kind, doc_id))
        db.execute(
            "INSERT INTO docs (kind, id, body) VALUES ('task', 'poison-unreadable', '{not json')",
        )
        db.execute(
            "INSERT INTO events (task, type, body) VALUES (?, ?, ?)",
            (
                "poison-nan-comment",
                "log",
                json.dumps({"task": "poison-nan-comment", "type": "log", "msg": "x", "value": float("nan")}),
            ),
        )
    return rows


class VersionedApi(Api):
    """Calls at a chosen API version (``/v2.9/tasks.create``), as older clients make them."""

    def at(self, version: str, endpoint: str, body: dict[str, Any]) -> requests.Response:
        return self.session.post(f"{self.base}/v{version}/{endpoint}", json=body, timeout=60)

    def ok_at(self, version: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        res = self.at(version, endpoint, body)
        assert res.status_code == 200, f"{endpoint}: {res.status_code} {res.text[:500]}"
        return res.json()["data"]
