"""Run one tool invocation and describe its outcome as a ToolInvocationResulted event.

Shared by the tool workers and by the orchestrator, which runs local tools in-process: both must
record an outcome the same way, with the same derived event id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import fastjsonschema

from agentlog.events.envelope import Envelope, caused_by, utc_now
from agentlog.tools.registry import ToolContext, ToolError, ToolSpec

log = logging.getLogger(__name__)

_validators: dict[str, Callable[[Any], Any]] = {}


def _validated(spec: ToolSpec, arguments: Mapping[str, Any]) -> dict[str, Any]:
    validator = _validators.get(spec.name)
    if validator is None:
        validator = _validators[spec.name] = fastjsonschema.compile(dict(spec.parameters))
    try:
        result: dict[str, Any] = validator(dict(arguments))
    except fastjsonschema.JsonSchemaException as invalid:
        raise ToolError(f"invalid arguments for {spec.name}: {invalid}", error_type="InvalidArguments") from invalid
    return result


def deadline(request: Envelope) -> float:
    """Epoch seconds at which the orchestrator times this attempt out: it starts the step's clock at
    the request's timestamp (decide.py), so the worker derives the same instant from the same fields."""
    return (request.timestamp_ms + int(request.payload["timeoutMs"])) / 1000


def _call(spec: ToolSpec, request: Envelope) -> dict[str, Any]:
    payload = request.payload
    context = ToolContext(invocation_id=payload["invocationId"], idempotency_key=payload["idempotencyKey"],
                          conversation_id=request.conversation_id, turn_id=request.turn_id,
                          step_id=payload["stepId"], attempt=payload["attempt"], deadline=deadline(request))
    return spec.call(_validated(spec, payload["arguments"]), context).to_json()


def run_tool(spec: ToolSpec | None, request: Envelope, *, source: str, worker: str, hosted: str = "",
             now: datetime | None = None) -> Envelope:
    """Run the requested invocation (a ToolInvocationRequested command or event) and return its result.

    `spec` None means no such tool runs here; `hosted` lists what does, for the error message.
    `now` stamps the result (the orchestrator passes its decision time, so its events stay ordered);
    by default the time the tool finished.
    Any exception becomes a failed, non-retryable result: a tool bug must end the step, never the caller.
    """
    payload = request.payload
    started = time.monotonic()
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    try:
        if spec is None:
            raise ToolError(f"no tool named {payload['tool']!r} runs on this worker (it has: {hosted})",
                            error_type="UnknownTool")
        output = _call(spec, request)
    except ToolError as failure:
        error = failure.to_json()
    except Exception as failure:
        log.exception("tool %s raised", payload["tool"])
        error = ToolError(str(failure) or repr(failure), error_type=type(failure).__name__).to_json()  # redacted
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
        "worker": worker,
    }
    return caused_by(request, "event", "ToolInvocationResulted", result, source=source, now=now or utc_now(),
                     id_parts=(payload["invocationId"],))
