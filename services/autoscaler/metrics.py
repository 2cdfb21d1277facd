"""Prometheus metrics of the autoscaler (``/metrics``), in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AutoscalerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "occupancy_autoscaler_polls", "Autoscaling passes, by outcome", ["outcome"], registry=r
        )
        self.failures = Counter(
            "occupancy_autoscaler_failures",
            "Pools a pass could not settle, by pool and by what failed (clearml or kubernetes)",
            ["pool", "stage"],
            registry=r,
        )
        self.queued = Gauge(
            "occupancy_autoscaler_queued_tasks", "Tasks waiting in the pool's queue", ["pool"], registry=r
        )
        self.workers = Gauge(
            "occupancy_autoscaler_workers",
            "Agents serving the pool's queue, busy or idle",
            ["pool", "state"],
            registry=r,
        )
        self.replicas = Gauge(
            "occupancy_autoscaler_replicas", "Replicas of the pool's Deployment", ["pool"], registry=r
        )
        self.desired = Gauge(
            "occupancy_autoscaler_desired_replicas",
            "Replicas the last pass decided for the pool",
            ["pool"],
            registry=r,
        )
        self.scalings = Counter(
            "occupancy_autoscaler_scalings",
            "Scale changes, by pool and direction",
            ["pool", "direction"],
            registry=r,
        )
        self.poll_duration = Histogram(
            "occupancy_autoscaler_poll_duration_seconds", "Duration of one pass", registry=r
        )
        self.last_success = Gauge(
            "occupancy_autoscaler_last_successful_poll_timestamp_seconds",
            "Unix time of the last pass that settled every pool",
            registry=r,
        )
