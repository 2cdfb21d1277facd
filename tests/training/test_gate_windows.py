"""The gate over several evaluation windows, and against the best of the recent champions.

Unit tests of the decision: the gate's own collaborators (the registry and where model packages come
from) are fakes here; ClearML is exercised in test_gate_outcomes.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.config import TrainingConfig
from training.data import load_labeled
from training.evaluate import GateDecision, GatePolicy, split_windows
from training.gate import GateError, gate
from training.registry import RegistryState

DAYS = ("2015-02-02", "2015-02-03", "2015-02-04")
ROWS_PER_DAY = 1000


def eval_frame(days: tuple[str, ...] = DAYS, rows: int = ROWS_PER_DAY) -> pd.DataFrame:
    """Minute readings, one file per day, occupied every other reading."""
    parts = []
    for day in days:
        dates = pd.date_range(f"{day} 00:00", periods=rows, freq="min")
        parts.append(
            pd.DataFrame(
                {"date": dates, "Occupancy": np.arange(rows) % 2, "room": "default", "source": f"{day}.csv"}
            )
        )
    return pd.concat(parts, ignore_index=True)


@dataclass
class FakeBundle:
    """A model that errs on the first ``errors[day]`` readings of each day, confident otherwise."""

    errors: dict[str, int]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        labels = frame["Occupancy"].to_numpy().astype(float)
        proba = np.where(labels == 1, 0.9, 0.1)
        day = frame["date"].dt.strftime("%Y-%m-%d").to_numpy()
        for name, count in self.errors.items():
            wrong = np.flatnonzero(day == name)[:count]
            proba[wrong] = 1.0 - proba[wrong]
        return proba


def errors(**per_day: int) -> FakeBundle:
    """``errors(d03=8)``: 8 errors on 2015-02-03."""
    return FakeBundle({f"2015-02-{k[1:]}": v for k, v in per_day.items()})


@dataclass
class FakeStore:
    bundles: dict[str, Any]
    asked: list[str] = field(default_factory=list)
    recorded: dict[str, tuple[GateDecision, dict[str, str]]] = field(default_factory=dict)

    def bundle(self, model_id: str) -> Any:
        self.asked.append(model_id)
        found = self.bundles[model_id]
        if isinstance(found, Exception):
            raise found
        return found

    def record(self, model_id: str, decision: GateDecision, metadata: dict[str, str]) -> None:
        self.recorded[model_id] = (decision, metadata)

    def legacy_champion(self, project: str, model_name: str, exclude: str) -> str | None:
        return None


@dataclass
class FakeRegistry:
    champion: str | None = None
    former: list[str] = field(default_factory=list)
    project: str = "Occupancy"
    model_name: str = "occupancy-mlp"
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def read(self) -> RegistryState:
        return RegistryState(
            generation=1 if self.champion else 0, champion=self.champion, former=list(self.former)
        )

    def submit(self, model_id: str, reason: str) -> RegistryState:
        self.calls.append(("submit", model_id, reason))
        return self.read()

    def submit_and_promote(self, model_id: str, reason: str) -> RegistryState:
        self.calls.append(("submit_and_promote", model_id, reason))
        return self.read()

    def reject(self, model_id: str, reason: str) -> RegistryState:
        self.calls.append(("reject", model_id, reason))
        return self.read()


POLICY = GatePolicy(floor=0.97, tolerance=0.005, window="file", min_rows=500, recent=3)


def run_gate(
    bundles: dict[str, Any],
    champion: str | None = None,
    former: tuple[str, ...] = (),
    policy: GatePolicy = POLICY,
    frame: pd.DataFrame | None = None,
    mode: str = "canary",
) -> tuple[GateDecision, FakeRegistry, FakeStore]:
    registry = FakeRegistry(champion, list(former))
    store = FakeStore(bundles)
    decision = gate(
        "new",
        eval_frame() if frame is None else frame,
        policy,
        "Occupancy",
        "occupancy-mlp",
        mode,
        registry=registry,
        store=store,
        report=False,
    )
    return decision, registry, store


# ---------------------------------------------------------------------------- windows


def test_the_test_file_splits_into_its_three_days_and_a_small_day_merges(occupancy_dir: Path) -> None:
    frame = load_labeled([occupancy_dir / "datatest.txt"])
    windows, notes = split_windows(frame, "day", 500)
    assert [(w.name, w.rows) for w in windows] == [
        ("2015-02-02", 581),
        ("2015-02-03", 1440),
        ("2015-02-04", 644),
    ]
    assert notes == []

    windows, notes = split_windows(frame, "day", 600)  # 2015-02-02 has 581 readings
    assert [(w.name, w.rows) for w in windows] == [("2015-02-02+2015-02-03", 2021), ("2015-02-04", 644)]
    assert notes == ["2015-02-02 (581 rows) merged into window 2015-02-02+2015-02-03: fewer than 600 rows"]

    windows, _ = split_windows(frame, "day", 700)  # the small last day joins the window before it
    assert [w.name for w in windows] == ["2015-02-02+2015-02-03+2015-02-04"]
    assert sorted(np.concatenate([w.positions for w in windows])) == list(range(len(frame)))

    (week,), _ = split_windows(frame, "week", 500)
    assert (week.name, week.rows) == ("2015-W06", len(frame))
    (whole,), _ = split_windows(frame, "file", 500)  # one file: one window, the gate of before
    assert (whole.name, whole.rows) == ("datatest.txt", len(frame))


def test_file_windows_follow_time_and_tiny_files_never_decide_alone() -> None:
    frame = eval_frame(("2015-02-04", "2015-02-02", "2015-02-03")).sample(frac=1.0, random_state=1)
    windows, _ = split_windows(frame, "file", 500)
    assert [w.name for w in windows] == ["2015-02-02.csv", "2015-02-03.csv", "2015-02-04.csv"]
    tiny = pd.concat([eval_frame(("2015-02-02",)), eval_frame(("2015-02-05",), rows=30)], ignore_index=True)
    windows, notes = split_windows(tiny, "file", 500)
    assert [w.name for w in windows] == ["2015-02-02.csv+2015-02-05.csv"]
    assert "2015-02-05.csv (30 rows) merged" in notes[0]


# ---------------------------------------------------------------------------- the decision


def test_a_challenger_losing_on_one_window_is_refused_with_the_window_named() -> None:
    # better than the champion on the whole set (9 errors against 12) but 8 errors on 2015-02-03
    decision, registry, _store = run_gate(
        {"new": errors(d03=9), "champ": errors(d02=6, d04=6)}, champion="champ"
    )
    assert not decision.publish
    assert decision.challenger.accuracy > decision.champion.accuracy  # type: ignore[union-attr]
    assert decision.reason == (
        "2015-02-03.csv: accuracy 0.9910 regresses 0.0090 from the champion's 1.0000 "
        "(tolerance 0.0050) (1 of 3 windows)"
    )
    assert registry.calls == [("reject", "new", decision.reason)]
    verdicts = {v.window: v.passed for v in decision.windows}
    assert verdicts == {"2015-02-02.csv": True, "2015-02-03.csv": False, "2015-02-04.csv": True}

    # the old single-window gate would have published it: one file, one window
    single = eval_frame().assign(source="datatest.txt")
    decision, registry, _ = run_gate(
        {"new": errors(d03=9), "champ": errors(d02=6, d04=6)}, champion="champ", frame=single
    )
    assert decision.publish and registry.calls[0][0] == "submit"


def test_a_passing_challenger_is_reported_per_window_in_its_metadata() -> None:
    decision, registry, store = run_gate({"new": errors(d02=2), "champ": errors(d03=3)}, champion="champ")
    assert decision.publish and registry.calls == [("submit", "new", decision.reason)]
    assert decision.reason.startswith("accuracy 0.9993 vs champion 0.9990 (+0.0003, tolerance 0.0050)")
    assert "within the tolerance on all 3 windows (closest 2015-02-02.csv: -0.0020)" in decision.reason
    _, meta = store.recorded["new"]
    assert meta["gate_verdict"] == "published" and meta["eval_window"] == "file"
    table = json.loads(meta["gate_windows"])
    assert [row["window"] for row in table] == ["2015-02-02.csv", "2015-02-03.csv", "2015-02-04.csv"]
    assert [row["accuracy"] for row in table] == [0.998, 1.0, 1.0]
    assert [row["champion_accuracy"] for row in table] == [1.0, 0.997, 1.0]
    assert table[0]["rows"] == ROWS_PER_DAY and table[0]["brier"] > table[1]["brier"] > 0
    assert all(0 < row["ece"] < 1 for row in table)
    assert float(meta["eval_brier"]) > 0 and float(meta["eval_ece"]) > 0


def test_quality_does_not_ratchet_down_by_tolerance_steps() -> None:
    # champion 'b' was within the tolerance of the former champion 'a'; 'new' is within the tolerance
    # of 'b' on every window but further than the tolerance below 'a', the best recent champion
    bundles = {"a": errors(), "b": errors(d03=4), "new": errors(d03=8)}
    decision, registry, store = run_gate(bundles, champion="b", former=("a",))
    assert not decision.publish
    assert decision.reason == (
        "2015-02-03.csv: accuracy 0.9920 is 0.0080 below the best recent champion a's 1.0000 "
        "(tolerance 0.0050) (1 of 3 windows)"
    )
    assert decision.best_recent_id == "a" and registry.calls == [("reject", "new", decision.reason)]
    assert store.recorded["new"][1]["best_recent_champion"] == "a"

    # only the current champion (GATE_RECENT_CHAMPIONS=1): the same challenger steps down
    one = GatePolicy(floor=0.97, tolerance=0.005, recent=1)
    decision, _registry, store = run_gate(bundles, champion="b", former=("a",), policy=one)
    assert decision.publish and "a" not in store.asked

    # both at once: the reason names the champion and the best recent champion
    decision, _, _ = run_gate({**bundles, "new": errors(d03=10)}, champion="b", former=("a",))
    assert "regresses 0.0060 from the champion's 0.9960 and is 0.0100 below the best recent champion a's" in (
        decision.reason
    )


def test_a_passing_challenger_names_the_best_recent_champion_when_it_is_not_the_champion() -> None:
    bundles = {"a": errors(), "b": errors(d03=4), "new": errors(d03=3)}
    decision, _, _ = run_gate(bundles, champion="b", former=("a",))
    assert decision.publish
    assert decision.reason.endswith("; best recent champion a 1.0000 (-0.0010)")


def test_only_the_recent_champions_are_scored() -> None:
    bundles = {m: errors() for m in ("new", "c", "f1", "f2", "f3")}
    _, _, store = run_gate(bundles, champion="c", former=("f1", "f2", "f3"))
    assert sorted(store.asked) == ["c", "f1", "f2", "new"]  # the champion and the 2 newest former


def test_a_former_champion_whose_package_is_gone_is_skipped_and_said() -> None:
    bundles = {
        "new": errors(d03=8),
        "b": errors(d03=4),
        "gone": FileNotFoundError("/cache/gone is not a model folder: model.npz missing"),
        "a": errors(),
    }
    decision, _registry, store = run_gate(bundles, champion="b", former=("gone", "a"))
    assert not decision.publish, "the readable former champion still counts"
    assert "best recent champion a's 1.0000" in decision.reason
    assert (
        "former champion gone skipped: its package cannot be scored (FileNotFoundError: "
        "/cache/gone is not a model folder: model.npz missing)" in decision.reason
    )
    assert "gone skipped" in store.recorded["new"][1]["gate_notes"]

    # every former champion unreadable: the champion alone decides
    bundles["a"] = ValueError("corrupt npz")
    decision, _, _ = run_gate({**bundles, "new": errors(d03=6)}, champion="b", former=("gone", "a"))
    assert decision.publish and "a skipped" in decision.reason and "gone skipped" in decision.reason


def test_an_unreadable_champion_leaves_the_challenger_undecided() -> None:
    with pytest.raises(GateError, match=r"the champion champ cannot be scored .*OSError: download failed"):
        run_gate({"new": errors(), "champ": OSError("download failed")}, champion="champ")


def test_floor_first_model_and_deploy_modes() -> None:
    decision, registry, _ = run_gate({"new": errors(d02=50)}, policy=GatePolicy(floor=0.99))
    assert not decision.publish and decision.reason.startswith("accuracy 0.9833 is below the floor 0.9900")
    assert registry.calls[0][0] == "reject"

    decision, registry, _ = run_gate({"new": errors(d02=5)}, mode="direct")
    assert decision.publish and registry.calls[0][0] == "submit_and_promote"
    assert decision.reason == (
        "first model: accuracy 0.9983 clears the floor 0.9700 "
        "(windows: 2015-02-02.csv 0.9950, 2015-02-03.csv 1.0000, 2015-02-04.csv 1.0000)"
    )

    decision, registry, _ = run_gate({"new": errors(), "champ": errors()}, champion="champ", mode="direct")
    assert decision.publish and registry.calls[0][0] == "submit_and_promote"


def test_the_gate_settings_are_checked() -> None:
    config = TrainingConfig.from_mapping({})
    assert (config.EVAL_WINDOW, config.EVAL_WINDOW_MIN_ROWS, config.GATE_RECENT_CHAMPIONS) == ("file", 500, 3)
    assert TrainingConfig.from_mapping({"EVAL_WINDOW": "week"}).EVAL_WINDOW == "week"
    with pytest.raises(ValueError, match="EVAL_WINDOW='month' must be one of file, day, week"):
        TrainingConfig.from_mapping({"EVAL_WINDOW": "month"})
    with pytest.raises(ValueError, match="GATE_RECENT_CHAMPIONS must be at least 1"):
        TrainingConfig.from_mapping({"GATE_RECENT_CHAMPIONS": 0})
    with pytest.raises(ValueError, match="evaluation window 'hour'"):
        GatePolicy(window="hour")
