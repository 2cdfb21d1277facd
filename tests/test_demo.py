"""`make demo`: dataset versions per labeling round (stage 1), the first champion through an agent
(stage 2), then the whole loop (stage 3): a Production round retrained by the scheduler and agents
without anyone asking, gated, deployed as a canary on the real clearml-serving app under replayed
traffic with an injected fault in the canary arm, and rolled back on Prometheus' numbers."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from occupancy_mlops.demo import run_demo


def test_demo_versions_first_champion_then_the_loop_rolls_a_faulty_canary_back(
    tmp_path, occupancy_dir, monkeypatch
):
    monkeypatch.setattr("os.environ", {**os.environ, "HOME": str(tmp_path / "home")})  # demo sets CLEARML_*
    out = io.StringIO()
    result = run_demo(
        tmp_path / "demo", occupancy_dir, days=3, retrain_days=1, console=Console(file=out, width=200)
    )
    reports = result.versions
    assert len(reports) == 3
    assert reports[0].parent_id is None
    assert [r.parent_id for r in reports[1:]] == [r.dataset_id for r in reports[:-1]]
    assert [r.added for r in reports] == [["2015-02-04.csv"], ["2015-02-05.csv"], ["2015-02-06.csv"]]
    assert [r.total_files for r in reports] == [1, 2, 3]
    assert all(r.delta_bytes > 0 and not r.modified and not r.removed for r in reports)
    assert result.verdict is not None and result.verdict["published"], result.verdict
    assert "first model" in result.verdict["reason"]
    # the evaluation set is datatest.txt as one file per day: the gate scored every day as a window
    days = ["2015-02-02.csv", "2015-02-03.csv", "2015-02-04.csv"]
    assert [w["window"] for w in result.verdict["windows"]] == days
    assert [w["rows"] for w in result.verdict["windows"]] == [581, 1440, 644]
    assert all(0.9 < w["accuracy"] <= 1.0 and w["brier"] < 0.1 for w in result.verdict["windows"])
    assert "2015-02-03.csv" in result.verdict["reason"]
    text = out.getvalue()
    assert "Dataset versions of Occupancy/room-sensors" in text
    assert reports[2].dataset_id[:8] in text
    assert "published, champion" in text

    # stage 3: the third day arrived tagged Production and was retrained by itself
    assert "Production" in reports[2].tags and "Production" not in reports[1].tags
    rows = {r.dataset_id: r for r in result.timeline}
    auto = rows[reports[2].dataset_id]
    assert auto.run_status == "completed", auto
    assert auto.verdict in ("published", "rejected") and auto.accuracy is not None
    assert auto.champion_accuracy is not None, "the challenger was compared with the published champion"
    windows = result.gate_windows[auto.model_id]
    assert [w["window"] for w in windows] == days and all("champion_accuracy" in w for w in windows)
    assert "gate per evaluation window: 2015-02-02.csv" in text
    assert auto.finalized and auto.launched and auto.decided
    assert auto.finalized <= auto.launched <= auto.decided
    assert rows[reports[1].dataset_id].run_id is None, "an untagged version is not launched"
    assert "The loop, per version of Occupancy/room-sensors" in text

    # the first Production round's canary fails half of its requests in serving: rolled back
    assert "INJECTED FAULT" in text
    if auto.verdict == "published":  # (a challenger the gate refuses never reaches serving)
        assert auto.state == "rolled-back", auto
        assert auto.canary_live and auto.canary_decided and auto.decided <= auto.canary_live
        assert "error_ratio" in text, "the reason names the failing check"
    replay = result.replay
    assert replay is not None and replay.by_status()[200] > 100, replay.by_status()
    assert set(replay.by_arm()) >= {"champion"}
    accuracy = replay.accuracy()
    assert accuracy is not None and accuracy > 0.9, "live answers checked against the labels"
    assert result.report is not None and result.report.is_file()
    for figure in ("accuracy.png", "traffic.png", "p95.png", "errors.png"):
        assert (result.report.parent / figure).stat().st_size > 10_000, figure


def test_demo_names_a_missing_data_folder(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "occupancy_mlops.cli",
            "demo",
            "--data",
            str(tmp_path / "nowhere"),
            "--workdir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "400"},  # keep rich from wrapping the path
    )
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr and "datatraining.txt" in proc.stderr
