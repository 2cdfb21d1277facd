"""The trigger-scheduler process: the poll loop in a thread, ``/metrics``, ``/healthz`` and ``/readyz``
over HTTP (Starlette + uvicorn); SIGTERM or SIGINT finish the current poll and stop.

HTTP is up before the first poll, so ``/healthz`` answers while the first poll finds or registers the
pipeline template. Any exception of a poll is caught, logged and counted by stage
(``occupancy_scheduler_failures_total{stage}``), and the loop goes on; ``/readyz`` turns 503 after
``unready_after_failures`` failed polls in a row, or failed launches in a row, naming the last error.
A configuration error found by a poll (``template_id`` names no task, no server configured) stops the
process with exit status 2, like a bad setting at start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

from occupancy_mlops.clearml_api import ClearmlApi
from services.poll_loop import PollLoop, bind, http_server, record_pass, service_app
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.reconcile import Reconciler, StageError
from services.scheduler.settings import ConfigError, SchedulerSettings

log = logging.getLogger("occupancy.scheduler")
NO_SERVER = (
    "no ClearML server configured: start the local one with `occupancy-mlops local-server` and export "
    "the settings it prints, or name yours with CLEARML_API_HOST, CLEARML_API_ACCESS_KEY and "
    "CLEARML_API_SECRET_KEY (or CLEARML_CONFIG_FILE)"
)


class SchedulerLoop(PollLoop):
    """Polls every ``poll_interval_seconds`` until stopped; counts failed polls and launches in a row."""

    thread_name = "scheduler-loop"
    reconciler: Reconciler

    def __init__(self, reconciler: Reconciler, settings: SchedulerSettings) -> None:
        super().__init__(reconciler, settings)
        reconciler.templates.stop_event = self.stop_event  # SIGTERM interrupts a registration
        self.failed_polls = 0
        self.failed_launches = 0
        self.fatal: ConfigError | None = None
        self.on_fatal: Callable[[], None] = lambda: None

    def poll_once(self) -> None:
        started = time.monotonic()
        try:
            result = self.reconciler.poll()
        except ConfigError as exc:
            self._stop_fatally(str(exc))
            return
        except Exception as exc:  # any exception: counted by stage, and the loop goes on
            if type(exc).__name__ == "MissingConfigError":
                self._stop_fatally(NO_SERVER)
                return
            if not isinstance(exc, StageError):
                log.debug("poll failure", exc_info=True)
                exc = StageError("poll", exc)
            self.failed_polls += 1
            self.metrics.failures.labels(stage=exc.stage).inc()
            self.metrics.polls.labels(outcome="error").inc()
            self.last_error = str(exc)
            log.warning("poll failed (%d in a row): %s", self.failed_polls, self.last_error)
            return
        finally:
            self.metrics.poll_duration.observe(time.monotonic() - started)
        self.failed_polls = 0
        if result.pending:
            self.last_read = time.time()
            self.last_error = result.pending
            self.metrics.polls.labels(outcome="waiting").inc()
            log.info("%s", result.pending)
            return
        for launched in result.attempts:
            self.failed_launches = 0 if launched else self.failed_launches + 1
        if not result.errors:
            self.failed_launches = 0  # every version settled
        self.metrics.versions.set(result.versions)
        record_pass(self, result.errors)

    def _stop_fatally(self, message: str) -> None:
        self.fatal = ConfigError(message)
        self.last_error = message
        log.error("%s", message)
        self.stop_event.set()
        self.on_fatal()

    @property
    def ready(self) -> bool:
        """A template, a poll that read the server recently, and fewer than ``unready_after_failures``
        failed polls, and failed launches, in a row."""
        limit = self.settings.unready_after_failures
        return (
            self.reconciler.template_id is not None
            and super().ready
            and self.failed_polls < limit
            and self.failed_launches < limit
        )


def create_app(loop: SchedulerLoop) -> Starlette:
    def readiness() -> dict[str, Any]:
        return {
            "template_id": loop.reconciler.template_id,
            "template": loop.reconciler.templates.status,
            "failed_polls_in_a_row": loop.failed_polls,
            "failed_launches_in_a_row": loop.failed_launches,
            "unready_after_failures": loop.settings.unready_after_failures,
        }

    return service_app(loop, readiness, log)


def build_loop(settings: SchedulerSettings, api: ClearmlApi | None = None) -> SchedulerLoop:
    """The loop, without touching the server (the first poll logs in and finds the template)."""
    reconciler = Reconciler(api or ClearmlApi(), settings, metrics=SchedulerMetrics())
    return SchedulerLoop(reconciler, settings)


def serve(settings: SchedulerSettings) -> None:
    """Serve HTTP and poll until SIGTERM/SIGINT; :class:`ConfigError` if the address cannot be bound
    or a poll found the configuration wrong."""
    loop = build_loop(settings)
    try:
        sock, host, port = bind(settings.host, settings.port)
    except OSError as exc:
        raise ConfigError(
            f"host, port: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    log.info(
        "watching %s for dataset versions tagged %s every %.1f s; launching %s on queue %s; "
        "metrics on http://%s:%d/metrics",
        settings.project,
        "+".join(settings.tags),
        settings.poll_interval_seconds,
        settings.template_id or f"the template tagged {settings.template_tag}",
        settings.queue,
        host,
        port,
    )
    server = http_server(create_app(loop), settings.log_level)

    def stop_serving() -> None:
        server.should_exit = True

    loop.on_fatal = stop_serving
    server.run(sockets=[sock])
    if loop.fatal:
        raise loop.fatal
