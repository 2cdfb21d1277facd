"""The replay client and the loop report, against a stand-in endpoint of our own (the real serving
endpoint is exercised by tests/serving and the demo test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from local_server.runner import free_port
from occupancy_mlops.replay import Replay, reading_payload
from occupancy_mlops.report import VersionRow, write_report
from training.data import load_occupancy_file


class StandIn:
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.issued: dict[str, tuple[float, dict]] = {}  # prediction id → (when, request body)
        self.feedback: list[tuple[float, dict]] = []


@pytest.fixture
def stand_in() -> Iterator[tuple[str, StandIn]]:
    """Answers like the occupancy endpoint: occupied when Light > 365, every 10th request a 500;
    records the feedback posted to /feedback/occupancy."""
    st = StandIn()
    seen = st.seen

    async def serve(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        if len(seen) % 10 == 0:
            return JSONResponse({"detail": "boom"}, status_code=500)
        arm = "canary" if len(seen) % 2 else "champion"
        token = f"id-{len(seen)}"
        st.issued[token] = (time.monotonic(), body)
        return JSONResponse(
            {
                "predictions": [
                    {"date": r["date"], "occupied": r["Light"] > 365, "probability": 0.5}
                    for r in body["readings"]
                ],
                "model": {"id": "m", "version": "2" if arm == "canary" else "1", "dataset_id": "d"},
                "arm": arm,
                "prediction_id": token,
            }
        )

    async def feedback(request: Request) -> JSONResponse:
        st.feedback.append((time.monotonic(), await request.json()))
        return JSONResponse({"labeled": 1})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(
                routes=[
                    Route("/serve/occupancy", serve, methods=["POST"]),
                    Route("/feedback/occupancy", feedback, methods=["POST"]),
                ]
            ),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/serve/occupancy", st
    server.should_exit = True
    thread.join(10)


def test_payload_is_the_documented_request(occupancy_dir: Path) -> None:
    frame = load_occupancy_file(occupancy_dir / "datatest.txt").head(3)
    body = reading_payload(frame)
    assert [r["date"] for r in body["readings"]] == [
        "2015-02-02 14:19:00",
        "2015-02-02 14:19:59",
        "2015-02-02 14:21:00",
    ]
    assert set(body["readings"][0]) == {"date", "Temperature", "Humidity", "Light", "CO2", "HumidityRatio"}


def test_replay_sends_history_checks_labels_and_stops_by_itself(stand_in, occupancy_dir: Path) -> None:
    url, st = stand_in
    seen = st.seen
    frame = load_occupancy_file(occupancy_dir / "datatest.txt")
    replay = Replay(url, frame, rate=200, history=5, max_requests=40, feedback_delay=None)
    with replay:
        deadline = time.monotonic() + 20
        while replay.stats.sent < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    stats = replay.stats
    assert stats.sent == 40 and len(seen) == 40, "bounded by max_requests"
    assert [len(b["readings"]) for b in seen[:6]] == [1, 2, 3, 4, 5, 5], "history grows to its bound"
    assert stats.by_status() == {200: 36, 500: 4}
    assert stats.by_arm()["-"] == 4 and stats.by_arm()["canary"] + stats.by_arm()["champion"] == 36
    # the stand-in applies the rule Light > 365, which is right on most minutes of this file
    accuracy = stats.accuracy()
    assert accuracy is not None and accuracy > 0.8
    assert stats.accuracy("2") is not None and stats.accuracy("no such version") is None
    assert stats.accuracy("2", min_answers=1000) is None, "too few answers to show an accuracy"
    assert stats.judged() == 36 and stats.judged("2") + stats.judged("1") == 36
    assert stats.first_answer("m") == min(a.sent_at for a in stats.answers if a.status == 200)
    assert not st.feedback and not stats.feedback, "feedback_delay None: no feedback"


def test_replay_gives_the_newest_readings_label_back_after_the_delay(stand_in, occupancy_dir: Path) -> None:
    url, st = stand_in
    frame = load_occupancy_file(occupancy_dir / "datatest.txt").sort_values("date").reset_index(drop=True)
    with Replay(url, frame, rate=100, history=4, max_requests=30, feedback_delay=0.3) as replay:
        deadline = time.monotonic() + 20
        while len(st.feedback) < 27 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert replay.stats.feedback == {200: 27}, "one post per answered request (3 of 30 were 500s)"
    assert replay.stats.feedback_dropped == 0
    for received, body in st.feedback:
        issued_at, request = st.issued[body["prediction_id"]]
        assert received - issued_at >= 0.3, "not before the delay"
        readings = request["readings"]
        index = frame.index[frame["date"] == pd.Timestamp(readings[-1]["date"])][0]
        label = bool(frame["Occupancy"].iat[index])
        assert body["occupied"] == [None] * (len(readings) - 1) + [label], "the newest reading's label only"
    assert len({b["prediction_id"] for _, b in st.feedback}) == 27, "each prediction labeled once"


def test_labels_not_yet_due_are_dropped_at_stop(stand_in, occupancy_dir: Path) -> None:
    url, st = stand_in
    frame = load_occupancy_file(occupancy_dir / "datatest.txt")
    replay = Replay(url, frame, rate=100, history=2, max_requests=5, feedback_delay=60).start()
    deadline = time.monotonic() + 20
    while replay.stats.sent < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = replay.stop()
    assert stats.feedback_dropped == 5 and not st.feedback
    with pytest.raises(ValueError, match="feedback_delay"):
        Replay(url, frame, feedback_delay=-1)


def test_replay_refuses_a_frame_without_labels(occupancy_dir: Path) -> None:
    frame = load_occupancy_file(occupancy_dir / "datatest.txt").drop(columns=["Occupancy"])
    with pytest.raises(ValueError, match="Occupancy"):
        Replay("http://127.0.0.1:9/serve/occupancy", frame)


def test_report_writes_every_figure(tmp_path: Path) -> None:
    start = 1_000.0
    series = {
        "traffic": {"champion": ([1_000.0, 1_010.0], [9.0, 5.0]), "canary": ([1_000.0, 1_010.0], [1.0, 5.0])},
        "p95": {"champion": ([1_000.0, 1_010.0], [0.004, 0.005])},
        "errors": {},
        "labeled": {"v1": ([1_000.0, 1_010.0], [0.97, 0.98]), "v3": ([1_005.0, 1_010.0], [0.4, 0.5])},
    }
    versions = [
        VersionRow("1", "a" * 32, "former-champion", 0.981, 0.975, live_answers=1200),
        VersionRow("2", "b" * 32, "champion", 0.983, 0.979, "promoted", live_answers=800),
        VersionRow("3", "c" * 32, "rolled-back", 0.982, None, "error ratio 0.5 > 0.05", live_answers=40),
    ]
    page = write_report(tmp_path / "report", versions, series, start, events=[(1_005.0, "v3 canary")])
    text = page.read_text()
    for name in ("accuracy.png", "traffic.png", "p95.png", "errors.png", "labeled.png"):
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text
    assert "| v1 | aaaaaaaa | former-champion | 98.10% | 97.50% (1,200) |  |" in text
    assert "| v3 | cccccccc | rolled-back | 98.20% | - (40) | error ratio 0.5 > 0.05 |" in text
