"""Decisions of one reconciliation pass, with in-memory stand-ins for the registry, serving and
Prometheus (their real counterparts are in the integration flows)."""

from __future__ import annotations

import pytest

from services.canary.metrics import CanaryMetrics
from services.canary.reconcile import ArmSpec, PrometheusAnalyzer, Reconciler
from services.canary.settings import CanarySettings
from tests.canary.fakes import SKEWED, ArmTraffic, FakePrometheus, FakeRegistry, FakeServing

INTERVAL = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def world():
    clock = Clock()
    registry = FakeRegistry(clock)
    serving = FakeServing()
    prom = FakePrometheus()
    registry.submit("champ")
    return clock, registry, serving, prom


def controller(world, **overrides) -> Reconciler:
    clock, registry, serving, prom = world
    overrides = {"serving_settle_seconds": 0, **overrides}
    settings = CanarySettings(analysis_interval_seconds=INTERVAL, min_requests=30, **overrides)
    return Reconciler(registry, serving, PrometheusAnalyzer(prom, settings), settings, CanaryMetrics(), clock)


def metric(rec: Reconciler, name: str, **labels: str) -> float | None:
    return rec.metrics.registry.get_sample_value(name, labels)


def test_idle_controller_serves_the_champion_only(world):
    _, _registry, serving, prom = world
    rec = controller(world)
    result = rec.poll()
    assert serving.config == (ArmSpec("champ", "1"), None, 0.0)
    assert result.serving_written and result.decisions == []
    assert not rec.poll().serving_written, "same state: nothing written again"
    assert prom.queries == [], "no canary: nothing to analyse"
    assert metric(rec, "occupancy_canary_state", state="idle") == 1


def test_newest_candidate_starts_at_the_first_step_and_older_ones_are_superseded(world):
    clock, registry, serving, _ = world
    registry.submit("old")
    registry.submit("new")
    rec = controller(world)
    result = rec.poll()
    state = registry.state
    assert state.canary is not None and state.canary.model_id == "new"
    assert (state.canary.step, state.canary.weight, state.canary.started_at) == (0, 0.10, clock.now)
    assert state.states["old"] == "rolled-back"
    assert "superseded by new (version 3)" in state.reasons["old"]
    assert result.decisions == ["superseded", "start"]
    assert serving.config == (ArmSpec("champ", "1"), ArmSpec("new", "3"), 0.10), "deployed in the same pass"
    assert metric(rec, "occupancy_canary_rollbacks_total", cause="superseded") == 1
    assert metric(rec, "occupancy_canary_weight") == pytest.approx(0.10)
    assert metric(rec, "occupancy_canary_stage_duration_seconds_count", stage="published_to_canary") == 1


def test_a_good_canary_walks_every_step_then_is_promoted(world):
    clock, registry, serving, prom = world
    registry.submit("good")
    rec = controller(world)
    rec.poll()
    weights = [registry.state.canary.weight]
    for _ in range(20):
        clock.advance(INTERVAL - 1)
        assert rec.poll().decisions == [], "not yet due"
        clock.advance(1)
        result = rec.poll()
        if registry.state.canary is None:
            break
        assert result.decisions == ["pass", "step"]
        assert registry.state.canary.step_started_at == clock.now
        assert serving.config[2] == registry.state.canary.weight, "the new weight is served at once"
        weights.append(registry.state.canary.weight)
    assert weights == [0.10, 0.25, 0.50, 1.00]
    assert result.decisions == ["pass", "promote"]
    assert registry.state.champion == "good" and registry.state.former == ["champ"]
    assert "passed every step up to 100%" in registry.state.reasons["good"]
    assert serving.config == (ArmSpec("good", "2"), None, 0.0)
    assert metric(rec, "occupancy_canary_promotions_total", cause="analysis") == 1
    rec.poll()
    assert metric(rec, "occupancy_canary_promotions_total", cause="manual") is None, "counted once"
    assert metric(rec, "occupancy_canary_checks_total", check="shift", result="passed") == 4
    assert (
        metric(rec, "occupancy_canary_stage_duration_seconds_sum", stage="canary_to_promoted") == 4 * INTERVAL
    )
    assert metric(rec, "occupancy_canary_state", state="idle") == 1
    assert all('model_version="2"' in q for q in prom.queries if 'arm="canary"' in q)
    assert all('model_version="1"' in q for q in prom.queries if 'arm="champion"' in q)


def test_failing_analyses_roll_back_at_the_threshold_with_the_reason(world):
    clock, registry, serving, prom = world
    registry.submit("bad")
    rec = controller(world)
    rec.poll()
    prom.arms["canary"] = ArmTraffic(requests=100, errors=40)
    clock.advance(INTERVAL)
    assert rec.poll().decisions == ["fail"]
    canary = registry.state.canary
    assert (canary.failures, canary.passes, canary.weight) == (1, 0, 0.10), "one failure: weight kept"
    assert "error_ratio=0.4" in canary.last_reason
    clock.advance(INTERVAL)
    assert rec.poll().decisions == ["fail", "rollback"]
    state = registry.state
    assert state.canary is None and state.states["bad"] == "rolled-back"
    assert (
        "failed 2 analyses" in state.reasons["bad"]
        and "error_ratio=0.4 (threshold 0.05)" in state.reasons["bad"]
    )
    assert serving.config == (ArmSpec("champ", "1"), None, 0.0), "serving back to the champion at once"
    assert metric(rec, "occupancy_canary_rollbacks_total", cause="analysis") == 1
    assert metric(rec, "occupancy_canary_checks_total", check="error_ratio", result="failed") == 2
    # the registry's states as the dashboard sees them: one champion, one model rolled back
    rec.poll()
    assert metric(rec, "occupancy_canary_registry_models", state="rolled-back") == 1
    assert metric(rec, "occupancy_canary_registry_models", state="champion") == 1
    assert metric(rec, "occupancy_canary_registry_models", state="canary") == 0


def test_a_skewed_prediction_distribution_is_rolled_back(world):
    clock, registry, _, prom = world
    registry.submit("skewed")
    rec = controller(world)
    rec.poll()
    prom.arms["canary"] = ArmTraffic(buckets=SKEWED)
    for _ in range(2):
        clock.advance(INTERVAL)
        rec.poll()
    assert registry.state.states["skewed"] == "rolled-back"
    assert "shift=" in registry.state.reasons["skewed"], registry.state.reasons["skewed"]


def test_a_pass_after_a_failure_moves_on_and_passes_restart_after_a_failure(world):
    clock, registry, _, prom = world
    registry.submit("flaky")
    rec = controller(world, passes_per_step=2)
    rec.poll()
    clock.advance(INTERVAL)
    rec.poll()
    assert registry.state.canary.passes == 1
    prom.arms["canary"] = ArmTraffic(errors=50)
    clock.advance(INTERVAL)
    rec.poll()
    assert (registry.state.canary.passes, registry.state.canary.failures) == (0, 1)
    prom.arms["canary"] = ArmTraffic()
    for _ in range(2):
        clock.advance(INTERVAL)
        rec.poll()
    assert (registry.state.canary.step, registry.state.canary.failures) == (1, 0)


def test_not_enough_traffic_writes_nothing_and_the_window_grows_until_there_is(world):
    clock, registry, _, prom = world
    registry.submit("quiet")
    rec = controller(world)
    rec.poll()
    generation = registry.state.generation
    prom.arms["canary"] = ArmTraffic(requests=5)
    clock.advance(INTERVAL)
    result = rec.poll()
    assert result.decisions == ["wait"] and "not enough traffic" in (result.verdict or "")
    assert "5 requests in 30 s" in (result.verdict or "")
    assert registry.state.generation == generation, "nothing written"
    clock.advance(1.5)
    assert rec.poll().decisions == ["wait"]
    assert any('arm="canary"' in q and "[32s]" in q for q in prom.queries), "the window grew"
    prom.by_window[("canary", 34)] = ArmTraffic(requests=40)
    clock.advance(2)
    assert rec.poll().decisions == ["pass", "step"]
    assert metric(rec, "occupancy_canary_decisions_total", decision="wait") == 2


def test_paused_canary_keeps_its_weight_and_is_not_judged(world):
    clock, registry, serving, prom = world
    registry.submit("held")
    rec = controller(world)
    rec.poll()
    registry.update_canary("held", paused=True)
    clock.advance(10 * INTERVAL)
    assert rec.poll().decisions == []
    assert prom.queries == []
    assert serving.config[2] == 0.10
    assert metric(rec, "occupancy_canary_state", state="paused") == 1
    registry.update_canary("held", paused=False)
    clock.advance(INTERVAL - 1)
    assert rec.poll().decisions == [], "a fresh interval after the resume"
    clock.advance(1)
    assert rec.poll().decisions == ["pass", "step"]


def test_a_decision_on_a_canary_that_changed_meanwhile_is_dropped(world):
    clock, registry, _, _prom = world
    registry.submit("raced")
    rec = controller(world)
    rec.poll()
    clock.advance(INTERVAL)

    real_collect = rec.analyzer.collect

    def collect_while_a_person_pauses(state, now, window):
        registry.update_canary("raced", paused=True, last_reason="manual: hold")
        return real_collect(state, now, window)

    rec.analyzer.collect = collect_while_a_person_pauses
    assert rec.poll().decisions == ["pass"], "judged, but the step was not taken (nor logged)"
    canary = registry.state.canary
    assert (canary.step, canary.paused, canary.last_reason) == (0, True, "manual: hold")


@pytest.mark.parametrize(("errors", "outcome"), [(0.0, "champion"), (60.0, "rolled-back")])
def test_a_promotion_or_rollback_of_a_canary_paused_meanwhile_is_dropped(world, errors, outcome):
    clock, registry, _, prom = world
    registry.submit("last")
    rec = controller(world, steps=[1.0], failure_threshold=1)
    rec.poll()
    prom.arms["champion"] = ArmTraffic(requests=0)
    prom.by_window[("champion", int(INTERVAL))] = ArmTraffic(requests=0)
    prom.arms["canary"] = ArmTraffic(errors=errors)
    clock.advance(INTERVAL)
    real_collect = rec.analyzer.collect

    def collect_while_a_person_pauses(state, now, window):
        registry.update_canary("last", paused=True, last_reason="manual: hold")
        return real_collect(state, now, window)

    rec.analyzer.collect = collect_while_a_person_pauses
    rec.poll()
    assert registry.state.states["last"] == "canary" and registry.state.canary.paused
    registry.update_canary("last", paused=False, last_reason="manual: go on")
    rec.analyzer.collect = real_collect
    clock.advance(INTERVAL)
    rec.poll()
    assert registry.state.states["last"] == outcome


def test_manual_transitions_and_drift_are_followed_by_serving(world):
    _clock, registry, serving, _ = world
    registry.submit("c")
    rec = controller(world)
    rec.poll()
    serving.config = (ArmSpec("champ", "1"), None, 0.0)  # someone edited serving by hand
    assert rec.poll().serving_written
    assert serving.config == (ArmSpec("champ", "1"), ArmSpec("c", "2"), 0.10)
    registry.rollback("c", "manual: wrong data")
    rec.poll()
    assert serving.config == (ArmSpec("champ", "1"), None, 0.0)
    assert metric(rec, "occupancy_canary_rollbacks_total", cause="manual") == 1, "seen and counted"
    registry.submit("d")
    rec.poll()
    registry.promote("d", "manual: urgent fix")
    rec.poll()
    rec.poll()
    assert serving.config == (ArmSpec("d", "3"), None, 0.0)
    assert metric(rec, "occupancy_canary_promotions_total", cause="manual") == 1


def test_the_last_step_compares_with_the_champion_since_the_canary_started(world):
    clock, registry, _, prom = world
    registry.submit("full")
    rec = controller(world, steps=[0.5, 1.0])
    rec.poll()
    clock.advance(INTERVAL)
    rec.poll()
    assert registry.state.canary.weight == 1.0
    prom.arms["champion"] = ArmTraffic(requests=0)  # no champion traffic at 100 %
    prom.by_window[("champion", 2 * int(INTERVAL))] = ArmTraffic(requests=500, p95=0.001)  # since start
    prom.arms["canary"] = ArmTraffic(p95=0.030, buckets=SKEWED)  # skewed, but compared before
    clock.advance(INTERVAL)
    assert rec.poll().decisions == ["fail"], "latency against the champion since the start"
    assert "p95_latency=0.03" in registry.state.canary.last_reason
    prom.arms["canary"] = ArmTraffic(p95=0.004, buckets=SKEWED)
    clock.advance(INTERVAL)
    assert rec.poll().decisions == ["pass", "promote"]
    assert any('arm="champion"' in q and f"[{3 * int(INTERVAL)}s]" in q for q in prom.queries)
    assert metric(rec, "occupancy_canary_checks_total", check="shift", result="skipped") == 2


def test_failures_of_serving_or_prometheus_are_counted_and_retried(world):
    clock, registry, serving, prom = world
    registry.submit("x")
    rec = controller(world)
    serving.fail = RuntimeError("serving task unreachable")
    result = rec.poll()
    assert registry.state.canary is not None, "the registry decision does not wait for serving"
    assert result.errors == ["serving: serving task unreachable"]
    serving.fail = None
    prom.fail = RuntimeError("connection refused")
    clock.advance(INTERVAL)
    result = rec.poll()
    assert serving.config[1] == ArmSpec("x", "2"), "serving caught up on the next pass"
    assert result.errors == ["prometheus: connection refused"] and result.decisions == []
    assert metric(rec, "occupancy_canary_failures_total", stage="prometheus") == 1
    prom.fail = None
    assert rec.poll().decisions == ["pass", "step"], "analysed on the next pass"


def test_the_first_seconds_of_a_step_are_not_judged(world):
    clock, registry, _, prom = world
    registry.submit("settling")
    rec = controller(world, serving_settle_seconds=5)
    rec.poll()
    clock.advance(INTERVAL)
    assert rec.poll().decisions == [], "serving may not have the new weight yet: the window starts later"
    clock.advance(5)
    assert rec.poll().decisions == ["pass", "step"]
    assert any('arm="canary"' in q and f"[{int(INTERVAL)}s]" in q for q in prom.queries)
    clock.advance(INTERVAL + 4)
    assert rec.poll().decisions == []
    clock.advance(1)
    assert rec.poll().decisions == ["pass", "step"], "every step settles"


def test_an_unrelated_registry_event_does_not_restart_the_analysis_window(world):
    clock, registry, _, _ = world
    registry.submit("running")
    rec = controller(world)
    rec.poll()
    clock.advance(INTERVAL / 2)
    registry.submit("next")  # the gate publishes another candidate mid-step
    assert rec.poll().decisions == []
    clock.advance(INTERVAL / 2)
    assert rec.poll().decisions == ["pass", "step"], "due one interval after the step started"
    assert registry.state.candidates == ["next"], "it waits for the running canary"


def test_a_restarted_controller_resumes_from_the_registry(world):
    clock, registry, _serving, _ = world
    registry.submit("r")
    controller(world).poll()
    clock.advance(INTERVAL)
    controller(world).poll()  # a fresh process each time: no memory carried over
    assert registry.state.canary.step == 1
    clock.advance(INTERVAL / 2)
    assert controller(world).poll().decisions == [], "the step's interval is counted from the registry"
    clock.advance(INTERVAL / 2)
    assert controller(world).poll().decisions == ["pass", "step"]
    assert registry.state.canary.step == 2


def test_a_canary_wrong_on_its_delayed_labels_is_rolled_back_naming_accuracy(world):
    clock, registry, serving, prom = world
    registry.submit("wrong")
    rec = controller(world)
    rec.poll()
    prom.arms["canary"] = ArmTraffic(correct=20, wrong=80)  # same traffic and distribution, wrong labels
    prom.arms["champion"] = ArmTraffic(correct=880, wrong=20)
    clock.advance(INTERVAL)
    assert rec.poll().decisions == ["fail"]
    clock.advance(INTERVAL)
    assert rec.poll().decisions == ["fail", "rollback"]
    reason = registry.state.reasons["wrong"]
    assert reason.startswith("canary failed 2 analyses at step 1/4 (10%): accuracy=0.7778 (threshold "), (
        reason
    )
    assert "canary accuracy 20.00% (100 labels) vs champion 97.78% (900 labels)" in reason
    assert serving.config == (ArmSpec("champ", "1"), None, 0.0)
    assert metric(rec, "occupancy_canary_checks_total", check="accuracy", result="failed") == 2
    assert metric(rec, "occupancy_canary_check_value", check="accuracy") == pytest.approx(0.7778, abs=1e-4)
    assert metric(rec, "occupancy_canary_checks_total", check="shift", result="passed") == 2


def test_without_labels_the_accuracy_check_is_skipped_and_the_rollout_goes_on(world):
    clock, registry, _, _ = world
    registry.submit("unlabeled")
    rec = controller(world)
    rec.poll()
    clock.advance(INTERVAL)
    result = rec.poll()
    assert result.decisions == ["pass", "step"]
    assert "accuracy skipped (canary 0 labels < 50)" in (result.verdict or "")
    assert metric(rec, "occupancy_canary_checks_total", check="accuracy", result="skipped") == 1
    assert metric(rec, "occupancy_canary_checks_total", check="accuracy", result="failed") == 0
