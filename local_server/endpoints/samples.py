"""Time series kept in the events table, one key per UTC day (as the real server keeps them in
dated Elasticsearch indices): a read for a date range loads only the days in it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ..store import Doc, Transaction

MAX_DAYS = 400  # a range longer than this is read from its end


def day_key(prefix: str, timestamp_ms: float) -> str:
    day = datetime.fromtimestamp(max(0.0, timestamp_ms) / 1000, UTC).date()
    return f"{prefix}:{day.isoformat()}"


def _days(from_s: float, to_s: float) -> Iterator[str]:
    last = datetime.fromtimestamp(max(0.0, to_s), UTC).date()
    first = max(datetime.fromtimestamp(max(0.0, from_s), UTC).date(), last - timedelta(days=MAX_DAYS))
    day = first
    while day <= last:
        yield day.isoformat()
        day += timedelta(days=1)


def add(tx: Transaction, prefix: str, kind: str, sample: Doc) -> None:
    tx.add_event(day_key(prefix, sample["timestamp"]), kind, sample)


def read(tx: Transaction, prefix: str, kind: str, from_s: float, to_s: float) -> list[Doc]:
    """The samples of the days from ``from_s`` to ``to_s`` (epoch seconds), by day."""
    rows: list[Doc] = []
    for day in _days(from_s, to_s):
        rows += tx.events(f"{prefix}:{day}", [kind])
    return rows
