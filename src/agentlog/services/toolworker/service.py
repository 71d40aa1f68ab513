"""The tool worker: runs each requested invocation and appends its ToolInvocationResulted.

Per request (see reference/eos-commit-order.md, "A tool worker"):
  1. an invocation whose outcome is recorded is answered from the record (same event id) and the
     tool does not run again;
  2. otherwise the arguments are checked against the tool's schema and the tool runs, with the
     step's idempotency key in its context so its effect happens once however often it starts;
  3. the result is produced in the loop's transaction together with the consumed offset;
  4. only after the commit is the outcome recorded.

Step 2 runs on a bounded executor (executor.py), off the poll loop: the handler hands the loop a
Future and the loop pauses the partition until it resolves (eos.py), so a call may outlive
max.poll.interval.ms without the group evicting the worker. The call's context carries its deadline
(the step's timeoutMs) for tools that can stop early; a result that comes after the deadline is still
recorded, and a late success still completes its step. A message read again while its call runs
(after an aborted transaction, or a rebalance that gave the partition back) joins the running call
instead of starting it twice.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson
import plyvel
from confluent_kafka import Message, TopicPartition

from agentlog.events.envelope import Envelope
from agentlog.kafka.eos import Handler, Output, TransactionalLoop
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.services.toolworker.execute import run_tool
from agentlog.services.toolworker.executor import DEFAULT_CONCURRENCY, ToolExecutor
from agentlog.services.toolworker.pools import ToolSelection
from agentlog.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

SOURCE = "tool-worker"


class OutcomeStore:
    """Invocation id -> the ToolInvocationResulted envelope that answered it."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._db = plyvel.DB(str(path), create_if_missing=True)

    def get(self, invocation_id: str) -> Envelope | None:
        raw = self._db.get(invocation_id.encode())
        return None if raw is None else Envelope.from_json(orjson.loads(raw))

    def put_many(self, outcomes: dict[str, Envelope]) -> None:
        with self._db.write_batch(sync=False) as batch:
            for invocation, envelope in outcomes.items():
                batch.put(invocation.encode(), orjson.dumps(envelope.to_json()))

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Call:
    """A call started here whose result is not committed yet, and where its request was read."""

    future: Future[list[Output]]
    partition: tuple[str, int]
    offset: int

    def committed_by(self, offsets: dict[tuple[str, int], int]) -> bool:
        """Done, and the committed offsets passed its request: its result was in that transaction."""
        return self.future.done() and offsets.get(self.partition, -1) > self.offset


class ToolWorkerHandler(Handler):
    """Runs the invocations its `selection` takes (see pools.py) and skips the others."""

    def __init__(self, registry: ToolRegistry, outcomes: OutcomeStore, worker_name: str,
                 selection: ToolSelection | None = None, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.registry = registry
        self.outcomes = outcomes
        self.worker_name = worker_name
        self.selection = selection or ToolSelection()
        self.executor = ToolExecutor(concurrency)
        # Invocation id -> its call, until its result commits. Kept across an aborted transaction
        # and a rebalance: a request read again joins its call instead of starting it twice.
        self.calls: dict[str, Call] = {}
        # Calls whose partition was revoked and whose request has not been read here since: while away,
        # another worker may have answered and committed it, so their own result is never recorded.
        self.detached: set[str] = set()

    def bind(self, loop: TransactionalLoop) -> None:
        """Publish the catalogue of the tools hosted here, for planners (events/registry.py)."""
        from agentlog.events.registry import publish_catalogue

        hosted = [entry for entry in self.registry.catalogue() if self.selection.takes(entry["name"])]
        self.executor.report = loop.metrics.calls
        published = publish_catalogue(loop.settings, hosted, publisher=loop.service)
        log.info("%s hosts %s; catalogue entries published: %s", loop.service,
                 ", ".join(e["name"] for e in hosted), ", ".join(published) or "none changed")

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output] | Future[list[Output]]:
        if envelope.subject != "command.ToolInvocationRequested":
            raise ValueError(f"tool-invocation-requests carries ToolInvocationRequested only, got {envelope.subject}")
        if not self.selection.takes(envelope.payload["tool"]):
            return []  # another tool-worker group runs it; the loop still commits this offset
        invocation = envelope.payload["invocationId"]
        recorded = self.outcomes.get(invocation)
        if recorded is not None:
            log.info("invocation %s already answered; re-emitting its recorded result", invocation)
            return [Output(CONVERSATION_EVENTS, recorded)]
        call = self.calls.get(invocation)
        self.detached.discard(invocation)  # read here again: the loop now commits this call's result
        if call is None:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            call = Call(self.executor.submit(lambda: [Output(CONVERSATION_EVENTS, self.run(envelope))]),
                        (topic, partition), offset)
            self.calls[invocation] = call
        return call.future

    def run(self, request: Envelope) -> Envelope:
        spec = self.registry.get(request.payload["tool"])
        return run_tool(spec, request, source=SOURCE, worker=self.worker_name, hosted=", ".join(self.registry.names()))

    def after_commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Record the outcome of every call whose result this transaction committed."""
        outcomes: dict[str, Envelope] = {}
        for invocation in [i for i, call in self.calls.items() if call.committed_by(offsets)]:
            future = self.calls.pop(invocation).future
            if invocation in self.detached:  # passed by offsets another owner committed: not our result
                self.detached.discard(invocation)
            elif future.exception() is None:  # one that raised was dead-lettered by the loop
                (output,) = future.result()
                outcomes[invocation] = output.envelope
        if outcomes:
            self.outcomes.put_many(outcomes)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Forget finished calls of partitions now owned elsewhere (their new owner answers them); keep
        running ones, which a partition that comes back joins."""
        owned = {(p.topic, p.partition) for p in partitions}
        for invocation, call in list(self.calls.items()):
            if call.partition not in owned and call.future.done():
                del self.calls[invocation]
                self.detached.discard(invocation)

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Calls of revoked partitions are detached until their request is read here again."""
        revoked = {(p.topic, p.partition) for p in partitions}
        self.detached |= {i for i, call in self.calls.items() if call.partition in revoked}


def worker_name(instance: str) -> str:
    return f"{SOURCE}-{instance}@{os.uname().nodename}"
