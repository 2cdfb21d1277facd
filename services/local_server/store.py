"""Document store: SQLite on disk, an in-memory copy for queries, all-or-nothing transactions.

The server is one process; every API call runs to completion on the event loop before the next
starts, inside one :class:`Transaction`. A call that raises leaves nothing behind: its pending
writes are dropped, and SQLite commits a call's writes in a single transaction, so a server killed
at any instant restarts with the state of the last completed call.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
"""


class Store:
    """All entities of the server, keyed by kind and id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Doc]] = {kind: {} for kind in KINDS}
        for kind, doc_id, body in self._db.execute("SELECT kind, id, body FROM docs"):
            self._docs.setdefault(kind, {})[doc_id] = json.loads(body)

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

    def get(self, kind: str, doc_id: str) -> Doc | None:
        """The stored document, read-only: use :meth:`mutable` to change it."""
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

    def put(self, kind: str, doc: Doc) -> None:
        self._pending[(kind, doc["id"])] = doc

    def delete(self, kind: str, doc_id: str) -> None:
        self._pending[(kind, doc_id)] = None

    def add_event(self, task: str, etype: str, event: Doc) -> None:
        self._events.append((task, etype, json.dumps(event)))

    def events(self, task: str, types: Iterable[str] | None = None) -> list[Doc]:
        return self._store.events(task, types)

    def _commit(self) -> None:
        if not self._pending and not self._events:
            return
        db = self._store._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for (kind, doc_id), doc in self._pending.items():
                if doc is None:
                    db.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, doc_id))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO docs (kind, id, body) VALUES (?, ?, ?)",
                        (kind, doc_id, json.dumps(doc)),
                    )
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
