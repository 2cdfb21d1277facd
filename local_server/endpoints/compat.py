"""Tags for clients older than API 2.3, as the real server handles them for projects and queues.

Before 2.3 there were no ``system_tags``: such a client sends system tags (``archived``, ``public``,
``default``, also negated in filters) in ``tags``, and gets both back merged in ``tags``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..registry import Context
from ..store import Doc

_SYSTEM = {
    "project": {"archived", "public", "default"},
    "queue": {"default"},
}


def old_client(ctx: Context) -> bool:
    major, _, minor = ctx.version.partition(".")
    try:
        return (int(major), int(minor or 0)) < (2, 3)
    except ValueError:
        return False  # an unreadable version counts as the newest


def conform_request(ctx: Context, body: Doc, entity: str) -> Doc:
    """The body with an old client's system tags moved from ``tags`` to ``system_tags``."""
    tags = body.get("tags")
    if not old_client(ctx) or tags is None or body.get("system_tags"):
        return body
    names = _SYSTEM[entity] | {f"-{n}" for n in _SYSTEM[entity]}
    values = [tags] if isinstance(tags, str) else list(tags)
    return {
        **body,
        "tags": [t for t in values if t not in names],
        "system_tags": [t for t in values if t in names],
    }


def conform_output(ctx: Context, docs: Iterable[Doc]) -> None:
    """An old client gets the system tags merged into ``tags`` (in place, on copies)."""
    if not old_client(ctx):
        return
    for doc in docs:
        if doc.get("system_tags"):
            doc["tags"] = sorted(set(doc.get("tags") or []) | set(doc["system_tags"]))
