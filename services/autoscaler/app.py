"""The autoscaler process: the scaling loop in a thread, ``/metrics``, ``/healthz`` and ``/readyz``
over HTTP; SIGTERM or SIGINT finish the current pass and stop."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette

from services.autoscaler.kube import KubeCluster, load_client
from services.autoscaler.metrics import AutoscalerMetrics
from services.autoscaler.reconcile import ApiQueues, Reconciler
from services.autoscaler.settings import AutoscalerSettings
from services.poll_loop import PollLoop, bind, record_pass, run_http, service_app

log = logging.getLogger("occupancy.autoscaler")


class AutoscalerLoop(PollLoop):
    thread_name = "autoscaler-loop"

    def poll_once(self) -> None:
        started = time.monotonic()
        try:
            result = self.reconciler.poll()
        except Exception as exc:  # nothing read at all: the next pass retries
            self.metrics.polls.labels(outcome="error").inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("pass failed: %s", self.last_error)
            return
        finally:
            self.metrics.poll_duration.observe(time.monotonic() - started)
        if result.decisions:  # at least one pool was read
            record_pass(self, result.errors)
        else:
            self.metrics.polls.labels(outcome="error").inc()
            self.last_error = result.errors[-1] if result.errors else "no pools configured"


def create_app(loop: AutoscalerLoop) -> Starlette:
    def readiness() -> dict[str, Any]:
        return {
            "pools": {
                name: {"replicas": d.current, "desired": d.desired, "reason": d.reason}
                for name, d in loop.reconciler.last.items()
            }
        }

    return service_app(loop, readiness, log)


def build_reconciler(settings: AutoscalerSettings, kubeconfig: str | None = None) -> Reconciler:
    from occupancy_mlops.clearml_api import ClearmlApi

    cluster = KubeCluster(settings.namespace, load_client(kubeconfig))
    return Reconciler(settings, ApiQueues(ClearmlApi()), cluster, AutoscalerMetrics())


def serve(settings: AutoscalerSettings, kubeconfig: str | None = None) -> None:
    reconciler = build_reconciler(settings, kubeconfig)
    loop = AutoscalerLoop(reconciler, settings)
    sock, host, port = bind(settings.host, settings.port)
    log.info(
        "scaling %s in namespace %s every %.0f s (scale-down cool-down %.0f s)%s; metrics on http://%s:%d/metrics",
        ", ".join(f"{p.deployment} ({p.queue}: {p.min_replicas}..{p.max_replicas})" for p in settings.pools)
        or "no pools",
        settings.namespace,
        settings.poll_interval_seconds,
        settings.scale_down_cooldown_seconds,
        " in dry-run mode" if settings.dry_run else "",
        host,
        port,
    )
    run_http(create_app(loop), sock, settings.log_level)
