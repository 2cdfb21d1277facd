"""Input drift: how far new readings sit from the readings a model was trained on.

A :class:`DriftReference` is built from the training frame (every reading of the training version)
and the model's :class:`~training.features.FeatureSchema`, and stored JSON-serialisable in the
model's metadata (``metadata["drift_reference"]``). It holds, per *row*:

- every raw input the frame has (``Temperature``, ``Humidity``, ``Light``, ``CO2``,
  ``HumidityRatio``): the readings' values (kind ``input``);
- every raw input's change per minute between consecutive readings of a segment (kind ``change``,
  named ``Temperature change/min``): free of the slow level changes from day to day, it sees a
  sensor that reports differently (resolution, smoothing, scale);
- every model feature (:func:`training.features.make_features`, kind ``feature``).

For each row: quantile bin edges (the training quantiles 1 %, 10 %, ..., 90 %, 99 %, open-ended
outer bins) with the training proportions, for the PSI; 101 training quantiles, for the KS statistic
(the largest gap between the new readings' empirical CDF and the training CDF); and the **day-to-day
baseline**: the PSI and KS of each training day (of at least :data:`MIN_DAY_READINGS` readings, per
room) against the other training days (bins and quantiles of the other days), their mean and max.

Why a baseline: one day covers only part of a week's range (a day is warmer, a weekend has no
lights on), so a day of the training week itself has PSI 1.6 to 4.8 on Temperature, Humidity and
CO2 against the week. A fixed PSI threshold (the textbook 0.25) flags every day. A row drifts
when its PSI exceeds ``max(MARGIN × the largest day-to-day PSI of training, MIN_PSI_LIMIT)`` or
its KS exceeds ``max(MARGIN × the largest day-to-day KS, MIN_KS_LIMIT)``: further from the
training data than any training day was from the other training days, by a margin.

Without at least two such days the baseline is empty and the limits fall back to
:data:`FALLBACK_PSI_LIMIT` / :data:`FALLBACK_KS_LIMIT` (said in the report).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from training.data import ROOM_COLUMN, SENSOR_COLUMNS, TIME_COLUMN
from training.features import FeatureSchema, make_features, segment_positions

METADATA_KEY = "drift_reference"
FORMAT_VERSION = 1
BIN_QUANTILES = (0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99)
"""Bin edges: these training quantiles (duplicates dropped); below the first and above the last edge
are open-ended bins, so 12 bins at most. The 1 % and 99 % edges make readings beyond the training
range (a sensor scaled up) weigh in the PSI."""
KS_GRID = 101
"""Training quantiles kept for the KS statistic (0 %, 1 %, ..., 100 %): exact to 0.01."""
PSI_FLOOR = 1e-4
"""Share given to an empty bin (training or new) in the PSI, so it stays finite."""
MARGIN = 1.25
"""How far beyond the largest day-to-day value of training a row must be to drift."""
MIN_PSI_LIMIT = 0.1
MIN_KS_LIMIT = 0.1
"""Limits never below these: rows that barely vary from day to day still allow sampling noise."""
FALLBACK_PSI_LIMIT = 0.25
FALLBACK_KS_LIMIT = 0.2
"""Limits without a day-to-day baseline (fewer than two training days of MIN_DAY_READINGS)."""
MIN_DAY_READINGS = 720
"""A training day (of one room) counts in the baseline with at least this many readings (half a
day at one a minute): shorter days are windows of a few hours, not days."""
MIN_READINGS = 60
"""Fewer new readings than this cannot be judged (the CLI refuses them)."""
CHANGE_SUFFIX = " change/min"

Kind = Literal["input", "change", "feature"]


class NoDriftReference(ValueError):
    """A model without a drift reference (trained before drift references existed)."""


@dataclass
class RowReference:
    """The training distribution of one row and its day-to-day baseline."""

    name: str
    kind: Kind
    edges: list[float]
    proportions: list[float]
    quantiles: list[float]
    day_psi_mean: float | None = None
    day_psi_max: float | None = None
    day_ks_mean: float | None = None
    day_ks_max: float | None = None

    @property
    def psi_limit(self) -> float:
        if self.day_psi_max is None:
            return FALLBACK_PSI_LIMIT
        return max(MARGIN * self.day_psi_max, MIN_PSI_LIMIT)

    @property
    def ks_limit(self) -> float:
        if self.day_ks_max is None:
            return FALLBACK_KS_LIMIT
        return max(MARGIN * self.day_ks_max, MIN_KS_LIMIT)

    def psi(self, values: np.ndarray) -> float:
        return psi(np.asarray(self.proportions), bin_shares(np.asarray(self.edges), values))

    def ks(self, values: np.ndarray) -> float:
        return ks_statistic(np.asarray(self.quantiles), values)


@dataclass
class DriftReference:
    rows: dict[str, RowReference]
    readings: int
    baseline_days: list[str] = field(default_factory=list)
    """The training days (``room/YYYY-MM-DD``, or the date alone in the default room) in the baseline."""
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "readings": self.readings,
            "baseline_days": list(self.baseline_days),
            "bin_quantiles": list(BIN_QUANTILES),
            "margin": MARGIN,
            "rows": [asdict(row) for row in self.rows.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        if int(data.get("version", 0)) != FORMAT_VERSION:
            raise ValueError(f"drift reference format {data.get('version')!r} is not {FORMAT_VERSION}")
        rows = {str(r["name"]): RowReference(**r) for r in data["rows"]}
        return cls(rows, int(data["readings"]), [str(d) for d in data.get("baseline_days", [])])

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DriftReference:
        """The reference stored in a model's metadata; :class:`NoDriftReference` for an older model."""
        data = metadata.get(METADATA_KEY)
        if not data:
            name = metadata.get("model_name", "the model")
            raise NoDriftReference(
                f"{name} has no drift reference: it was trained before drift references existed "
                "(retrain it to get one)"
            )
        return cls.from_dict(data)

    @property
    def inputs(self) -> list[str]:
        return [r.name for r in self.rows.values() if r.kind == "input"]


# ---------------------------------------------------------------------------- statistics


def bin_edges(values: np.ndarray) -> np.ndarray:
    """The training quantiles :data:`BIN_QUANTILES` (values of the data, duplicates dropped)."""
    return np.unique(np.quantile(values, BIN_QUANTILES, method="inverted_cdf"))


def bin_shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin: below the first edge, ``[edge_i, edge_i+1)``, from the last."""
    index = np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=len(edges) + 1) / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index ``Σ (a - e) ln(a / e)``, both shares floored at ``floor``."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(quantiles: np.ndarray, values: np.ndarray) -> float:
    """Largest gap between the empirical CDF of ``values`` and the reference CDF given by its
    quantiles at 0, 1/(k-1), ..., 1 (evaluated at the quantiles; a run of equal quantiles is a jump
    of the reference CDF, compared on both sides)."""
    x = np.sort(np.asarray(values, dtype=float))
    if not len(x):
        return float("nan")
    q = np.asarray(quantiles, dtype=float)
    levels = np.linspace(0.0, 1.0, len(q))
    points, first = np.unique(q, return_index=True)
    last = np.r_[first[1:] - 1, len(q) - 1]
    below = np.searchsorted(x, points, side="left") / len(x)  # sample CDF just below each point
    at = np.searchsorted(x, points, side="right") / len(x)  # and at it
    return float(max(np.max(np.abs(below - levels[first])), np.max(np.abs(at - levels[last]))))


# ---------------------------------------------------------------------------- rows of a frame


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    by = [ROOM_COLUMN, TIME_COLUMN] if ROOM_COLUMN in frame.columns else [TIME_COLUMN]
    return frame.sort_values(by, kind="stable")


def row_values(frame: pd.DataFrame, schema: FeatureSchema | None) -> dict[str, tuple[Kind, pd.Series]]:
    """Every row's values for a frame (any order; sorted by room and time here): the raw inputs it
    has, their changes per minute within segments (NaN at a segment's start), and, with a schema,
    the model features. Each series has the frame's index."""
    ordered = _ordered(frame)
    max_gap = schema.max_gap_minutes if schema is not None else 2.0
    position = segment_positions(ordered, max_gap)
    minutes = pd.to_datetime(ordered[TIME_COLUMN]).diff().dt.total_seconds().to_numpy() / 60.0
    out: dict[str, tuple[Kind, pd.Series]] = {}
    for column in SENSOR_COLUMNS:
        if column in ordered.columns:
            out[column] = ("input", ordered[column].astype(float))
    for column in SENSOR_COLUMNS:
        if column in ordered.columns:
            values = ordered[column].to_numpy(dtype=float)
            change = np.full(len(values), np.nan)
            if len(values) > 1:
                change[1:] = np.diff(values) / minutes[1:]
            change[position == 0] = np.nan
            out[column + CHANGE_SUFFIX] = ("change", pd.Series(change, index=ordered.index))
    if schema is not None:
        features = make_features(ordered, schema)
        for name in features.columns:
            out.setdefault(str(name), ("feature", features[name]))
    return out


def day_keys(frame: pd.DataFrame) -> pd.Series:
    """The calendar day of every reading, per room (``room/YYYY-MM-DD``; the date alone for the
    default room or without a room column)."""
    dates = pd.to_datetime(frame[TIME_COLUMN]).dt.strftime("%Y-%m-%d")
    if ROOM_COLUMN not in frame.columns:
        return dates
    rooms = frame[ROOM_COLUMN].astype(str)
    return pd.Series(np.where(rooms == "default", dates, rooms + "/" + dates), index=frame.index)


def _finite(values: pd.Series | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def build_reference(frame: pd.DataFrame, schema: FeatureSchema | None = None) -> DriftReference:
    """The drift reference of a training frame (validated readings; labels are not used)."""
    if frame.empty:
        raise ValueError("no readings to build a drift reference from")
    frame = frame.reset_index(drop=True)
    rows = row_values(frame, schema)
    days = day_keys(frame)
    counts = days.value_counts()
    baseline_days = sorted(str(d) for d in counts[counts >= MIN_DAY_READINGS].index)
    reference: dict[str, RowReference] = {}
    for name, (kind, series) in rows.items():
        values = _finite(series)
        if not len(values):
            continue
        edges = bin_edges(values)
        row = RowReference(
            name=name,
            kind=kind,
            edges=edges.tolist(),
            proportions=bin_shares(edges, values).tolist(),
            quantiles=np.quantile(values, np.linspace(0, 1, KS_GRID)).tolist(),
        )
        if len(baseline_days) >= 2:
            psis, kss = [], []
            for day in baseline_days:
                inside = (days == day).reindex(series.index).to_numpy()
                today, rest = _finite(series[inside]), _finite(series[~inside])
                if not len(today) or not len(rest):
                    continue
                rest_edges = bin_edges(rest)
                psis.append(psi(bin_shares(rest_edges, rest), bin_shares(rest_edges, today)))
                kss.append(ks_statistic(np.quantile(rest, np.linspace(0, 1, KS_GRID)), today))
            if psis:
                row.day_psi_mean, row.day_psi_max = float(np.mean(psis)), float(np.max(psis))
                row.day_ks_mean, row.day_ks_max = float(np.mean(kss)), float(np.max(kss))
        reference[name] = row
    return DriftReference(reference, len(frame), baseline_days)


# ---------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class RowDrift:
    name: str
    kind: Kind
    readings: int
    psi: float
    ks: float
    psi_limit: float
    ks_limit: float
    day_psi_mean: float | None
    day_psi_max: float | None
    day_ks_mean: float | None
    day_ks_max: float | None

    @property
    def drift(self) -> bool:
        return self.psi > self.psi_limit or self.ks > self.ks_limit


@dataclass(frozen=True)
class DriftReport:
    rows: list[RowDrift]
    readings: int
    baseline_days: list[str]
    missing: list[str] = field(default_factory=list)
    """Rows of the reference the new readings could not give (an input column they lack)."""

    @property
    def drift(self) -> bool:
        return any(r.drift for r in self.rows)

    @property
    def drifted(self) -> list[str]:
        return [r.name for r in self.rows if r.drift]

    def summary(self) -> str:
        """One line: the verdict and the drifted rows."""
        if self.drift:
            shown = ", ".join(self.drifted[:6]) + (" ..." if len(self.drifted) > 6 else "")
            return (
                f"drift in {len(self.drifted)} of {len(self.rows)} rows ({shown}), {self.readings} readings"
            )
        return f"no drift in {len(self.rows)} rows, {self.readings} readings"

    def table(self) -> pd.DataFrame:
        """One row per input/change/feature: PSI and KS with their limits and the training baseline."""

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        return pd.DataFrame(
            [
                {
                    "row": r.name,
                    "kind": r.kind,
                    "PSI": fmt(r.psi),
                    "PSI limit": fmt(r.psi_limit),
                    "KS": fmt(r.ks),
                    "KS limit": fmt(r.ks_limit),
                    "training days PSI mean/max": f"{fmt(r.day_psi_mean)} / {fmt(r.day_psi_max)}",
                    "training days KS mean/max": f"{fmt(r.day_ks_mean)} / {fmt(r.day_ks_max)}",
                    "verdict": "DRIFT" if r.drift else "ok",
                }
                for r in self.rows
            ]
        ).set_index("row")


def compare_row(row: RowReference, values: np.ndarray | pd.Series) -> RowDrift:
    """One row's PSI and KS of new values (NaN dropped) against the reference."""
    finite = _finite(values)
    return RowDrift(
        row.name,
        row.kind,
        len(finite),
        row.psi(finite) if len(finite) else float("nan"),
        row.ks(finite),
        row.psi_limit,
        row.ks_limit,
        row.day_psi_mean,
        row.day_psi_max,
        row.day_ks_mean,
        row.day_ks_max,
    )


def compare(
    reference: DriftReference, frame: pd.DataFrame, schema: FeatureSchema | None = None
) -> DriftReport:
    """The drift of a frame of readings (labeled or not; a room column optional) against the
    reference, every row the reference and the frame both have. ``schema``: the model's, for the
    feature rows (without it those rows are left out)."""
    if len(frame) < MIN_READINGS:
        raise ValueError(f"{len(frame)} readings: at least {MIN_READINGS} are needed to judge drift")
    values = row_values(frame.reset_index(drop=True), schema)
    rows, missing = [], []
    for name, row in reference.rows.items():
        if name in values:
            rows.append(compare_row(row, values[name][1]))
        elif row.kind != "feature" or schema is not None:
            missing.append(name)
    return DriftReport(rows, len(frame), reference.baseline_days, missing)


# ---------------------------------------------------------------------------- showing


def rich_table(report: DriftReport, title: str = "Input drift") -> Any:
    """The report as a rich table: PSI and KS per row beside their limits and the training days."""
    from rich.table import Table

    table = Table(title=title)
    for header in ("row", "kind", "PSI", "limit", "training days PSI mean / max", "KS", "limit",
                   "training days KS mean / max", "verdict"):  # fmt: skip
        table.add_column(header, justify="left" if header in ("row", "kind", "verdict") else "right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for r in report.rows:
        table.add_row(
            r.name,
            r.kind,
            f"[bold red]{fmt(r.psi)}[/]" if r.psi > r.psi_limit else fmt(r.psi),
            fmt(r.psi_limit),
            f"{fmt(r.day_psi_mean)} / {fmt(r.day_psi_max)}",
            f"[bold red]{fmt(r.ks)}[/]" if r.ks > r.ks_limit else fmt(r.ks),
            fmt(r.ks_limit),
            f"{fmt(r.day_ks_mean)} / {fmt(r.day_ks_max)}",
            "[bold red]DRIFT[/]" if r.drift else "ok",
        )
    return table


def plot_report(
    reference: DriftReference,
    frame: pd.DataFrame,
    report: DriftReport,
    path: Any,
    schema: FeatureSchema | None = None,
) -> None:
    """A PNG: per row, the training CDF (from the reference's quantiles) and the new readings' CDF,
    titled with PSI, KS and the verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = row_values(frame, schema)
    shown = [r for r in report.rows if r.name in values]
    columns = 3
    lines = max(1, -(-len(shown) // columns))
    figure, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.2 * lines), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax, result in zip(axes.flat, shown, strict=False):
        row = reference.rows[result.name]
        levels = np.linspace(0.0, 1.0, len(row.quantiles))
        ax.step(row.quantiles, levels, where="post", label="training", color="tab:blue")
        new = np.sort(_finite(values[result.name][1]))
        if len(new):
            ax.step(new, np.arange(1, len(new) + 1) / len(new), where="post", label="new", color="tab:red")
        verdict = "DRIFT" if result.drift else "ok"
        ax.set_title(
            f"{result.name}: {verdict}\nPSI {result.psi:.2f} (limit {result.psi_limit:.2f}), "
            f"KS {result.ks:.2f} (limit {result.ks_limit:.2f})",
            fontsize=9,
            color="tab:red" if result.drift else "black",
        )
        ax.set_ylabel("share of readings ≤ x", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    figure.suptitle(f"Training CDF vs new readings ({report.readings}): {report.summary()}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
