"""The pure ASGI middleware in front of the upstream clearml-serving inference app (see ``app.py``).

The upstream app (``clearml_serving.serving.main``) keeps doing what it does: its start-up creates
the ``ModelRequestProcessor`` that polls the serving configuration, and that processor resolves
``/serve/{endpoint}``, draws the canary arm between ``occupancy/champion`` and ``occupancy/canary``
and runs our :class:`services.serving.endpoint.Preprocess`. By default the middleware calls the
processor itself once it has read and decoded the body: what the upstream route does, without
FastAPI's per-request dependency solving, second JSON parse and response encoding (about two
thirds of the time of a request). ``OCCUPANCY_SERVING_DIRECT=0`` sends every request through the
upstream FastAPI route instead (the corpus test runs both). The middleware:

- answers ``/metrics`` (every worker's values summed), ``/healthz`` and ``/readyz``;
- refuses what the upstream app would turn into a 5xx or a confusing 422: a wrong content type (415),
  a body over the limit (413, before reading it all: Content-Length first, then while streaming,
  gzip included), an empty or malformed body or one that is not a JSON object (400/422);
- answers every error in one shape, ``{"detail": "<field path>: <problem>", "cause": "..."}``;
- counts every request, error and latency with the arm and model version the Preprocess wrote
  into the request's :class:`~services.serving.context.RequestInfo`;
- awaits an injected delay (so a slow canary does not stall the event loop for the champion).

After start-up it adapts the upstream processor (:mod:`services.serving.processor`) and freezes the
garbage collector's view of the (large) set of start-up objects: without it, full collections of
~180k objects put 90-146 ms into the p99 at 64 connections (``clearml-facts.md``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import random
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response

from services.serving.context import CURRENT, RequestInfo
from services.serving.feedback import (
    FEEDBACK_MAX_BODY_BYTES,
    FeedbackError,
    get_signer,
    parse_feedback,
    score,
)
from services.serving.metrics import CONTENT_TYPE, ENDPOINT, NONE, get_metrics, render
from services.serving.processor import adapt_processor, arm_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("occupancy.serving")
MAX_BODY_ENV = "OCCUPANCY_SERVING_MAX_BODY_BYTES"
DIRECT_ENV = "OCCUPANCY_SERVING_DIRECT"  # "0": every request through the upstream FastAPI route
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: 1440 readings take about 200 kB
SERVE_PREFIX = "/serve/"
FEEDBACK_PREFIX = "/feedback/"
CLIENT = "client"
SERVER = "server"


class Reject(Exception):
    """A request refused by the middleware before the upstream app sees it."""

    def __init__(self, status: int, cause: str, message: str) -> None:
        super().__init__(message)
        self.status, self.cause, self.message = status, cause, message


def error_body(cause: str, message: str) -> bytes:
    return json.dumps({"detail": message, "cause": cause}).encode()


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@functools.lru_cache(maxsize=64)
def _media_type(value: bytes) -> tuple[str, dict[str, str]]:
    kind, _, rest = value.decode("latin-1").partition(";")
    params = {}
    for part in rest.split(";"):
        key, _, val = part.strip().partition("=")
        if key:
            params[key.lower()] = val.strip().strip('"').lower()
    return kind.strip().lower(), params


def check_headers(headers: list[tuple[bytes, bytes]], limit: int) -> tuple[bool, int | None]:
    """(gzip?, Content-Length) of a request to /serve/; raises :class:`Reject`."""
    content_type: bytes | None = None
    encoding = b""
    length: int | None = None
    for key, value in headers:
        if key == b"content-type":
            content_type = value
        elif key == b"content-encoding":
            encoding = value.strip().lower()
        elif key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise Reject(400, "malformed_body", "Content-Length: not a number") from None
    if content_type is None:
        raise Reject(415, "content_type", "Content-Type: missing, must be application/json")
    kind, params = _media_type(content_type)
    if kind != "application/json":
        raise Reject(415, "content_type", f"Content-Type: must be application/json, got {kind[:60]!r}")
    if params.get("charset", "utf-8") not in ("utf-8", "utf8"):
        raise Reject(
            415, "content_type", f"Content-Type: charset must be utf-8, got {params['charset'][:30]!r}"
        )
    if encoding not in (b"", b"identity", b"gzip"):
        raise Reject(415, "content_type", "Content-Encoding: only gzip or identity")
    if length is not None and length > limit:
        raise Reject(413, "body_too_large", f"body: {length} bytes, the limit is {limit}")
    return encoding == b"gzip", length


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Reject(400, "malformed_body", "body: the client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise Reject(413, "body_too_large", f"body: more than {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def gunzip(body: bytes, limit: int) -> bytes:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Reject(400, "malformed_body", f"body: not valid gzip ({exc})") from None
    if len(out) > limit:
        raise Reject(413, "body_too_large", f"body: more than {limit} bytes once decompressed")
    if not decoder.eof:
        raise Reject(400, "malformed_body", "body: truncated gzip stream")
    return out


def parse_json(body: bytes) -> Any:
    """A request body as JSON (any value); :class:`Reject` 400 when it is not JSON."""
    if not body.strip():
        raise Reject(400, "malformed_body", "body: empty, expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Reject(400, "malformed_body", f"body: not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Reject(
            400, "malformed_body", f"body: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise Reject(400, "malformed_body", "body: JSON nested too deeply") from None
    return value


def decode_json(body: bytes) -> Any:
    """A request body to ``/serve/``: a JSON object."""
    value = parse_json(body)
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        raise Reject(
            422,
            "validation",
            f'body: must be a JSON object (one reading or {{"readings": [...]}}), got {kind}',
        )
    return value


_LAST_WARNING: dict[str, float] = {}


def warn_rarely(key: str, message: str, *args: Any) -> None:
    """A warning at most once a second per key: ClearML ships every console line to the server, so
    a failing arm must not turn each request into a log line."""
    now = time.monotonic()
    if now - _LAST_WARNING.get(key, 0.0) >= 1.0:
        _LAST_WARNING[key] = now
        log.warning(message, *args)


def classify(status: int) -> tuple[str, str] | None:
    """(cause, kind) of an error status the upstream app produced without the Preprocess's word."""
    if status < 400:
        return None
    if status in (404, 405):
        return "not_found", CLIENT
    if status == 422:
        # our Preprocess marks its own 422s; an unmarked one is upstream failing to load the endpoint
        return "model_error", SERVER
    if status >= 500:
        return "internal", SERVER
    return "validation", CLIENT


class OccupancyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int | None = None,
        upstream: Any = None,
        direct: bool | None = None,
    ) -> None:
        self.app = app
        self.upstream = upstream  # the module clearml_serving.serving.main (its ``processor``)
        from clearml_serving.serving import model_request_processor

        self.mrp = model_request_processor
        if direct is None:
            direct = os.environ.get(DIRECT_ENV, "1") not in ("0", "false", "no")
        self.direct = direct and upstream is not None
        self.max_body = max_body_bytes or int(os.environ.get(MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES))
        self.metrics = get_metrics()
        self.signer = get_signer()
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(SERVE_PREFIX):
                await self.serve(scope, receive, send)
            elif path.startswith(FEEDBACK_PREFIX):
                await self.feedback(scope, receive, send)
            elif path == "/metrics":
                await send_bytes(send, 200, render(self.metrics), CONTENT_TYPE.encode())
            elif path == "/healthz":
                await send_bytes(send, 200, b'{"status":"ok"}')
            elif path == "/readyz":
                ready, body = readiness()
                await send_bytes(send, 200 if ready else 503, json.dumps(body).encode())
            else:
                await self.app(scope, receive, send)
        elif kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                processor = getattr(self.upstream, "processor", None)
                if processor is not None:
                    adapt_processor(processor)
                # everything loaded so far lives as long as the process: keep it out of collections
                gc.collect()
                gc.freeze()
                self.started = True
            await send(message)

        return wrapped

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        info = RequestInfo()
        token = CURRENT.set(info)
        status = 0
        try:
            if scope["method"] != "POST":
                raise Reject(405, "not_found", f"{scope['method']}: only POST")
            gzipped, _ = check_headers(scope["headers"], self.max_body)
            body = await read_body(receive, self.max_body)
            if gzipped:
                body = gunzip(body, self.max_body)
                scope = dict(scope)
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-encoding"]
            payload = decode_json(body)
            if self.direct:
                status = await self._direct(scope, payload, send, info)
            else:
                status = await self._forward(scope, body, send, info)
        except Reject as exc:
            info.fail(exc.cause, exc.status, exc.message)
            status = exc.status
            await send_bytes(send, exc.status, error_body(exc.cause, exc.message))
        except Exception:  # the upstream app raised after (or instead of) answering
            log.exception("request failed in the upstream app")
            if not status:
                status = 500
                info.fail("internal", 500, "internal error")
                await send_bytes(send, 500, error_body("internal", "internal error"))
        finally:
            CURRENT.reset(token)
        if info.arm == NONE and info.endpoint_url:  # routed, but failed before the Preprocess ran
            arm = arm_of(getattr(self.upstream, "processor", None), info.endpoint_url)
            if arm is not None:
                info.arm, info.model_version = arm
        cause, kind = None, None
        if info.cause is not None:
            cause, kind = info.cause, (CLIENT if info.status < 500 else SERVER)
        elif status >= 400:
            cause, kind = classify(status) or ("internal", SERVER)
        self.metrics.request(info.arm, info.model_version, time.perf_counter() - started, cause, kind)

    async def feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /feedback/occupancy``: the true labels of a prediction's readings, counted per arm and
        model version as right or wrong (:mod:`services.serving.feedback`). Answered here, in the
        worker that receives it: the prediction id carries everything, no other worker is asked."""
        try:
            if scope["path"] != FEEDBACK_PREFIX + ENDPOINT:
                raise Reject(404, "not_found", f"{scope['path'][:100]}: no such endpoint")
            if scope["method"] != "POST":
                raise Reject(405, "not_found", f"{scope['method']}: only POST")
            limit = min(self.max_body, FEEDBACK_MAX_BODY_BYTES)
            gzipped, _ = check_headers(scope["headers"], limit)
            body = await read_body(receive, limit)
            if gzipped:
                body = gunzip(body, limit)
            prediction, labels = parse_feedback(parse_json(body), self.signer, ENDPOINT)
        except Reject as exc:
            self.metrics.feedback_refused(exc.cause)
            await send_bytes(send, exc.status, error_body(exc.cause, exc.message))
            return
        except FeedbackError as exc:
            self.metrics.feedback_refused(exc.cause)
            await send_bytes(send, exc.status, error_body(exc.cause, exc.message))
            return
        labeled, correct = score(prediction, labels)
        delay = time.time() - prediction.issued_at
        self.metrics.labeled(prediction.arm, prediction.model_version, labeled, correct, delay)
        answer = {
            "labeled": labeled,
            "correct": correct,
            "arm": prediction.arm,
            "model_version": prediction.model_version,
        }
        await send_bytes(send, 200, json.dumps(answer, separators=(",", ":")).encode())

    async def _direct(self, scope: Scope, payload: dict[str, Any], send: Send, info: RequestInfo) -> int:
        """The upstream route's body without FastAPI's request and response machinery (~200 µs a
        request): the upstream processor resolves the endpoint, draws the canary arm and runs the
        Preprocess; its exceptions map to statuses as in ``clearml_serving.serving.main.serve_model``."""
        mrp = self.mrp  # no import here: clearml wraps ``__import__``, ~10 µs a request
        route = parse_route(scope["path"], scope.get("query_string", b""))
        processor = self.upstream.processor
        if route is None:
            raise Reject(404, "not_found", f"{scope['path'][:100]}: no such endpoint")
        if processor is None:
            raise Reject(503, "internal", "the serving configuration is not loaded yet")
        try:
            try:
                result = await processor.process_request(
                    base_url=route[0], version=route[1], request_body=payload
                )
            finally:
                if info.delay_seconds:  # injected latency, awaited: the event loop serves others meanwhile
                    await asyncio.sleep(info.delay_seconds)
        except mrp.EndpointNotFoundException:
            raise Reject(404, "not_found", f"{scope['path'][:100]}: no such endpoint") from None
        except Exception as exc:
            if info.cause is not None:  # the Preprocess said why (validation, injected fault, model error)
                if info.status >= 500:
                    warn_rarely(info.cause, "%s: %s", info.cause, info.message)
                raise Reject(info.status, info.cause, info.message) from None
            warn_rarely("endpoint", "endpoint %s failed: %s: %s", route[0], type(exc).__name__, exc)
            if isinstance(exc, ValueError | mrp.ModelRequestProcessorException):
                # e.g. the endpoint's model or preprocess code could not be loaded
                raise Reject(
                    500, "model_error", f"{route[0]}: the endpoint's model could not be loaded"
                ) from None
            raise Reject(500, "internal", "internal error") from None
        if isinstance(result, Response):  # our Preprocess's answer, already rendered
            await send(
                {"type": "http.response.start", "status": result.status_code, "headers": result.raw_headers}
            )
            await send({"type": "http.response.body", "body": result.body, "more_body": False})
            return int(result.status_code)
        await send_bytes(send, 200, json.dumps(result, separators=(",", ":")).encode())
        return 200

    async def _forward(self, scope: Scope, body: bytes, send: Send, info: RequestInfo) -> int:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:  # the app reads past the body: wait like a real connection would
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        state = {"status": 0, "replaced": False}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                state["status"] = status
                if info.delay_seconds:
                    await asyncio.sleep(info.delay_seconds)
                if info.cause is not None:
                    state["replaced"], state["status"] = True, info.status
                    await send_bytes(send, info.status, error_body(info.cause, info.message))
                    return
                if status >= 400:
                    cause, kind = classify(status) or ("internal", SERVER)
                    out = status if kind == CLIENT or status >= 500 else 500
                    state["replaced"], state["status"] = True, out
                    await send_bytes(send, out, error_body(cause, _upstream_detail(scope, cause)))
                    return
            elif state["replaced"]:
                return
            await send(message)

        await self.app(scope, replay, wrapped)
        return int(state["status"])


def parse_route(path: str, query_string: bytes = b"") -> tuple[str, str | None] | None:
    """(endpoint, version) as the upstream routes ``/serve/{model_id}[/{version}]`` and
    ``?version=`` read them; None for a path they do not match."""
    parts = path[len(SERVE_PREFIX) :].split("/")
    if len(parts) == 2 and parts[1] == "":
        parts = parts[:1]
    if not 1 <= len(parts) <= 2 or not all(parts):
        return None
    version = parts[1] if len(parts) == 2 else None
    if version is None and query_string:
        for key, value in parse_qsl(query_string.decode("latin-1")):
            if key == "version":
                version = value
    return parts[0], version


def _upstream_detail(scope: Scope, cause: str) -> str:
    path = str(scope.get("path", ""))[:100]
    if cause == "not_found":
        return f"{path}: no such endpoint"
    if cause == "model_error":
        return f"{path}: the endpoint's model could not be loaded (see the serving service's log)"
    return f"{path}: internal error"


def readiness() -> tuple[bool, dict[str, Any]]:
    """Ready once the upstream processor has loaded the serving configuration from ClearML."""
    import clearml_serving.serving.main as upstream

    processor = upstream.processor
    if processor is None or processor._sync_daemon_thread is None:
        return False, {"ready": False, "reason": "the serving configuration is not loaded yet"}
    routes = {k: dict(v) for k, v in processor._canary_route.items()}
    return True, {
        "ready": True,
        "service_id": upstream.serving_service_task_id,
        "endpoints": sorted(processor._endpoints),
        "loaded": sorted(processor._engine_processor_lookup),
        "routes": routes,
    }


def weighted_choice(items: list[Any], size: int = 1, p: list[float] | None = None) -> list[Any]:
    """``numpy.random.choice(items, size, p=p)`` for clearml-serving's canary draw, without numpy's
    argument checks (~50 µs a request): one uniform draw against the cumulative weights."""
    weights = p if p is not None else [1.0 / len(items)] * len(items)
    last = max(i for i, w in enumerate(weights) if w > 0)
    out = []
    for _ in range(size):
        r, acc, pick = random.random(), 0.0, last
        for i, w in enumerate(weights):
            acc += w
            if r < acc and w > 0:
                pick = i
                break
        out.append(items[pick])
    return out


def build_app() -> OccupancyMiddleware:
    """Import the upstream app (this connects to ClearML: ``CLEARML_SERVING_TASK_ID`` must be set)."""
    import clearml_serving.serving.main as upstream
    import clearml_serving.serving.model_request_processor as mrp

    mrp.choice = weighted_choice
    return OccupancyMiddleware(upstream.app, upstream=upstream)
