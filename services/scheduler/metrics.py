"""Prometheus metrics of the trigger scheduler (``/metrics``), in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "occupancy_scheduler_polls", "Reconciliation polls, by outcome", ["outcome"], registry=r
        )
        self.launches = Counter(
            "occupancy_scheduler_launches", "Retraining runs enqueued for new dataset versions", registry=r
        )
        self.failures = Counter(
            "occupancy_scheduler_failures",
            "Failed ClearML calls, by endpoint (the work is retried on the next poll)",
            ["stage"],
            registry=r,
        )
        self.duplicates_removed = Counter(
            "occupancy_scheduler_duplicates_removed",
            "Draft runs deleted because another run of the same dataset version was created first",
            registry=r,
        )
        self.launch_lag = Histogram(
            "occupancy_scheduler_launch_lag_seconds",
            "Time from a dataset version's finalize to its retraining run being enqueued",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.poll_duration = Histogram(
            "occupancy_scheduler_poll_duration_seconds", "Duration of one poll", registry=r
        )
        self.last_success = Gauge(
            "occupancy_scheduler_last_successful_poll_timestamp_seconds",
            "Unix time of the last poll that read the server and settled every version",
            registry=r,
        )
        self.versions = Gauge(
            "occupancy_scheduler_watched_versions",
            "Tagged dataset versions seen by the last poll",
            registry=r,
        )
        self.waiting = Gauge(
            "occupancy_scheduler_waiting_claims",
            "Draft runs of another scheduler waiting out the claim grace period",
            registry=r,
        )
