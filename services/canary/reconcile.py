"""One pass of the canary controller: read the registry, decide, apply. Level-triggered.

The model registry (``training/registry.py``) is the only state: which model is champion, which is
the canary, at which step and weight, with how many passing and failed analyses, paused or not. A
pass does, in this order:

1. **Start**: no canary and candidates waiting → the newest candidate becomes the canary at
   ``steps[0]`` (older waiting ones are rolled back as "superseded").
2. **Serve**: the serving configuration is recomputed from the state and written when it differs
   (``apply_arms``). Every pass, whatever happened before: a promote or rollback is one registry
   event, and serving follows it on the next pass at the latest, also after a crash or a manual
   transition made with the CLI. Nothing can be "stuck promoting".
3. **Judge** (canary not paused, one analysis interval after the step started and serving settled,
   or after the last registry event that changed the canary, whichever is later): the canary against
   the champion over the traffic since then (``analysis.py``). Pass → ``passes + 1``; at
   ``passes_per_step`` → next step (weight), or promote after the last step. Fail → ``failures + 1``
   (passes back to 0); at ``failure_threshold`` → rollback with the failing checks in the reason.
   Not enough traffic → nothing is written; the next pass tries again over a window grown by the
   time passed, until enough requests are in it.

Each decision is ONE registry transition, written only if the canary is still exactly as judged
(a compare-and-set on the registry's own CAS loop): a concurrent pause, manual promote/rollback or a
second controller make a stale decision a no-op instead of overwriting theirs. A controller killed at
any point finds the same state on restart and carries on; timestamps come from the registry.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from services.canary.analysis import AnalysisInput, Query, Verdict, collect, judge
from services.canary.metrics import CanaryMetrics
from services.canary.settings import CanarySettings
from training.registry import STATES as REGISTRY_STATES
from training.registry import CanaryState, RegistryState, TransitionRefused

log = logging.getLogger("occupancy.canary")


class Registry(Protocol):
    """What the controller needs of :class:`training.registry.ModelRegistry`."""

    def read(self) -> RegistryState: ...

    def transition(
        self, change: Callable[[RegistryState], RegistryState | None], reason: str
    ) -> RegistryState: ...

    def start_canary(self, model_id: str, weight: float, now: float) -> RegistryState: ...

    def promote(self, model_id: str, reason: str) -> RegistryState: ...

    def rollback(self, model_id: str, reason: str) -> RegistryState: ...


@dataclass(frozen=True)
class ArmSpec:
    model_id: str
    model_version: str


class Serving(Protocol):
    """Writes the serving configuration (``services.serving.deploy.apply_arms``); True when it wrote."""

    def apply(self, champion: ArmSpec | None, canary: ArmSpec | None, canary_weight: float) -> bool: ...


@dataclass
class PassResult:
    """What one pass saw and did (also printed by ``canary once``)."""

    generation: int = 0
    champion: str | None = None
    canary: str | None = None
    weight: float = 0.0
    decisions: list[str] = field(default_factory=list)
    serving_written: bool = False
    verdict: str | None = None
    errors: list[str] = field(default_factory=list)


def version_label(state: RegistryState, model_id: str) -> str:
    """The ``model_version`` label serving gives a model: its registry version number."""
    version = state.versions.get(model_id)
    return str(version) if version is not None else "none"


def desired_arms(state: RegistryState) -> tuple[ArmSpec | None, ArmSpec | None, float]:
    """The serving configuration the state asks for: champion, canary, canary weight."""
    champion = ArmSpec(state.champion, version_label(state, state.champion)) if state.champion else None
    if state.canary is None:
        return champion, None, 0.0
    canary = ArmSpec(state.canary.model_id, version_label(state, state.canary.model_id))
    return champion, canary, float(state.canary.weight)


class PrometheusAnalyzer:
    """Collects both arms' numbers for one analysis from a Prometheus HTTP API (any ``Query``)."""

    def __init__(self, query: Query, settings: CanarySettings) -> None:
        self.query = query
        self.settings = settings

    def collect(self, state: RegistryState, now: float, window: int) -> AnalysisInput:
        """Both arms over the last ``window`` seconds (the champion over a longer baseline if idle)."""
        assert state.canary is not None
        s = self.settings
        canary = collect(
            self.query, s.endpoint, "canary", version_label(state, state.canary.model_id), window
        )
        if not state.champion:
            return AnalysisInput(canary, None)
        champion_version = version_label(state, state.champion)
        champion = collect(self.query, s.endpoint, "champion", champion_version, window)
        if champion.requests >= s.min_requests:
            return AnalysisInput(canary, champion, champion_labels=champion.labels)
        # the champion had (almost) no traffic in the window, e.g. at a 100 % step: its error ratio and
        # latency since the canary started (at the earlier steps) are the reference
        since_start = max(window, math.ceil(now - state.canary.started_at))
        baseline = collect(self.query, s.endpoint, "champion", champion_version, since_start)
        return AnalysisInput(
            canary,
            None,
            baseline if baseline.requests >= s.min_requests else None,
            champion_labels=champion.labels,  # its delayed labels still arrive in the window
        )


class Reconciler:
    def __init__(
        self,
        registry: Registry,
        serving: Serving,
        analyzer: PrometheusAnalyzer | Any,
        settings: CanarySettings,
        metrics: CanaryMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.serving = serving
        self.analyzer = analyzer
        self.settings = settings
        self.metrics = metrics or CanaryMetrics()
        self.clock = clock
        self._waiting: tuple[str, int, float] | None = None
        """The analysis that last had not enough traffic (only to log that once)."""
        self._since: tuple[CanaryState, float] | None = None
        self._applied = False
        self._seen_canary: str | None = None
        self._ended_by_me: str | None = None
        """For the metrics only: which canary the last pass saw, and the last one this process ended."""
        self.last_verdict: Verdict | None = None

    # ------------------------------------------------------------------ helpers
    def _decide(self, result: PassResult, decision: str, message: str, *args: Any) -> None:
        self.metrics.decisions.labels(decision=decision).inc()
        result.decisions.append(decision)
        log.info(message, *args)

    def step_weight(self, step: int) -> float:
        steps = self.settings.steps
        return steps[min(max(step, 0), len(steps) - 1)]

    def is_last_step(self, canary: CanaryState) -> bool:
        return canary.step >= len(self.settings.steps) - 1

    def analysis_since(self, state: RegistryState) -> float:
        """Start of the next analysis window: ``serving_settle_seconds`` after the step's start, or the
        last registry event that changed the canary (a judged analysis writes one; so do a pause and a
        resume), whichever is later.

        The registry records when its last event of any kind happened (``updated_at``), not which one
        last touched the canary: a pass that saw the same canary before keeps the time it computed
        then, so an unrelated event (the gate submitting a candidate) does not restart the window. A
        freshly started controller takes ``updated_at``: at worst one analysis comes an interval late.
        """
        canary = state.canary
        assert canary is not None
        if self._since is not None and self._since[0] == canary:
            return self._since[1]
        since = max(canary.step_started_at + self.settings.serving_settle_seconds, state.updated_at)
        self._since = (canary, since)
        return since

    def analysis_due_at(self, state: RegistryState) -> float:
        """One analysis interval after :meth:`analysis_since`."""
        return self.analysis_since(state) + self.settings.analysis_interval_seconds

    def analysis_window(self, state: RegistryState, now: float) -> int:
        """Whole seconds from :meth:`analysis_since` to now, at least one interval: after "not enough
        traffic" the window grows on every pass until enough requests are in it."""
        seconds = max(self.settings.analysis_interval_seconds, now - self.analysis_since(state))
        return max(1, math.ceil(seconds - 1e-6))

    def _guarded(
        self, judged: CanaryState, **changes: Any
    ) -> Callable[[RegistryState], RegistryState | None]:
        """A transition changing the canary's progress only if it is still exactly as judged;
        ``self._applied`` says afterwards whether it did (the registry calls it again on every retry)."""
        self._applied = False

        def change(state: RegistryState) -> RegistryState | None:
            self._applied = False
            if state.canary != judged:
                log.info("canary changed while it was judged (now %s): decision dropped", state.canary)
                return None
            state.canary = replace(state.canary, **changes)
            self._applied = True
            return state

        return change

    def _still(self, judged: CanaryState) -> RegistryState | None:
        """The current state if the canary is still exactly as judged, else None (decision dropped).

        Promote and rollback are the registry's own transitions, which do not know what was judged:
        this read right before them narrows a race with a pause or a second controller to
        milliseconds (the registry keeps the states consistent either way)."""
        current = self.registry.read()
        if current.canary != judged:
            log.info("canary changed while it was judged (now %s): decision dropped", current.canary)
            return None
        return current

    # ------------------------------------------------------------------ the pass
    def poll(self) -> PassResult:
        """One pass. Raises whatever the registry raises when it cannot be read (the next pass retries)."""
        result = PassResult()
        state = self.registry.read()
        self._observe_external_end(state)
        state = self._start(state, result)
        self._serve(state, result)
        canary = state.canary
        # every pass, paused or not: analysis_since remembers the canary as this pass saw it
        due = self.analysis_due_at(state) if canary is not None else math.inf
        if canary is not None and not canary.paused and self.clock() >= due:
            judged = self._judge(state, result)
            if judged is not None and judged.generation != state.generation:
                state = judged
                self._serve(state, result)
        self._observe(state, result)
        return result

    def _start(self, state: RegistryState, result: PassResult) -> RegistryState:
        if state.canary is not None or not state.candidates:
            return state
        newest = state.candidates[-1]
        version = version_label(state, newest)
        try:
            for older in state.candidates[:-1]:
                reason = f"superseded by {newest} (version {version}) before its canary started"
                state = self.registry.rollback(older, reason)
                self.metrics.rollbacks.labels(cause="superseded").inc()
                self._decide(result, "superseded", "rolled back candidate %s: %s", older, reason)
            now = self.clock()
            state = self.registry.start_canary(newest, self.step_weight(0), now)
        except TransitionRefused as exc:  # another controller or a person got there first
            log.info("start of canary %s refused (%s); re-reading the registry", newest, exc)
            return self.registry.read()
        if state.canary is not None and state.canary.model_id == newest:
            self.metrics.stage_timestamp.labels(model_version=version, stage="canary_live").set(
                state.canary.started_at
            )
            self._observe_published(state, newest)
            self._decide(
                result,
                "start",
                "canary started: model %s (version %s) at %.0f %% of the traffic",
                newest,
                version,
                state.canary.weight * 100,
            )
        return state

    def _observe_published(self, state: RegistryState, model_id: str) -> None:
        """published → canary: from the registry event that made ``model_id`` a candidate."""
        history = getattr(self.registry, "history", None)
        if history is None or state.canary is None:
            return
        try:
            events = history(50)
        except Exception as exc:  # only a metric: never fail the pass for it
            log.debug("no registry history for the published time of %s: %s", model_id, exc)
            return
        published = [s.updated_at for s, _ in events if s.states.get(model_id) == "candidate"]
        if published:
            self.metrics.stage_duration.labels(stage="published_to_canary").observe(
                max(0.0, state.canary.started_at - min(published))
            )

    def _serve(self, state: RegistryState, result: PassResult) -> None:
        champion, canary, weight = desired_arms(state)
        try:
            wrote = self.serving.apply(champion, canary, weight)
        except Exception as exc:  # deploy talks to ClearML: retried on the next pass
            self.metrics.failures.labels(stage="serving").inc()
            result.errors.append(f"serving: {exc}")
            log.warning("could not apply the serving configuration: %s", exc)
            return
        if wrote:
            result.serving_written = True
            self.metrics.serving_writes.inc()
            log.info(
                "serving configured: champion %s, canary %s at %.0f %%",
                f"{champion.model_id} (v{champion.model_version})" if champion else "none",
                f"{canary.model_id} (v{canary.model_version})" if canary else "none",
                weight * 100,
            )

    def _judge(self, state: RegistryState, result: PassResult) -> RegistryState | None:
        canary = state.canary
        assert canary is not None
        now = self.clock()
        try:
            window = self.analysis_window(state, now)
            verdict = judge(self.analyzer.collect(state, now, window), self.settings)
        except Exception as exc:  # Prometheus down or refusing: no decision, the next pass retries
            self.metrics.failures.labels(stage="prometheus").inc()
            result.errors.append(f"prometheus: {exc}")
            log.warning("canary analysis failed: %s", exc)
            return None
        self.last_verdict = verdict
        result.verdict = verdict.summary()
        self._count_checks(verdict)
        version = version_label(state, canary.model_id)
        at = f"step {canary.step + 1}/{len(self.settings.steps)} ({canary.weight:.0%})"
        if verdict.passed is None:
            key = (canary.model_id, canary.step, self.analysis_since(state))
            if key != self._waiting:  # once per window start; then the window grows pass by pass
                self._waiting = key
                self._decide(result, "wait", "canary v%s at %s: %s", version, at, verdict.summary())
            else:
                self.metrics.decisions.labels(decision="wait").inc()
                result.decisions.append("wait")
            return None
        try:
            if verdict.passed:
                return self._passed(state, canary, verdict, result, version, at, now)
            return self._failed(state, canary, verdict, result, version, at)
        except TransitionRefused as exc:
            log.info("decision on canary %s refused (%s)", canary.model_id, exc)
            return None

    def _passed(
        self,
        state: RegistryState,
        canary: CanaryState,
        verdict: Verdict,
        result: PassResult,
        version: str,
        at: str,
        now: float,
    ) -> RegistryState:
        passes = canary.passes + 1
        self._decide(result, "pass", "canary v%s at %s: analysis %s", version, at, verdict.summary())
        if passes < self.settings.passes_per_step:
            reason = f"analysis passed at {at} ({passes}/{self.settings.passes_per_step})"
            return self.registry.transition(
                self._guarded(canary, passes=passes, last_reason=reason),
                f"canary {canary.model_id}: {reason}",
            )
        if self.is_last_step(canary):
            reason = f"canary passed every step up to {canary.weight:.0%}: {verdict.summary()}"
            current = self._still(canary)
            if current is None:
                return state
            new = self.registry.promote(canary.model_id, reason)
            if new.champion == canary.model_id:
                self.metrics.promotions.labels(cause="analysis").inc()
                self._ended_by_me = canary.model_id
                self.metrics.stage_duration.labels(stage="canary_to_promoted").observe(
                    max(0.0, now - canary.started_at)
                )
                self.metrics.stage_timestamp.labels(model_version=version, stage="promoted").set(now)
                self._decide(
                    result, "promote", "promoted model %s (version %s): %s", canary.model_id, version, reason
                )
            return new
        step = canary.step + 1
        weight = self.step_weight(step)
        reason = f"analysis passed at {at}: next step {step + 1} at {weight:.0%}"
        new = self.registry.transition(
            self._guarded(
                canary,
                step=step,
                weight=weight,
                step_started_at=now,
                passes=0,
                failures=0,
                last_reason=reason,
            ),
            f"canary {canary.model_id}: {reason}",
        )
        if self._applied:
            self._decide(result, "step", "canary v%s: %s", version, reason)
        return new

    def _failed(
        self,
        state: RegistryState,
        canary: CanaryState,
        verdict: Verdict,
        result: PassResult,
        version: str,
        at: str,
    ) -> RegistryState:
        failures = canary.failures + 1
        failing = "; ".join(c.describe() for c in verdict.failed)
        self._decide(
            result,
            "fail",
            "canary v%s at %s: analysis failed (%d/%d): %s",
            version,
            at,
            failures,
            self.settings.failure_threshold,
            failing,
        )
        if failures < self.settings.failure_threshold:
            reason = f"analysis failed at {at} ({failures}/{self.settings.failure_threshold}): {failing}"
            return self.registry.transition(
                self._guarded(canary, failures=failures, passes=0, last_reason=reason),
                f"canary {canary.model_id}: {reason}",
            )
        reason = f"canary failed {failures} analyses at {at}: {failing}"
        if self._still(canary) is None:
            return state
        new = self.registry.rollback(canary.model_id, reason)
        if new.states.get(canary.model_id) == "rolled-back":
            now = self.clock()
            self.metrics.rollbacks.labels(cause="analysis").inc()
            self._ended_by_me = canary.model_id
            self.metrics.stage_duration.labels(stage="canary_to_rolled_back").observe(
                max(0.0, now - canary.started_at)
            )
            self.metrics.stage_timestamp.labels(model_version=version, stage="rolled_back").set(now)
            self._decide(
                result, "rollback", "rolled back model %s (version %s): %s", canary.model_id, version, reason
            )
        return new

    # ------------------------------------------------------------------ observation
    def _observe_external_end(self, state: RegistryState) -> None:
        """Count a canary promoted or rolled back by someone else (``canary promote|rollback`` or
        another controller) since the last pass, so the metrics show every outcome."""
        seen = self._seen_canary
        if seen is None or (state.canary is not None and state.canary.model_id == seen):
            return
        self._seen_canary = None
        if seen == self._ended_by_me:
            return
        outcome = state.states.get(seen)
        reason = state.reasons.get(seen, "")
        cause = "manual" if reason.startswith("manual:") else "other"
        version = version_label(state, seen)
        if outcome == "champion":
            self.metrics.promotions.labels(cause=cause).inc()
            self.metrics.stage_timestamp.labels(model_version=version, stage="promoted").set(state.updated_at)
        elif outcome == "rolled-back":
            self.metrics.rollbacks.labels(cause=cause).inc()
            self.metrics.stage_timestamp.labels(model_version=version, stage="rolled_back").set(
                state.updated_at
            )
        log.info(
            "canary %s (version %s) ended outside this controller: %s (%s)", seen, version, outcome, reason
        )

    def _count_checks(self, verdict: Verdict) -> None:
        for check in verdict.checks:
            self.metrics.checks.labels(check=check.name, result=check.result).inc()
            if not math.isnan(check.value):
                self.metrics.check_value.labels(check=check.name).set(check.value)
            if not math.isnan(check.threshold):
                self.metrics.check_threshold.labels(check=check.name).set(check.threshold)

    def _observe(self, state: RegistryState, result: PassResult) -> None:
        result.generation = state.generation
        result.champion = state.champion
        canary = state.canary
        self._seen_canary = canary.model_id if canary else None
        result.canary = canary.model_id if canary else None
        result.weight = canary.weight if canary else 0.0
        current = "idle" if canary is None else ("paused" if canary.paused else "canary")
        for name in ("idle", "canary", "paused"):
            self.metrics.state.labels(state=name).set(1 if name == current else 0)
        self.metrics.weight.set(result.weight)
        self.metrics.step.set(canary.step if canary else -1)
        self.metrics.canary_version.set(state.versions.get(canary.model_id, 0) if canary else 0)
        self.metrics.champion_version.set(state.versions.get(state.champion, 0) if state.champion else 0)
        held = Counter(state.states.values())
        for name in REGISTRY_STATES:  # the gate's rejections show here (its steps export nothing)
            self.metrics.registry_models.labels(state=name).set(held.get(name, 0))
