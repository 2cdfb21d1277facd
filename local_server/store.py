"""Document store: SQLite on disk, an in-memory copy for queries, all-or-nothing transactions.

The server is one process; API calls run one at a time (under one lock), each inside one
:class:`Transaction`. A call that raises leaves nothing behind: its pending writes are dropped, and
SQLite commits a call's writes in a single transaction, so a server killed at any instant restarts
with the state of the last completed call. Before a commit every document is checked (``check``,
see :mod:`.documents`): a value that cannot be stored is a 400 and nothing is written.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import errors

Doc = dict[str, Any]

KINDS = ("project", "task", "model", "queue", "worker", "user")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task ON events (task, type);
CREATE TABLE IF NOT EXISTS quarantine (
    kind   TEXT NOT NULL,
    id     TEXT NOT NULL,
    body   TEXT NOT NULL,
    reason TEXT NOT NULL,
    at     TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""
Checker = Callable[[str, "Doc"], None]


class Store:
    """All entities of the server, keyed by kind and id."""

    def __init__(self, path: Path, check: Checker | None = None) -> None:
        self.path = path
        self.check = check
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Doc]] = {kind: {} for kind in KINDS}
        self.unreadable: list[tuple[str, str, str]] = []  # (kind, id, error): rows no JSON reader takes
        for kind, doc_id, body in self._db.execute("SELECT kind, id, body FROM docs"):
            try:
                self._docs.setdefault(kind, {})[doc_id] = json.loads(body)
            except (ValueError, RecursionError) as exc:
                self.unreadable.append((kind, doc_id, str(exc)[:200]))

    def loaded_docs(self) -> Iterator[tuple[str, dict[str, Doc]]]:
        """Every kind with its documents as loaded (for the repair at start)."""
        yield from self._docs.items()

    def suspicious_events(self) -> list[tuple[int, str]]:
        """Events whose text may hold NaN, Infinity or an escaped lone surrogate (an older version
        stored them): (seq, body) rows for the repair at start."""
        likes = [
            "%NaN%",
            "%Infinity%",
            *(f"%\\u{p}%" for p in ("d8", "d9", "da", "db", "dc", "dd", "de", "df")),
        ]
        where = " OR ".join("body LIKE ?" for _ in likes)
        with self._lock:
            return list(self._db.execute(f"SELECT seq, body FROM events WHERE {where}", likes))

    def apply_event_repairs(self, repairs: dict[int, tuple[str | None, str]]) -> None:
        """Store repaired event bodies (None: drop the event), originals kept in ``quarantine``."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for seq, (body, reason) in repairs.items():
                    db.execute(
                        "INSERT INTO quarantine (kind, id, body, reason) "
                        "SELECT 'event', CAST(seq AS TEXT), body, ? FROM events WHERE seq=?",
                        (reason, seq),
                    )
                    if body is None:
                        db.execute("DELETE FROM events WHERE seq=?", (seq,))
                    else:
                        db.execute("UPDATE events SET body=? WHERE seq=?", (body, seq))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def apply_repairs(self, repairs: dict[tuple[str, str], tuple[Doc | None, str]]) -> None:
        """Keep each original row in ``quarantine`` with the reason and store the repaired document
        (or none), in one SQLite transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for (kind, doc_id), (doc, reason) in repairs.items():
                    db.execute(
                        "INSERT INTO quarantine (kind, id, body, reason) "
                        "SELECT kind, id, body, ? FROM docs WHERE kind=? AND id=?",
                        (reason, kind, doc_id),
                    )
                    if doc is None:
                        db.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, doc_id))
                    else:
                        db.execute(
                            "UPDATE docs SET body=? WHERE kind=? AND id=?",
                            (json.dumps(doc, allow_nan=False), kind, doc_id),
                        )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for (kind, doc_id), (doc, _) in repairs.items():
                if doc is None:
                    self._docs.setdefault(kind, {}).pop(doc_id, None)
                else:
                    self._docs.setdefault(kind, {})[doc_id] = doc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            tx = Transaction(self)
            yield tx
            tx._commit()

    # read-only access for code outside a transaction (tests, the CLI)
    def all(self, kind: str) -> list[Doc]:
        with self._lock:
            return [copy.deepcopy(d) for d in self._docs[kind].values()]

    def count(self, kind: str) -> int:
        return len(self._docs[kind])

    def events(self, task: str, types: Iterable[str] | None = None) -> list[Doc]:
        with self._lock:
            if types is None:
                rows = self._db.execute("SELECT body FROM events WHERE task=? ORDER BY seq", (task,))
            else:
                wanted = list(types)
                marks = ",".join("?" * len(wanted))
                rows = self._db.execute(
                    f"SELECT body FROM events WHERE task=? AND type IN ({marks}) ORDER BY seq",
                    (task, *wanted),
                )
            return [json.loads(body) for (body,) in rows]


class Transaction:
    """Pending writes of one API call; reads see them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[tuple[str, str], Doc | None] = {}
        self._events: list[tuple[str, str, str]] = []
        self._event_deletes: list[tuple[str, tuple[str, ...] | None]] = []  # (task, types or all)

    def get(self, kind: str, doc_id: str) -> Doc | None:
        """The stored document, read-only: use :meth:`mutable` to change it."""
        if not isinstance(doc_id, str):
            return None
        key = (kind, doc_id)
        if key in self._pending:
            return self._pending[key]
        return self._store._docs[kind].get(doc_id)

    def mutable(self, kind: str, doc_id: str) -> Doc | None:
        doc = self.get(kind, doc_id)
        return None if doc is None else copy.deepcopy(doc)

    def scan(self, kind: str) -> Iterator[Doc]:
        """Every document of a kind (read-only), pending writes included."""
        pending = {i: d for (k, i), d in self._pending.items() if k == kind}
        for doc_id, doc in self._store._docs[kind].items():
            if doc_id in pending:
                continue
            yield doc
        for new in pending.values():
            if new is not None:
                yield new

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Writes made inside are dropped when it raises (one item of a ``*_many`` batch call)."""
        pending, events, deletes = dict(self._pending), list(self._events), list(self._event_deletes)
        try:
            yield
        except BaseException:
            self._pending, self._events, self._event_deletes = pending, events, deletes
            raise

    def put(self, kind: str, doc: Doc) -> None:
        self._pending[(kind, doc["id"])] = doc

    def delete(self, kind: str, doc_id: str) -> None:
        self._pending[(kind, doc_id)] = None

    def add_event(self, task: str, etype: str, event: Doc) -> None:
        try:
            self._events.append((task, etype, json.dumps(event, allow_nan=False)))
        except ValueError as exc:  # NaN or Infinity: never written
            raise errors.validation(f"the event cannot be stored: {exc}") from exc

    def delete_events(self, task: str, types: Iterable[str] | None = None) -> int:
        """Delete a task's events (of ``types``, or all) at commit; returns how many there were."""
        kinds = None if types is None else tuple(types)
        count = len(self.events(task, kinds))
        self._event_deletes.append((task, kinds))
        self._events = [
            (t, etype, body)
            for (t, etype, body) in self._events
            if not (t == task and (kinds is None or etype in kinds))
        ]
        return count

    def events(self, task: str, types: Iterable[str] | None = None) -> list[Doc]:
        """Stored events of a task, then those this transaction added (in order)."""
        wanted = None if types is None else set(types)
        pending = [
            json.loads(body)
            for (t, etype, body) in self._events
            if t == task and (wanted is None or etype in wanted)
        ]
        stored = self._store.events(task, types)
        for t, kinds in self._event_deletes:
            if t == task:
                stored = [] if kinds is None else [e for e in stored if e.get("type") not in kinds]
        return stored + pending

    def _commit(self) -> None:
        if not self._pending and not self._events and not self._event_deletes:
            return
        check = self._store.check
        rows: list[tuple[str, str, str | None]] = []
        for (kind, doc_id), doc in self._pending.items():
            if doc is not None and check is not None:
                check(kind, doc)
            try:
                rows.append((kind, doc_id, None if doc is None else json.dumps(doc, allow_nan=False)))
            except ValueError as exc:  # NaN or Infinity: never written
                raise errors.validation(f"the {kind} cannot be stored: {exc}") from exc
        db = self._store._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for kind, doc_id, body in rows:
                if body is None:
                    db.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, doc_id))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO docs (kind, id, body) VALUES (?, ?, ?)", (kind, doc_id, body)
                    )
            for task, kinds in self._event_deletes:
                if kinds is None:
                    db.execute("DELETE FROM events WHERE task=?", (task,))
                else:
                    marks = ",".join("?" * len(kinds))
                    db.execute(f"DELETE FROM events WHERE task=? AND type IN ({marks})", (task, *kinds))
            if self._events:
                db.executemany("INSERT INTO events (task, type, body) VALUES (?, ?, ?)", self._events)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for (kind, doc_id), doc in self._pending.items():
            if doc is None:
                self._store._docs[kind].pop(doc_id, None)
            else:
                self._store._docs[kind][doc_id] = doc
