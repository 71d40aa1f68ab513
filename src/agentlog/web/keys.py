"""Bearer API keys for the gateway, kept hashed in SQLite under var/gateway/ (`agentlog keys ...`).

A key reads `alk_<id>_<secret>`: the id finds the row, the secret is checked against its SHA-256
(the secret has 256 random bits, so a fast hash is enough; a stolen database yields no usable key).
The key itself is shown once, when it is created, and stored nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentlog.config import Settings

KEY_PREFIX = "alk_"
BUSY_TIMEOUT_S = 10.0
SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, admin INTEGER NOT NULL, secret_sha256 TEXT NOT NULL,
    created TEXT NOT NULL, last_used TEXT, revoked TEXT)"""
SELECT_LIVE = ("SELECT id, user_id, admin, created, last_used, revoked, secret_sha256 FROM api_keys "
               "WHERE id = ? AND revoked IS NULL")
LAST_USED_EVERY_S = 60.0


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never its secret)."""

    id: str
    user_id: str
    admin: bool
    created: str
    last_used: str | None
    revoked: str | None


def gateway_dir(settings: Settings) -> Path:
    return settings.var_dir / "gateway"


def _now(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")


def stale(last_used: str | None, now: datetime) -> bool:
    """Whether a key's recorded last use is old enough to write again."""
    if last_used is None:
        return True
    return (now - datetime.fromisoformat(last_used.replace("Z", "+00:00"))).total_seconds() >= LAST_USED_EVERY_S


def _record(row: tuple[Any, ...]) -> ApiKey:
    key_id, user_id, admin, created, last_used, revoked = row[:6]
    return ApiKey(key_id, user_id, bool(admin), created, last_used, revoked)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = key[len(KEY_PREFIX):].partition("_")
    return (key_id, secret) if key_id and secret else None


class KeyStore:
    """The key table, made when the store is; every method opens its own connection, so one store
    serves many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(SCHEMA)

    @classmethod
    def of(cls, settings: Settings) -> KeyStore:
        return cls(gateway_dir(settings) / "keys.sqlite")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)) as db, db:
            yield db

    def create(self, user_id: str, *, admin: bool = False) -> tuple[ApiKey, str]:
        """A new key for `user_id`: its record and the key itself (to show once)."""
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = ApiKey(key_id, user_id, admin, _now(), None, None)
        with self._db() as db:
            db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL, NULL)",
                       (key_id, user_id, int(admin), _digest(secret), record.created))
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._db() as db:
            rows = db.execute("SELECT id, user_id, admin, created, last_used, revoked FROM api_keys "
                              "ORDER BY created, id").fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Whether a live key with that id was revoked now."""
        with self._db() as db:
            changed = db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                 (_now(), key_id)).rowcount
        return changed == 1

    def get(self, key_id: str) -> ApiKey | None:
        """The live (not revoked) key with that id."""
        with self._db() as db:
            row = db.execute(SELECT_LIVE, (key_id,)).fetchone()
        return None if row is None else _record(row)

    def verify(self, key: str, now: datetime | None = None) -> ApiKey | None:
        """The live key this bearer key is, else None. Its use is recorded at most once a
        LAST_USED_EVERY_S, so that a busy client does not take SQLite's write lock on every request."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        with self._db() as db:
            row = db.execute(SELECT_LIVE, (key_id,)).fetchone()
            if row is None or not hmac.compare_digest(row[-1], _digest(secret)):
                return None
            found, moment = _record(row), now or datetime.now(UTC)
            if stale(found.last_used, moment):
                found = replace(found, last_used=_now(moment))
                db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (found.last_used, key_id))
        return found
