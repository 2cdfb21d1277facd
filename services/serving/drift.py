"""Input drift of the served readings: a rolling window per endpoint arm, judged against the served
model's drift reference (``metadata["drift_reference"]``, :mod:`training.drift`).

Each request puts its newest reading (the one whose prediction is new; older readings of a request
are history a client resends) into a ring buffer of the last ``OCCUPANCY_SERVING_DRIFT_WINDOW``
requests (default 1440: a day of a sensor posting once a minute, the span of the training days the
limits come from). Every ``OCCUPANCY_SERVING_DRIFT_EVERY`` requests (default 60), once the window
holds ``OCCUPANCY_SERVING_DRIFT_MIN_READINGS`` (default 360) and at least
``OCCUPANCY_SERVING_DRIFT_SECONDS`` (default 10) passed since the last time, the PSI and KS of every
raw input are computed (0.7 ms for a full window) and set as gauges: under heavy traffic once every
10 s, not once every 60 requests. Per worker: each uvicorn worker keeps
the window of the requests it served (the gauges are ``livemostrecent``: the newest value any live
worker set); with requests spread over workers each window is a sample of the same traffic.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data import SENSOR_COLUMNS
from training.drift import DriftReference, NoDriftReference, RowReference, bin_shares, ks_statistic, psi

log = logging.getLogger("occupancy.serving")

WINDOW_ENV = "OCCUPANCY_SERVING_DRIFT_WINDOW"
EVERY_ENV = "OCCUPANCY_SERVING_DRIFT_EVERY"
MIN_READINGS_ENV = "OCCUPANCY_SERVING_DRIFT_MIN_READINGS"
SECONDS_ENV = "OCCUPANCY_SERVING_DRIFT_SECONDS"
DEFAULT_WINDOW = 1440
DEFAULT_EVERY = 60
DEFAULT_MIN_READINGS = 360
DEFAULT_SECONDS = 10.0


@dataclass(frozen=True)
class DriftSettings:
    window: int = DEFAULT_WINDOW
    every: int = DEFAULT_EVERY
    min_readings: int = DEFAULT_MIN_READINGS
    seconds: float = DEFAULT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DriftSettings:
        """The settings of the environment; ValueError naming the variable for a bad value."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, key, default in (
            (WINDOW_ENV, "window", DEFAULT_WINDOW),
            (EVERY_ENV, "every", DEFAULT_EVERY),
            (MIN_READINGS_ENV, "min_readings", DEFAULT_MIN_READINGS),
        ):
            raw = env.get(name, "").strip()
            try:
                value = int(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a whole number") from None
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1")
            values[key] = value
        raw = env.get(SECONDS_ENV, "").strip()
        try:
            values["seconds"] = float(raw) if raw else DEFAULT_SECONDS
        except ValueError:
            raise ValueError(f"{SECONDS_ENV}={raw!r} is not a number") from None
        if not 0 <= values["seconds"] < float("inf"):
            raise ValueError(f"{SECONDS_ENV}={raw} must be a finite number of seconds, at least 0")
        if values["min_readings"] > values["window"]:
            raise ValueError(f"{MIN_READINGS_ENV} must not exceed {WINDOW_ENV} ({values['window']})")
        return cls(**values)


@dataclass(frozen=True)
class InputDrift:
    input: str
    psi: float
    ks: float
    psi_limit: float
    ks_limit: float


class InputWindow:
    """The newest reading of the last ``settings.window`` requests, and their drift."""

    def __init__(self, reference: DriftReference, settings: DriftSettings) -> None:
        self.settings = settings
        self.rows: list[RowReference] = [reference.rows[name] for name in reference.inputs]
        self._columns = [SENSOR_COLUMNS.index(row.name) for row in self.rows]
        self._arrays = [
            (np.asarray(row.edges), np.asarray(row.proportions), np.asarray(row.quantiles))
            for row in self.rows
        ]
        self._buffer = np.empty((settings.window, len(SENSOR_COLUMNS)))
        self._next = 0
        self.filled = 0
        self._since = 0
        self._last = -float("inf")

    @classmethod
    def for_model(cls, metadata: Mapping[str, Any], settings: DriftSettings) -> InputWindow | None:
        """The window of a model; None for a model without a drift reference (said in the log)."""
        try:
            return cls(DriftReference.from_metadata(metadata), settings)
        except NoDriftReference as exc:
            log.warning("no input drift gauges: %s", exc)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("no input drift gauges: unreadable drift reference (%s)", exc)
        return None

    def add(self, reading: np.ndarray) -> bool:
        """Record one request's newest reading (sensor values in :data:`SENSOR_COLUMNS` order); True
        when the drift is due (after ``settings.every`` requests and ``settings.seconds``, once
        ``min_readings`` are held)."""
        self._buffer[self._next] = reading
        self._next = (self._next + 1) % self.settings.window
        self.filled = min(self.filled + 1, self.settings.window)
        self._since += 1
        if self._since < self.settings.every or self.filled < self.settings.min_readings:
            return False
        now = time.monotonic()
        if now - self._last < self.settings.seconds:
            return False
        self._since, self._last = 0, now
        return True

    def drift(self) -> list[InputDrift]:
        """PSI and KS of every input over the window."""
        window = self._buffer[: self.filled]
        out = []
        for row, column, (edges, shares, quantiles) in zip(
            self.rows, self._columns, self._arrays, strict=True
        ):
            values = window[:, column]
            out.append(
                InputDrift(
                    row.name,
                    psi(shares, bin_shares(edges, values)),
                    ks_statistic(quantiles, values),
                    row.psi_limit,
                    row.ks_limit,
                )
            )
        return out
