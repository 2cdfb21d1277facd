"""``make_public`` and ``make_private`` of tasks, models and projects, as the real server does them."""

from __future__ import annotations

import copy
from collections.abc import Callable

from .. import errors
from ..query import now_iso
from ..registry import COMPANY
from ..store import Doc, Transaction


def set_public(
    tx: Transaction,
    kind: str,
    ids: list[str],
    public: bool,
    invalid: Callable[[list[str]], errors.ApiError],
    stamp: str = "last_change",
) -> Doc:
    """The real server's ``make_public``/``make_private``: a public object belongs to no company (it can
    be read but not written); only an object made public by this company can be made private again."""
    docs = [tx.get(kind, i) for i in ids]
    missing = [
        i
        for i, d in zip(ids, docs, strict=True)
        if d is None
        or (
            d.get("company") != COMPANY
            if public
            else d.get("company") != "" or d.get("company_origin") != COMPANY
        )
    ]
    if missing:
        raise invalid(missing)
    for doc in docs:
        assert doc is not None
        changed = copy.deepcopy(doc)
        if public:
            changed.update(company="", company_origin=COMPANY)
        else:
            changed["company"] = COMPANY
            changed.pop("company_origin", None)
        changed[stamp] = now_iso()
        tx.put(kind, changed)
    return {"updated": len(ids)}
