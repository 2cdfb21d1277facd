"""The ASGI application: ClearML API envelope, authentication, dispatch, file server."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import endpoints as _endpoints  # noqa: F401  (registers every endpoint)
from . import errors
from .files import FileStore
from .registry import ENDPOINTS, USER, Context
from .settings import ServerSettings
from .store import Store

log = logging.getLogger("occupancy_mlops.local_server")

NO_AUTH = {"auth.login", "debug.ping", "server.ping"}


def _envelope(endpoint: str, version: str, code: int, subcode: int, msg: str, data: Any) -> JSONResponse:
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
    return JSONResponse({"meta": meta, "data": data}, status_code=code)


def _parse_body(endpoint: str, raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        if endpoint == "events.add_batch":
            try:
                return {"requests": [json.loads(line) for line in text.splitlines() if line.strip()]}
            except json.JSONDecodeError as line_exc:
                raise errors.validation(f"malformed JSON line in batch: {line_exc}") from line_exc
        raise errors.validation(f"malformed JSON body: {exc}") from exc
    if endpoint == "events.add_batch":
        return {"requests": body if isinstance(body, list) else [body]}
    if not isinstance(body, dict):
        raise errors.validation("request body must be a JSON object")
    body.pop("method", None)  # the SDK adds a stray "method" key
    return body


class LocalServerApp:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store = Store(settings.db_path)
        self.files = FileStore(settings.files_dir)
        secret_file = settings.data_dir / "token-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(32))
        self.token_secret = secret_file.read_text().strip()
        self.calls = 0

    def _authenticate(self, endpoint: str, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if endpoint in ("debug.ping", "server.ping"):
            return
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                key, _, secret = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise errors.unauthorized(21, "unauthorized (malformed credentials)") from exc
            if key != self.settings.access_key or secret != self.settings.secret_key:
                raise errors.unauthorized(
                    22, "unauthorized (invalid credentials): unknown access key or wrong secret"
                )
            return
        if scheme.lower() == "bearer":
            try:
                jwt.decode(value, self.token_secret, algorithms=["HS256"])
            except jwt.ExpiredSignatureError as exc:
                raise errors.unauthorized(30, "invalid token: expired") from exc
            except jwt.InvalidTokenError as exc:
                raise errors.unauthorized(30, f"invalid token: {exc}") from exc
            return
        raise errors.unauthorized(20, "unauthorized (missing credentials)")

    async def api(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        version = request.path_params.get("version", "2.31").lstrip("v")
        started = time.perf_counter()
        try:
            handler = ENDPOINTS.get(endpoint)
            if handler is None:
                raise errors.not_supported(endpoint)
            self._authenticate(endpoint, request)
            body = _parse_body(endpoint, await request.body())
            # handlers are synchronous and run one at a time: each call is one transaction
            with self.store.transaction() as tx:
                ctx = Context(
                    tx,
                    endpoint,
                    version,
                    self.settings.files_url,
                    self.settings.base_url,
                    USER,
                    self.token_secret,
                )
                data = handler(ctx, body)
            self.calls += 1
            return _envelope(endpoint, version, 200, 0, "OK", data)
        except errors.ApiError as exc:
            log.info("%s -> %s/%s %s", endpoint, exc.code, exc.subcode, exc.msg)
            return _envelope(endpoint, version, exc.code, exc.subcode, exc.msg, {})
        except Exception as exc:  # a bug of ours: answer like the real server, keep serving
            log.exception("internal error in %s", endpoint)
            return _envelope(endpoint, version, 500, 1, f"internal server error: {exc!r}", {})
        finally:
            log.debug("%s took %.1f ms", endpoint, (time.perf_counter() - started) * 1000)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def ui(self, request: Request) -> Response:
        counts = {k: self.store.count(k) for k in ("project", "task", "model", "queue", "worker")}
        return JSONResponse({"server": "occupancy-mlops local ClearML server", "objects": counts})

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
