"""A replay client: real sensor readings sent to the occupancy endpoint as HTTP requests.

It plays a room's readings in time order, faster than real time: every request carries the newest
reading and the history before it (``history`` readings, what the model needs), and the client
checks each answer against the reading's label, the delayed label a real deployment would get.
Answers are kept per arm and model version, so the demo can show live accuracy, traffic split,
latency and errors per arm without trusting the server's own numbers.

It also gives the server those labels back, as a deployment would once they are known:
``feedback_delay`` seconds after an answer (default 3), ``POST /feedback/occupancy`` with the answer's
``prediction_id`` and the newest reading's label (``null`` for the history readings, whose labels
the request was not about). The canary controller judges the arms' accuracy on them. A separate
thread sends them, in the order they fall due; those not yet due when the replay stops are dropped
(and counted).

The loop is bounded: it stops after ``max_requests`` or when stopped, and never sends faster than
``rate`` requests a second. Only the URL it is given is contacted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from training.data import LABEL_COLUMN, SENSOR_COLUMNS, TIME_COLUMN


@dataclass
class Answer:
    """One request as the client saw it."""

    sent_at: float
    latency: float
    status: int
    arm: str  # "champion", "canary", or "-" when the answer named none (an error)
    model_version: str
    occupied: bool | None
    label: int
    model_id: str = "-"


@dataclass
class ReplayStats:
    answers: list[Answer] = field(default_factory=list)
    feedback: Counter[int] = field(default_factory=Counter)
    """Feedback posts by HTTP status (0: no answer)."""
    feedback_dropped: int = 0
    """Labels not yet due when the replay stopped."""

    @property
    def sent(self) -> int:
        return len(self.answers)

    def by_status(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    def by_arm(self) -> Counter[str]:
        return Counter(a.arm for a in self.answers)

    def first_answer(self, model_id: str) -> float | None:
        """Unix time of the first request a model answered (None: it answered none)."""
        return next((a.sent_at for a in self.answers if a.model_id == model_id), None)

    def judged(self, model_version: str | None = None) -> int:
        """Answers with a prediction, of one model version or all."""
        return sum(
            1
            for a in self.answers
            if a.occupied is not None and (model_version is None or a.model_version == model_version)
        )

    def accuracy(self, model_version: str | None = None, min_answers: int = 1) -> float | None:
        """Share of correct answers (against the readings' labels), of one model version or all;
        None with fewer than ``min_answers`` answers."""
        judged = [
            a
            for a in self.answers
            if a.occupied is not None and (model_version is None or a.model_version == model_version)
        ]
        if not judged or len(judged) < min_answers:
            return None
        return sum(bool(a.occupied) == bool(a.label) for a in judged) / len(judged)


def reading_payload(rows: pd.DataFrame) -> dict[str, Any]:
    """The request body for consecutive readings (oldest first)."""
    readings = []
    for row in rows.itertuples(index=False):
        values = row._asdict()
        reading: dict[str, Any] = {TIME_COLUMN: pd.Timestamp(values[TIME_COLUMN]).isoformat(sep=" ")}
        reading.update({c: float(values[c]) for c in SENSOR_COLUMNS})
        readings.append(reading)
    return {"readings": readings}


class Replay:
    """Sends ``frame``'s readings (time-ordered, labeled) to ``url`` in a background thread."""

    def __init__(
        self,
        url: str,
        frame: pd.DataFrame,
        *,
        rate: float = 20.0,
        history: int = 61,
        max_requests: int = 100_000,
        timeout: float = 10.0,
        feedback_delay: float | None = 3.0,
        feedback_url: str | None = None,
    ) -> None:
        if rate <= 0 or history < 1 or max_requests < 1:
            raise ValueError("rate must be > 0, history and max_requests >= 1")
        if feedback_delay is not None and not 0 <= feedback_delay <= 86400:
            raise ValueError("feedback_delay must be within 0..86400 s (None: no feedback)")
        missing = [c for c in (TIME_COLUMN, LABEL_COLUMN, *SENSOR_COLUMNS) if c not in frame.columns]
        if missing:
            raise ValueError(f"the replayed frame lacks columns {missing}")
        self.url = url
        self.frame = frame.sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
        self.rate = rate
        self.history = history
        self.max_requests = max_requests
        self.timeout = timeout
        self.stats = ReplayStats()
        self.feedback_delay = feedback_delay
        self.feedback_url = feedback_url or url.replace("/serve/", "/feedback/", 1)
        self._due: deque[tuple[float, dict[str, Any]]] = deque()  # (monotonic time, body), in due order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)
        self._feedback_thread = threading.Thread(
            target=self._run_feedback, name="replay-feedback", daemon=True
        )

    def _send(self, session: requests.Session, index: int) -> Answer:
        rows = self.frame.iloc[max(0, index - self.history + 1) : index + 1]
        body = reading_payload(rows)
        label = int(self.frame[LABEL_COLUMN].iat[index])
        started = time.time()
        tic = time.perf_counter()
        try:
            resp = session.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException:
            return Answer(started, time.perf_counter() - tic, 0, "-", "-", None, label)
        latency = time.perf_counter() - tic
        arm, version, occupied, model_id = "-", "-", None, "-"
        if resp.status_code == 200:
            data = resp.json()
            arm = str(data.get("arm", "-"))
            model = data.get("model") or {}
            version, model_id = str(model.get("version", "-")), str(model.get("id", "-"))
            occupied = bool(data["predictions"][-1]["occupied"])
            token = data.get("prediction_id")
            if self.feedback_delay is not None and isinstance(token, str):
                labels: list[bool | None] = [None] * (len(rows) - 1) + [bool(label)]
                due = time.monotonic() + self.feedback_delay
                self._due.append((due, {"prediction_id": token, "occupied": labels}))
        return Answer(started, latency, resp.status_code, arm, version, occupied, label, model_id)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        index = 0
        with requests.Session() as session:
            next_at = time.monotonic()
            while not self._stop.is_set() and self.stats.sent < self.max_requests:
                self.stats.answers.append(self._send(session, index))
                index = (index + 1) % len(self.frame)  # the room's week again, from the start
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()  # behind: do not burst to catch up

    def _run_feedback(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                if not self._due:
                    self._stop.wait(0.05)
                    continue
                due, body = self._due[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop.wait(min(wait, 0.5))
                    continue
                self._due.popleft()
                try:
                    status = session.post(self.feedback_url, json=body, timeout=self.timeout).status_code
                except requests.RequestException:
                    status = 0
                self.stats.feedback[status] += 1

    def start(self) -> Replay:
        self._thread.start()
        if self.feedback_delay is not None:
            self._feedback_thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> ReplayStats:
        self._stop.set()
        for thread in (self._thread, self._feedback_thread):
            if thread.is_alive():
                thread.join(timeout)
        self.stats.feedback_dropped = len(self._due)
        return self.stats

    def __enter__(self) -> Replay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
