"""Tools for tests and benchmarks, registered only when AGENTLOG_TEST_TOOLS=1.

`recordEffect` counts its starts and its effects separately, in files under
AGENTLOG_TEST_TOOL_DIR: every start appends a line to starts.jsonl; the effect is a row keyed by
the step's idempotency key in effects.sqlite, inserted at most once. A crash test can then tell
"the call started twice" (allowed: a crash before the result was recorded) from "the effect
happened twice" (never allowed).

`sleepFor` is the long-running tool: it sleeps (longer than a consumer's max.poll.interval.ms, in
tests/integration/test_long_tools.py), stopping early at the call's deadline, and records its starts
and its effect the same way.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from agentlog.tools.effects import insert_once
from agentlog.tools.registry import ToolContext, ToolError, ToolOutput, tool


def _directory() -> Path:
    path = Path(os.environ.get("AGENTLOG_TEST_TOOL_DIR", "var/test-tools"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record_start(context: ToolContext, label: str) -> None:
    line = json.dumps({"label": label, "idempotencyKey": context.idempotency_key,
                       "invocationId": context.invocation_id, "attempt": context.attempt, "pid": os.getpid()})
    with open(_directory() / "starts.jsonl", "a", encoding="utf-8") as starts:
        starts.write(line + "\n")


def _record_effect(context: ToolContext, label: str) -> bool:
    """Insert the effect row once per idempotency key; True if this call made the effect."""
    return insert_once(_directory() / "effects.sqlite",
                       "CREATE TABLE IF NOT EXISTS effects (idempotency_key TEXT PRIMARY KEY, label TEXT, "
                       "invocation_id TEXT, attempt INTEGER)", "INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?)",
                       (context.idempotency_key, label, context.invocation_id, context.attempt))


def _effect(context: ToolContext, label: str, note: str = "") -> ToolOutput:
    made = _record_effect(context, label)
    return ToolOutput(value=label, text=f"{note}effect {label} {'recorded' if made else 'was already recorded'}",
                      data={"effectMade": made, "attempt": context.attempt})


@tool("recordEffect", "Test tool: waits delayMs, then records one effect keyed by the idempotency key.")
def record_effect(label: str, context: ToolContext, delayMs: int = 0, slowAttempts: int = 0,
                  failAttempts: int = 0) -> ToolOutput:
    _record_start(context, label)
    if context.attempt <= failAttempts:
        raise ToolError(f"attempt {context.attempt} fails on purpose", retryable=True, error_type="InjectedFailure")
    if delayMs and (slowAttempts == 0 or context.attempt <= slowAttempts):
        time.sleep(delayMs / 1000)
    return _effect(context, label)


@tool("sleepFor", "Test tool: sleeps `seconds` (stopping at the call's deadline), then records one effect keyed "
      "by the idempotency key.")
def sleep_for(seconds: float, label: str, context: ToolContext) -> ToolOutput:
    _record_start(context, label)
    wake = time.time() + seconds
    if context.deadline is not None and context.deadline < wake:
        # Honour the deadline: past it the orchestrator no longer waits, so sleeping on is wasted work.
        time.sleep(max(0.0, context.deadline - time.time()))
        raise ToolError(f"stopped at its deadline, {wake - context.deadline:.1f} s short of {seconds} s",
                        retryable=True, error_type="Timeout")
    time.sleep(seconds)
    return _effect(context, label, note=f"slept {seconds} s; ")
