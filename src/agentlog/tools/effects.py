"""The one way a sample tool makes an effect at most once: a SQLite row keyed by the idempotency key.

Every attempt of a step carries the same idempotency key, so `INSERT OR IGNORE` on that primary key
turns a retried or re-run call into a no-op that can still tell the caller it was already done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating the directory and, by `schema`, the table) a store of effects shared by processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    db.execute(schema)
    return db


def insert_once(path: Path, schema: str, insert: str, row: Sequence[object]) -> bool:
    """Run `insert` (an INSERT OR IGNORE whose key is the idempotency key); True if this call added the row."""
    with closing(connect(path, schema)) as db, db:
        return db.execute(insert, tuple(row)).rowcount == 1
