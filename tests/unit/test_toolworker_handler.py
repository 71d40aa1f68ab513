"""The tool worker's handler runs calls off the poll loop: a request read again joins its running call,
an outcome is recorded only once the committed offsets pass its request, and the call is told its
deadline."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from agentlog.events.envelope import Envelope, command, utc_now
from agentlog.kafka.eos import Output
from agentlog.services.toolworker.service import OutcomeStore, ToolWorkerHandler
from agentlog.tools.registry import ToolContext, ToolOutput, ToolRegistry, tool

TOPIC = "tool-invocation-requests"


class Gate:
    """A tool that blocks until released and counts its starts and the deadlines it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.starts: list[float | None] = []
        self.registry = ToolRegistry()
        tool("gate", "Test: waits for the test.", self.registry)(self.call)

    def call(self, context: ToolContext) -> ToolOutput:
        self.starts.append(context.deadline)
        self.release.wait(10)
        return ToolOutput(value="opened", text="opened")


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def handler(tmp_path: Path, gate: Gate) -> Iterator[ToolWorkerHandler]:
    store = OutcomeStore(tmp_path / "outcomes")
    try:
        yield ToolWorkerHandler(gate.registry, store, "w", concurrency=2)
    finally:
        gate.release.set()
        store.close()


def request() -> Envelope:
    return command("ToolInvocationRequested", conversation_id="c", turn_id=str(uuid.uuid4()), user_id="u",
                   source="test", payload={"invocationId": str(uuid.uuid4()), "idempotencyKey": str(uuid.uuid4()),
                                           "stepId": "s1", "attempt": 1, "tool": "gate", "arguments": {},
                                           "timeoutMs": 30_000})


def read_at(partition: int, offset: int) -> Any:
    """The parts of a consumed message the handler reads: where it was."""
    return SimpleNamespace(topic=lambda: TOPIC, partition=lambda: partition, offset=lambda: offset)


def deferred(result: list[Output] | Future[list[Output]]) -> Future[list[Output]]:
    assert isinstance(result, Future), result
    return result


def test_a_request_read_again_while_its_call_runs_joins_it(handler: ToolWorkerHandler, gate: Gate) -> None:
    sent = request()
    first = deferred(handler.handle(sent, read_at(0, 5), utc_now()))
    handler.after_commit({})  # an aborted or empty transaction: nothing recorded
    again = deferred(handler.handle(sent, read_at(0, 5), utc_now()))  # read again after a rewind
    assert again is first and not first.done()
    gate.release.set()
    [output] = first.result(10)
    assert output.envelope.payload["status"] == "succeeded"
    assert len(gate.starts) == 1
    assert gate.starts[0] == pytest.approx((sent.timestamp_ms + 30_000) / 1000)


def test_the_outcome_is_recorded_once_the_committed_offset_passes_the_request(
        handler: ToolWorkerHandler, gate: Gate) -> None:
    gate.release.set()
    sent = request()
    [output] = deferred(handler.handle(sent, read_at(3, 40), utc_now())).result(10)
    handler.after_commit({(TOPIC, 3): 40})  # a transaction that stopped short of the request
    handler.after_commit({(TOPIC, 2): 99})  # another partition's
    assert handler.outcomes.get(sent.payload["invocationId"]) is None
    handler.after_commit({(TOPIC, 3): 41})
    assert handler.outcomes.get(sent.payload["invocationId"]) == output.envelope
    assert handler.handle(sent, read_at(3, 40), utc_now()) == [output]  # redelivered: answered from the record
    assert len(gate.starts) == 1


def test_finished_calls_of_partitions_owned_elsewhere_are_forgotten(handler: ToolWorkerHandler, gate: Gate) -> None:
    running, finished = request(), request()
    deferred(handler.handle(running, read_at(0, 1), utc_now()))
    first = deferred(handler.handle(finished, read_at(1, 1), utc_now()))
    handler.on_assign([TopicPartition(TOPIC, 0)])
    assert set(handler.calls) == {running.payload["invocationId"], finished.payload["invocationId"]}
    gate.release.set()
    first.result(10)
    handler.on_assign([TopicPartition(TOPIC, 0)])  # partition 1 went elsewhere: its new owner answers it
    assert set(handler.calls) == {running.payload["invocationId"]}


def test_a_call_whose_partition_left_and_came_back_unread_is_not_recorded(
        handler: ToolWorkerHandler, gate: Gate) -> None:
    """Revoked mid-call, answered and committed by another worker, then assigned back: the offsets
    pass the request, but this worker's result was never committed and must not be recorded."""
    away, rejoined = request(), request()
    left = deferred(handler.handle(away, read_at(0, 7), utc_now()))
    deferred(handler.handle(rejoined, read_at(0, 8), utc_now()))
    handler.on_revoke([TopicPartition(TOPIC, 0)])
    handler.on_assign([TopicPartition(TOPIC, 0)])
    again = deferred(handler.handle(rejoined, read_at(0, 8), utc_now()))  # re-read: joins, and will commit
    gate.release.set()
    [output] = again.result(10)
    left.result(10)
    handler.after_commit({(TOPIC, 0): 9})
    assert handler.outcomes.get(away.payload["invocationId"]) is None
    assert handler.outcomes.get(rejoined.payload["invocationId"]) == output.envelope
    assert handler.calls == {} and handler.detached == set()
    assert len(gate.starts) == 2
