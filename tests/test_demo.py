"""`make demo`, first stage: one dataset version per day of labeled data, parent → child."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from occupancy_mlops.demo import run_demo


def test_demo_versions_then_first_champion_through_an_agent(tmp_path, occupancy_dir, monkeypatch):
    monkeypatch.setattr("os.environ", {**os.environ, "HOME": str(tmp_path / "home")})  # demo sets CLEARML_*
    out = io.StringIO()
    result = run_demo(tmp_path / "demo", occupancy_dir, days=3, console=Console(file=out, width=200))
    reports = result.versions
    assert len(reports) == 3
    assert reports[0].parent_id is None
    assert [r.parent_id for r in reports[1:]] == [r.dataset_id for r in reports[:-1]]
    assert [r.added for r in reports] == [["2015-02-04.csv"], ["2015-02-05.csv"], ["2015-02-06.csv"]]
    assert [r.total_files for r in reports] == [1, 2, 3]
    assert all(r.delta_bytes > 0 and not r.modified and not r.removed for r in reports)
    assert result.verdict is not None and result.verdict["published"], result.verdict
    assert "first model" in result.verdict["reason"]
    text = out.getvalue()
    assert "Dataset versions of Occupancy/room-sensors" in text
    assert reports[2].dataset_id[:8] in text
    assert "published, champion" in text


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
