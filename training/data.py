"""Occupancy sensor data: locate it, load it, split it into daily files as a labeling tool would."""

from __future__ import annotations

import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


# ---------------------------------------------------------------------------- validation

# Physically plausible ranges for an office room; a reading outside is a sensor or export fault.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "Temperature": (-10.0, 50.0),  # °C
    "Humidity": (0.0, 100.0),  # %
    "Light": (0.0, 5000.0),  # lux
    "CO2": (0.0, 10000.0),  # ppm
    "HumidityRatio": (0.0, 0.05),  # kg water / kg air
}
REQUIRED_COLUMNS = [TIME_COLUMN, *SENSOR_COLUMNS, LABEL_COLUMN]
MAX_REPORTED_PROBLEMS = 10


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None  # line number in the file, the header being line 1
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}"


class DataValidationError(ValueError):
    """A labeled file that must not enter a dataset or a training run; names file, line, column."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(problems)} problem(s) in labeled data:\n{shown}{tail}")


def read_labeled_csv(path: Path, require_label: bool = True) -> pd.DataFrame:
    """Read and validate one labeled CSV (the UCI layout or our daily files).

    Raises :class:`DataValidationError` naming file, line and column of every problem found.
    """
    name = path.name
    try:
        # the UCI files carry an unnamed row-number column: pandas makes it the index; drop it
        raw = pd.read_csv(path, dtype=str, keep_default_na=False).reset_index(drop=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError([Problem(name, None, None, f"not a readable CSV file ({exc})")]) from exc
    required = REQUIRED_COLUMNS if require_label else REQUIRED_COLUMNS[:-1]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise DataValidationError(
            [
                Problem(name, 1, c, "required column is missing (header has: " + ", ".join(raw.columns) + ")")
                for c in missing
            ]
        )
    if raw.empty:
        raise DataValidationError([Problem(name, None, None, "the file has a header but no rows")])
    problems: list[Problem] = []
    line_of = raw.index.to_numpy() + 2  # header is line 1
    frame = pd.DataFrame(index=raw.index)
    dates = pd.to_datetime(raw[TIME_COLUMN], errors="coerce", format="mixed")
    for i in raw.index[dates.isna()]:
        problems.append(
            Problem(name, int(line_of[i]), TIME_COLUMN, f"{raw.at[i, TIME_COLUMN]!r} is not a timestamp")
        )
    frame[TIME_COLUMN] = dates
    for column in required[1:]:
        values = pd.to_numeric(raw[column].str.strip(), errors="coerce")
        for i in raw.index[values.isna() | ~np.isfinite(values.fillna(0))]:
            problems.append(
                Problem(name, int(line_of[i]), column, f"{raw.at[i, column]!r} is not a finite number")
            )
        frame[column] = values
    for column, (low, high) in PLAUSIBLE_RANGES.items():
        bad = frame[column].notna() & ~frame[column].between(low, high)
        for i in raw.index[bad]:
            problems.append(
                Problem(
                    name,
                    int(line_of[i]),
                    column,
                    f"{frame.at[i, column]} is outside the plausible range [{low}, {high}]",
                )
            )
    if require_label:
        labels = frame[LABEL_COLUMN]
        for i in raw.index[labels.notna() & ~labels.isin([0, 1])]:
            problems.append(
                Problem(
                    name, int(line_of[i]), LABEL_COLUMN, f"label {raw.at[i, LABEL_COLUMN]!r} is not 0 or 1"
                )
            )
    duplicated = frame[TIME_COLUMN].notna() & frame[TIME_COLUMN].duplicated(keep="first")
    for i in raw.index[duplicated]:
        problems.append(
            Problem(name, int(line_of[i]), TIME_COLUMN, f"duplicate timestamp {frame.at[i, TIME_COLUMN]}")
        )
    if problems:
        raise DataValidationError(problems)
    if require_label:
        frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int64")
    return frame.reset_index(drop=True)


def labeled_files(paths: list[Path]) -> list[Path]:
    """CSV/TXT files named directly or found (recursively) in the folders named, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.suffix.lower() in (".csv", ".txt") and p.is_file()
            )
        elif path.is_file():
            found.append(path)
        else:
            raise DataNotFoundError(f"{path} does not exist")
    if not found:
        raise DataNotFoundError("no .csv or .txt files in " + ", ".join(str(p) for p in paths))
    return found


def load_labeled(paths: list[Path], require_label: bool = True) -> pd.DataFrame:
    """Every labeled file validated and concatenated, ordered by time; problems of all files at once."""
    frames, problems = [], []
    for path in labeled_files(paths):
        try:
            frame = read_labeled_csv(path, require_label)
        except DataValidationError as exc:
            problems += exc.problems
            continue
        frame["source"] = path.name
        frames.append(frame)
    if problems:
        raise DataValidationError(problems)
    frame = pd.concat(frames, ignore_index=True).sort_values(TIME_COLUMN, kind="stable")
    duplicated = frame[TIME_COLUMN].duplicated(keep="first")
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise DataValidationError(
            [
                Problem(
                    str(first["source"]),
                    None,
                    TIME_COLUMN,
                    f"timestamp {first[TIME_COLUMN]} also appears in another file "
                    f"({int(duplicated.sum())} duplicate(s) across files)",
                )
            ]
        )
    return frame.reset_index(drop=True)
