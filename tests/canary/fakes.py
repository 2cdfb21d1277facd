"""In-memory stand-ins for the controller's OWN collaborators in unit tests: the model registry (the
same transition rules as training/registry.py, without ClearML), serving (records configurations)
and a Prometheus query function answering per arm. Integration tests use the real ones."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from services.canary.reconcile import ArmSpec
from training.registry import CanaryState, RegistryState, TransitionRefused


class FakeRegistry:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.state = RegistryState()
        self.log: list[tuple[RegistryState, str]] = []
        self.on_read: Callable[[], None] | None = None

    # the generic CAS entry point
    def read(self) -> RegistryState:
        if self.on_read:
            self.on_read()
        return self.state.copy()

    def transition(self, change, reason: str) -> RegistryState:
        new = change(self.state.copy())
        if new is None:
            return self.state.copy()
        new.generation = self.state.generation + 1
        new.updated_at = self.clock()
        assert not new.problems(), new.problems()
        self.state = new
        self.log.append((new.copy(), reason))
        return new.copy()

    def history(self, limit: int = 50) -> list[tuple[RegistryState, str]]:
        return list(reversed(self.log))[:limit]

    # test set-up: submitted models
    def submit(self, model_id: str) -> RegistryState:
        def change(s: RegistryState) -> RegistryState:
            s.versions[model_id] = max(s.versions.values(), default=0) + 1
            if s.champion is None:
                s.champion, s.states[model_id] = model_id, "champion"
            else:
                s.candidates.append(model_id)
                s.states[model_id] = "candidate"
            return s

        return self.transition(change, f"submit {model_id}")

    # the named transitions the controller and the CLI use
    def start_canary(self, model_id: str, weight: float, now: float) -> RegistryState:
        def change(s: RegistryState) -> RegistryState | None:
            if s.states.get(model_id) == "canary":
                return None
            if s.canary is not None or s.states.get(model_id) != "candidate":
                raise TransitionRefused(f"cannot start {model_id}")
            s.candidates.remove(model_id)
            s.canary = CanaryState(model_id, 0, weight, now, now)
            s.states[model_id] = "canary"
            return s

        return self.transition(change, f"start canary {model_id}")

    def update_canary(self, model_id: str, **changes: Any) -> RegistryState:
        def change(s: RegistryState) -> RegistryState | None:
            if s.canary is None or s.canary.model_id != model_id:
                raise TransitionRefused(f"{model_id} is not the canary")
            updated = replace(s.canary, **changes)
            if updated == s.canary:
                return None
            s.canary = updated
            return s

        return self.transition(change, f"update canary {model_id}: {changes}")

    def promote(self, model_id: str, reason: str) -> RegistryState:
        def change(s: RegistryState) -> RegistryState | None:
            if s.champion == model_id:
                return None
            if s.canary is None or s.canary.model_id != model_id:
                raise TransitionRefused(f"{model_id} is not the canary")
            s.canary = None
            if s.champion:
                s.states[s.champion] = "former-champion"
                s.former.insert(0, s.champion)
            s.champion = model_id
            s.states[model_id] = "champion"
            s.reasons[model_id] = reason
            return s

        return self.transition(change, f"promote {model_id}: {reason}")

    def rollback(self, model_id: str, reason: str) -> RegistryState:
        def change(s: RegistryState) -> RegistryState | None:
            current = s.states.get(model_id)
            if current == "rolled-back":
                return None
            if current == "canary":
                s.canary = None
            elif current == "candidate":
                s.candidates.remove(model_id)
            else:
                raise TransitionRefused(f"{model_id} is {current}")
            s.states[model_id] = "rolled-back"
            s.reasons[model_id] = reason
            return s

        return self.transition(change, f"rollback {model_id}: {reason}")


class FakeServing:
    def __init__(self) -> None:
        self.config: tuple[ArmSpec | None, ArmSpec | None, float] | None = None
        self.writes: list[tuple[ArmSpec | None, ArmSpec | None, float]] = []
        self.fail: Exception | None = None

    def apply(self, champion: ArmSpec | None, canary: ArmSpec | None, canary_weight: float) -> bool:
        if self.fail:
            raise self.fail
        wanted = (champion, canary, canary_weight)
        if wanted == self.config:
            return False
        self.config = wanted
        self.writes.append(wanted)
        return True


@dataclass
class ArmTraffic:
    requests: float = 100.0
    errors: float = 0.0
    p95: float = 0.004
    buckets: dict[float, float] = field(default_factory=dict)
    correct: float = 0.0
    """Labeled readings predicted right that arrived in the window (``POST /feedback/``)."""
    wrong: float = 0.0


BOUNDS = [round(0.05 * i, 2) for i in range(1, 21)] + [math.inf]


def buckets(per_bin: list[float]) -> dict[float, float]:
    per_bin = per_bin + [0.0] * (len(BOUNDS) - len(per_bin))
    out, total = {}, 0.0
    for bound, count in zip(BOUNDS, per_bin, strict=True):
        total += count
        out[bound] = total
    return out


HEALTHY = buckets([300, 40, 10, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 10, 40, 200])
SKEWED = buckets([30, 10, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 10, 100, 500])


class FakePrometheus:
    """``query(promql)``: answers the analysis queries from per-arm traffic (by arm and window)."""

    def __init__(self) -> None:
        self.arms: dict[str, ArmTraffic] = {"champion": ArmTraffic(), "canary": ArmTraffic()}
        self.by_window: dict[tuple[str, int], ArmTraffic] = {}
        self.queries: list[str] = []
        self.fail: Exception | None = None

    def __call__(self, promql: str) -> list[tuple[dict[str, str], float]]:
        if self.fail:
            raise self.fail
        self.queries.append(promql)
        arm = re.search(r'arm="(\w+)"', promql).group(1)  # type: ignore[union-attr]
        window = int(re.search(r"\[(\d+)s\]", promql).group(1))  # type: ignore[union-attr]
        t = self.by_window.get((arm, window), self.arms[arm])
        if "feedback_total" in promql:
            return [({"correct": k}, v) for k, v in (("true", t.correct), ("false", t.wrong)) if v]
        if "feedback_requests_total" in promql:  # one label per post, as the replay client sends
            return [({}, t.correct + t.wrong)] if t.correct + t.wrong else []
        if "requests_total" in promql:
            return [({}, t.requests)]
        if "errors_total" in promql:
            return [({}, t.errors)] if t.errors else []
        if "duration_seconds" in promql:
            return [({}, t.p95)]
        data = t.buckets or HEALTHY
        scale = t.requests / 100
        return [({"le": "+Inf" if le == math.inf else str(le)}, v * scale) for le, v in data.items()]
