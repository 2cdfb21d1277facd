"""The one ClearML REST client of the project (CLI, demo, bench, gate, registry, scheduler,
autoscaler), through the SDK's own authenticated session."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

RETRIES = {
    "total": 4,
    "connect": 4,
    "read": 4,
    "redirect": 4,
    "status": 4,
    "backoff_factor": 0.5,
    "backoff_max": 4.0,
}
"""The SDK retries a call for many minutes by default (240 times, backing off to 2 minutes): a poll
would hang for as long as the server is away. A service had better fail the poll in seconds, say so
in its metrics and readiness, and try again on the next one."""


LABELED_AT = "labeled_at"
"""User property of a dataset version (set by ``label sync``/``label watch``): when its newest labels
were written, ISO 8601 in UTC. The timeline and the trigger scheduler read it."""


class ApiCallError(RuntimeError):
    """A ClearML API call that the server answered with an error (or that could not be made)."""

    def __init__(self, endpoint: str, code: int, subcode: int, message: str) -> None:
        super().__init__(f"{endpoint} failed ({code}/{subcode}): {message}")
        self.endpoint = endpoint
        self.code = code
        self.subcode = subcode
        self.message = message


class ClearmlApi:
    """``call("tasks.get_all", **body)`` → the response's ``data``; errors raise :class:`ApiCallError`.

    Uses ``clearml.backend_api.Session`` (credentials and host from the environment or clearml.conf,
    token refresh, retries), so it talks to any ClearML server the SDK can. Without a ``session`` the
    SDK's is made on first use (it logs in, so a server that is away fails that call, not the
    constructor); no configuration at all raises the SDK's ``MissingConfigError``.
    """

    def __init__(self, session: Any | None = None) -> None:
        self._session = session

    @property
    def session(self) -> Any:
        if self._session is None:
            from clearml.backend_api import Session

            self._session = Session(http_retries_config=dict(RETRIES))
        return self._session

    @property
    def host(self) -> str:
        return str(self.session.host)

    def call(self, endpoint: str, **body: Any) -> dict[str, Any]:
        from clearml.backend_api.session.defs import MissingConfigError

        service, action = endpoint.split(".", 1)
        try:
            res = self.session.send_request(service, action, json=body)
        except MissingConfigError:
            raise  # no server configured at all: not a failed call, the caller says how to name one
        except Exception as exc:  # connection refused, timeouts: the SDK raises many kinds
            raise ApiCallError(endpoint, 0, 0, f"{type(exc).__name__}: {exc}") from exc
        try:
            payload = res.json()
        except ValueError as exc:
            raise ApiCallError(
                endpoint, res.status_code, 0, f"not a ClearML answer: {res.text[:200]}"
            ) from exc
        meta = payload.get("meta") or {}
        code = int(meta.get("result_code", res.status_code))
        if code != 200:
            raise ApiCallError(
                endpoint, code, int(meta.get("result_subcode") or 0), str(meta.get("result_msg"))
            )
        return dict(payload.get("data") or {})


def parse_time(value: Any) -> datetime | None:
    """A ClearML timestamp (ISO text, or a datetime) as an aware datetime; None if absent or unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
