"""The loop every polling service runs (trigger scheduler, canary controller): one pass every
``poll_interval_seconds`` in a thread until stopped, remembering when it last read the server so
that ``/readyz`` can tell."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

READY_WINDOW_SECONDS = 10.0


class PollLoop:
    """Subclasses implement :meth:`poll_once` (one pass; sets ``last_read`` when it read the server)."""

    thread_name = "poll-loop"

    def __init__(self, reconciler: Any, settings: Any) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self.metrics = reconciler.metrics
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self.last_read: float | None = None
        self.last_error: str | None = None

    def poll_once(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.poll_once()
            self.stop_event.wait(self.settings.poll_interval_seconds)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the current pass, then stop."""
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    @property
    def ready(self) -> bool:
        """A pass read the server within the last three intervals (at least the last 10 s)."""
        window = max(3 * self.settings.poll_interval_seconds, READY_WINDOW_SECONDS)
        return self.last_read is not None and time.time() - self.last_read <= window


def bind(host: str, port: int) -> tuple[socket.socket, str, int]:
    """A listening socket for ``/metrics``, ``/healthz``, ``/readyz`` (port 0: a free one), with the
    address it got."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_host, bound_port = sock.getsockname()[:2]
    return sock, str(bound_host), int(bound_port)


def http_server(app: Any, log_level: str) -> uvicorn.Server:
    """uvicorn for ``app``: no access log, 5 s graceful stop; ``server.should_exit = True`` stops it."""
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def run_http(app: Any, sock: socket.socket, log_level: str) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT."""
    http_server(app, log_level).run(sockets=[sock])


def record_pass(loop: PollLoop, errors: list[str]) -> None:
    """Book a pass that read the server: ``partial`` with the last error, else ``ok``."""
    loop.last_read = time.time()
    if errors:
        loop.metrics.polls.labels(outcome="partial").inc()
        loop.last_error = errors[-1]
    else:
        loop.metrics.polls.labels(outcome="ok").inc()
        loop.metrics.last_success.set(loop.last_read)
        loop.last_error = None


def service_app(loop: PollLoop, readiness: Callable[[], dict[str, Any]], log: logging.Logger) -> Starlette:
    """``/metrics``, ``/healthz`` (the loop thread alive), ``/readyz`` (a recent pass; ``readiness()``
    adds the service's own fields); the loop starts with the app and finishes its pass on SIGTERM."""

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(loop.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        alive = loop.thread.is_alive()
        return JSONResponse(
            {"status": "ok" if alive else "poll loop stopped"}, status_code=200 if alive else 503
        )

    async def readyz(_: Request) -> Response:
        body = {"ready": loop.ready, "last_read": loop.last_read, "last_error": loop.last_error}
        body.update(readiness())
        return JSONResponse(body, status_code=200 if loop.ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop.start()
        try:
            yield
        finally:
            log.info("stopping: finishing the current pass")
            loop.stop()
            log.info("stopped")

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)],
        lifespan=lifespan,
    )
