"""Prometheus metrics of the occupancy endpoint, correct with several uvicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the launcher sets it to a fresh folder before uvicorn starts,
so before ``prometheus_client`` is imported) every worker writes its values to files there and
``/metrics`` on any worker sums all of them (:class:`MultiProcessCollector`). Without it the
metrics live in a registry of their own (tests, one process).

Labels: ``endpoint`` (public name), ``arm`` ("champion", "canary", "none" before routing),
``model_version`` ("none" before routing). Children are cached per label set: a request costs
dictionary look-ups and a few shared-memory increments.

The input drift gauges (``occupancy_serving_input_drift_*{input}``, :mod:`services.serving.drift`)
are set every few dozen requests by the worker that served them, ``livemostrecent`` across workers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

ENDPOINT = "occupancy"
NONE = "none"
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05, 0.10, ..., 0.95, 1.0
CLIENT_CAUSES = ("validation", "malformed_body", "content_type", "body_too_large", "not_found")
SERVER_CAUSES = ("model_error", "injected_fault", "internal")
FEEDBACK_CAUSES = ("validation", "invalid_token", "expired_token", "malformed_body", "content_type",
                   "body_too_large", "not_found")  # fmt: skip
FEEDBACK_DELAY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # multiprocess: the values live in files; the metric objects need no registry of their own
        self.registry = None if self.multiprocess else (registry or CollectorRegistry())
        r = self.registry
        labels = ["endpoint", "arm", "model_version"]
        self.requests = Counter(
            "occupancy_serving_requests",
            "Requests to the endpoint (every answer, good or bad)",
            labels,
            registry=r,
        )
        self.errors = Counter(
            "occupancy_serving_errors",
            'Failed requests, by cause; kind "client" (4xx) or "server" (5xx)',
            [*labels, "cause", "kind"],
            registry=r,
        )
        self.duration = Histogram(
            "occupancy_serving_request_duration_seconds",
            "Time from the request's arrival to the last byte of the answer",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "occupancy_serving_predictions",
            "Predicted readings, by predicted class",
            [*labels, "occupied"],
            registry=r,
        )
        self.probability = Histogram(
            "occupancy_serving_probability",
            "Predicted occupancy probability per reading",
            labels,
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.feedback = Counter(
            "occupancy_serving_feedback",
            "Labeled readings posted to /feedback/, by whether the prediction was right",
            [*labels, "correct"],
            registry=r,
        )
        self.feedback_requests = Counter(
            "occupancy_serving_feedback_requests",
            "Accepted feedback posts holding at least one label (the canary's sample size for accuracy)",
            labels,
            registry=r,
        )
        self.feedback_delay = Histogram(
            "occupancy_serving_feedback_delay_seconds",
            "Time from a prediction to its labels' arrival (per accepted post with labels)",
            labels,
            buckets=FEEDBACK_DELAY_BUCKETS,
            registry=r,
        )
        self.feedback_errors = Counter(
            "occupancy_serving_feedback_errors",
            "Refused feedback posts, by cause",
            ["endpoint", "cause"],
            registry=r,
        )
        drift_labels = [*labels, "input"]
        self.drift_gauges = {
            name.removeprefix("occupancy_serving_input_drift_"): Gauge(
                name, help_text, drift_labels, registry=r, multiprocess_mode="livemostrecent"
            )
            for name, help_text in (
                (
                    "occupancy_serving_input_drift_psi",
                    "PSI of an input over the recent requests' newest readings vs the training readings",
                ),
                (
                    "occupancy_serving_input_drift_ks",
                    "KS statistic of an input over the recent requests' newest readings vs the training",
                ),
                (
                    "occupancy_serving_input_drift_psi_limit",
                    "PSI above which the input drifts (from the training days' day-to-day PSI)",
                ),
                (
                    "occupancy_serving_input_drift_ks_limit",
                    "KS above which the input drifts (from the training days' day-to-day KS)",
                ),
            )
        }
        self.drift_readings = Gauge(
            "occupancy_serving_input_drift_readings",
            "Readings in the drift window when the input drift gauges were last set",
            labels,
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._drift_versions: dict[str, str] = {}
        self._drift_inputs: dict[tuple[str, str], list[str]] = {}
        self._children: dict[tuple[str, ...], Any] = {}
        self._bounds = np.array([*PROBABILITY_BUCKETS, float("inf")])

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def request(
        self, arm: str, version: str, seconds: float, cause: str | None = None, kind: str | None = None
    ) -> None:
        """One finished request (``cause``/``kind`` for an error)."""
        self._child(self.requests, ENDPOINT, arm, version).inc()
        self._child(self.duration, ENDPOINT, arm, version).observe(seconds)
        if cause is not None:
            self._child(self.errors, ENDPOINT, arm, version, cause, kind or "server").inc()

    def labeled(self, arm: str, version: str, labeled: int, correct: int, delay_seconds: float) -> None:
        """One accepted feedback post: its labeled readings, right and wrong."""
        if labeled <= 0:
            return
        if correct:
            self._child(self.feedback, ENDPOINT, arm, version, "true").inc(correct)
        if labeled - correct:
            self._child(self.feedback, ENDPOINT, arm, version, "false").inc(labeled - correct)
        self._child(self.feedback_requests, ENDPOINT, arm, version).inc()
        self._child(self.feedback_delay, ENDPOINT, arm, version).observe(max(0.0, delay_seconds))

    def input_drift(self, arm: str, version: str, readings: int, drifts: list[Any]) -> None:
        """Set the input drift gauges of an arm's model (``drifts``: :class:`InputDrift` items)."""
        self._forget_older_version(arm, version)
        for item in drifts:
            for name, value in (("psi", item.psi), ("ks", item.ks), ("psi_limit", item.psi_limit),
                                ("ks_limit", item.ks_limit)):  # fmt: skip
                self._child(self.drift_gauges[name], ENDPOINT, arm, version, item.input).set(value)
        self._child(self.drift_readings, ENDPOINT, arm, version).set(readings)
        self._drift_inputs[(arm, version)] = [item.input for item in drifts]

    def _forget_older_version(self, arm: str, version: str) -> None:
        """A new model in an arm: the gauges of the one it replaced become NaN (no alert on them)."""
        older = self._drift_versions.get(arm)
        self._drift_versions[arm] = version
        if older is None or older == version:
            return
        for input_name in self._drift_inputs.pop((arm, older), []):
            for gauge in self.drift_gauges.values():
                self._child(gauge, ENDPOINT, arm, older, input_name).set(float("nan"))
        self._child(self.drift_readings, ENDPOINT, arm, older).set(float("nan"))

    def model_loaded(self, arm: str, version: str) -> None:
        """An arm now serves ``version`` in this process."""
        self._forget_older_version(arm, version)

    def feedback_refused(self, cause: str) -> None:
        self._child(self.feedback_errors, ENDPOINT, cause).inc()

    def predicted(self, arm: str, version: str, probabilities: np.ndarray, threshold: float = 0.5) -> None:
        """The readings a request predicted: counts by class and the probability histogram."""
        p = np.asarray(probabilities, dtype=np.float64)
        if len(p) == 1:  # the common request
            value = float(p[0])
            self._child(
                self.predictions, ENDPOINT, arm, version, "true" if value >= threshold else "false"
            ).inc()
            self._child(self.probability, ENDPOINT, arm, version).observe(value)
            return
        if not len(p):
            return
        occupied = int(np.count_nonzero(p >= threshold))
        if occupied:
            self._child(self.predictions, ENDPOINT, arm, version, "true").inc(occupied)
        if len(p) - occupied:
            self._child(self.predictions, ENDPOINT, arm, version, "false").inc(len(p) - occupied)
        child = self._child(self.probability, ENDPOINT, arm, version)
        # many readings: one increment per bucket instead of one observe per reading (the buckets
        # of prometheus_client hold per-bucket counts; it accumulates them when collected)
        counts = np.bincount(np.searchsorted(self._bounds, p, side="left"), minlength=len(self._bounds))
        for i, count in enumerate(counts):
            if count:
                child._buckets[i].inc(int(count))
        child._sum.inc(float(p.sum()))


def render(metrics: ServingMetrics) -> bytes:
    """The text exposition: every worker's values summed in multiprocess mode."""
    if metrics.multiprocess:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    assert metrics.registry is not None
    return generate_latest(metrics.registry)


_METRICS: ServingMetrics | None = None


def get_metrics() -> ServingMetrics:
    """The process's metrics (one set per process: the middleware and the Preprocess share it)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = ServingMetrics()
    return _METRICS
