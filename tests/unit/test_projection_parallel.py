"""A rebuild by forked processes, each folding a share of the partitions into its own database, stores
exactly what one process folding the whole log stores: rows, offsets, counts, history.json; and when
a conversation or an event spans two shares it falls back to that serial fold.

`read_batches` is replaced by a fake over an in-memory log (the forked processes inherit the patch),
so this needs no broker; tests/integration/test_projection.py compares both against a real one.
"""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from agentlog.config import Settings
from agentlog.errors import AgentlogError, BrokerError
from agentlog.events.codec import SUBJECT_HEADER, Codec
from agentlog.events.envelope import Envelope, caused_by, command, parse_timestamp
from agentlog.events.schemas import packaged_schemas
from agentlog.services.projections import service
from agentlog.services.projections.service import RebuildReport, rebuild
from agentlog.services.projections.store import DB_NAME, JSON_NAME, projection_dir

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="rebuilders are forked")

# Resets under a schema the fast check cannot translate: the codec decodes them.
SCHEMAS = packaged_schemas()
SCHEMAS[("event.UserHistoryReset", 1)] = {**SCHEMAS[("event.UserHistoryReset", 1)], "minProperties": 1}
CODEC = Codec(SCHEMAS)
PAYLOADS = {
    "PlanCompleted": {"finalAnswerSynthesisRequired": True, "stepCount": 0},
    "FinalAnswerSynthesized": {"message": "4", "outcome": "completed", "synthesizer": "test"},
    "UserHistoryReset": {"command": "reset"},
}
PARTITIONS = 5
Record = tuple[bytes | None, str]


def envelope(type_: str, conversation: str, turn: str) -> Envelope:
    root = command("UserQueryReceived", conversation_id=conversation, turn_id=turn, user_id="u1",
                   payload={"userInput": "q"}, source="test")
    payload = PAYLOADS.get(type_, {"userInput": f"{conversation} {turn}", "language": "en"})
    return caused_by(root, "event", type_, payload, source="test", now=parse_timestamp(root.timestamp))


def record(event: Envelope) -> Record:
    return CODEC.encode(event), event.subject


def partition_log(partition: int) -> list[Record]:
    """Two conversations with turns, an irrelevant event per turn, a duplicate, a reset, and three invalid
    messages (the last one at the partition's end)."""
    records: list[Record] = []
    for n in range(30):
        conversation, turn = f"p{partition}-c{n % 2}", f"p{partition}-t{n}"
        records += [record(envelope(t, conversation, turn))
                    for t in ("UserQueryReceived", "PlanCompleted", "FinalAnswerSynthesized")]
        if n == 7:
            records.append(records[-3])  # a question delivered twice
        if n == 20:
            records.append(record(envelope("UserHistoryReset", conversation, f"r{n}")))
        if n == 25:
            records += [(b"{not json", "event.UserQueryReceived"), (None, "event.FinalAnswerSynthesized")]
    bad = {**envelope("UserQueryReceived", f"p{partition}-c0", "bad").to_json(), "turnId": "t 2"}
    return [*records, (orjson.dumps(bad), "event.UserQueryReceived")]


LOG = {partition: partition_log(partition) for partition in range(PARTITIONS)}


def fake_read_batches(settings: Settings, topic: str, batch_size: int = 10_000, timeout: float = 30.0,
                      partitions: Iterable[int] | None = None) -> Iterator[list[Message]]:
    """Batches that interleave the wanted partitions, each partition in offset order."""
    queues = {p: [Message(topic=topic, partition=p, offset=offset, value=value,
                          headers=[(SUBJECT_HEADER, subject.encode())])
                  for offset, (value, subject) in enumerate(LOG[p])]
              for p in (range(PARTITIONS) if partitions is None else partitions)}
    while any(queues.values()):
        batch: list[Message] = []
        for queue in queues.values():
            batch.extend(queue[:7])
            del queue[:7]
        yield batch


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setattr(service, "read_batches", fake_read_batches)
    monkeypatch.setattr(service, "topic_partitions", lambda settings, topic: list(range(PARTITIONS)))
    monkeypatch.setattr(service, "REBUILD_FLUSH_EVENTS", 40)  # several flushes per rebuilder
    return Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "AGENTLOG_VAR_DIR": str(tmp_path)})


def stored(settings: Settings) -> dict[str, Any]:
    """Every row of every table, history.json, and the files in the projection directory."""
    directory = projection_dir(settings)
    with closing(sqlite3.connect(directory / DB_NAME)) as db:
        rows = {table: db.execute(query).fetchall() for table, query in (
            ("conversations", "SELECT * FROM conversations ORDER BY conversation_id"),
            ("turns", "SELECT * FROM turns ORDER BY conversation_id, seq"),
            ("applied_offsets", "SELECT * FROM applied_offsets ORDER BY partition"),
            ("applied_events", "SELECT * FROM applied_events ORDER BY event_id"))}
    return {**rows, "json": (directory / JSON_NAME).read_bytes(), "files": sorted(p.name for p in directory.iterdir())}


def rebuilt(settings: Settings, workers: int) -> tuple[RebuildReport, dict[str, Any]]:
    report = rebuild(settings, CODEC, workers)
    assert not multiprocessing.active_children()
    return report, stored(settings)


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_forked_rebuilders_store_what_one_rebuilder_stores(settings: Settings, workers: int,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    serial = rebuilt(settings, 1)
    with caplog.at_level(logging.WARNING):
        assert rebuilt(settings, workers) == serial
    assert "folding serially" not in caplog.text
    report, rows = serial
    assert report.messages == sum(len(records) for records in LOG.values()) and report.invalid == 3 * PARTITIONS
    assert report.offsets == {p: len(LOG[p]) for p in range(PARTITIONS)}  # past the invalid last message
    assert len(rows["conversations"]) == 2 * PARTITIONS and len(rows["turns"]) > 2 * PARTITIONS
    assert rows["files"] == sorted([DB_NAME, JSON_NAME, "history.lock"])  # no shard left behind
    assert ("event", "UserHistoryReset", 1) not in service.HistoryDecoder(CODEC, service.RELEVANT_SUBJECTS).checks


def test_a_conversation_in_two_shares_is_folded_serially(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # Partitions 0 and 1 go to different rebuilders: an answer to p0's question lands in p1.
    monkeypatch.setitem(LOG, 1, [*LOG[1], record(envelope("FinalAnswerSynthesized", "p0-c1", "p0-t29"))])
    serial = rebuilt(settings, 1)
    with caplog.at_level(logging.WARNING):
        assert rebuilt(settings, 2) == serial
    assert "a conversation spans the rebuild's shares" in caplog.text


def test_an_event_applied_in_two_shares_is_folded_serially(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # The same event id under another conversation in another share: only one may be applied.
    original = envelope("UserQueryReceived", "p0-c0", "p0-t0")
    twin = orjson.dumps({**original.to_json(), "conversationId": "p1-c0"})
    monkeypatch.setitem(LOG, 1, [*LOG[1], (twin, original.subject)])
    serial = rebuilt(settings, 1)
    with caplog.at_level(logging.WARNING):
        assert rebuilt(settings, 2) == serial
    assert "an event was applied in two of the rebuild's shares" in caplog.text


def test_a_rebuilders_failure_fails_the_rebuild_and_keeps_the_old_database(settings: Settings,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, before = rebuilt(settings, 1)

    def failing(settings: Settings, topic: str, batch_size: int = 10_000, timeout: float = 30.0,
                partitions: Iterable[int] | None = None) -> Iterator[list[Message]]:
        wanted = list(partitions or ())
        yield from fake_read_batches(settings, topic, batch_size, timeout, wanted)
        if 1 in wanted:
            raise BrokerError("timed out reading partition 1")

    monkeypatch.setattr(service, "read_batches", failing)
    with pytest.raises(AgentlogError, match="BrokerError: timed out reading partition 1"):
        rebuild(settings, CODEC, 2)
    assert not multiprocessing.active_children()
    assert stored(settings) == before
