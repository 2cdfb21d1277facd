"""Occupancy sensor data: locate it, load it, split it into daily files as a labeling tool would."""

from __future__ import annotations

import os
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

SENSOR_COLUMNS = ["Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]
LABEL_COLUMN = "Occupancy"
TIME_COLUMN = "date"
UCI_ZIP_URL = "https://archive.ics.uci.edu/static/public/357/occupancy+detection.zip"
SOURCE_FILES = ("datatraining.txt", "datatest.txt")
_REPO = Path(__file__).resolve().parents[1]


class DataNotFoundError(FileNotFoundError):
    pass


def locate_occupancy_data(folder: Path | None = None) -> Path:
    """The folder holding the UCI Occupancy Detection files.

    Order: the folder given, ``$OCCUPANCY_DATA``, ``../shared/data/occupancy`` beside the checkout,
    a copy cached in ``~/.cache/occupancy-mlops``, else a download from the UCI repository.
    """
    candidates = [folder] if folder else []
    if os.environ.get("OCCUPANCY_DATA"):
        candidates.append(Path(os.environ["OCCUPANCY_DATA"]))
    cache = Path.home() / ".cache" / "occupancy-mlops" / "occupancy"
    if not folder:
        candidates += [_REPO.parent / "shared" / "data" / "occupancy", cache]
    for candidate in candidates:
        if candidate and (candidate / SOURCE_FILES[0]).is_file():
            return candidate
    if folder:
        raise DataNotFoundError(
            f"{folder} holds no {SOURCE_FILES[0]} (expected the UCI Occupancy Detection files)"
        )
    return _download(cache)


def _download(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "occupancy.zip"
    try:
        urllib.request.urlretrieve(UCI_ZIP_URL, archive)
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if Path(name).name in SOURCE_FILES:
                    (target / Path(name).name).write_bytes(zf.read(name))
    except OSError as exc:
        raise DataNotFoundError(
            f"occupancy data not found locally and the download from {UCI_ZIP_URL} failed ({exc}); "
            "pass --data DIR or set OCCUPANCY_DATA to a folder with datatraining.txt and datatest.txt"
        ) from exc
    finally:
        archive.unlink(missing_ok=True)
    return target


def load_occupancy_file(path: Path) -> pd.DataFrame:
    """One UCI file: quoted row number as index, a ``date`` column, sensors, label."""
    frame = pd.read_csv(path, index_col=0, parse_dates=[TIME_COLUMN])
    return frame.reset_index(drop=True)


def load_all(folder: Path) -> pd.DataFrame:
    """Every source file of the folder, one frame ordered by time."""
    frames = [load_occupancy_file(folder / name) for name in SOURCE_FILES if (folder / name).is_file()]
    if not frames:
        raise DataNotFoundError(f"no occupancy files ({', '.join(SOURCE_FILES)}) in {folder}")
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)


def split_by_day(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write one CSV per calendar day (``YYYY-MM-DD.csv``), the unit a labeling round produces."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for day, rows in frame.groupby(frame[TIME_COLUMN].dt.date, sort=True):
        path = out_dir / f"{day.isoformat()}.csv"
        rows.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
        paths.append(path)
    return paths
