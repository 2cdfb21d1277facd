"""The canary controller process: the reconciliation loop in a thread, ``/metrics``, ``/healthz`` and
``/readyz`` over HTTP (Starlette + uvicorn); SIGTERM or SIGINT finish the current pass and stop."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette

from services.canary.metrics import CanaryMetrics
from services.canary.reconcile import ArmSpec, PrometheusAnalyzer, Reconciler
from services.canary.settings import CanarySettings, ConfigError
from services.poll_loop import PollLoop, bind, record_pass, run_http, service_app

log = logging.getLogger("occupancy.canary")


class DeployServing:
    """Serving configuration through ``services.serving.deploy.apply_arms`` on the service task."""

    def __init__(self, service_id: str) -> None:
        from services.serving import deploy

        self.deploy = deploy
        self.service_id = service_id

    def apply(self, champion: ArmSpec | None, canary: ArmSpec | None, canary_weight: float) -> bool:
        def arm(spec: ArmSpec | None) -> Any:
            return None if spec is None else self.deploy.Arm(spec.model_id, spec.model_version)

        return bool(self.deploy.apply_arms(self.service_id, arm(champion), arm(canary), canary_weight))


def resolve_service(settings: CanarySettings) -> str:
    """The serving service task id: configured, or found by name (``occupancy-mlops serving setup``)."""
    if settings.service_id:
        return settings.service_id
    from services.serving import deploy

    found = deploy.find_service(settings.project, settings.service_name)
    if not found:
        raise ConfigError(
            f"service_id: no serving service {settings.service_name!r} in project {settings.project!r}; "
            "run `occupancy-mlops serving setup` first or set service_id"
        )
    return str(found)


class CanaryLoop(PollLoop):
    """Runs a pass every ``poll_interval_seconds`` until stopped; remembers when it last read the registry."""

    thread_name = "canary-loop"

    def poll_once(self) -> None:
        started = time.monotonic()
        try:
            result = self.reconciler.poll()
        except Exception as exc:  # the registry could not be read: nothing decided, next pass retries
            self.metrics.polls.labels(outcome="error").inc()
            self.metrics.failures.labels(stage="registry").inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("pass failed: %s", self.last_error)
            return
        finally:
            self.metrics.poll_duration.observe(time.monotonic() - started)
        record_pass(self, result.errors)


def create_app(loop: CanaryLoop) -> Starlette:
    def readiness() -> dict[str, Any]:
        verdict = loop.reconciler.last_verdict
        return {"last_verdict": verdict.summary() if verdict else None}

    return service_app(loop, readiness, log)


def build_reconciler(settings: CanarySettings) -> Reconciler:
    from occupancy_mlops.prometheus import PromClient
    from training.registry import ModelRegistry

    registry = ModelRegistry(settings.project, settings.model_name)
    serving = DeployServing(resolve_service(settings))
    prom = PromClient(settings.prometheus_url, timeout=settings.query_timeout_seconds)
    return Reconciler(registry, serving, PrometheusAnalyzer(prom.query, settings), settings, CanaryMetrics())


def serve(settings: CanarySettings) -> None:
    """Find the serving service, then reconcile and serve HTTP until SIGTERM/SIGINT."""
    reconciler = build_reconciler(settings)
    loop = CanaryLoop(reconciler, settings)
    sock, host, port = bind(settings.host, settings.port)
    assert isinstance(reconciler.serving, DeployServing)
    log.info(
        "rolling out %s models of %s on serving task %s in steps %s, judged every %.0f s by %s; "
        "metrics on http://%s:%d/metrics",
        settings.model_name,
        settings.project,
        reconciler.serving.service_id,
        "/".join(f"{s:.0%}" for s in settings.steps),
        settings.analysis_interval_seconds,
        settings.prometheus_url,
        host,
        port,
    )
    run_http(create_app(loop), sock, settings.log_level)
