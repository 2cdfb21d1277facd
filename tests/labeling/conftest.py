from __future__ import annotations

from pathlib import Path

import pytest

from training.data import load_occupancy_file, split_by_day


@pytest.fixture(scope="session")
def days(occupancy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The training week of the real data, one CSV per day (the first 3 days)."""
    frame = load_occupancy_file(occupancy_dir / "datatraining.txt")
    return split_by_day(frame, tmp_path_factory.mktemp("days"))[:3]
