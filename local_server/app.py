"""The ASGI application: ClearML API envelope, authentication, validation, dispatch, file server.

Every API call is checked in this order: credentials (unknown endpoints included), body size,
JSON (see :mod:`.validation`), the endpoint's request schema (:mod:`.schemas`); only then does its
handler run, in a worker thread, inside one store transaction. The answer is rendered before the
transaction commits, so a call that fails at any point changes nothing. The event loop only moves
bytes: a slow call never delays another client's ``/healthz`` or the reading of its request.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import secrets
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import endpoints as _endpoints  # noqa: F401  (registers every endpoint)
from . import errors
from .documents import check_document, repair_store
from .endpoints.queues import ensure_default_queue
from .files import FileStore
from .registry import ENDPOINTS, USER, Context
from .schemas import MAX_TOKEN_LIFETIME_S, REQUESTS
from .settings import ServerSettings
from .store import Store
from .validation import decode_text, parse_json

log = logging.getLogger("occupancy_mlops.local_server")

NO_AUTH = {"debug.ping", "server.ping"}


def _envelope(endpoint: str, version: str, code: int, subcode: int, msg: str, data: Any) -> bytes:
    meta = {
        "id": uuid.uuid4().hex,
        "trx": uuid.uuid4().hex,
        "endpoint": {"name": endpoint, "requested_version": version, "actual_version": version},
        "result_code": code,
        "result_subcode": subcode,
        "result_msg": msg,
        "error_stack": None,
        "error_data": {},
    }
    return json.dumps({"meta": meta, "data": data}, allow_nan=False, separators=(",", ":")).encode()


def _json(content: bytes, status: int) -> Response:
    return Response(content, status_code=status, media_type="application/json")


def _parse_body(endpoint: str, raw: bytes) -> dict[str, Any]:
    text = decode_text(raw).strip()
    if not text:
        return {}
    if endpoint == "events.add_batch":
        # JSON lines, one event each (a JSON list or object is taken too)
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            return {"requests": [parse_json(line, f"line {n}") for n, line in enumerate(lines, 1)]}
        body = parse_json(text)
        return {"requests": body if isinstance(body, list) else [body]}
    body = parse_json(text)
    if not isinstance(body, dict):
        raise errors.validation("request body must be a JSON object")
    body.pop("method", None)  # the SDK adds a stray "method" key
    return body


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from the
    Content-Length header before reading anything, or while streaming a chunked body."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise errors.ApiError(400, 12, "invalid Content-Length header")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> errors.ApiError:
    return errors.ApiError(413, 0, f"request body too large: the limit is {limit} bytes")


def _token_secret(data_dir: Path) -> str:
    """The secret that signs tokens, in a file only the server's user can read (0600); an older
    version's world-readable file is tightened."""
    path = data_dir / "token-secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            log.warning("token secret %s was readable by others (%o): now 0600", path, mode)
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


class LocalServerApp:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store = Store(settings.db_path, check=check_document)
        for line in repair_store(self.store):
            log.warning("%s", line)
        ensure_default_queue(self.store)  # as the real server does at start
        self.files = FileStore(settings.files_dir, settings.max_upload_bytes)
        self.token_secret = _token_secret(settings.data_dir)

    # ------------------------------------------------------------------ authentication

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                key, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
                raise errors.unauthorized(21, "unauthorized (malformed credentials)") from exc
            if not (
                secrets.compare_digest(key.encode(), self.settings.access_key.encode())
                and secrets.compare_digest(secret.encode(), self.settings.secret_key.encode())
            ):
                raise errors.unauthorized(
                    22, "unauthorized (invalid credentials): unknown access key or wrong secret"
                )
            return
        if scheme.lower() == "bearer":
            try:
                claims = jwt.decode(
                    value, self.token_secret, algorithms=["HS256"], options={"require": ["exp", "iat"]}
                )
            except jwt.ExpiredSignatureError as exc:
                raise errors.unauthorized(30, "invalid token: expired") from exc
            except jwt.InvalidTokenError as exc:
                raise errors.unauthorized(30, f"invalid token: {exc}") from exc
            lifetime = claims["exp"] - claims["iat"]
            if not isinstance(lifetime, int | float) or lifetime > MAX_TOKEN_LIFETIME_S:
                raise errors.unauthorized(
                    30, f"invalid token: lifetime longer than {MAX_TOKEN_LIFETIME_S} seconds"
                )
            return
        raise errors.unauthorized(20, "unauthorized (missing credentials)")

    def _authenticated(self, request: Request) -> bool:
        try:
            self._authenticate(request)
        except errors.ApiError:
            return False
        return True

    # ------------------------------------------------------------------ API calls

    def _call(self, endpoint: str, version: str, raw: bytes, client_ip: str | None = None) -> bytes:
        """Parse, validate and run one call (in a worker thread); the answer is rendered inside the
        transaction, so nothing is committed unless the whole call succeeded."""
        body = _parse_body(endpoint, raw)
        REQUESTS[endpoint].check(body)
        with self.store.transaction() as tx:
            ctx = Context(
                tx,
                endpoint,
                version,
                self.settings.files_url,
                self.settings.base_url,
                USER,
                self.token_secret,
                client_ip,
            )
            data = ENDPOINTS[endpoint](ctx, body)
            return _envelope(endpoint, version, 200, 0, "OK", data)

    async def api(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        version = request.path_params.get("version", "2.31").lstrip("v")[:16]
        started = time.perf_counter()
        try:
            if endpoint not in NO_AUTH:
                self._authenticate(request)
            if endpoint not in ENDPOINTS:
                raise errors.not_supported(endpoint[:200])
            raw = await read_limited(request, self.settings.max_body_bytes)
            client_ip = request.client.host if request.client else None
            content = await anyio.to_thread.run_sync(self._call, endpoint, version, raw, client_ip)
            return _json(content, 200)
        except errors.ApiError as exc:
            log.info("%s -> %s/%s %s", endpoint, exc.code, exc.subcode, exc.msg[:500])
            return _json(_envelope(endpoint, version, exc.code, exc.subcode, exc.msg, {}), exc.code)
        except RecursionError:
            msg = "validation error: JSON nested too deeply"
            return _json(_envelope(endpoint, version, 400, 12, msg, {}), 400)
        except Exception as exc:  # a bug of ours: answer like the real server, keep serving
            log.exception("internal error in %s", endpoint)
            msg = f"internal server error: {exc!r}"[:1000]
            return _json(_envelope(endpoint, version, 500, 1, msg, {}), 500)
        finally:
            log.debug("%s took %.1f ms", endpoint, (time.perf_counter() - started) * 1000)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def ui(self, request: Request) -> Response:
        """There is no web UI. Signed-in clients get object counts; anyone else only the name."""
        answer: dict[str, Any] = {"server": "occupancy-mlops local ClearML server", "web_ui": None}
        if self._authenticated(request):
            answer["objects"] = {
                k: self.store.count(k) for k in ("project", "task", "model", "queue", "worker")
            }
        return JSONResponse(answer)

    def build(self) -> Starlette:
        methods = ["GET", "POST", "PUT"]
        routes = [
            Route("/healthz", self.healthz),
            Route("/ui", self.ui),
            Route("/ui/{path:path}", self.ui),
            Route("/files/{path:path}", self.files.download, methods=["GET", "HEAD"]),
            Route("/files/{path:path}", self.files.delete, methods=["DELETE"]),
            Route("/files/{path:path}", self.files.upload, methods=["POST"]),
            Route("/files", self.files.upload, methods=["POST"]),
            Route("/", self.files.upload, methods=["POST"]),
            Route("/{version:str}/{endpoint:str}", self.api, methods=methods),
            Route("/{endpoint:str}", self.api, methods=methods),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        self.store.close()


def create_app(settings: ServerSettings) -> Starlette:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return LocalServerApp(settings).build()
