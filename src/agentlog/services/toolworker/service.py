"""The tool worker: runs each requested invocation and appends its ToolInvocationResulted.

Per request (see reference/eos-commit-order.md, "A tool worker"):
  1. an invocation whose outcome is recorded is answered from the record (same event id) and the
     tool does not run again;
  2. otherwise the arguments are checked against the tool's schema and the tool runs, with the
     step's idempotency key in its context so its effect happens once however often it starts;
  3. the result is produced in the loop's transaction together with the consumed offset;
  4. only after the commit is the outcome recorded.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

import orjson
import plyvel
from confluent_kafka import Message

from agentlog.events.envelope import Envelope
from agentlog.kafka.eos import Handler, Output, TransactionalLoop
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.services.toolworker.execute import run_tool
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


class ToolWorkerHandler(Handler):
    """Runs the invocations its `selection` takes (see pools.py) and skips the others."""

    def __init__(self, registry: ToolRegistry, outcomes: OutcomeStore, worker_name: str,
                 selection: ToolSelection | None = None) -> None:
        self.registry = registry
        self.outcomes = outcomes
        self.worker_name = worker_name
        self.selection = selection or ToolSelection()
        self.pending: dict[str, Envelope] = {}

    def bind(self, loop: TransactionalLoop) -> None:
        """Publish the catalogue of the tools hosted here, for planners (events/registry.py)."""
        from agentlog.events.registry import publish_catalogue

        hosted = [entry for entry in self.registry.catalogue() if self.selection.takes(entry["name"])]
        published = publish_catalogue(loop.settings, hosted, publisher=loop.service)
        log.info("%s hosts %s; catalogue entries published: %s", loop.service,
                 ", ".join(e["name"] for e in hosted), ", ".join(published) or "none changed")

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        if envelope.subject != "command.ToolInvocationRequested":
            raise ValueError(f"tool-invocation-requests carries ToolInvocationRequested only, got {envelope.subject}")
        if not self.selection.takes(envelope.payload["tool"]):
            return []  # another tool-worker group runs it; the loop still commits this offset
        invocation = envelope.payload["invocationId"]
        recorded = self.pending.get(invocation) or self.outcomes.get(invocation)
        if recorded is not None:
            log.info("invocation %s already answered; re-emitting its recorded result", invocation)
            return [Output(CONVERSATION_EVENTS, recorded)]
        result = self.run(envelope)
        self.pending[invocation] = result
        return [Output(CONVERSATION_EVENTS, result)]

    def run(self, request: Envelope) -> Envelope:
        spec = self.registry.get(request.payload["tool"])
        return run_tool(spec, request, source=SOURCE, worker=self.worker_name, hosted=", ".join(self.registry.names()))

    def after_commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if self.pending:
            self.outcomes.put_many(self.pending)
            self.pending = {}

    def rewind(self) -> None:
        self.pending = {}


def worker_name(instance: str) -> str:
    return f"{SOURCE}-{instance}@{os.uname().nodename}"
