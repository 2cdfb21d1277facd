"""A generated corpus of bad requests to ``POST /serve/occupancy``: each with the status class and the
field path its error message must start with."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from services.serving.middleware import DEFAULT_MAX_BODY_BYTES
from services.serving.schema import MAX_READINGS
from tests.serving.server import READING

SENSORS = ("Temperature", "Humidity", "Light", "CO2", "HumidityRatio")
JSON = {"Content-Type": "application/json"}


@dataclass
class Case:
    name: str
    body: bytes
    status: int  # expected status
    field: str  # the error message starts with it
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def readings(n: int = 5) -> list[dict[str, Any]]:
    return [dict(READING, date=f"2015-02-04 17:{m:02d}:00") for m in range(n)]


BAD_VALUES: list[tuple[str, Any]] = [
    ("string", "abc"),
    ("empty string", ""),
    ("numeric string", "23.1"),
    ("NaN string", "NaN"),
    ("Infinity string", "Infinity"),
    ("-inf string", "-inf"),
    ("true", True),
    ("false", False),
    ("null", None),
    ("empty list", []),
    ("list", [1.0]),
    ("object", {}),
    ("nested object", {"value": 1.0}),
    ("1e309 (inf)", float("inf")),
    ("-1e309", float("-inf")),
    ("NaN", float("nan")),
    ("huge int", 10**400),
    ("above range", 1e6),
    ("below range", -1e6),
    ("unicode digits", "２３"),
]


def value_cases() -> list[Case]:
    cases = []
    for name in SENSORS:
        for label, value in BAD_VALUES:
            cases.append(Case(f"{name} {label}", _dump(dict(READING, **{name: value})), 422, name))
            series = readings()
            series[3][name] = value
            cases.append(
                Case(f"readings[3].{name} {label}", _dump({"readings": series}), 422, f"readings[3].{name}")
            )
        # bare JSON tokens the Python parser accepts
        for token in ("NaN", "Infinity", "-Infinity", "1e999"):
            text = json.dumps(dict(READING, **{name: 0.5})).replace(f'"{name}": 0.5', f'"{name}": {token}')
            cases.append(Case(f"{name} bare {token}", text.encode(), 422, name))
    return cases


def date_cases() -> list[Case]:
    bad = [
        123,
        None,
        "",
        "yesterday",
        "2015-13-01 00:00:00",
        "2015-02-30 10:00:00",
        "0001-01-01T00:00:00",
        "9999-12-31 23:59:59",
        "２０１５-02-04 17:51:00",
        "2015-02-04 17:51:00\u0000",
        "2015-02-04 17:51:00" + " " * 100,
        ["2015-02-04 17:51:00"],
        {"iso": "2015-02-04 17:51:00"},
        True,
        "2015-02-04T17:51:00+99:00",
    ]
    cases = [Case(f"date {v!r}"[:60], _dump(dict(READING, date=v)), 422, "date") for v in bad]
    for v in bad[:8]:
        series = readings()
        series[2]["date"] = v
        cases.append(
            Case(f"readings[2].date {v!r}"[:60], _dump({"readings": series}), 422, "readings[2].date")
        )
    unordered = readings()
    unordered[1], unordered[2] = unordered[2], unordered[1]
    cases.append(Case("unordered", _dump({"readings": unordered}), 422, "readings[2].date"))
    duplicate = readings()
    duplicate[4]["date"] = duplicate[3]["date"]
    cases.append(Case("duplicate timestamp", _dump({"readings": duplicate}), 422, "readings[4].date"))
    same_instant = readings(2)
    same_instant[0]["date"] = "2015-02-04T18:00:00+01:00"
    same_instant[1]["date"] = "2015-02-04T17:00:00Z"
    cases.append(
        Case("same instant, two offsets", _dump({"readings": same_instant}), 422, "readings[1].date")
    )
    return cases


def structure_cases() -> list[Case]:
    cases = []
    for name in ("date", *SENSORS):
        reading = {k: v for k, v in READING.items() if k != name}
        cases.append(Case(f"missing {name}", _dump(reading), 422, name))
        series = readings()
        del series[1][name]
        cases.append(
            Case(f"readings[1] missing {name}", _dump({"readings": series}), 422, f"readings[1].{name}")
        )
    for extra in ("Occupancy", "extra", "", "ü", "date ", "co2"):
        cases.append(
            Case(f"extra field {extra!r}", _dump(dict(READING, **{extra: 1})), 422, json.dumps(extra)[1:-1])
        )
    cases += [
        Case("readings a string", _dump({"readings": "x"}), 422, "readings"),
        Case("readings an object", _dump({"readings": {}}), 422, "readings"),
        Case("readings null", _dump({"readings": None}), 422, "readings"),
        Case("readings a number", _dump({"readings": 5}), 422, "readings"),
        Case("readings empty", _dump({"readings": []}), 422, "readings"),
        Case("reading a number", _dump({"readings": [1]}), 422, "readings[0]"),
        Case("reading a string", _dump({"readings": ["x"]}), 422, "readings[0]"),
        Case("reading null", _dump({"readings": [*readings(2), None]}), 422, "readings[2]"),
        Case("reading a list", _dump({"readings": [list(READING.values())]}), 422, "readings[0]"),
        Case("nested readings", _dump({"readings": [readings(2)]}), 422, "readings[0]"),
        Case(
            "readings inside readings", _dump({"readings": [{"readings": readings(1)}]}), 422, "readings[0]"
        ),
        Case("too many readings", _dump({"readings": readings(1)[:1] * (MAX_READINGS + 1)}), 422, "readings"),
        Case("extra key beside readings", _dump({"readings": readings(2), "room": "a"}), 422, "room"),
        Case("empty object", b"{}", 422, "date"),
        Case("top-level list of readings", _dump(readings(2)), 422, "body"),
        Case("top-level string", b'"hello"', 422, "body"),
        Case("top-level number", b"42", 422, "body"),
        Case("top-level true", b"true", 422, "body"),
        Case("top-level null", b"null", 422, "body"),
        Case("top-level NaN", b"NaN", 422, "body"),
        Case("top-level empty list", b"[]", 422, "body"),
    ]
    return cases


def body_cases() -> list[Case]:
    good = _dump(READING)
    deep = b"[" * 100_000 + b"]" * 100_000
    big = b'{"readings": [' + b" " * (DEFAULT_MAX_BODY_BYTES + 10) + b"]}"
    bomb = gzip.compress(b'{"readings": [' + b" " * (DEFAULT_MAX_BODY_BYTES * 8) + b"]}")
    return [
        Case("empty body", b"", 400, "body"),
        Case("whitespace body", b"  \n ", 400, "body"),
        Case("malformed {", b"{", 400, "body"),
        Case("single quotes", b"{'date': 1}", 400, "body"),
        Case("trailing comma", good[:-1] + b",}", 400, "body"),
        Case("truncated", good[:40], 400, "body"),
        Case("two objects", good + good, 400, "body"),
        Case("bare word", b"hello", 400, "body"),
        Case("invalid utf-8", good.replace(b"date", b"d\xffte"), 400, "body"),
        Case("latin-1 bytes", '{"date": "é"}'.encode("latin-1"), 400, "body"),
        Case("utf-16", json.dumps(READING).encode("utf-16"), 400, "body"),
        Case("utf-8 BOM", b"\xef\xbb\xbf" + good, 400, "body"),
        Case("nested 100k deep", deep, 400, "body"),
        Case("control character", b'{"date": "2015\x01"}', 400, "body"),
        Case("oversized body", big, 413, "body"),
        Case("gzip bomb", bomb, 413, "body", {**JSON, "Content-Encoding": "gzip"}),
        Case("gzip garbage", b"\x1f\x8b\x08\x00garbage", 400, "body", {**JSON, "Content-Encoding": "gzip"}),
        Case("not gzip at all", good, 400, "body", {**JSON, "Content-Encoding": "gzip"}),
        Case("truncated gzip", gzip.compress(good)[:-8], 400, "body", {**JSON, "Content-Encoding": "gzip"}),
        Case(
            "gzip of a bad value",
            gzip.compress(_dump(dict(READING, CO2="x"))),
            422,
            "CO2",
            {**JSON, "Content-Encoding": "gzip"},
        ),
        Case("brotli", good, 415, "Content-Encoding", {**JSON, "Content-Encoding": "br"}),
        Case("no content type", good, 415, "Content-Type", {}),
        Case("text/plain", good, 415, "Content-Type", {"Content-Type": "text/plain"}),
        Case("form", b"date=1", 415, "Content-Type", {"Content-Type": "application/x-www-form-urlencoded"}),
        Case("multipart", good, 415, "Content-Type", {"Content-Type": "multipart/form-data; boundary=x"}),
        Case("xml", b"<reading/>", 415, "Content-Type", {"Content-Type": "application/xml"}),
        Case(
            "json latin-1", good, 415, "Content-Type", {"Content-Type": "application/json; charset=latin-1"}
        ),
        Case("json-ish", good, 415, "Content-Type", {"Content-Type": "application/jsonx"}),
    ]


def corpus() -> list[Case]:
    return value_cases() + date_cases() + structure_cases() + body_cases()
