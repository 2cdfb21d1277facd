"""The trigger-scheduler process: the poll loop in a thread, ``/metrics``, ``/healthz`` and ``/readyz``
over HTTP (Starlette + uvicorn); SIGTERM or SIGINT finish the current poll and stop."""

from __future__ import annotations

import logging
import time

from starlette.applications import Starlette

from services.poll_loop import PollLoop, bind, record_pass, run_http, service_app
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
        self.metrics.versions.set(result.versions)
        record_pass(self, result.errors)


def create_app(loop: SchedulerLoop) -> Starlette:
    return service_app(loop, lambda: {"template_id": loop.reconciler.template_id}, log)


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
