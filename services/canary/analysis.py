"""The canary analysis as pure functions: the PromQL per check, the shift between two probability
histograms (from cumulative Prometheus buckets), and the verdict.

Nothing here talks to a server: :func:`collect` takes any ``query(promql) -> [(labels, value)]``
function, so the same code runs against a real Prometheus and in unit tests with hand-made numbers.

Checks (each canary against the champion, over the same window when the champion had traffic in it):

- ``error_ratio``: server errors (``kind="server"``) / requests of the canary arm; fails above
  ``max(max_error_ratio, champion's ratio + error_ratio_margin)``.
- ``p95_latency``: the canary's p95 request duration; fails above
  ``max_p95_latency_ratio × champion's p95 + p95_latency_slack_ms``.
- ``shift``: how far the canary's predicted probabilities lie from the champion's (the
  ``occupancy_serving_probability`` histogram buckets): the earth mover's (Wasserstein-1) distance,
  in probability units, the mean distance the probability mass has to move. It fails above
  ``max_shift`` or above what sampling alone gives with the arms' numbers of requests, whichever is
  larger (:func:`shift_noise`): a canary at 10 % with a dozen requests is not failed for the noise of
  a dozen draws. Two retrained models never give the same probabilities for the same reading (0.88
  and 0.93 for a lit room); divergences over bins (PSI, KS) count such a move across a bin bound as
  a whole new distribution (a PSI of 3.8 between two models that agree on every reading; issue 11),
  the shift counts it as 0.05.

Fewer than ``min_requests`` canary requests in the window: "not enough traffic", the verdict is
``None`` (neither pass nor fail). A failed check fails the analysis even when another one could not
be computed; a check without data (NaN) is otherwise ``None`` too.

- ``accuracy``: the share of labeled readings (``POST /feedback/``, counted by serving in
  ``occupancy_serving_feedback_total{correct}``) each arm predicted right; the canary fails when its
  accuracy is below the champion's by more than ``max(max_accuracy_drop, noise)``, the noise being
  what a one-sided two-proportion test at ``accuracy_alpha`` allows (:func:`accuracy_noise`). With
  fewer than ``min_labels`` labeled readings in either arm the check is *skipped* and says so: labels
  arrive late or not at all, and no labels is not evidence either way. The labels counted are those
  that *arrived* in the window, for predictions of the same arm and model version made before.

When the champion answered fewer than ``min_requests`` in the window (a 100 % step), the error ratio
and latency are compared with the champion's numbers since the canary started (``baseline``), and
the shift check is *skipped* (it passed at the earlier steps; comparing different hours
of traffic would measure the time of day, not the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from services.canary.settings import CanarySettings

Sample = tuple[Mapping[str, str], float]
Query = Callable[[str], Sequence[Sample]]
"""``query(promql)`` → the instant vector as ``(labels, value)`` pairs (NaN and ±Inf as floats)."""

CHECKS = ("error_ratio", "p95_latency", "shift", "accuracy")


def _selector(**labels: str) -> str:
    """``{a="x",b="y"}`` with the values escaped for PromQL."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(f"{name}={quoted(value)}" for name, value in labels.items()) + "}"


@dataclass(frozen=True)
class ArmQueries:
    """The PromQL of one arm (restricted by endpoint, arm and model version) over ``[window s]``."""

    requests: str
    server_errors: str
    p95_seconds: str
    probability_buckets: str
    labels: str
    """Labeled readings that arrived in the window, ``by (correct)``."""
    labeled_posts: str
    """Feedback posts with at least one label that arrived in the window."""


def arm_queries(endpoint: str, arm: str, model_version: str, window_seconds: int) -> ArmQueries:
    sel = _selector(endpoint=endpoint, arm=arm, model_version=model_version)
    errors = _selector(endpoint=endpoint, arm=arm, model_version=model_version, kind="server")
    w = f"[{int(window_seconds)}s]"
    return ArmQueries(
        requests=f"sum(increase(occupancy_serving_requests_total{sel}{w}))",
        server_errors=f"sum(increase(occupancy_serving_errors_total{errors}{w}))",
        p95_seconds=(
            "histogram_quantile(0.95, sum by (le) "
            f"(increase(occupancy_serving_request_duration_seconds_bucket{sel}{w})))"
        ),
        probability_buckets=f"sum by (le) (increase(occupancy_serving_probability_bucket{sel}{w}))",
        labels=f"sum by (correct) (increase(occupancy_serving_feedback_total{sel}{w}))",
        labeled_posts=f"sum(increase(occupancy_serving_feedback_requests_total{sel}{w}))",
    )


@dataclass(frozen=True)
class LabelStats:
    """Delayed labels of one arm's predictions that arrived in a window."""

    correct: float = 0.0
    wrong: float = 0.0
    posts: float = 0.0
    """Feedback posts they came in (a post's readings come from one request: one room, together)."""

    @property
    def labeled(self) -> float:
        return self.correct + self.wrong

    @property
    def accuracy(self) -> float:
        return self.correct / self.labeled if self.labeled > 0 else math.nan


@dataclass(frozen=True)
class ArmStats:
    """What Prometheus says about one arm over one window."""

    arm: str
    model_version: str
    window_seconds: int
    requests: float
    server_errors: float
    p95_seconds: float
    buckets: dict[float, float] = field(default_factory=dict)
    """Cumulative count per upper bound ``le`` (``math.inf`` for ``+Inf``)."""
    labels: LabelStats = field(default_factory=LabelStats)

    @property
    def error_ratio(self) -> float:
        if not math.isfinite(self.requests) or self.requests <= 0:
            return math.nan
        errors = self.server_errors if math.isfinite(self.server_errors) else 0.0
        return min(1.0, max(0.0, errors) / self.requests)


def _scalar(samples: Sequence[Sample], empty: float) -> float:
    """The one value of an aggregated query; ``empty`` when it has no series (nothing happened)."""
    if not samples:
        return empty
    return float(samples[0][1])


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def collect(query: Query, endpoint: str, arm: str, model_version: str, window_seconds: int) -> ArmStats:
    """Run the queries of one arm and put the answers together."""
    q = arm_queries(endpoint, arm, model_version, window_seconds)
    buckets: dict[float, float] = {}
    for labels, value in query(q.probability_buckets):
        if "le" in labels:
            buckets[_le(labels["le"])] = float(value)
    by_correct = {"true": 0.0, "false": 0.0}
    for labels, value in query(q.labels):
        if labels.get("correct") in by_correct and math.isfinite(value):
            by_correct[labels["correct"]] = max(0.0, float(value))
    posts = _scalar(query(q.labeled_posts), 0.0)
    return ArmStats(
        arm=arm,
        model_version=model_version,
        window_seconds=int(window_seconds),
        requests=_scalar(query(q.requests), 0.0),
        server_errors=_scalar(query(q.server_errors), 0.0),
        p95_seconds=_scalar(query(q.p95_seconds), math.nan),
        buckets=buckets,
        labels=LabelStats(by_correct["true"], by_correct["false"], posts if math.isfinite(posts) else 0.0),
    )


# ---------------------------------------------------------------------------------- shift
def bin_counts(cumulative: Mapping[float, float], bounds: Sequence[float]) -> list[float]:
    """Counts per bin ``(bounds[i-1], bounds[i]]`` from cumulative bucket counts.

    Bounds missing in ``cumulative`` take the count of the nearest lower bound present (a cumulative
    histogram is a step function); NaN counts are 0; the cumulative counts are made non-decreasing
    (``increase()`` extrapolates every bucket on its own, so neighbours can disagree slightly).
    """
    known = sorted((le, v if math.isfinite(v) else 0.0) for le, v in cumulative.items())
    counts: list[float] = []
    running = 0.0
    previous = 0.0
    i = 0
    for bound in bounds:
        while i < len(known) and known[i][0] <= bound:
            running = max(running, known[i][1])
            i += 1
        counts.append(max(0.0, running - previous))
        previous = running
    return counts


def _points(bounds: Sequence[float]) -> np.ndarray:
    """Where each bin's mass sits for the shift: its middle (probabilities start at 0; the ``+Inf``
    bin, empty for probabilities, at its lower bound)."""
    lower = [0.0, *bounds][: len(bounds)]
    return np.array([lo if math.isinf(hi) else (lo + hi) / 2 for lo, hi in zip(lower, bounds, strict=True)])


def _shift(counts_a: np.ndarray, counts_b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance of histograms over the same bins (rows: several histogram pairs)."""
    cdf_a = np.cumsum(counts_a, axis=-1) / counts_a.sum(axis=-1, keepdims=True)
    cdf_b = np.cumsum(counts_b, axis=-1) / counts_b.sum(axis=-1, keepdims=True)
    return np.abs(cdf_a - cdf_b)[..., :-1] @ np.diff(points)


def _histograms(
    a: Mapping[float, float], b: Mapping[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bounds = sorted(set(a) | set(b))
    return np.array(bin_counts(a, bounds)), np.array(bin_counts(b, bounds)), _points(bounds)


def shift(expected: Mapping[float, float], actual: Mapping[float, float]) -> float:
    """The earth mover's (Wasserstein-1) distance between two probability histograms: the mean
    distance, in probability units, the mass of one has to move to become the other (a bin's mass
    at its middle); NaN when either side is empty."""
    a, b, points = _histograms(expected, actual)
    if a.sum() <= 0 or b.sum() <= 0:
        return math.nan
    return float(_shift(a, b, points))


NOISE_ALPHA = 0.001
"""Chance that two arms serving the same model would fail the shift check by sampling alone."""
PERMUTATIONS = 20_000
"""Random splits of the pooled readings behind :func:`shift_noise` (20 beyond its quantile)."""


def shift_noise(champion: ArmStats, canary: ArmStats) -> float:
    """The shift that random sampling alone exceeds with probability ``NOISE_ALPHA``.

    The arms get random shares of the same traffic, so with few requests their histograms differ
    by chance; the check fails only above ``max(max_shift, noise)``. A permutation test: the two
    arms' readings are pooled and split at random into groups of the arms' sizes
    (``PERMUTATIONS`` times, a fixed seed: the same input gives the same noise), and the noise is the
    ``1 − NOISE_ALPHA`` quantile of their shifts. The sample sizes that count are the arms'
    *requests*, not their readings: a request's readings share one room's history and move together,
    so with several readings per request the quantile is widened by ``√`` of the ratio of the
    ``1/n + 1/m`` of requests to that of readings. NaN when either arm has no requests or readings.
    """
    n_requests, m_requests = canary.requests, champion.requests
    if not (math.isfinite(n_requests) and math.isfinite(m_requests)) or n_requests <= 0 or m_requests <= 0:
        return math.nan
    a, b, points = _histograms(champion.buckets, canary.buckets)
    pooled = np.rint(a + b).astype(np.int64)
    m, n = round(float(a.sum())), round(float(b.sum()))
    if m <= 0 or n <= 0 or pooled.sum() < 2:
        return math.nan
    n = min(n, int(pooled.sum()) - 1)  # increase() extrapolates: the rounded counts may disagree
    draws = np.random.default_rng(0).multivariate_hypergeometric(pooled, n, size=PERMUTATIONS)
    quantile = float(np.quantile(_shift(draws, pooled - draws, points), 1 - NOISE_ALPHA))
    readings = 1 / n + 1 / (int(pooled.sum()) - n)
    requests = 1 / n_requests + 1 / m_requests
    return quantile * math.sqrt(max(1.0, requests / readings))


def accuracy_noise(champion: LabelStats, canary: LabelStats, alpha: float) -> float:
    """The accuracy drop (champion − canary) that chance alone exceeds with probability ``alpha``:
    ``z(1 − α)·√(p(1 − p)·(1/n + 1/m))``, the one-sided two-proportion z-test with the pooled
    accuracy ``p``. The sample sizes are the arms' feedback *posts* (at most their labeled readings):
    the readings of one post come from one request, one room, and are right or wrong together, as
    the shift noise counts requests. NaN when an arm has no labels."""
    if champion.labeled <= 0 or canary.labeled <= 0:
        return math.nan
    n = min(canary.labeled, canary.posts) if canary.posts > 0 else canary.labeled
    m = min(champion.labeled, champion.posts) if champion.posts > 0 else champion.labeled
    pooled = (champion.correct + canary.correct) / (champion.labeled + canary.labeled)
    z = NormalDist().inv_cdf(1 - alpha)
    return z * math.sqrt(max(0.0, pooled * (1 - pooled)) * (1 / n + 1 / m))


# ---------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class CheckResult:
    name: str
    value: float
    threshold: float
    passed: bool | None
    """None: could not be computed (no data)."""
    detail: str
    skipped: bool = False
    """Nothing to compare with (no champion traffic, too few labels); counts as passed."""
    note: str = ""
    """Why it was skipped, in a few words (shown in the summary)."""

    @property
    def result(self) -> str:
        if self.skipped:
            return "skipped"
        return {True: "passed", False: "failed", None: "no_data"}[self.passed]

    def describe(self) -> str:
        return f"{self.name}={self.value:.4g} (threshold {self.threshold:.4g}): {self.detail}"


@dataclass(frozen=True)
class Verdict:
    passed: bool | None
    """True: every check passed; False: at least one failed; None: not enough traffic or data."""
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.passed is False]

    def summary(self) -> str:
        if self.passed is None:
            missing = [c for c in self.checks if c.passed is None]
            return "not enough traffic: " + "; ".join(c.detail for c in missing)
        if self.passed:
            return "passed: " + ", ".join(
                (f"{c.name} skipped" + (f" ({c.note})" if c.note else ""))
                if c.skipped
                else f"{c.name}={c.value:.3g}"
                for c in self.checks
            )
        return "failed: " + "; ".join(c.describe() for c in self.failed)


@dataclass(frozen=True)
class AnalysisInput:
    canary: ArmStats
    champion: ArmStats | None
    """The champion over the same window; None when it answered fewer than ``min_requests`` in it
    (the canary takes all the traffic at a 100 % step)."""
    baseline: ArmStats | None = None
    """The champion over a longer window (since the canary started), for the error ratio and latency
    when ``champion`` is None. Never for the prediction distribution: traffic changes over time (day
    and night), so only the same window compares like with like."""
    champion_labels: LabelStats | None = None
    """The champion's labels that arrived in the same window, also when it answered no requests in it
    (labels of its earlier predictions keep arriving at a 100 % step); None: ``champion.labels``."""


def _compare(name: str, value: float, threshold: float, unit: str = "") -> CheckResult:
    if math.isnan(value) or math.isnan(threshold):
        return CheckResult(name, value, threshold, None, f"no {name} data in the window")
    ok = value <= threshold
    relation = "≤" if ok else ">"
    return CheckResult(name, value, threshold, ok, f"{value:.4g}{unit} {relation} {threshold:.4g}{unit}")


def accuracy_check(champion: LabelStats, canary: LabelStats, settings: CanarySettings) -> CheckResult:
    """Canary against champion on the labeled readings of the window (value: the accuracy drop,
    champion − canary; threshold: ``max(max_accuracy_drop, noise)``)."""
    tolerance = settings.max_accuracy_drop
    fewest = min(champion.labeled, canary.labeled)
    if fewest < settings.min_labels:
        short = "canary" if canary.labeled <= champion.labeled else "champion"
        return CheckResult(
            "accuracy",
            math.nan,
            tolerance,
            True,
            f"skipped: labeled readings in the window: canary {canary.labeled:.0f}, champion "
            f"{champion.labeled:.0f}; {settings.min_labels} needed per arm",
            skipped=True,
            note=f"{short} {fewest:.0f} labels < {settings.min_labels}",
        )
    drop = champion.accuracy - canary.accuracy
    noise = accuracy_noise(champion, canary, settings.accuracy_alpha)
    threshold = max(tolerance, noise)
    ok = drop <= threshold
    detail = (
        f"canary accuracy {canary.accuracy:.2%} ({canary.labeled:.0f} labels) vs champion "
        f"{champion.accuracy:.2%} ({champion.labeled:.0f} labels): drop {100 * drop:.2f} points "
        f"{'≤' if ok else '>'} {100 * threshold:.2f} (max_accuracy_drop {100 * tolerance:.2f}, "
        f"chance at alpha {settings.accuracy_alpha:g} {100 * noise:.2f})"
    )
    return CheckResult("accuracy", drop, threshold, ok, detail)


def judge(results: AnalysisInput, settings: CanarySettings) -> Verdict:
    """The verdict of one analysis (pure: same input, same verdict)."""
    canary, champion = results.canary, results.champion
    requests = canary.requests if math.isfinite(canary.requests) else 0.0
    if requests < settings.min_requests:
        traffic = CheckResult(
            "traffic",
            requests,
            settings.min_requests,
            None,
            f"canary answered {requests:.0f} requests in {canary.window_seconds} s, "
            f"{settings.min_requests} needed",
        )
        return Verdict(None, [traffic])
    checks: list[CheckResult] = []
    reference = champion or results.baseline
    no_champion = "skipped: the champion answered no traffic to compare with"

    champion_ratio = reference.error_ratio if reference else math.nan
    threshold = settings.max_error_ratio
    if not math.isnan(champion_ratio):
        threshold = max(threshold, champion_ratio + settings.error_ratio_margin)
    checks.append(_compare("error_ratio", canary.error_ratio, threshold))

    p95 = canary.p95_seconds if math.isfinite(canary.p95_seconds) else math.nan
    champion_p95 = reference.p95_seconds if reference else math.nan
    if reference is None:
        checks.append(CheckResult("p95_latency", p95, math.nan, True, no_champion, skipped=True))
    else:
        latency_threshold = math.nan
        if math.isfinite(champion_p95):
            slack = settings.p95_latency_slack_ms / 1000
            latency_threshold = settings.max_p95_latency_ratio * champion_p95 + slack
        checks.append(_compare("p95_latency", p95, latency_threshold, " s"))

    if champion is None:
        detail = no_champion + " in the same window (compared at the earlier steps)"
        checks.append(CheckResult("shift", math.nan, settings.max_shift, True, detail, skipped=True))
    else:
        noise = shift_noise(champion, canary)
        value = shift(champion.buckets, canary.buckets)
        checks.append(_compare("shift", value, max(settings.max_shift, noise)))

    champion_labels = results.champion_labels or (champion.labels if champion else LabelStats())
    checks.append(accuracy_check(champion_labels, canary.labels, settings))

    if any(c.passed is False for c in checks):
        return Verdict(False, checks)
    if any(c.passed is None for c in checks):
        return Verdict(None, checks)
    return Verdict(True, checks)
