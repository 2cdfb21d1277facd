"""The few ClearML REST calls the scheduler makes, through the SDK's own authenticated session."""

from __future__ import annotations

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
    token refresh, retries), so it talks to any ClearML server the SDK can.
    """

    def __init__(self, session: Any | None = None) -> None:
        if session is None:
            from clearml.backend_api import Session

            session = Session(http_retries_config=dict(RETRIES))
        self.session = session

    @property
    def host(self) -> str:
        return str(self.session.host)

    def call(self, endpoint: str, **body: Any) -> dict[str, Any]:
        service, action = endpoint.split(".", 1)
        try:
            res = self.session.send_request(service, action, json=body)
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
