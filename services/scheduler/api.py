"""The few ClearML REST calls the scheduler makes, through the SDK's own authenticated session."""

from __future__ import annotations

from typing import Any

DEFAULT_TIMEOUT = 30.0


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

            session = Session()
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
