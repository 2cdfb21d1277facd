"""Stored documents: the shape each kind must have, the check every commit runs, and the repair of a
data directory written by an older version that stored what it should have refused.

An older version stored, with a 200, values no JSON reader accepts (``NaN``, ``Infinity``, lone
surrogates) and fields of the wrong type (a number as a task's comment, a string as its tags). Every
later listing then failed with a 500, also after a restart. At start :func:`repair_store` finds such
documents, keeps the original row in the ``quarantine`` table with the reasons, and stores a repaired
copy: unstorable values become ``null``, lone surrogates become U+FFFD, a wrong-typed or missing
field gets the value a new object would have. Each repair is logged, one line per document.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from . import errors
from .schemas import (
    METADATA,
    STRS,
    TASK_BODY,
    TASK_TYPES,
)
from .store import Doc, Store
from .validation import BOOL, INT, INT64_MAX, INT64_MIN, MAX_DEPTH, NUM, OBJ, STR, Enum, ListOf, MapOf, Spec

_SURROGATE = re.compile("[\ud800-\udfff]")
STATUSES = (
    "created",
    "queued",
    "in_progress",
    "stopped",
    "published",
    "publishing",
    "closed",
    "failed",
    "completed",
    "unknown",
)
_COMMON: dict[str, Spec] = {
    "id": STR,
    "name": STR,
    "tags": STRS,
    "system_tags": STRS,
    "created": STR,
    "last_update": STR,
}
SHAPES: dict[str, dict[str, Spec]] = {
    "task": {
        **_COMMON,
        "type": Enum(*TASK_TYPES),
        "status": Enum(*STATUSES),
        "comment": STR,
        "project": STR,
        "parent": STR,
        **TASK_BODY,
        "last_iteration": INT,
        "last_metrics": MapOf(MapOf(OBJ)),
        "last_change": STR,
        "status_changed": STR,
        "status_reason": STR,
        "status_message": STR,
        "started": STR,
        "completed": STR,
        "published": STR,
        "last_worker": STR,
        "active_duration": NUM,
    },
    "model": {
        **_COMMON,
        "uri": STR,
        "comment": STR,
        "framework": STR,
        "design": OBJ,
        "labels": MapOf(INT),
        "ready": BOOL,
        "project": STR,
        "parent": STR,
        "task": STR,
        "ui_cache": OBJ,
        "metadata": METADATA,
        "last_iteration": INT,
        "last_metrics": OBJ,
        "last_change": STR,
    },
    "queue": {
        **_COMMON,
        "display_name": STR,
        "entries": ListOf(OBJ),
        "metadata": METADATA,
    },
    "project": {
        **_COMMON,
        "basename": STR,
        "description": STR,
        "default_output_destination": STR,
        "parent": STR,
        "path": STRS,
    },
    "worker": {"id": STR, "queues": STRS, "tags": STRS, "system_tags": STRS, "register_timeout": INT},
    "user": {},
}
# fields every document of a kind has (what a new one gets), for documents that lack them
REQUIRED: dict[str, dict[str, Callable[[], Any]]] = {
    "task": {
        "name": lambda: "(repaired: no name)",
        "type": lambda: "custom",
        "status": lambda: "created",
        "comment": str,
        "tags": list,
        "system_tags": list,
        "execution": lambda: {"queue": None, "parameters": {}, "artifacts": []},
        "script": dict,
        "hyperparams": dict,
        "configuration": dict,
        "models": lambda: {"input": [], "output": []},
        "output": lambda: {"destination": None},
        "input": dict,
        "runtime": dict,
        "container": dict,
        "last_metrics": dict,
        "last_iteration": int,
    },
    "model": {
        "name": lambda: "(repaired: no name)",
        "comment": str,
        "tags": list,
        "system_tags": list,
        "labels": dict,
        "metadata": dict,
        "ready": bool,
        "last_metrics": dict,
        "last_iteration": int,
    },
    "queue": {
        "name": lambda: "(repaired: no name)",
        "tags": list,
        "system_tags": list,
        "entries": list,
        "metadata": dict,
    },
    "project": {
        "name": lambda: "(repaired: no name)",
        "basename": lambda: "(repaired: no name)",
        "description": str,
        "tags": list,
        "system_tags": list,
        "path": list,
    },
    "worker": {"queues": list, "tags": list, "system_tags": list, "runtime_properties": dict},
    "user": {},
}


def check_document(kind: str, doc: Doc) -> None:
    """What every commit runs on every document it writes: a 400 naming the field, never a write."""
    for name, spec in SHAPES.get(kind, {}).items():
        if name in doc:
            spec.check(doc[name], name)


# ---------------------------------------------------------------------------- repair


def _clean(value: Any, path: str, reasons: list[str], depth: int = 0) -> Any:
    """``value`` without NaN/Infinity, out-of-range integers and lone surrogates."""
    if depth > MAX_DEPTH:
        reasons.append(f"{path}: nested deeper than {MAX_DEPTH} levels (dropped)")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        reasons.append(f"{path}: {value} (set to null)")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        reasons.append(f"{path}: integer out of the 64-bit range (set to null)")
        return None
    if isinstance(value, str):
        fixed = _fix_text(value)
        if fixed != value:
            reasons.append(f"{path}: lone surrogate (replaced with U+FFFD)")
        return fixed
    if isinstance(value, list):
        return [_clean(v, f"{path}[{i}]", reasons, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            fixed_key = _fix_text(str(key))
            if fixed_key != key:
                reasons.append(f"{path}: key with a lone surrogate (replaced with U+FFFD)")
            out[fixed_key] = _clean(sub, f"{path}.{fixed_key}" if path else fixed_key, reasons, depth + 1)
        return out
    return value


def _fix_text(text: str) -> str:
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def repair_document(kind: str, doc_id: str, doc: Any) -> tuple[Doc, list[str]]:
    """A storable copy of ``doc`` and what was changed (empty when it was fine)."""
    reasons: list[str] = []
    if not isinstance(doc, dict):
        reasons.append(f"the document is {type(doc).__name__}, not an object (rebuilt)")
        doc = {}
    fixed: Doc = _clean(doc, "", reasons)
    if fixed.get("id") != doc_id:
        reasons.append(f"id: {fixed.get('id')!r} (set to the stored id)")
        fixed["id"] = doc_id
    defaults = REQUIRED.get(kind, {})
    for name, spec in SHAPES.get(kind, {}).items():
        if name not in fixed:
            continue
        try:
            spec.check(fixed[name], name)
        except errors.ApiError as exc:
            reasons.append(f"{name}: {exc.msg} (reset)")
            if name in defaults:
                fixed[name] = defaults[name]()
            else:
                fixed[name] = None
    for name, make in defaults.items():
        if fixed.get(name) is None:
            if name in fixed or name in ("name", "type", "status"):
                reasons.append(f"{name}: missing (set to {make()!r})")
            fixed[name] = make()
    return fixed, reasons


def repair_store(store: Store) -> list[str]:
    """Repair every stored document an older version left unreadable or wrong-typed; one line per
    document for the log (empty when every document was fine)."""
    repaired: dict[tuple[str, str], tuple[Doc, list[str]]] = {}
    for kind, doc_id, error in store.unreadable:
        repaired[(kind, doc_id)] = ({}, [f"unreadable ({error}): quarantined"])
    for kind, docs in store.loaded_docs():
        for doc_id, doc in docs.items():
            fixed, reasons = repair_document(kind, doc_id, doc)
            if reasons:
                repaired[(kind, doc_id)] = (fixed, reasons)
    events: dict[int, tuple[str | None, str]] = {}
    for seq, body in store.suspicious_events():
        reasons = []
        try:
            event = _clean(json.loads(body), "", reasons)
        except (ValueError, RecursionError) as exc:
            events[seq] = (None, f"unreadable ({str(exc)[:200]}): quarantined")
            continue
        if reasons:
            events[seq] = (json.dumps(event, allow_nan=False), "; ".join(reasons))
    lines = []
    if repaired:
        store.apply_repairs({key: (doc or None, "; ".join(why)) for key, (doc, why) in repaired.items()})
        lines += [
            f"repaired {kind} {doc_id}: {'; '.join(why)[:2000]}"
            for (kind, doc_id), (_, why) in repaired.items()
        ]
    if events:
        store.apply_event_repairs(events)
        lines += [f"repaired event {seq}: {why[:2000]}" for seq, (_, why) in events.items()]
    if lines:
        lines.append(
            f"repaired {len(repaired)} stored document(s) and {len(events)} event(s) written by an older "
            "version; the originals are in the quarantine table of server.sqlite3"
        )
    return lines
