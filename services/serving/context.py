"""What the Preprocess tells the HTTP layer about one request.

The middleware of :mod:`services.serving.app` puts a fresh :class:`RequestInfo` in a contextvar
before calling the upstream app; the Preprocess (running in the same asyncio task, synchronously)
fills in the arm and model version that answered, and the cause of a failure. The middleware then
labels its metrics with them and answers errors in one shape.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from services.serving.metrics import NONE


@dataclass
class RequestInfo:
    arm: str = NONE
    model_version: str = NONE
    cause: str | None = None  # set by the Preprocess when it fails a request on purpose
    status: int = 0
    message: str = ""
    delay_seconds: float = 0.0  # injected latency, awaited by the middleware (not on the event loop)
    endpoint_url: str | None = None  # the endpoint the canary draw chose (known before it loads)

    def fail(self, cause: str, status: int, message: str) -> None:
        self.cause, self.status, self.message = cause, status, message


CURRENT: ContextVar[RequestInfo | None] = ContextVar("occupancy_request", default=None)


def current() -> RequestInfo | None:
    return CURRENT.get()
