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
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import plyvel
from confluent_kafka import Message

from agentlog.events.envelope import Envelope, caused_by, utc_now
from agentlog.kafka.eos import Handler, Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.tools.registry import ToolContext, ToolError, ToolRegistry

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
    def __init__(self, registry: ToolRegistry, outcomes: OutcomeStore, worker_name: str) -> None:
        self.registry = registry
        self.outcomes = outcomes
        self.worker_name = worker_name
        self.pending: dict[str, Envelope] = {}
        self._validators: dict[str, Callable[[Any], Any]] = {}

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        if envelope.subject != "command.ToolInvocationRequested":
            raise ValueError(f"tool-invocation-requests carries ToolInvocationRequested only, got {envelope.subject}")
        invocation = envelope.payload["invocationId"]
        recorded = self.pending.get(invocation) or self.outcomes.get(invocation)
        if recorded is not None:
            log.info("invocation %s already answered; re-emitting its recorded result", invocation)
            return [Output(CONVERSATION_EVENTS, recorded)]
        result = self.run(envelope)
        self.pending[invocation] = result
        return [Output(CONVERSATION_EVENTS, result)]

    def run(self, request: Envelope) -> Envelope:
        payload = request.payload
        started = time.monotonic()
        output: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            output = self._call(payload, request)
        except ToolError as failure:
            error = failure.to_json()
        except Exception as failure:  # a tool bug must still end the step, never the worker
            log.exception("tool %s raised", payload["tool"])
            error = {"type": type(failure).__name__, "message": str(failure) or repr(failure), "retryable": False}
        result = {
            "invocationId": payload["invocationId"],
            "idempotencyKey": payload["idempotencyKey"],
            "stepId": payload["stepId"],
            "attempt": payload["attempt"],
            "tool": payload["tool"],
            "status": "succeeded" if error is None else "failed",
            "output": output,
            "error": error,
            "durationMs": round((time.monotonic() - started) * 1000, 3),
            "worker": self.worker_name,
        }
        return caused_by(request, "event", "ToolInvocationResulted", result, source=SOURCE, now=utc_now(),
                         id_parts=(payload["invocationId"],))

    def _call(self, payload: dict[str, Any] | Any, request: Envelope) -> dict[str, Any]:
        name = payload["tool"]
        spec = self.registry.get(name)
        if spec is None:
            raise ToolError(f"no tool named {name!r} runs on this worker (it has: {', '.join(self.registry.names())})",
                            error_type="UnknownTool")
        validator = self._validators.get(name)
        if validator is None:
            validator = self._validators[name] = fastjsonschema.compile(dict(spec.parameters))
        try:
            arguments = validator(dict(payload["arguments"]))
        except fastjsonschema.JsonSchemaException as invalid:
            raise ToolError(f"invalid arguments for {name}: {invalid}", error_type="InvalidArguments") from invalid
        context = ToolContext(invocation_id=payload["invocationId"], idempotency_key=payload["idempotencyKey"],
                              conversation_id=request.conversation_id, turn_id=request.turn_id,
                              step_id=payload["stepId"], attempt=payload["attempt"])
        return spec.call(arguments, context).to_json()

    def after_commit(self, offsets: dict[tuple[str, int], int]) -> None:
        if self.pending:
            self.outcomes.put_many(self.pending)
            self.pending = {}

    def rewind(self) -> None:
        self.pending = {}


def worker_name(instance: str) -> str:
    return f"{SOURCE}-{instance}@{os.uname().nodename}"
