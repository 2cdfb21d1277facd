"""``occupancy-mlops timeline`` reads at 80 columns, and its columns say what they hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from occupancy_mlops.timeline import VersionTimeline, timeline_table

T0 = datetime(2026, 12, 2, 9, 30, 0, tzinfo=UTC)


def _row(i: int, **extra: object) -> VersionTimeline:
    at = T0 + timedelta(minutes=i)
    fields: dict[str, object] = {
        "labeled": at - timedelta(seconds=2.5),
        "run_id": f"run{i}",
        "run_status": "completed",
        "launched": at + timedelta(seconds=0.7),
        "started": at + timedelta(seconds=1.9),
        "model_id": f"{i:032x}",
        "verdict": "published",
        "state": "rolled-back",
        "version": str(i + 10),
        "accuracy": 0.9786,
        "champion_accuracy": 0.9824,
        "decided": at + timedelta(seconds=39.7),
        "canary_live": at + timedelta(seconds=39.2),
        "canary_decided": at + timedelta(seconds=1078.0),
    }
    fields.update(extra)
    return VersionTimeline(f"{i:032x}", "sensors", ["Production", f"day-2015-02-{i:02d}"], at, **fields)  # type: ignore[arg-type]


def _render(rows: list[VersionTimeline], width: int, wide: bool = False) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(timeline_table(rows, "The loop", wide=wide))
    return console.export_text()


def test_the_timeline_fits_80_columns_without_cutting_a_cell():
    rows = [_row(1), _row(2, state="champion"), _row(3, verdict="rejected", state=None, canary_live=None)]
    rows.append(
        _row(
            4,
            verdict=None,
            state=None,
            run_id=None,
            launched=None,
            started=None,
            decided=None,
            canary_live=None,
            canary_decided=None,
            accuracy=None,
        )
    )
    text = _render(rows, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text, text
    header = next(line for line in lines if line.startswith("version"))
    for column in (
        "version",
        "labeled",
        "launched",
        "started",
        "gated",
        "canary",
        "decided",
        "verdict",
        "accuracy",
    ):
        assert column in header, header
    assert "+1078 " in text and "-2.5 " in text and "+0.7 " in text and "+1.9 " in text
    assert "seconds after the version was finalized" in text
    assert "rolled-back v11" in text and "champion v12" in text and "rejected" in text
    assert "not launched" in text


def test_stages_no_version_reached_are_left_out_and_wide_adds_detail():
    rows = [_row(1, canary_live=None, canary_decided=None, state=None)]
    text = _render(rows, 80)
    assert "canary" not in text and "decided" not in text and "published" in text
    wide = _render(rows, 160, wide=True)
    assert "Production, day-2015-02-01" in wide and "97.86% (98.24%)" in wide and "completed" in wide
    assert "09:31:00" in wide and "rolled-back" not in wide
