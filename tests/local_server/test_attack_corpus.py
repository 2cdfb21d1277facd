"""A corpus of bad requests against one local server, generated from the request schemas.

For every endpoint the server answers, the corpus sends: each field with a value of every JSON type
its schema does not allow (and a wrong value one level down in lists, maps and objects, out-of-range
integers, unknown enum values, missing required fields); values no server can store (NaN, ±Infinity,
1e999999, a 5,000-digit integer, integers beyond 64 bits, lone surrogates); JSON nested 990 levels;
bodies that are not objects, not JSON or not UTF-8; and the call without credentials. Then
pathological regular expressions over 100,000-character names, the file server (odd part names,
symlinks out of the root, oversized uploads), authentication (forged, expired, eternal and
unsigned tokens, unknown endpoints) and bodies of 300 MB. The server starts from a data directory
poisoned the way the version before the fix stored bad requests, and must list everything.

Asserted: no answer is a 5xx; each refusal has the expected status (400 naming the field, 401, 413,
4xx on the file server); a client polling ``/healthz`` from its own thread never waits 1 s or more;
every object created before the corpus is unchanged afterwards and no object was added.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from local_server import LocalServer, local_server
from local_server.schemas import REQUESTS
from local_server.validation import (
    INT64_MAX,
    INT64_MIN,
    Enum,
    Int,
    ListOf,
    MapOf,
    OneOf,
    Shape,
    Spec,
    _Bool,
    _Num,
    _Obj,
    _Str,
)
from tests.local_server.helpers import Api, basic_auth, raw_exchange, write_poisoned_store

SAMPLES: dict[str, Any] = {
    "string": "wrong",
    "integer": 7,
    "number": 2.5,
    "boolean": True,
    "list": [7],
    "object": {"k": 7},
}
UNSTORABLE = ["NaN", "Infinity", "-Infinity", "1e999999", "9" * 5000, str(2**64), str(INT64_MIN - 1)]
SURROGATES = ['"\\ud800"', '"x\\udfffy"']
POISON = "__POISON__"
HEALTH_BOUND_S = 1.0


# ---------------------------------------------------------------------------- generating from schemas


def json_kinds(spec: Spec) -> set[str]:
    """The JSON kinds a spec accepts."""
    if isinstance(spec, _Str | Enum):
        return {"string"}
    if isinstance(spec, _Bool):
        return {"boolean"}
    if isinstance(spec, Int):
        return {"integer"}
    if isinstance(spec, _Num):
        return {"integer", "number"}
    if isinstance(spec, _Obj | MapOf | Shape):
        return {"object"}
    if isinstance(spec, ListOf):
        return {"list"} | (json_kinds(spec.item) if spec.lone else set())
    if isinstance(spec, OneOf):
        return set().union(*(json_kinds(o) for o in spec.options))
    return set(SAMPLES)  # any value


def valid(spec: Spec, name: str, ids: dict[str, Any]) -> Any:
    """A value the spec accepts, naming the corpus's own objects where a field names one."""
    if name in ids:
        return ids[name]
    if isinstance(spec, Enum):
        return spec.values[0]
    if isinstance(spec, Int):
        return max(1, spec.minimum or 1)
    if isinstance(spec, _Str):
        return "corpus"
    if isinstance(spec, _Bool):
        return False
    if isinstance(spec, _Num):
        return 1.0
    if isinstance(spec, ListOf):
        return [valid(spec.item, name, ids)]
    if isinstance(spec, Shape):
        return {f: valid(spec.fields.get(f, Spec()), f, ids) for f in spec.required}
    if isinstance(spec, OneOf):
        return valid(spec.options[-1], name, ids)
    return {}


def wrong(spec: Spec, ids: dict[str, Any], depth: int = 0) -> Iterator[tuple[Any, str]]:
    """Values the spec refuses, with the path below the field the refusal must name."""
    accepted = json_kinds(spec)
    for kind, sample in SAMPLES.items():
        if kind not in accepted and not (kind == "integer" and "number" in accepted):
            yield sample, ""
    if isinstance(spec, Int):
        if spec.minimum is not None and spec.minimum > INT64_MIN:
            yield spec.minimum - 1, ""
        if spec.maximum is not None and spec.maximum < INT64_MAX:
            yield spec.maximum + 1, ""
    if isinstance(spec, Enum):
        yield "not-one-of-them", ""
    if depth >= 2:
        return
    if isinstance(spec, ListOf):
        for value, path in list(wrong(spec.item, ids, depth + 1))[:2]:
            yield [value], f"[0]{path}"
    if isinstance(spec, MapOf):
        for value, path in list(wrong(spec.value, ids, depth + 1))[:2]:
            yield {"k": value}, f".k{path}"
    if isinstance(spec, Shape):
        base = valid(spec, "", ids)
        for field, sub in spec.fields.items():
            for value, path in list(wrong(sub, ids, depth + 1))[:1]:
                yield {**base, field: value}, f".{field}{path}"
        for field in spec.required:
            yield {k: v for k, v in base.items() if k != field}, f".{field}"


@dataclass
class Probe:
    """Bad request number ``n``: what is sent and what must come back."""

    family: str
    endpoint: str
    raw: bytes
    expect: tuple[int, ...]
    names: str = ""  # the refusal's message must contain it
    auth: bool = True


def _body(endpoint: str, body: dict[str, Any]) -> str:
    if endpoint == "events.add_batch" and "requests" in body:
        events = body["requests"]  # JSON lines, one event each
        return "\n".join(json.dumps(e) for e in events) if isinstance(events, list) else json.dumps(events)
    return json.dumps(body)


def generate(ids: dict[str, Any]) -> list[Probe]:
    probes: list[Probe] = []
    for endpoint, request in sorted(REQUESTS.items()):
        family = endpoint.split(".")[0]
        ids_here = {**ids, "ids": ids["model_ids"] if family == "models" else ids["task_ids"]}
        base = {f: valid(request.fields.get(f, Spec()), f, ids_here) for f in request.required}
        if endpoint == "events.add_batch":
            base = {"requests": [{"task": ids["task"], "type": "log", "msg": "corpus"}]}
        # every field: every wrong type, one level down too
        for field, spec in request.fields.items():
            for value, path in wrong(spec, ids_here):
                body = {**base, field: value}
                probes.append(Probe(family, endpoint, _body(endpoint, body).encode(), (400,), field + path))
        for field in request.required:
            body = {k: v for k, v in base.items() if k != field}
            probes.append(Probe(family, endpoint, _body(endpoint, body).encode(), (400,), field))
        # values no server can store, in a string field (or an extra key)
        target = next((f for f, s in request.fields.items() if isinstance(s, _Str)), "extra")
        holder = {**base, target: POISON}
        if endpoint == "events.add_batch":
            target = "msg"
            holder = {"requests": [{"task": ids["task"], "type": "log", "msg": POISON}]}
        for literal in UNSTORABLE + SURROGATES:
            raw = _body(endpoint, holder).replace(f'"{POISON}"', literal)
            probes.append(Probe(family, endpoint, raw.encode(), (400,), target))
        deep = _body(endpoint, holder).replace(f'"{POISON}"', "[" * 990 + "]" * 990)
        probes.append(Probe(family, endpoint, deep.encode(), (400,), "nested"))
        for raw_bytes in (b"[1, 2]", b'{"task": ', b'{"name": "\xff\xfe"}', b"\x00\x01"):
            probes.append(Probe(family, endpoint, raw_bytes, (400,)))
        # without credentials
        public = endpoint in ("debug.ping", "server.ping")
        probes.append(
            Probe("auth", endpoint, _body(endpoint, base).encode(), (200,) if public else (401,), auth=False)
        )
    # pathological regular expressions over names of 100,000 characters: answered, never stalled
    patterns = [r"(\w+)+!x", r"(a+)+$", r"(a|aa)+$", r"(a|a?)+b", r"(.*a){25}x", r"^(\w+\s?)*$", r"(x+x+)+y"]
    unsupported = [r"(?=a)", r"(?<!a)b", r"(a)\1", "a" * 20_000, "(", "[z-a]", "a{2000}"]
    for endpoint in ("tasks.get_all", "models.get_all", "queues.get_all", "projects.get_all"):
        for pattern in patterns:
            for body in ({"name": pattern}, {"_any_": {"fields": ["name", "comment"], "pattern": pattern}}):
                probes.append(Probe("regex", endpoint, json.dumps(body).encode(), (200,)))
        for pattern in unsupported:
            probes.append(Probe("regex", endpoint, json.dumps({"name": pattern}).encode(), (400,), "regular"))
    return probes


# ---------------------------------------------------------------------------- the server under attack


def _poll_health(base: str, stop: Any, longest: Any, polls: Any, failures: Any) -> None:
    """Another client, in its own process (the corpus sender's interpreter lock cannot delay it):
    polls /healthz on its own connection and keeps the longest wait."""
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ok = session.get(f"{base}/healthz", timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        longest.value = max(longest.value, time.perf_counter() - started)
        polls.value += 1
        failures.value += 0 if ok else 1
        stop.wait(0.02)


class HealthProbe:
    def __init__(self, base: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self._longest = ctx.Value("d", 0.0)
        self._polls = ctx.Value("i", 0)
        self._failures = ctx.Value("i", 0)
        self.process = ctx.Process(
            target=_poll_health,
            args=(base, self.stop, self._longest, self._polls, self._failures),
            daemon=True,
        )

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 60
        while self._polls.value < 3 and time.monotonic() < deadline:  # polling before the corpus starts
            time.sleep(0.05)

    def join(self) -> None:
        self.stop.set()
        self.process.join(timeout=60)

    @property
    def longest(self) -> float:
        return float(self._longest.value)

    @property
    def polls(self) -> int:
        return int(self._polls.value)

    @property
    def failures(self) -> int:
        return int(self._failures.value)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data = tmp_path_factory.mktemp("corpus")
    write_poisoned_store(data / "server.sqlite3")  # poison first, then start and list
    with local_server(data) as srv:
        yield srv


def _snapshot(api: Api, ids: dict[str, Any]) -> dict[str, Any]:
    return {
        "tasks": [api.ok("tasks.get_by_id", {"task": t})["task"] for t in ids["all_tasks"]],
        "model": api.ok("models.get_by_id", {"model": ids["model"]})["model"],
        "queue": api.ok("queues.get_by_id", {"queue": ids["queue"]})["queue"],
        "project": api.ok("projects.get_by_id", {"project": ids["project"]})["project"],
        "every id": sorted(
            [
                t["id"]
                for t in api.ok("tasks.get_all", {"search_hidden": True, "only_fields": ["id"]})["tasks"]
            ]
            + [m["id"] for m in api.ok("models.get_all", {"only_fields": ["id"]})["models"]]
            + [q["id"] for q in api.ok("queues.get_all", {"only_fields": ["id"]})["queues"]]
            + [p["id"] for p in api.ok("projects.get_all", {"search_hidden": True})["projects"]]
        ),
        "file": requests.get(f"{api.srv.settings.files_url}/corpus/kept.bin", timeout=10).content,
    }


def _objects(api: Api) -> dict[str, Any]:
    """What exists before the corpus: a project, tasks (one with a 100,000-character name, one
    queued), a published model, a queue, a stored file."""
    tag = uuid.uuid4().hex[:8]
    project = api.ok("projects.create", {"name": f"Corpus-{tag}"})["id"]
    task = api.ok(
        "tasks.create",
        {
            "name": "victim",
            "type": "training",
            "project": project,
            "hyperparams": {"General": {"lr": {"section": "General", "name": "lr", "value": "0.1"}}},
            "configuration": {"config": {"name": "config", "value": "a: 1", "type": "yaml"}},
        },
    )["id"]
    api.ok("tasks.add_or_update_artifacts", {"task": task, "artifacts": [{"key": "data", "type": "custom"}]})
    long_task = api.ok("tasks.create", {"name": "a" * 100_000, "type": "training", "project": project})["id"]
    queued = api.ok("tasks.create", {"name": "queued", "type": "training", "project": project})["id"]
    queue = api.ok("queues.create", {"name": f"corpus-{tag}"})["id"]
    api.ok("queues.create", {"name": "q" * 100_000})
    api.ok("tasks.enqueue", {"task": queued, "queue": queue})
    model = api.ok(
        "models.create",
        {"name": "m" * 100_000, "uri": "file:///m.bin", "project": project, "task": task, "ready": False},
    )["id"]
    api.ok(
        "models.add_or_update_metadata",
        {"model": model, "metadata": [{"key": "k", "value": "v", "type": "str"}]},
    )
    api.ok("models.set_ready", {"model": model, "publish_task": False})
    upload = requests.post(
        f"{api.srv.settings.files_url}/",
        files={"corpus/kept.bin": ("kept.bin", b"\x00kept\xff")},
        timeout=10,
    )
    assert upload.status_code == 200
    return {
        "task": task,
        "tasks": [task],
        "task_ids": [task],
        "model": model,
        "model_ids": [model],
        "queue": queue,
        "project": project,
        "worker": "corpus-worker",
        "all_tasks": [task, long_task, queued],
    }


def _send(session: requests.Session, base: str, probe: Probe, auth_header: str) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if probe.auth:
        headers["Authorization"] = auth_header
    return session.post(f"{base}/v2.31/{probe.endpoint}", data=probe.raw, headers=headers, timeout=60)


def _file_server_attacks(srv: LocalServer, outside: Path) -> list[tuple[str, int, tuple[int, ...]]]:
    files = srv.settings.files_dir / "files"
    files.mkdir(parents=True, exist_ok=True)
    (files / "escape").symlink_to(outside, target_is_directory=True)
    (files / "escape-file").symlink_to(outside / "secret.txt")
    base = srv.settings.files_url
    results = []

    def upload(name: str) -> int:
        body = (
            b'--b\r\nContent-Disposition: form-data; name="'
            + name.encode("utf-8", "surrogatepass")
            + b'"; filename="f"\r\n\r\nx\r\n--b--\r\n'
        )
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        return requests.post(f"{base}/", data=body, headers=headers, timeout=10).status_code

    odd = ["", "..", "../x", "a/../../x", "a\x00b", "a\x1fb", "a\x85b", "x" * 256, "d/" * 600, "lone\ud800"]
    odd += ["corpus/kept.bin/child", "corpus", "escape/planted", "escape-file", "escape/../../x"]
    for name in odd:
        results.append((f"upload {name[:30]!r}", upload(name), (400, 409)))
    for path in [
        "escape/secret.txt",
        "escape-file",
        "%00",
        "a%00b",
        "x" * 5000,
        "corpus",
        "..%2f..%2fetc%2fpasswd",
    ]:
        results.append(
            (f"download {path[:30]}", requests.get(f"{base}/{path}", timeout=10).status_code, (404,))
        )
        results.append(
            (f"delete {path[:30]}", requests.delete(f"{base}/{path}", timeout=10).status_code, (404,))
        )
    for body in (
        b"not multipart",
        b"--b\r\n\r\n",
        b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
    ):
        status = requests.post(
            f"{base}/", data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=10
        ).status_code
        results.append(("malformed multipart", status, (400,)))
    head = (
        f"POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {srv.settings.max_upload_bytes + 1}\r\n\r\n"
    )
    results.append(("upload over the limit", raw_exchange(srv, head, [b"--b\r\n"])[0], (413,)))
    return results


def _auth_attacks(srv: LocalServer) -> list[tuple[str, int, tuple[int, ...]]]:
    base = srv.settings.base_url
    secret = (srv.settings.data_dir / "token-secret").read_text().strip()
    now = int(time.time())
    tokens = {
        "no exp": jwt.encode({"user": "u", "iat": now}, secret, algorithm="HS256"),
        "eternal": jwt.encode({"user": "u", "iat": now, "exp": now + 10**12}, secret, algorithm="HS256"),
        "expired": jwt.encode({"user": "u", "iat": now - 99, "exp": now - 9}, secret, algorithm="HS256"),
        "wrong key": jwt.encode({"user": "u", "iat": now, "exp": now + 60}, "guess", algorithm="HS256"),
        "unsigned": jwt.encode({"user": "u", "iat": now, "exp": now + 60}, None, algorithm="none"),
        "garbage": "a.b.c",
        "empty": "",
    }
    results = []
    for name, token in tokens.items():
        bearer = {"Authorization": f"Bearer {token}"}
        res = requests.post(f"{base}/v2.31/tasks.get_all", json={}, headers=bearer, timeout=10)
        results.append((f"token {name}", res.status_code, (401,)))
    for header in ("Basic !!!", "Basic " + "QQ==" * 3, "Basic", "Digest x", "Bearer", "x" * 5000):
        res = requests.post(
            f"{base}/v2.31/tasks.get_all", json={}, headers={"Authorization": header}, timeout=10
        )
        results.append((f"header {header[:20]}", res.status_code, (401,)))
    for creds in (("nope", "nope"), (srv.settings.access_key, "wrong"), ("", "")):
        res = requests.get(f"{base}/v2.31/auth.login", auth=creds, timeout=10)
        results.append(("wrong credentials", res.status_code, (401,)))
    for endpoint in ("tasks.fly", "admin.drop_all", "x" * 300, "tasks.get_all.extra"):
        res = requests.post(f"{base}/v2.31/{endpoint}", json={}, timeout=10)
        results.append((f"unknown {endpoint[:20]} without auth", res.status_code, (401, 404)))
        res = requests.post(
            f"{base}/v2.31/{endpoint}", json={}, headers={"Authorization": basic_auth(srv)}, timeout=10
        )
        results.append((f"unknown {endpoint[:20]}", res.status_code, (400, 404)))
    ui = requests.get(f"{base}/ui", timeout=10)
    results.append(("/ui without auth", 400 if "objects" in ui.json() else 200, (200,)))
    for seconds in (10**12, 0, -5, "60", 1.5):
        login = f"{base}/v2.31/auth.login"
        res = requests.post(
            login, json={"expiration_sec": seconds}, headers={"Authorization": basic_auth(srv)}, timeout=10
        )
        results.append((f"expiration_sec {seconds}", res.status_code, (400,)))
    return results


def _costly_bodies() -> dict[str, bytes]:
    """Bodies just under the size limit, shaped to cost the most to decode and check (built before the
    health probe starts: building them holds this process's interpreter lock)."""
    shapes = {
        "a million objects": {"runtime": {f"k{i}": {"a": "b"} for i in range(700_000)}},
        "millions of strings": {"tags": ["a"] * 3_300_000},
        "millions of integers": {"tags": [1] * 5_500_000},
        "one 15 MB pattern": {"name": "x" * 15_000_000},
        "escapes and brackets": {"name": 'a\\b"' * 2_500_000, "comment": "{" * 200_000},
    }
    return {what: json.dumps(body).encode() for what, body in shapes.items()}


def _size_attacks(srv: LocalServer, costly: dict[str, bytes]) -> list[tuple[str, int, tuple[int, ...]]]:
    auth = basic_auth(srv)
    head = (
        "POST /v2.31/tasks.create HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
    )
    declared = head + f"Content-Length: {300 * 1024 * 1024}\r\n\r\n"
    megabyte = b" " * (1 << 20)
    chunk = f"{len(megabyte):x}\r\n".encode() + megabyte + b"\r\n"
    chunked = head + "Transfer-Encoding: chunked\r\n\r\n"
    bearer = {"Authorization": auth, "Content-Type": "application/json"}
    url = f"{srv.settings.base_url}/v2.31/tasks.get_all"
    return [
        *(
            (what, requests.post(url, data=body, headers=bearer, timeout=120).status_code, (400,))
            for what, body in costly.items()
        ),
        ("300 MB declared", raw_exchange(srv, declared, [b"{"])[0], (413,)),
        ("300 MB chunked", raw_exchange(srv, chunked, [chunk] * 300)[0], (413,)),
        ("bad Content-Length", raw_exchange(srv, head + "Content-Length: -1\r\n\r\n", [b"{}"])[0], (400,)),
    ]


def test_attack_corpus(attacked: LocalServer, tmp_path: Path) -> None:
    srv = attacked
    api = Api(srv)
    # poison-then-list: the server started from a data directory an older version poisoned
    listings = [
        api.call("tasks.get_all", {}).status_code,
        api.call("models.get_all", {}).status_code,
        api.call("queues.get_all", {}).status_code,
        api.call("projects.get_all", {"search_hidden": True}).status_code,
        api.call("tasks.get_all", {"id": ["poison-nan-comment"]}).status_code,
    ]
    assert listings == [200] * 5
    ids = _objects(api)
    before = _snapshot(api, ids)
    probes = generate(ids)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private")

    costly = _costly_bodies()
    health = HealthProbe(srv.settings.base_url)
    health.start()
    wrong_answers: list[str] = []
    counts: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    try:
        session = requests.Session()
        bearer = f"Bearer {api.token}"
        for probe in probes:
            res = _send(session, srv.settings.base_url, probe, bearer)
            counts[probe.family] += 1
            statuses[res.status_code] += 1
            message = res.json()["meta"]["result_msg"] if res.status_code != 200 else ""
            if res.status_code not in probe.expect or probe.names not in message:
                wrong_answers.append(
                    f"{probe.endpoint} {probe.raw[:120]!r}: {res.status_code} {message[:200]!r} "
                    f"(expected {probe.expect} naming {probe.names!r})"
                )
        for family, attacks in (
            ("files", _file_server_attacks(srv, outside)),
            ("auth", _auth_attacks(srv)),
            ("size", _size_attacks(srv, costly)),
        ):
            for what, status, expected in attacks:
                counts[family] += 1
                statuses[status] += 1
                if status not in expected:
                    wrong_answers.append(f"{family}: {what}: {status} (expected {expected})")
    finally:
        health.join()
    counts["poison-then-list"] = len(listings)
    total = sum(counts.values())
    print(f"\ncorpus: {total} bad requests, by family {dict(sorted(counts.items()))}")
    print(f"answers by status {dict(sorted(statuses.items()))}")
    print(f"/healthz from another client: {health.polls} polls, longest wait {health.longest * 1000:.0f} ms")

    assert total >= 1000
    assert {"tasks", "models", "queues", "projects", "events", "workers", "auth", "users", "server"} <= set(
        counts
    )
    assert not [s for s in statuses if s >= 500], f"5xx answers: {statuses}"
    assert not wrong_answers, f"{len(wrong_answers)} wrong answers, first ones:\n" + "\n".join(
        wrong_answers[:25]
    )
    assert health.failures == 0, f"{health.failures} /healthz polls failed"
    assert health.polls > 10
    assert health.longest < HEALTH_BOUND_S, f"another client waited {health.longest:.2f}s for /healthz"
    assert _snapshot(api, ids) == before, "objects created before the corpus changed, or objects were added"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"], "nothing written through a symlink"
