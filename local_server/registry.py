"""Endpoint registry and the per-call context handed to every handler."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from . import errors
from .store import Doc, Transaction

COMPANY = "local"
USER = {"id": "local-user", "name": "Local User", "company": COMPANY}


@dataclass
class Context:
    tx: Transaction
    endpoint: str
    version: str
    files_url: str
    api_url: str
    user: dict[str, str]
    token_secret: str
    client_ip: str | None = None  # the caller's address (workers report it, as on the real server)


Handler = Callable[[Context, Doc], Doc]
ENDPOINTS: dict[str, Handler] = {}


def endpoint(*names: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        for name in names:
            ENDPOINTS[name] = func
        return func

    return register


def new_id() -> str:
    return uuid.uuid4().hex


def require(body: Doc, *fields: str) -> None:
    missing = [f for f in fields if body.get(f) in (None, "")]
    if missing:
        raise errors.missing_field(*missing)


def string_list(body: Doc, name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.fields_value("expected a list of strings", field=name)
    return list(value)


def merge_tags(existing: list[str] | None, new: list[str] | str | None) -> list[str]:
    """``new`` (a tag or a list of tags) when given, else ``existing``, sorted without duplicates."""
    if isinstance(new, str):
        new = [new]
    return sorted(set(new if new is not None else existing or []))


def ids_of(body: Doc, *names: str) -> list[str]:
    """Ids given under any of ``names`` (a string or a list)."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise errors.fields_value("expected an id or a list of ids", field=name)
        return list(value)
    raise errors.missing_field(names[0])
