"""Prometheus metrics of the trigger scheduler (``/metrics``), in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
STAGES = ("template", "list_projects", "list_versions", "list_runs", "claim", "enqueue", "delete", "poll")


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "occupancy_scheduler_polls",
            "Reconciliation polls, by outcome: ok, partial (some version failed), error (the poll "
            "failed), waiting (for another scheduler to register the template)",
            ["outcome"],
            registry=r,
        )
        self.launches = Counter(
            "occupancy_scheduler_launches", "Retraining runs enqueued for new dataset versions", registry=r
        )
        self.failures = Counter(
            "occupancy_scheduler_failures",
            "Failed steps of a poll, any exception, by stage: template, list_projects, list_versions, "
            "list_runs (the poll fails), claim, enqueue, delete (that version waits for the next poll), "
            "poll (anything else); the work is retried on the next poll",
            ["stage"],
            registry=r,
        )
        for stage in STAGES:
            self.failures.labels(stage=stage)
        self.duplicates_removed = Counter(
            "occupancy_scheduler_duplicates_removed",
            "Draft runs deleted because another run of the same dataset version was launched or "
            "created first",
            registry=r,
        )
        self.template_registrations = Counter(
            "occupancy_scheduler_template_registrations",
            "Pipeline templates this scheduler registered (replicas starting together register one)",
            registry=r,
        )
        self.launch_lag = Histogram(
            "occupancy_scheduler_launch_lag_seconds",
            "Time from the moment a dataset version became eligible to its retraining run being "
            "enqueued: the latest of its finalize, its last change (when it got the trigger tag) and "
            "this scheduler's start",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.labeled_to_finalized = Histogram(
            "occupancy_scheduler_labeled_to_finalized_seconds",
            "Per launched dataset version: from its newest labels being written (the labeling tools' "
            "labeled_at property) to its finalize; the first stage of the loop",
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
