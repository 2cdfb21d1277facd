"""server.* and debug.*: liveness and server information."""

from __future__ import annotations

from ..registry import Context, endpoint
from ..store import Doc
from .auth import API_VERSION, SERVER_VERSION


@endpoint("debug.ping", "server.ping")
def ping(ctx: Context, body: Doc) -> Doc:
    return {"msg": "ClearML server (local)"}


@endpoint("server.info")
def info(ctx: Context, body: Doc) -> Doc:
    return {"version": SERVER_VERSION, "api_version": API_VERSION, "build": "local", "uid": "local"}


@endpoint("server.get_stats", "server.report_stats_option")
def stats(ctx: Context, body: Doc) -> Doc:
    return {"supported": False, "enabled": False}
