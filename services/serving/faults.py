"""Fault injection per arm, for demos and tests (like a service mesh's fault filter).

``OCCUPANCY_SERVING_FAULTS_FILE`` names a JSON file ``{"canary": {"error_ratio": 0.5, "delay_ms": 0}}``.
It is looked at no more than once a second (one ``stat``) and re-read when its modification time or
size changed. A missing file means no faults; an unreadable one is logged and means no faults.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("occupancy.serving")
ENV = "OCCUPANCY_SERVING_FAULTS_FILE"
CHECK_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Fault:
    error_ratio: float = 0.0
    delay_ms: float = 0.0


def parse_faults(data: object) -> dict[str, Fault]:
    """``{"arm": {"error_ratio": 0..1, "delay_ms": >= 0}}``; raises ValueError naming the bad key."""
    if not isinstance(data, dict):
        raise ValueError("the faults file must hold a JSON object keyed by arm")
    faults: dict[str, Fault] = {}
    for arm, spec in data.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{arm}: must be an object with error_ratio and/or delay_ms")
        unknown = set(spec) - {"error_ratio", "delay_ms"}
        if unknown:
            raise ValueError(f"{arm}.{sorted(unknown)[0]}: unknown key (error_ratio, delay_ms)")
        ratio, delay = spec.get("error_ratio", 0.0), spec.get("delay_ms", 0.0)
        for key, value in (("error_ratio", ratio), ("delay_ms", delay)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{arm}.{key}: must be a number")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{arm}.error_ratio: must be within 0..1")
        if delay < 0:
            raise ValueError(f"{arm}.delay_ms: must be >= 0")
        faults[str(arm)] = Fault(float(ratio), float(delay))
    return faults


class FaultInjector:
    def __init__(self, path: str | None = None, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        self.path = Path(path) if path else None
        self.interval = interval
        self._next_check = 0.0
        self._signature: tuple[int, int] | None = None
        self.faults: dict[str, Fault] = {}

    @classmethod
    def from_env(cls) -> FaultInjector:
        return cls(os.environ.get(ENV) or None)

    def get(self, arm: str) -> Fault | None:
        if self.path is None:
            return None
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.interval
            self._refresh()
        return self.faults.get(arm)

    def _refresh(self) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError:
            if self._signature is not None:
                log.warning("faults file %s gone: no faults", self.path)
            self._signature, self.faults = None, {}
            return
        signature = (st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            self.faults = parse_faults(json.loads(self.path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("faults file %s ignored: %s", self.path, exc)
            self.faults = {}
            return
        log.warning("faults file %s: %s", self.path, self.faults)
