"""Occupancy sensor data: locate it, load it, split it into daily files as a labeling tool would."""

from __future__ import annotations

import os
import re
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

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


DOWNLOAD_TIMEOUT_SECONDS = 30.0
"""Per network operation (connect, each read) of the download from the UCI repository."""


def locate_occupancy_data(folder: Path | None = None) -> Path:
    """The folder holding the UCI Occupancy Detection files.

    Order: the folder given, else ``$OCCUPANCY_DATA`` (either one named is the only place looked
    at), else ``../shared/data/occupancy`` beside the checkout, a copy cached in
    ``~/.cache/occupancy-mlops``, and a download from the UCI repository. When
    none holds the files, the error names every place looked at and why it did not count.
    """
    looked: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if folder:
        candidates.append(("--data", folder))
    elif os.environ.get("OCCUPANCY_DATA"):
        candidates.append(("$OCCUPANCY_DATA", Path(os.environ["OCCUPANCY_DATA"])))
    else:
        looked.append("$OCCUPANCY_DATA (not set)")
    cache = Path.home() / ".cache" / "occupancy-mlops" / "occupancy"
    if not candidates:  # nothing named: the defaults
        candidates += [
            ("beside the checkout", _REPO.parent / "shared" / "data" / "occupancy"),
            ("cache", cache),
        ]
    for label, candidate in candidates:
        if (candidate / SOURCE_FILES[0]).is_file():
            return candidate
        why = "does not exist" if not candidate.exists() else f"holds no {SOURCE_FILES[0]}"
        looked.append(f"{label} {candidate} ({why})")
    if folder or os.environ.get("OCCUPANCY_DATA"):
        raise DataNotFoundError(
            "occupancy data not found: " + "; ".join(looked) + ". Expected the UCI Occupancy Detection "
            f"files ({', '.join(SOURCE_FILES)})."
        )
    return _download(cache, looked)


def _download(target: Path, looked: list[str]) -> Path:
    from tqdm import tqdm

    target.mkdir(parents=True, exist_ok=True)
    archive = target / "occupancy.zip.part"
    try:
        with urllib.request.urlopen(UCI_ZIP_URL, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                archive.open("wb") as out,
                tqdm(
                    total=total, unit="B", unit_scale=True, desc="downloading the UCI occupancy data"
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if Path(name).name in SOURCE_FILES:
                    (target / Path(name).name).write_bytes(zf.read(name))
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataNotFoundError(
            "occupancy data not found: " + "; ".join(looked) + f"; and the download from {UCI_ZIP_URL} "
            f"failed ({exc}). Pass --data DIR (make demo DATA=DIR) or set OCCUPANCY_DATA to a folder "
            f"with {' and '.join(SOURCE_FILES)}."
        ) from exc
    finally:
        archive.unlink(missing_ok=True)
    if not (target / SOURCE_FILES[0]).is_file():
        raise DataNotFoundError(f"the archive from {UCI_ZIP_URL} holds no {SOURCE_FILES[0]}")
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


ROOM_COLUMN = "room"
"""Optional column of a labeled file: the room each reading comes from. Without it, a file's room is
the folder it sits in (relative to the labeled folder), or :data:`DEFAULT_ROOM` at the top level."""
DEFAULT_ROOM = "default"
ROOM_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}$")
_OFFSET = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
UTC_OFFSETS = "utc_offsets"
"""``frame.attrs`` key: True when the file's timestamps carried UTC offsets (converted to UTC)."""


def room_of(rel_path: str) -> str:
    """The room of a file at ``rel_path`` inside a labeled folder: its folder, or the default room."""
    parent = PurePosixPath(rel_path).parent.as_posix()
    return DEFAULT_ROOM if parent in (".", "") else parent


def _parse_dates(raw: pd.Series, name: str, line_of: np.ndarray) -> tuple[pd.Series, bool, list[Problem]]:
    """Timestamps of a file: all naive (taken as they are) or all with a UTC offset (converted to UTC,
    offset dropped). A file mixing both is refused at its first line of the minority kind."""
    text = raw.str.strip()
    aware = text.str.contains(_OFFSET)
    problems: list[Problem] = []
    if aware.any() and not aware.all():
        minority = aware if aware.sum() <= (~aware).sum() else ~aware
        i = int(np.flatnonzero(minority.to_numpy())[0])
        j = int(np.flatnonzero((~minority).to_numpy())[0])
        has = "has a UTC offset" if aware.iloc[i] else "has no UTC offset"
        problems.append(
            Problem(
                name,
                int(line_of[i]),
                TIME_COLUMN,
                f"{raw.iloc[i]!r} {has} but line {int(line_of[j])} ({raw.iloc[j]!r}) does not agree: "
                "mixed timezones (give every timestamp of a room an offset, or none)",
            )
        )
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"), False, problems
    offsets = bool(aware.any())
    try:
        dates = pd.to_datetime(text, errors="coerce", format="mixed", utc=offsets)
    except (ValueError, TypeError, OverflowError):  # pandas refuses the column as a whole
        dates = pd.Series([pd.to_datetime(v, errors="coerce", utc=offsets) for v in text], index=raw.index)
    if offsets:
        dates = pd.to_datetime(dates, utc=True).dt.tz_convert(None)
    dates = pd.to_datetime(dates).astype("datetime64[ns]")
    for i in raw.index[dates.isna()]:
        problems.append(Problem(name, int(line_of[i]), TIME_COLUMN, f"{raw.at[i]!r} is not a timestamp"))
    return dates, offsets, problems


def read_labeled_csv(path: Path, require_label: bool = True, room: str = DEFAULT_ROOM) -> pd.DataFrame:
    """Read and validate one labeled CSV (the UCI layout or our daily files).

    Its readings belong to ``room`` unless the file has a ``room`` column. Raises
    :class:`DataValidationError` naming file, line and column of every problem found.
    """
    name = path.name
    try:
        # the UCI files carry an unnamed row-number column: pandas makes it the index; drop it
        raw = pd.read_csv(path, dtype=str, keep_default_na=False).reset_index(drop=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataValidationError([Problem(name, None, None, f"not a readable CSV file ({exc})")]) from exc
    required = REQUIRED_COLUMNS if require_label else REQUIRED_COLUMNS[:-1]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise DataValidationError(
            [
                Problem(
                    name,
                    1,
                    c,
                    "required column is missing (header has: " + ", ".join(map(str, raw.columns)) + ")",
                )
                for c in missing
            ]
        )
    if raw.empty:
        raise DataValidationError([Problem(name, None, None, "the file has a header but no rows")])
    line_of = raw.index.to_numpy() + 2  # header is line 1
    frame = pd.DataFrame(index=raw.index)
    frame[TIME_COLUMN], offsets, problems = _parse_dates(raw[TIME_COLUMN].astype(str), name, line_of)
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
    if ROOM_COLUMN in raw.columns:
        rooms = raw[ROOM_COLUMN].str.strip()
        for i in raw.index[~rooms.str.match(ROOM_PATTERN)]:
            problems.append(
                Problem(
                    name,
                    int(line_of[i]),
                    ROOM_COLUMN,
                    f"room {raw.at[i, ROOM_COLUMN]!r} is not a name of letters, digits, '.', '_', '-' "
                    "(and '/' between parts)",
                )
            )
        frame[ROOM_COLUMN] = rooms
    else:
        frame[ROOM_COLUMN] = room
    duplicated = frame[TIME_COLUMN].notna() & frame.duplicated([ROOM_COLUMN, TIME_COLUMN], keep="first")
    for i in raw.index[duplicated]:
        problems.append(
            Problem(
                name,
                int(line_of[i]),
                TIME_COLUMN,
                f"duplicate timestamp {frame.at[i, TIME_COLUMN]} in room {frame.at[i, ROOM_COLUMN]!r}",
            )
        )
    if problems:
        raise DataValidationError(problems)
    if require_label:
        frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int64")
    frame.attrs[UTC_OFFSETS] = offsets
    return frame.reset_index(drop=True)


def labeled_files(paths: list[Path]) -> dict[Path, str]:
    """CSV/TXT files named directly or found (recursively) in the folders named, in a stable order,
    each with its room (:func:`room_of` its path inside the folder named; a file named directly is in
    the default room). Hidden files and folders are skipped."""
    found: dict[Path, str] = {}
    for path in paths:
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(path)
                hidden = any(part.startswith(".") for part in rel.parts)
                if p.suffix.lower() in (".csv", ".txt") and p.is_file() and not hidden:
                    found[p] = room_of(PurePosixPath(*rel.parts).as_posix())
        elif path.is_file():
            found[path] = DEFAULT_ROOM
        else:
            raise DataNotFoundError(f"{path} does not exist")
    if not found:
        raise DataNotFoundError("no .csv or .txt files in " + ", ".join(str(p) for p in paths))
    return found


def check_combined(frames: dict[str, pd.DataFrame]) -> list[Problem]:
    """Problems between files (``name → validated frame``) that each passed on its own: the same
    minute of the same room in two files, and a room whose files disagree on UTC offsets."""
    problems: list[Problem] = []
    kinds: dict[str, dict[bool, str]] = {}
    for name, frame in frames.items():
        for room in frame[ROOM_COLUMN].unique():
            kinds.setdefault(str(room), {}).setdefault(bool(frame.attrs.get(UTC_OFFSETS)), name)
    for room, by_kind in sorted(kinds.items()):
        if len(by_kind) > 1:
            problems.append(
                Problem(
                    by_kind[False],
                    None,
                    TIME_COLUMN,
                    f"timestamps have no UTC offset, but those of {by_kind[True]} in the same room "
                    f"{room!r} do: mixed timezones",
                )
            )
    if len(frames) > 1:
        stacked = pd.concat(
            [f[[ROOM_COLUMN, TIME_COLUMN]].assign(_file=n) for n, f in frames.items()], ignore_index=True
        )
        duplicated = stacked.duplicated([ROOM_COLUMN, TIME_COLUMN], keep=False)
        shared = stacked[duplicated].groupby([ROOM_COLUMN, TIME_COLUMN], sort=True)
        for (room, stamp), rows in shared:
            files = sorted(set(rows["_file"]))
            if len(files) > 1:
                problems.append(
                    Problem(
                        files[1],
                        None,
                        TIME_COLUMN,
                        f"timestamp {stamp} of room {room!r} is also in {files[0]} ({shared.ngroups} "
                        "minute(s) of a room in more than one file; a minute of a room belongs in one file)",
                    )
                )
                break  # the first shared minute names both files
    return problems


def combine(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Validated files as one frame ordered by room, then time; ``source`` names each row's file."""
    frame = pd.concat([f.assign(source=name) for name, f in frames.items()], ignore_index=True)
    return frame.sort_values([ROOM_COLUMN, TIME_COLUMN], kind="stable").reset_index(drop=True)


def load_labeled(paths: list[Path], require_label: bool = True) -> pd.DataFrame:
    """Every labeled file validated and combined (ordered by room, then time); the problems of every
    file at once, then those between files (see :func:`check_combined`)."""
    entries: dict[str, tuple[Path, str]] = {}
    for path, room in labeled_files(paths).items():
        name = path.name if room == DEFAULT_ROOM else f"{room}/{path.name}"
        entries[str(path) if name in entries else name] = (path, room)  # str: two files of one name
    return _load(entries, require_label)


def load_dataset_files(files: dict[str, Path], require_label: bool = True) -> pd.DataFrame:
    """:func:`load_labeled` for the files of a dataset version, keyed by their path in the version
    (which gives their room: :func:`room_of`)."""
    return _load({rel: (path, room_of(rel)) for rel, path in files.items()}, require_label)


def _load(entries: dict[str, tuple[Path, str]], require_label: bool) -> pd.DataFrame:
    frames: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name, (path, room) in entries.items():
        try:
            frames[name] = read_labeled_csv(path, require_label, room)
        except DataValidationError as exc:
            problems += [replace(p, file=name) for p in exc.problems]
    if problems:
        raise DataValidationError(problems)
    problems = check_combined(frames)
    if problems:
        raise DataValidationError(problems)
    return combine(frames)
