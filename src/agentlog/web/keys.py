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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agentlog.config import Settings

KEY_PREFIX = "alk_"
BUSY_TIMEOUT_S = 10.0
SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, admin INTEGER NOT NULL, secret_sha256 TEXT NOT NULL,
    created TEXT NOT NULL, last_used TEXT, revoked TEXT)"""


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = key[len(KEY_PREFIX):].partition("_")
    return (key_id, secret) if key_id and secret else None


class KeyStore:
    """The key table; every method opens its own connection, so one store serves many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, settings: Settings) -> KeyStore:
        return cls(gateway_dir(settings) / "keys.sqlite")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)) as db, db:
            db.execute(SCHEMA)
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
        return [ApiKey(i, u, bool(a), c, lu, r) for i, u, a, c, lu, r in rows]

    def revoke(self, key_id: str) -> bool:
        """Whether a live key with that id was revoked now."""
        with self._db() as db:
            changed = db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                 (_now(), key_id)).rowcount
        return changed == 1

    def get(self, key_id: str) -> ApiKey | None:
        """The live (not revoked) key with that id."""
        with self._db() as db:
            row = db.execute("SELECT id, user_id, admin, created, last_used, revoked FROM api_keys "
                             "WHERE id = ? AND revoked IS NULL", (key_id,)).fetchone()
        return None if row is None else ApiKey(row[0], row[1], bool(row[2]), row[3], row[4], row[5])

    def verify(self, key: str) -> ApiKey | None:
        """The live key this bearer key is, else None; records its use."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        with self._db() as db:
            row = db.execute("SELECT secret_sha256 FROM api_keys WHERE id = ? AND revoked IS NULL",
                             (key_id,)).fetchone()
            if row is None or not hmac.compare_digest(row[0], _digest(secret)):
                return None
            db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (_now(), key_id))
        return self.get(key_id)
