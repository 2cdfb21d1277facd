"""Prometheus metrics of the canary controller (``/metrics``), in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.canary.analysis import CHECKS

STAGE_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
STATES = ("idle", "canary", "paused")


class CanaryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "occupancy_canary_polls", "Reconciliation passes, by outcome (ok, error)", ["outcome"], registry=r
        )
        self.failures = Counter(
            "occupancy_canary_failures",
            "Failed calls, by stage (registry, serving, prometheus); retried on the next pass",
            ["stage"],
            registry=r,
        )
        self.state = Gauge(
            "occupancy_canary_state",
            "1 for the controller's current state (idle: no canary; canary: rolling out; paused)",
            ["state"],
            registry=r,
        )
        for state in STATES:
            self.state.labels(state=state).set(0)
        self.registry_models = Gauge(
            "occupancy_canary_registry_models",
            "Models the model registry holds in each state (candidate, canary, champion, "
            "former-champion, rejected by the gate, rolled-back), as of the last pass",
            ["state"],
            registry=r,
        )
        self.weight = Gauge("occupancy_canary_weight", "Traffic share of the canary arm, 0..1", registry=r)
        self.step = Gauge(
            "occupancy_canary_step", "Index of the canary's weight step (-1: no canary)", registry=r
        )
        self.canary_version = Gauge(
            "occupancy_canary_model_version", "Registry version of the canary model (0: none)", registry=r
        )
        self.champion_version = Gauge(
            "occupancy_canary_champion_model_version",
            "Registry version of the champion (0: none)",
            registry=r,
        )
        self.decisions = Counter(
            "occupancy_canary_decisions",
            "Decisions taken: start, step, promote, rollback, superseded, pass, fail, "
            "wait (not enough traffic)",
            ["decision"],
            registry=r,
        )
        self.checks = Counter(
            "occupancy_canary_checks",
            "Analysis checks, by check and result (passed, failed, no_data, skipped)",
            ["check", "result"],
            registry=r,
        )
        for check in CHECKS:
            for result in ("passed", "failed", "no_data", "skipped"):
                self.checks.labels(check=check, result=result)
        self.check_value = Gauge(
            "occupancy_canary_check_value",
            "Value measured by the last analysis, by check",
            ["check"],
            registry=r,
        )
        self.check_threshold = Gauge(
            "occupancy_canary_check_threshold",
            "Threshold of the last analysis, by check",
            ["check"],
            registry=r,
        )
        self.promotions = Counter(
            "occupancy_canary_promotions",
            "Canaries promoted to champion, by cause (analysis; manual or other: seen in the registry)",
            ["cause"],
            registry=r,
        )
        self.rollbacks = Counter(
            "occupancy_canary_rollbacks",
            "Models rolled back, by cause (analysis, superseded; manual or other: seen in the registry)",
            ["cause"],
            registry=r,
        )
        self.serving_writes = Counter(
            "occupancy_canary_serving_writes",
            "Serving configurations written because serving differed from the registry",
            registry=r,
        )
        self.stage_duration = Histogram(
            "occupancy_canary_stage_duration_seconds",
            "Loop stage durations: published_to_canary (gate published → canary deployed), "
            "canary_to_promoted and canary_to_rolled_back (canary deployed → decision)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.stage_timestamp = Gauge(
            "occupancy_canary_stage_timestamp_seconds",
            "Unix time a model version reached a stage (canary_live, promoted, rolled_back)",
            ["model_version", "stage"],
            registry=r,
        )
        self.last_success = Gauge(
            "occupancy_canary_last_successful_poll_timestamp_seconds",
            "Unix time of the last pass that read the registry and applied serving",
            registry=r,
        )
        self.poll_duration = Histogram(
            "occupancy_canary_poll_duration_seconds", "Duration of one pass", registry=r
        )
