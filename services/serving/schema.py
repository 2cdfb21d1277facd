"""The request body of ``POST /serve/occupancy``: validation into a time-ordered frame.

A body is either one reading (``{"date": ..., "Temperature": ..., ...}``) or
``{"readings": [reading, ...]}``: readings of one room in strictly increasing time, at most
:data:`MAX_READINGS`. Every problem raises one :class:`RequestError` whose message starts with the
path of the field (``readings[3].CO2: must be a finite number, got "abc"``). Pure functions.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from training.data import PLAUSIBLE_RANGES, SENSOR_COLUMNS, TIME_COLUMN

MAX_READINGS = 1440
"""Readings per request: one day at one a minute."""
FIELDS: tuple[str, ...] = (TIME_COLUMN, *SENSOR_COLUMNS)
READINGS_KEY = "readings"
MAX_DATE_LENGTH = 40
YEAR_RANGE = (1970, 2200)
ISO_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?\Z"
)
"""``YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|±HH:MM]``, ASCII digits only."""
_FIELD_SET = frozenset(FIELDS)
_EXPECTED = ", ".join(FIELDS)


class RequestError(ValueError):
    """A request body that cannot be served; ``field`` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


def describe(value: Any, limit: int = 40) -> str:
    """A short, safe rendering of a client's value for an error message."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(name: Any) -> str:
    """A client's field name as printable ASCII, shortened."""
    text = json.dumps(str(name), ensure_ascii=True)[1:-1]
    return '""' if not text else text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any, path: str, name: str) -> float:
    if type(value) is float:
        number = value
    elif type(value) is int:
        try:
            number = float(value)
        except OverflowError:
            raise RequestError(path, f"must be a finite number, got {describe(value)}") from None
    else:
        raise RequestError(path, f"must be a finite number, got {describe(value)}")
    if not math.isfinite(number):
        raise RequestError(path, f"must be a finite number, got {describe(value)}")
    low, high = PLAUSIBLE_RANGES.get(name, (-math.inf, math.inf))
    if not low <= number <= high:
        raise RequestError(path, f"{describe(value)} is outside the plausible range {low:g}..{high:g}")
    return number


def parse_timestamp(value: Any, path: str) -> datetime:
    """An ISO 8601 date-time (:data:`ISO_PATTERN`; with an offset: converted to UTC); years 1970..2200."""
    if not isinstance(value, str):
        raise RequestError(path, f"must be an ISO 8601 date-time string, got {describe(value)}")
    if len(value) > MAX_DATE_LENGTH or not ISO_PATTERN.match(value):
        raise RequestError(path, f"must be an ISO 8601 date-time string, got {describe(value)}")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise RequestError(path, f"must be an ISO 8601 date-time string, got {describe(value)}") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if not YEAR_RANGE[0] <= stamp.year <= YEAR_RANGE[1]:
        raise RequestError(path, f"year {stamp.year} is outside {YEAR_RANGE[0]}..{YEAR_RANGE[1]}")
    return stamp


def _has_offset(date: str) -> bool:
    """True for a validated :data:`ISO_PATTERN` string ending in ``Z`` or ``±HH:MM``."""
    return date.endswith("Z") or (len(date) >= 22 and date[-6] in "+-" and date[-3] == ":")


def _reading(item: Any, prefix: str) -> tuple[datetime, list[float]]:
    where = prefix or "body"
    if not isinstance(item, dict):
        raise RequestError(where, f"must be an object with {_EXPECTED}, got {describe(item)}")
    if len(item) != len(FIELDS) or not _FIELD_SET.issuperset(item):
        for key in item:
            if key not in _FIELD_SET:
                shown = _key(key)
                raise RequestError(
                    f"{prefix}.{shown}" if prefix else shown, f"unknown field (expected {_EXPECTED})"
                )
        for key in FIELDS:
            if key not in item:
                raise RequestError(f"{prefix}.{key}" if prefix else key, "missing")
    dot = f"{prefix}." if prefix else ""
    stamp = parse_timestamp(item[TIME_COLUMN], dot + TIME_COLUMN)
    return stamp, [_number(item[name], dot + name, name) for name in SENSOR_COLUMNS]


@dataclass(frozen=True)
class Readings:
    """Validated readings in time order: ``stamps`` (datetime64[ns], UTC when an offset was given),
    ``values`` (n x sensors, float64, in :data:`SENSOR_COLUMNS` order), ``dates`` as the client wrote them."""

    stamps: np.ndarray
    values: np.ndarray
    dates: list[str]

    def __len__(self) -> int:
        return len(self.dates)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, SENSOR_COLUMNS.index(name)]

    def frame(self) -> pd.DataFrame:
        data: dict[str, Any] = {TIME_COLUMN: self.stamps}
        for j, name in enumerate(SENSOR_COLUMNS):
            data[name] = self.values[:, j]
        return pd.DataFrame(data)


def parse_request(body: Any) -> pd.DataFrame:
    """Validate a decoded JSON body; return its readings as a frame (``date`` + sensors, float64).

    Raises :class:`RequestError` naming the first offending field.
    """
    return parse_readings(body).frame()


def parse_readings(body: Any) -> Readings:
    """:func:`parse_request` without pandas (the serving path): arrays and the client's date strings."""
    if not isinstance(body, dict):
        raise RequestError(
            "body", f'must be a JSON object (one reading or {{"readings": [...]}}), got {describe(body)}'
        )
    if READINGS_KEY in body:
        extra = [k for k in body if k != READINGS_KEY]
        if extra:
            raise RequestError(_key(extra[0]), f'unknown field beside "{READINGS_KEY}"')
        items = body[READINGS_KEY]
        if not isinstance(items, list):
            raise RequestError(READINGS_KEY, f"must be a list of readings, got {describe(items)}")
        if not items:
            raise RequestError(READINGS_KEY, "must hold at least one reading")
        if len(items) > MAX_READINGS:
            raise RequestError(READINGS_KEY, f"at most {MAX_READINGS} readings, got {len(items)}")
        parsed = [_reading(item, f"{READINGS_KEY}[{i}]") for i, item in enumerate(items)]
        dates = [item[TIME_COLUMN] for item in items]
        prefix = READINGS_KEY
    else:
        parsed = [_reading(body, "")]
        dates = [body[TIME_COLUMN]]
        prefix = ""
    stamps = [stamp for stamp, _ in parsed]
    if len(dates) > 1:  # the data contract: a room's timestamps all carry an offset, or none does
        aware = [_has_offset(d) for d in dates]
        if any(aware) and not all(aware):
            i = aware.index(not aware[0])
            has = "has a UTC offset" if aware[i] else "has no UTC offset"
            raise RequestError(
                f"{prefix}[{i}].{TIME_COLUMN}",
                f"{has} but {prefix}[0].{TIME_COLUMN} does not agree: mixed timezones "
                "(give every timestamp an offset, or none)",
            )
    for i in range(1, len(stamps)):
        if stamps[i] <= stamps[i - 1]:
            what = "duplicates" if stamps[i] == stamps[i - 1] else "is earlier than"
            raise RequestError(
                f"{prefix}[{i}].{TIME_COLUMN}",
                f"{stamps[i].isoformat(sep=' ')} {what} {prefix}[{i - 1}].{TIME_COLUMN}: "
                "readings must be in strictly increasing time",
            )
    values = np.array([row for _, row in parsed], dtype=np.float64).reshape(len(parsed), len(SENSOR_COLUMNS))
    return Readings(np.array(stamps, dtype="datetime64[ns]"), values, dates)
