"""The history read model in SQLite, its history.json export, and the query API the gateway calls.

The projection reads the log without a consumer group (reference/eos-commit-order.md, "Consumers
that only read"): its position is the `applied_offsets` table, written in the same SQLite transaction
as the rows that position produced, so after any crash rows and offsets agree and the service
resumes exactly where its last committed batch ended. `applied_events` holds the ids of the events
already folded in, which is how a duplicate reaching a later batch (or a later run) is dropped.

The database uses SQLite's rollback journal, not WAL: `agentlog projections rebuild` swaps a fresh
file in by rename, and a WAL file left beside the old database would be read as the new one's.
The swap and every write batch take the same file lock, and a writer that finds the file replaced
reopens it and seeks to the new file's offsets.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from agentlog.config import Settings
from agentlog.faults import pause_point
from agentlog.services.projections.history import (
    Conversation,
    HistoryEvent,
    HistoryState,
    Turn,
    is_relevant,
    messages,
)

DB_NAME = "history.sqlite"
JSON_NAME = "history.json"
LOCK_NAME = "history.lock"
BUSY_TIMEOUT_S = 30.0
SCRATCH_CACHE_KB = 64 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
  conversation_id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  turn_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
  conversation_id TEXT NOT NULL REFERENCES conversations(conversation_id),
  seq INTEGER NOT NULL,
  turn_id TEXT NOT NULL,
  question TEXT NOT NULL,
  answer TEXT,
  outcome TEXT,
  asked_at TEXT NOT NULL,
  answered_at TEXT,
  PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS applied_offsets (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""


# Plain INSERTs: a key already present fails the merge instead of being overwritten or dropped.
_MERGE = tuple(f"INSERT INTO main.{table} SELECT * FROM shard.{table}"  # noqa: S608 - fixed names
               for table in ("conversations", "turns", "applied_offsets", "applied_events"))


def projection_dir(settings: Settings) -> Path:
    return settings.var_dir / "projections"


def history_db_path(settings: Settings) -> Path:
    """Where the gateway finds the read model: `HistoryReadModel(history_db_path(settings))`."""
    return projection_dir(settings) / DB_NAME


@contextmanager
def swap_lock(directory: Path) -> Iterator[None]:
    """Held by every write batch and by the rebuild's swap, so a rename never lands mid-transaction."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json_atomically(path: Path, data: Any) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as out:
        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def sync_to_disk(path: Path) -> None:
    """fsync a file, or a directory: a rename is durable once its directory is synced."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _load(db: sqlite3.Connection, conversation_ids: Iterable[str] | None) -> dict[str, Conversation]:
    """Conversations with their turns in order: the given ones, or all of them."""
    # The ids travel as one JSON array parameter: any number of them, no SQL built from strings.
    wanted = None if conversation_ids is None else orjson.dumps(sorted(conversation_ids)).decode()
    rows = db.execute(
        "SELECT c.conversation_id, c.user_id, c.updated_at, t.turn_id, t.question, t.asked_at, t.answer, t.outcome,"
        " t.answered_at FROM conversations c LEFT JOIN turns t USING (conversation_id)"
        " WHERE ?1 IS NULL OR c.conversation_id IN (SELECT value FROM json_each(?1))"
        " ORDER BY c.conversation_id, t.seq", (wanted,))
    loaded: dict[str, Conversation] = {}
    for conversation_id, user_id, updated_at, turn_id, *turn in rows:
        conversation = loaded.get(conversation_id)
        if conversation is None:
            conversation = loaded[conversation_id] = Conversation(conversation_id, user_id, updated_at)
        if turn_id is not None:
            conversation.add(Turn(turn_id, *turn))
    return loaded


def _offsets(db: sqlite3.Connection, topic: str) -> dict[int, int]:
    """Next offset per partition of `topic` (a physical name)."""
    rows = db.execute("SELECT partition, next_offset FROM applied_offsets WHERE topic = ?", (topic,))
    return {int(partition): int(offset) for partition, offset in rows}


class HistoryStore:
    """The projection's writer: one SQLite transaction per batch, rows and offsets together.

    `scratch` is for a rebuild's fresh file, read by nobody until it is swapped in: its commits skip
    fsync (a crash mid-rebuild only loses the file, which the next rebuild deletes); the rebuild syncs
    it once, before the swap (`sync_to_disk`).
    """

    def __init__(self, path: Path, scratch: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        if scratch:
            # No journal either (a failed rebuild abandons the file), and a cache that holds a flush's pages
            # instead of spilling them mid-transaction: the write costs ~40 % less CPU (measured).
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KB}")
        else:
            self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.executescript(SCHEMA)
        self.inode = path.stat().st_ino
        # Nothing applied yet (a rebuild's fresh file): no event can be a duplicate, no conversation stored.
        self.empty = self.db.execute("SELECT 1 FROM applied_events LIMIT 1").fetchone() is None

    def replaced(self) -> bool:
        """Has a rebuild renamed another database over ours since we opened it?"""
        try:
            return self.path.stat().st_ino != self.inode
        except FileNotFoundError:
            return True

    def offsets(self, topic: str) -> dict[int, int]:
        return _offsets(self.db, topic)

    def apply_batch(self, events: Iterable[HistoryEvent], offsets: Mapping[tuple[str, int], int]) -> bool:
        """Fold `events` in and move to `offsets` (next offset per topic and partition) atomically.

        True when a conversation changed (history.json then needs rewriting)."""
        state = HistoryState()
        with self._transaction():
            self.fold_into(state, events)
            self._write(state, offsets)
        return bool(state.touched)

    def fold_into(self, state: HistoryState, events: Iterable[HistoryEvent]) -> None:
        """Fold `events` into `state`, first loading from the database what they touch and `state` lacks:
        their conversations, and which of them were applied before. A rebuild keeps one state over many
        batches and writes it now and then (`write`); a live batch folds into a state of its own."""
        if not self.empty:  # else (a rebuild's first flush) nothing is stored: the fold skips the lookups
            events = [e for e in events if is_relevant(e)]
            unknown_ids = {e.id for e in events} - state.seen
            if unknown_ids:
                ids = orjson.dumps(sorted(unknown_ids)).decode()
                state.seen.update(row[0] for row in self.db.execute(
                    "SELECT event_id FROM applied_events WHERE event_id IN (SELECT value FROM json_each(?))", (ids,)))
            unloaded = {e.conversation_id for e in events} - state.conversations.keys()
            if unloaded:
                state.conversations.update(_load(self.db, unloaded))
        for event in events:
            state.apply(event)  # skips irrelevant events itself

    def write(self, state: HistoryState, offsets: Mapping[tuple[str, int], int]) -> None:
        """Store what `state` changed and the offsets it reached, in one transaction."""
        with self._transaction():
            self._write(state, offsets)

    def merge(self, shards: Iterable[Path]) -> bool:
        """Copy in every row of other scratch databases (a rebuild's shares of the partitions), in SQL.

        False when a row's key is already here (a conversation or an event in two shares): this
        database is then left half-merged, to be discarded."""
        for shard in shards:
            self.db.execute("ATTACH DATABASE ? AS shard", (str(shard),))
            try:
                with self._transaction():
                    for statement in _MERGE:
                        self.db.execute(statement)
            except sqlite3.IntegrityError:
                return False
            finally:
                self.db.execute("DETACH DATABASE shard")
        return True

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            pause_point("projection.before_commit")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _write(self, state: HistoryState, offsets: Mapping[tuple[str, int], int]) -> None:
        for conversation_id in sorted(state.touched):
            conversation = state.conversations[conversation_id]
            self.db.execute(
                "INSERT INTO conversations (conversation_id, user_id, updated_at, turn_count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (conversation_id) DO UPDATE SET user_id = excluded.user_id, "
                "updated_at = excluded.updated_at, turn_count = excluded.turn_count",
                (conversation_id, conversation.user_id, conversation.updated_at, len(conversation.turns)))
            self.db.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
            self.db.executemany(
                "INSERT INTO turns (conversation_id, seq, turn_id, question, answer, outcome, asked_at, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(conversation_id, seq, t.turn_id, t.question, t.answer, t.outcome, t.asked_at, t.answered_at)
                 for seq, t in enumerate(conversation.turns)])
        self.db.executemany("INSERT OR IGNORE INTO applied_events (event_id) VALUES (?)",
                            [(event_id,) for event_id in state.applied])
        self.empty = self.empty and not state.applied
        self.db.executemany(
            "INSERT INTO applied_offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(topic, partition, offset) for (topic, partition), offset in offsets.items()])

    def export_json(self, path: Path) -> None:
        """Rewrite history.json from the committed rows, in the seed's `{id: [messages]}` shape."""
        rows = self.db.execute("SELECT c.conversation_id, t.question, t.answer FROM conversations c "
                               "LEFT JOIN turns t USING (conversation_id) ORDER BY c.conversation_id, t.seq")
        # Straight from the rows, without building the fold's objects: this runs after every batch.
        exported = {cid: messages((q, a) for _, q, a in group if q is not None)
                    for cid, group in groupby(rows, key=itemgetter(0))}
        write_json_atomically(path, exported)

    def close(self) -> None:
        self.db.close()


class HistoryReadModel:
    """Read-only queries over the projection; each call opens its own connection, so any thread or
    process may call it while the projection writes, and a rebuild's swap is picked up at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            yield None
            return
        with closing(sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                     timeout=BUSY_TIMEOUT_S)) as db:
            yield db

    def conversations(self) -> list[dict[str, Any]]:
        """Every conversation, most recently updated first: id, user, number of turns, last update."""
        with self._connect() as db:
            if db is None:
                return []
            rows = db.execute("SELECT conversation_id, user_id, turn_count, updated_at FROM conversations "
                              "ORDER BY updated_at DESC, conversation_id").fetchall()
        return [{"conversationId": cid, "userId": user, "turns": count, "updatedAt": updated}
                for cid, user, count, updated in rows]

    def history(self, conversation_id: str) -> list[dict[str, Any]] | None:
        """The conversation's turns since its last reset; None when the projection has never seen it."""
        with self._connect() as db:
            if db is None:
                return None
            conversation = _load(db, [conversation_id]).get(conversation_id)
        return None if conversation is None else [turn.to_json() for turn in conversation.turns]

    def offsets(self, topic: str) -> dict[int, int]:
        """The projection's position in `topic` (physical name): next offset per partition."""
        with self._connect() as db:
            return {} if db is None else _offsets(db, topic)
