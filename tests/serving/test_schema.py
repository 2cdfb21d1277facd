"""Request validation (services/serving/schema.py), the numpy features against training's, the
faults file and the middleware's pure helpers: no server."""

from __future__ import annotations

import gzip
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.serving.faults import FaultInjector, parse_faults
from services.serving.features import feature_matrix
from services.serving.middleware import Reject, check_headers, decode_json, gunzip, weighted_choice
from services.serving.schema import MAX_READINGS, RequestError, parse_readings, parse_request
from tests.serving.corpus import corpus
from tests.serving.server import READING
from training.data import load_occupancy_file
from training.features import DEFAULT_SCHEMA, FeatureSchema, WindowFeature, make_features


def series(n: int, start: str = "2015-02-04 17:00:00") -> list[dict[str, Any]]:
    stamps = pd.date_range(start, periods=n, freq="min")
    return [dict(READING, date=str(t), Light=float(i % 500)) for i, t in enumerate(stamps)]


def error(body: Any) -> str:
    with pytest.raises(RequestError) as info:
        parse_request(body)
    return str(info.value)


def test_one_reading_and_a_series() -> None:
    frame = parse_request(READING)
    assert list(frame.columns) == ["date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]
    assert frame["date"].iloc[0] == pd.Timestamp("2015-02-04 17:51:00")
    assert frame["CO2"].iloc[0] == 721.25 and frame["CO2"].dtype == np.float64
    many = parse_request({"readings": series(MAX_READINGS)})
    assert len(many) == MAX_READINGS and many["date"].is_monotonic_increasing
    readings = parse_readings({"readings": series(3)})
    assert readings.dates == [r["date"] for r in series(3)]
    # integers are numbers; an offset is converted to UTC
    assert parse_request(dict(READING, Light=0, CO2=400))["Light"].iloc[0] == 0.0
    utc = parse_request(dict(READING, date="2015-02-04T18:51:00+01:00"))
    assert utc["date"].iloc[0] == pd.Timestamp("2015-02-04 17:51:00")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (dict(READING, CO2="abc"), 'CO2: must be a finite number, got "abc"'),
        (dict(READING, CO2=True), "CO2: must be a finite number, got true"),
        (dict(READING, CO2=math.nan), "CO2: must be a finite number, got NaN"),
        (dict(READING, CO2=math.inf), "CO2: must be a finite number, got Infinity"),
        (dict(READING, CO2=10**400), "CO2: must be a finite number"),
        (dict(READING, CO2=20000), "CO2: 20000 is outside the plausible range 0..10000"),
        (dict(READING, Light=-1), "Light: -1 is outside the plausible range 0..5000"),
        (dict(READING, CO2={"v": 1}), "CO2: must be a finite number, got an object"),
        ({k: v for k, v in READING.items() if k != "Humidity"}, "Humidity: missing"),
        (dict(READING, room=1), "room: unknown field"),
        (dict(READING, date="2015-02-04"), "date: must be an ISO 8601 date-time string"),
        (dict(READING, date="1900-01-01 00:00:00"), "date: year 1900 is outside 1970..2200"),
        ({"readings": []}, "readings: must hold at least one reading"),
        (
            {"readings": series(MAX_READINGS + 1)},
            f"readings: at most {MAX_READINGS} readings, got {MAX_READINGS + 1}",
        ),
        ({"readings": series(2), "room": "a"}, 'room: unknown field beside "readings"'),
        ({"readings": [*series(3), 5]}, "readings[3]: must be an object"),
        ([READING], "body: must be a JSON object"),
    ],
)
def test_errors_name_the_field(body: Any, message: str) -> None:
    assert error(body).startswith(message)


def test_field_path_inside_a_series() -> None:
    rows = series(5)
    rows[3]["CO2"] = "abc"
    assert error({"readings": rows}) == 'readings[3].CO2: must be a finite number, got "abc"'
    rows = series(5)
    rows[4]["date"] = rows[2]["date"]
    assert error({"readings": rows}).startswith(
        "readings[4].date: 2015-02-04 17:02:00 is earlier than readings[3]"
    )
    rows = series(5)
    rows[1]["date"] = rows[0]["date"]
    assert error({"readings": rows}).startswith(
        "readings[1].date: 2015-02-04 17:00:00 duplicates readings[0]"
    )


def test_mixed_timezones_in_a_series_are_refused_like_in_training() -> None:
    rows = series(3)
    rows[2]["date"] = rows[2]["date"].replace(" ", "T") + "+01:00"
    assert error({"readings": rows}) == (
        "readings[2].date: has a UTC offset but readings[0].date does not agree: mixed timezones "
        "(give every timestamp an offset, or none)"
    )
    for row in rows:  # every one with an offset: converted to UTC, accepted
        row["date"] = row["date"].split("+")[0].replace(" ", "T") + "Z"
    assert len(parse_readings({"readings": rows})) == 3


def test_every_corpus_body_that_is_json_is_refused_by_the_schema() -> None:
    """The corpus cases the schema decides (422 after a good JSON decode) fail in parse_request."""
    for case in corpus():
        if case.status != 422 or case.headers.get("Content-Encoding"):
            continue
        with pytest.raises((RequestError, Reject)) as info:
            parse_request(decode_json(case.body))
        text = info.value.message if isinstance(info.value, Reject) else str(info.value)
        assert text.startswith(case.field), (case.name, text)


@pytest.mark.parametrize(
    ("start", "stop"), [(0, 1), (0, 2), (10, 40), (0, 61), (0, 62), (100, 1540), (2000, 2300)]
)
def test_numpy_features_equal_training_features(occupancy_dir: Any, start: int, stop: int) -> None:
    frame = load_occupancy_file(occupancy_dir / "datatest.txt").iloc[start:stop]
    rows = [
        {"date": str(t), **{c: float(frame[c].iloc[i]) for c in READING if c != "date"}}
        for i, t in enumerate(frame["date"])
    ]
    readings = parse_readings({"readings": rows})
    schemas = [
        DEFAULT_SCHEMA,
        FeatureSchema(
            window_features=tuple(
                WindowFeature(c, op, m)  # type: ignore[arg-type]
                for c in ("CO2", "Temperature")
                for op in ("mean", "min", "max", "std", "diff", "slope")
                for m in (5, 30)
            )
        ),
    ]
    for schema in schemas:
        expected = make_features(readings.frame(), schema).to_numpy()
        assert np.array_equal(feature_matrix(readings, schema), expected)


def test_gaps_start_new_segments() -> None:
    rows = series(10)
    rows[5:] = series(5, start="2015-02-04 20:00:00")
    readings = parse_readings({"readings": rows})
    expected = make_features(readings.frame(), DEFAULT_SCHEMA).to_numpy()
    assert np.array_equal(feature_matrix(readings, DEFAULT_SCHEMA), expected)


def test_headers_and_bodies() -> None:
    json_type = [(b"content-type", b"application/json; charset=UTF-8")]
    assert check_headers(json_type, 100) == (False, None)
    assert check_headers([*json_type, (b"content-encoding", b"gzip")], 100)[0] is True
    for headers, status in [
        ([], 415),
        ([(b"content-type", b"text/plain")], 415),
        ([*json_type, (b"content-length", b"101")], 413),
        ([*json_type, (b"content-length", b"x")], 400),
        ([*json_type, (b"content-encoding", b"br")], 415),
    ]:
        with pytest.raises(Reject) as info:
            check_headers(headers, 100)
        assert info.value.status == status
    assert gunzip(gzip.compress(b"{}"), 10) == b"{}"
    with pytest.raises(Reject) as info:
        gunzip(gzip.compress(b" " * 100), 10)
    assert info.value.status == 413
    assert decode_json(json.dumps(READING).encode()) == READING


def test_weighted_choice_follows_the_weights() -> None:
    picks = [weighted_choice(["a", "b"], 1, p=[0.25, 0.75])[0] for _ in range(4000)]
    assert 0.22 < picks.count("a") / 4000 < 0.28
    assert {weighted_choice(["a", "b"], 1, p=[1.0, 0.0])[0] for _ in range(200)} == {"a"}
    assert {weighted_choice(["a", "b"], 1, p=[0.0, 1.0])[0] for _ in range(200)} == {"b"}


def test_faults_file(tmp_path: Any) -> None:
    path = tmp_path / "faults.json"
    injector = FaultInjector(str(path), interval=0.0)
    assert injector.get("canary") is None  # missing file: no faults
    path.write_text(json.dumps({"canary": {"error_ratio": 0.5, "delay_ms": 20}}))
    fault = injector.get("canary")
    assert fault is not None and (fault.error_ratio, fault.delay_ms) == (0.5, 20.0)
    assert injector.get("champion") is None
    path.write_text("{not json")
    assert injector.get("canary") is None
    for bad, message in [
        ({"canary": {"error_ratio": 2}}, "canary.error_ratio: must be within 0..1"),
        ({"canary": {"ratio": 0.1}}, "canary.ratio: unknown key"),
        ({"canary": 5}, "canary: must be an object"),
    ]:
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            parse_faults(bad)
