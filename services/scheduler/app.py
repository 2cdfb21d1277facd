"""The trigger-scheduler process: the poll loop in a thread, ``/metrics``, ``/healthz`` and ``/readyz``
over HTTP (Starlette + uvicorn); SIGTERM or SIGINT finish the current poll and stop."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.poll_loop import PollLoop, bind, run_http
from services.scheduler.api import ApiCallError, ClearmlApi
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.reconcile import Reconciler
from services.scheduler.settings import SchedulerSettings
from services.scheduler.template import resolve_template

log = logging.getLogger("occupancy.scheduler")


class SchedulerLoop(PollLoop):
    """Polls every ``poll_interval_seconds`` until stopped; remembers when it last read the server."""

    thread_name = "scheduler-loop"

    def poll_once(self) -> None:
        started = time.monotonic()
        try:
            result = self.reconciler.poll()
        except ApiCallError as exc:
            self.metrics.polls.labels(outcome="error").inc()
            self.last_error = str(exc)
            log.warning("poll failed: %s", exc)
            return
        finally:
            self.metrics.poll_duration.observe(time.monotonic() - started)
        self.last_read = time.time()
        self.metrics.versions.set(result.versions)
        if result.errors:
            self.metrics.polls.labels(outcome="partial").inc()
            self.last_error = result.errors[-1]
        else:
            self.metrics.polls.labels(outcome="ok").inc()
            self.metrics.last_success.set(self.last_read)
            self.last_error = None


def create_app(loop: SchedulerLoop) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(loop.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        alive = loop.thread.is_alive()
        return JSONResponse(
            {"status": "ok" if alive else "poll loop stopped"}, status_code=200 if alive else 503
        )

    async def readyz(_: Request) -> Response:
        body = {
            "ready": loop.ready,
            "last_read": loop.last_read,
            "last_error": loop.last_error,
            "template_id": loop.reconciler.template_id,
        }
        return JSONResponse(body, status_code=200 if loop.ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop.start()
        try:
            yield
        finally:
            log.info("stopping: finishing the current poll")
            loop.stop()
            log.info("stopped")

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)],
        lifespan=lifespan,
    )


def build_loop(settings: SchedulerSettings, api: ClearmlApi | None = None) -> SchedulerLoop:
    api = api or ClearmlApi()
    template_id = resolve_template(api, settings)
    return SchedulerLoop(Reconciler(api, settings, template_id, SchedulerMetrics()), settings)


def serve(settings: SchedulerSettings) -> None:
    """Resolve the template, then poll and serve HTTP until SIGTERM/SIGINT."""
    loop = build_loop(settings)
    sock, host, port = bind(settings.host, settings.port)
    log.info(
        "watching %s for dataset versions tagged %s every %.1f s; launching %s on queue %s; "
        "metrics on http://%s:%d/metrics",
        settings.project,
        "+".join(settings.tags),
        settings.poll_interval_seconds,
        loop.reconciler.template_id,
        settings.queue,
        host,
        port,
    )
    run_http(create_app(loop), sock, settings.log_level)
