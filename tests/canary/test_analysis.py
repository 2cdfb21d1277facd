"""The canary analysis on hand-made numbers: PromQL text, the shift between probability histograms
from cumulative buckets (empty, zero, NaN and non-monotonic ones included) and its sampling noise,
and the verdict of each check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from services.canary.analysis import (
    AnalysisInput,
    ArmStats,
    LabelStats,
    accuracy_noise,
    arm_queries,
    bin_counts,
    collect,
    judge,
    shift,
    shift_noise,
)
from services.canary.settings import CanarySettings

BOUNDS = [round(0.05 * i, 2) for i in range(1, 21)] + [math.inf]  # the serving histogram's buckets


def cumulative(per_bin: list[float]) -> dict[float, float]:
    """Cumulative buckets over BOUNDS from counts per bin (missing trailing bins are empty)."""
    per_bin = per_bin + [0.0] * (len(BOUNDS) - len(per_bin))
    out, total = {}, 0.0
    for bound, count in zip(BOUNDS, per_bin, strict=True):
        total += count
        out[bound] = total
    return out


BIMODAL = cumulative([300, 40, 10, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 10, 40, 200])
SHIFTED = cumulative([30, 10, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 10, 100, 500])


def arm(name="canary", requests=100.0, errors=0.0, p95=0.004, buckets=None, version="2", labels=None):
    return ArmStats(
        name, version, 30, requests, errors, p95, dict(BIMODAL if buckets is None else buckets),
        labels or LabelStats(),
    )  # fmt: skip


def labeled(accuracy: float, n: float, posts: float | None = None) -> LabelStats:
    """``n`` labeled readings, ``accuracy`` of them right, in ``posts`` feedback posts (default ``n``)."""
    return LabelStats(accuracy * n, (1 - accuracy) * n, n if posts is None else posts)


SETTINGS = CanarySettings(min_requests=30)


def test_queries_restrict_arm_version_endpoint_and_window():
    q = arm_queries("occupancy", "canary", "7", 30)
    sel = '{endpoint="occupancy",arm="canary",model_version="7"}'
    assert q.requests == f"sum(increase(occupancy_serving_requests_total{sel}[30s]))"
    assert q.server_errors == (
        "sum(increase(occupancy_serving_errors_total"
        '{endpoint="occupancy",arm="canary",model_version="7",kind="server"}[30s]))'
    )
    assert q.p95_seconds.startswith("histogram_quantile(0.95, sum by (le) (increase(")
    assert f"occupancy_serving_request_duration_seconds_bucket{sel}[30s]" in q.p95_seconds
    assert q.probability_buckets == f"sum by (le) (increase(occupancy_serving_probability_bucket{sel}[30s]))"
    assert q.labels == f"sum by (correct) (increase(occupancy_serving_feedback_total{sel}[30s]))"
    assert q.labeled_posts == f"sum(increase(occupancy_serving_feedback_requests_total{sel}[30s]))"
    assert 'endpoint="a\\"b"' in arm_queries('a"b', "canary", "1", 5).requests, "label values are escaped"


def test_collect_reads_scalars_buckets_and_missing_series():
    answers = {
        "requests": [({}, 120.0)],
        "server_errors": [],  # no error series at all: no errors
        "p95_seconds": [({}, math.nan)],
        "probability_buckets": [({"le": "0.5"}, 10.0), ({"le": "+Inf"}, 30.0), ({"le": "1.0"}, 30.0)],
        "labels": [({"correct": "true"}, 57.0), ({"correct": "false"}, 3.0)],
        "labeled_posts": [({}, 20.0)],
    }
    queries = arm_queries("occupancy", "champion", "1", 10)
    by_text = {getattr(queries, k): v for k, v in answers.items()}
    stats = collect(lambda text: by_text[text], "occupancy", "champion", "1", 10)
    assert (stats.requests, stats.server_errors) == (120.0, 0.0)
    assert math.isnan(stats.p95_seconds)
    assert stats.buckets == {0.5: 10.0, 1.0: 30.0, math.inf: 30.0}
    assert stats.labels == LabelStats(57.0, 3.0, 20.0) and stats.labels.accuracy == pytest.approx(0.95)
    empty = collect(lambda text: [], "occupancy", "canary", "2", 10)
    assert empty.requests == 0 and math.isnan(empty.p95_seconds) and empty.buckets == {}
    assert math.isnan(empty.error_ratio)
    assert empty.labels == LabelStats() and math.isnan(empty.labels.accuracy), "no feedback: no labels"


def test_bin_counts_tolerate_nan_gaps_and_non_monotonic_buckets():
    assert bin_counts({0.5: 3, 1.0: 5, math.inf: 5}, [0.5, 1.0, math.inf]) == [3, 2, 0]
    # NaN counts as 0; a bound missing on one side takes the lower neighbour's cumulative count
    assert bin_counts({0.5: math.nan, math.inf: 4}, [0.25, 0.5, 1.0, math.inf]) == [0, 0, 0, 4]
    # increase() extrapolates each bucket alone: a cumulative count may dip, never a negative bin
    dip = bin_counts({0.5: 5.2, 1.0: 5.0, math.inf: 6.0}, [0.5, 1.0, math.inf])
    assert dip == pytest.approx([5.2, 0, 0.8])


MIDDLES = [0.025 + 0.05 * i for i in range(20)]  # where each bin's mass sits


def per_bin(buckets: dict[float, float]) -> list[float]:
    return bin_counts(buckets, BOUNDS)[:20]


def test_shift_is_the_earth_movers_distance_of_the_histograms():
    assert shift(BIMODAL, BIMODAL) == pytest.approx(0.0)
    tenth = {le: v / 10 for le, v in BIMODAL.items()}
    assert shift(BIMODAL, tenth) == pytest.approx(0.0), "shares matter, not the traffic volume"
    expected = wasserstein_distance(MIDDLES, MIDDLES, per_bin(BIMODAL), per_bin(SHIFTED))
    assert shift(BIMODAL, SHIFTED) == pytest.approx(expected)
    assert shift(BIMODAL, SHIFTED) == pytest.approx(shift(SHIFTED, BIMODAL)), "symmetric"
    only_low, only_high = cumulative([100]), cumulative([0] * 19 + [100])
    assert shift(only_low, only_high) == pytest.approx(0.95), "all the mass from 0.025 to 0.975"


def test_a_move_into_the_next_bin_is_a_small_shift():
    # two retrained models: the lit room's readings at 0.88 for one and 0.93 for the other. Over
    # bins, PSI called this a new distribution (3.8 in the demo); it is a move of 0.05
    champion = cumulative([300] + [0] * 16 + [100])
    canary = cumulative([300] + [0] * 17 + [100])
    assert shift(champion, canary) == pytest.approx(0.05 * 100 / 400)
    verdict = judge(AnalysisInput(arm(buckets=canary), arm("champion", buckets=champion)), SETTINGS)
    assert verdict.passed is True, verdict.summary()


@pytest.mark.parametrize("empty", [{}, cumulative([]), {0.5: math.nan, math.inf: math.nan}])
def test_shift_without_data_is_nan(empty):
    assert math.isnan(shift(BIMODAL, empty)) and math.isnan(shift(empty, BIMODAL))
    assert math.isnan(shift(empty, empty))
    assert math.isnan(shift_noise(arm("champion", buckets=empty), arm(buckets=empty)))


def test_a_healthy_canary_passes_every_check():
    verdict = judge(AnalysisInput(arm(), arm("champion", version="1")), SETTINGS)
    assert verdict.passed is True
    assert [c.name for c in verdict.checks] == ["error_ratio", "p95_latency", "shift", "accuracy"]
    assert all(c.passed for c in verdict.checks)
    assert verdict.summary().startswith("passed: error_ratio=0")
    assert verdict.summary().endswith("accuracy skipped (canary 0 labels < 50)"), "no labels: said so"


@pytest.mark.parametrize("requests", [0.0, 29.9, math.nan])
def test_too_little_canary_traffic_is_neither_pass_nor_fail(requests):
    verdict = judge(AnalysisInput(arm(requests=requests, errors=requests), arm("champion")), SETTINGS)
    assert verdict.passed is None
    assert verdict.checks[0].name == "traffic"
    assert "30 needed" in verdict.summary()


def test_errors_fail_against_the_absolute_ratio_or_the_champion_plus_margin():
    verdict = judge(AnalysisInput(arm(errors=50), arm("champion")), SETTINGS)
    assert verdict.passed is False
    [failed] = verdict.failed
    assert failed.name == "error_ratio" and failed.value == pytest.approx(0.5)
    assert "error_ratio=0.5 (threshold 0.05)" in verdict.summary()
    assert judge(AnalysisInput(arm(errors=5), arm("champion")), SETTINGS).passed is True, "5 % is allowed"
    # a champion failing 20 % of its requests: a canary at 20.5 % is not worse than it
    ailing = arm("champion", errors=20)
    assert judge(AnalysisInput(arm(errors=20.5), ailing), SETTINGS).passed is True
    assert judge(AnalysisInput(arm(errors=22), ailing), SETTINGS).failed[0].name == "error_ratio"


def test_latency_is_relative_to_the_champion_with_an_absolute_slack():
    champion = arm("champion", p95=0.010)
    assert judge(AnalysisInput(arm(p95=0.039), champion), SETTINGS).passed is True  # 2 × 10 + 20 ms
    slow = judge(AnalysisInput(arm(p95=0.041), champion), SETTINGS)
    assert slow.passed is False and slow.failed[0].name == "p95_latency"
    assert slow.failed[0].threshold == pytest.approx(0.040)


def test_a_skewed_prediction_distribution_fails_the_shift_check():
    verdict = judge(AnalysisInput(arm(buckets=SHIFTED), arm("champion")), SETTINGS)
    assert verdict.passed is False
    assert [c.name for c in verdict.failed] == ["shift"]
    assert "shift=0.4" in verdict.summary(), verdict.summary()


def one_reading_per_request(buckets: dict[float, float]) -> ArmStats:
    return arm(buckets=buckets, requests=bin_counts(buckets, BOUNDS)[-1] + sum(per_bin(buckets)))


def test_the_shift_threshold_grows_with_the_sampling_noise_of_few_requests():
    # a champion at 0.8 and 0.85 (4:1) and a canary with a fifth more of its readings at 0.85: a shift
    # of 0.01. Over 2,000 requests a side that is beyond chance, over 20 canary requests it is not
    champion = cumulative([0] * 15 + [1600, 400])
    canary = cumulative([0] * 15 + [1200, 800])
    strict = CanarySettings(min_requests=5, max_shift=0.005)
    many = judge(AnalysisInput(one_reading_per_request(canary), one_reading_per_request(champion)), strict)
    assert many.passed is False and many.failed[0].name == "shift", many.summary()
    few_canary = cumulative([0] * 15 + [12, 8])
    few = judge(AnalysisInput(one_reading_per_request(few_canary), one_reading_per_request(champion)), strict)
    assert few.passed is True, few.summary()
    assert few.checks[2].threshold > 0.01
    # with many requests the configured threshold rules
    huge = judge(AnalysisInput(arm(requests=1e5), arm("champion", requests=1e5)), SETTINGS)
    assert huge.checks[2].threshold == SETTINGS.max_shift
    assert math.isnan(shift_noise(arm("champion", requests=0), arm()))


def test_readings_of_one_request_count_as_one_draw():
    # the same histograms from 100 requests of 7 readings each have more noise than from 700 requests
    grouped = shift_noise(arm("champion", requests=100), arm(requests=100))
    single = shift_noise(arm("champion", requests=700), arm(requests=715))
    assert grouped > 2 * single


def test_two_arms_serving_the_same_model_rarely_fail_on_noise():
    # 150 windows: a canary with 30 requests and a champion with 270, both drawn from BIMODAL
    rng = np.random.default_rng(7)
    shares = np.array(per_bin(BIMODAL)) / sum(per_bin(BIMODAL))
    strict = CanarySettings(min_requests=5, max_shift=1e-6)  # the noise alone decides
    failures = 0
    for _ in range(150):
        canary = cumulative(rng.multinomial(30, shares).tolist())
        champion = cumulative(rng.multinomial(270, shares).tolist())
        verdict = judge(
            AnalysisInput(arm(buckets=canary, requests=30), arm("champion", buckets=champion, requests=270)),
            strict,
        )
        failures += verdict.passed is False
    assert failures <= 2, f"{failures} of 150 windows failed (NOISE_ALPHA 0.001 expects 0.15)"


def test_missing_data_is_none_but_a_failure_still_fails():
    no_latency = judge(AnalysisInput(arm(p95=math.nan), arm("champion")), SETTINGS)
    assert no_latency.passed is None
    assert [c.passed for c in no_latency.checks] == [True, None, True, True]
    failing = judge(AnalysisInput(arm(errors=60), None), SETTINGS)
    assert failing.passed is False, "the absolute error ratio needs no champion"
    empty_champion = judge(AnalysisInput(arm(), arm("champion", buckets={}, p95=math.nan)), SETTINGS)
    assert empty_champion.passed is None


def test_without_champion_traffic_in_the_window_the_shift_check_is_skipped():
    # a 100 % step: nothing to compare the distribution with in the same window
    alone = judge(AnalysisInput(arm(buckets=SHIFTED), None), SETTINGS)
    assert alone.passed is True
    assert [c.result for c in alone.checks] == ["passed", "skipped", "skipped", "skipped"]
    assert alone.summary() == (
        "passed: error_ratio=0, p95_latency skipped, shift skipped, accuracy skipped (canary 0 labels < 50)"
    )
    assert "no traffic to compare with" in alone.checks[2].detail
    # the champion's numbers since the canary started are the reference for errors and latency
    baseline = arm("champion", errors=10, p95=0.010)
    slow = judge(AnalysisInput(arm(p95=0.050, errors=10.5), None, baseline), SETTINGS)
    assert slow.passed is False
    assert [c.result for c in slow.checks] == ["passed", "failed", "skipped", "skipped"]
    assert slow.checks[0].threshold == pytest.approx(0.11), "champion's 10 % + the 1 point margin"
    assert judge(AnalysisInput(arm(buckets=SHIFTED), arm("champion"), baseline), SETTINGS).passed is False


# ---------------------------------------------------------------------------------- accuracy
def accuracy_of(canary: LabelStats, champion: LabelStats, **settings):
    verdict = judge(
        AnalysisInput(arm(labels=canary), arm("champion", version="1", labels=champion)),
        CanarySettings(min_requests=30, **settings),
    )
    return verdict, verdict.checks[-1]


@pytest.mark.parametrize(
    ("canary", "champion", "note"),
    [
        (12, 500, "canary 12 labels < 50"),
        (500, 49, "champion 49 labels < 50"),
        (0, 0, "canary 0 labels < 50"),
    ],
)
def test_accuracy_with_too_few_labels_is_skipped_and_says_so(canary, champion, note):
    # the canary is wrong on every label it has: still no verdict on so few
    verdict, check = accuracy_of(labeled(0.0, canary), labeled(1.0, champion))
    assert check.name == "accuracy" and check.result == "skipped" and check.note == note
    assert verdict.passed is True, "too few labels never fail a canary (or hold it up)"
    assert f"accuracy skipped ({note})" in verdict.summary(), "nor pass silently"
    assert "50 needed per arm" in check.detail


def test_accuracy_equal_on_enough_labels_passes():
    verdict, check = accuracy_of(labeled(0.97, 400), labeled(0.975, 3600))
    assert verdict.passed is True and check.result == "passed"
    assert check.value == pytest.approx(0.005) and "accuracy=0.005" in verdict.summary()


def test_a_canary_wrong_on_the_labels_fails_naming_accuracy_and_both_figures():
    verdict, check = accuracy_of(labeled(0.80, 300), labeled(0.98, 2700))
    assert verdict.passed is False and verdict.failed == [check]
    assert check.value == pytest.approx(0.18)
    reason = verdict.summary()
    assert reason.startswith("failed: accuracy=0.18 (threshold ")
    assert "canary accuracy 80.00% (300 labels) vs champion 98.00% (2700 labels)" in reason
    assert "drop 18.00 points >" in reason


def test_accuracy_drop_within_the_tolerance_passes():
    # a million labels each: chance is negligible, the configured tolerance (2 points) rules
    verdict, check = accuracy_of(labeled(0.965, 1e6), labeled(0.98, 1e6))
    assert verdict.passed is True and check.threshold == pytest.approx(0.02)
    verdict, check = accuracy_of(labeled(0.955, 1e6), labeled(0.98, 1e6))
    assert verdict.passed is False and check.threshold == pytest.approx(0.02)
    verdict, _ = accuracy_of(labeled(0.955, 1e6), labeled(0.98, 1e6), max_accuracy_drop=0.03)
    assert verdict.passed is True, "the tolerance is a setting"


def test_accuracy_noise_guard_needs_a_significant_drop():
    # 6 points lower on 60 labels against 600: within what chance gives at alpha 0.001
    few, check = accuracy_of(labeled(0.90, 60), labeled(0.96, 600))
    assert few.passed is True and check.result == "passed", check.detail
    assert check.threshold > 0.06 and "chance at alpha 0.001" in check.detail
    # the same drop on 3000 labels against 30000 is no accident
    many, check = accuracy_of(labeled(0.90, 3000), labeled(0.96, 30000))
    assert many.passed is False and check.result == "failed"
    # 3000 labels that came in 60 posts (60 requests of 50 readings): as uncertain as 60
    grouped, _ = accuracy_of(labeled(0.90, 3000, posts=60), labeled(0.96, 30000, posts=600))
    assert grouped.passed is True
    # a larger alpha is a less cautious test
    loose, _ = accuracy_of(labeled(0.90, 60), labeled(0.96, 600), accuracy_alpha=0.2)
    assert loose.passed is False


def test_accuracy_noise_is_the_one_sided_two_proportion_test():
    champion, canary = labeled(0.96, 600), labeled(0.90, 60)
    pooled = (0.96 * 600 + 0.90 * 60) / 660
    expected = 3.0902 * math.sqrt(pooled * (1 - pooled) * (1 / 60 + 1 / 600))
    assert accuracy_noise(champion, canary, 0.001) == pytest.approx(expected, rel=1e-4)
    assert accuracy_noise(labeled(1.0, 100), labeled(1.0, 100), 0.001) == 0.0, "all right: no doubt"
    assert math.isnan(accuracy_noise(LabelStats(), canary, 0.001))


def test_accuracy_at_a_full_step_uses_the_champions_labels_of_the_window():
    """At 100 % the champion answers nothing, but labels of its earlier predictions still arrive."""
    canary = arm(labels=labeled(0.5, 400))
    late = labeled(0.97, 400)
    verdict = judge(AnalysisInput(canary, None, champion_labels=late), SETTINGS)
    assert verdict.passed is False and verdict.failed[0].name == "accuracy"
    assert judge(AnalysisInput(canary, None), SETTINGS).checks[-1].result == "skipped"
    # a failing accuracy fails the analysis even with a check that has no data
    no_latency = judge(
        AnalysisInput(arm(p95=math.nan, labels=labeled(0.5, 400)), arm("champion", labels=late)), SETTINGS
    )
    assert no_latency.passed is False
