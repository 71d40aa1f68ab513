"""The orchestrator's decisions: a pure fold from (state, event) to (state, messages to send).

Rules:
- PlanGenerated starts a turn (once per turn) and dispatches every step without dependencies;
  one marked `inline` was run to its answer by the router (router/inline.py) and is only recorded.
- A step attempt is a ToolInvocationRequested command plus its audit event. The invocation id is
  derived from (conversation, turn, step, attempt); the idempotency key from (conversation, turn,
  step) only, so a retry can never repeat the effect of an earlier attempt.
- A success of any attempt completes the step; a failure of the current attempt is retried after
  a back-off if it is retryable and attempts remain, else the step fails and its dependants are
  skipped. Failures of older attempts are stale and ignored.
- Time enters only as events: StepTimerFired (timeout or end of back-off) is produced by the
  service when a deadline held in state passes; deadlines come from event timestamps, so replay
  reaches the same state.
- When every step is final: PlanCompleted if all succeeded, else PlanFailed naming what failed
  and what succeeded.
- A step whose tool needs approval asks first (ApprovalRequested with its deadline) and waits,
  as state, for the router's UserControlReceived approve/deny or its approval timer; the outcome
  is ApprovalDecided. Denied or expired, the step fails and its dependants are skipped.
- UserControlReceived cancel ends a running turn: TurnCancelled, its unfinished steps fail as
  cancelled, PlanFailed; nothing more is dispatched and late results change nothing.
- A control that does not apply (no such turn, not running, nothing awaiting approval) is
  recorded by the router and ignored here with a logged reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from agentlog.events.envelope import Envelope, caused_by, derive_id, format_timestamp, timestamp_ms
from agentlog.events.plan import Plan, resolve_arguments
from agentlog.kafka.eos import Output
from agentlog.kafka.topics import CONVERSATION_EVENTS, TOOL_INVOCATION_REQUESTS
from agentlog.services.orchestrator.state import RECENT_IDS, ConversationState, StepState, TurnState
from agentlog.services.toolworker.execute import run_tool
from agentlog.state.fold import Decision
from agentlog.tools.registry import ToolSpec

log = logging.getLogger(__name__)

SOURCE = "orchestrator"
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_ATTEMPTS = 3
BACKOFF_BASE_MS = 200
BACKOFF_MAX_MS = 5_000


def backoff_ms(failed_attempt: int) -> int:
    return int(min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (failed_attempt - 1)))


def invocation_id(conversation_id: str, turn_id: str, step_id: str, attempt: int) -> str:
    return derive_id(conversation_id, turn_id, step_id, attempt, "invocation")


def idempotency_key(conversation_id: str, turn_id: str, step_id: str) -> str:
    return derive_id(conversation_id, turn_id, step_id, "idempotency")


@dataclass(frozen=True)
class Timer:
    due_ms: int
    turn_id: str
    step_id: str
    attempt: int
    purpose: str  # "timeout" | "retry" | "approval"


LocalTools = Mapping[str, ToolSpec]
# Tool name -> how long (ms) its approval may wait: the tools that need a person's approval.
ApprovalTools = Mapping[str, int]
APPROVAL_ERRORS = frozenset({"ApprovalDenied", "ApprovalExpired"})


class _Turn:
    """A working copy of one turn while one event is being decided."""

    def __init__(self, conversation_id: str, turn: TurnState, cause: Envelope, now: datetime,
                 local_tools: LocalTools, approvals: ApprovalTools, source: str) -> None:
        self.conversation_id = conversation_id
        self.source = source
        self.turn = turn
        self.steps = dict(turn.steps)
        self.cause = cause
        self.now = now
        self.local_tools = local_tools
        self.approvals = approvals
        self.cancelled: str | None = None  # why, once this event cancelled the turn
        self.outputs: list[Output] = []
        self.ran_locally: list[tuple[StepState, Envelope]] = []

    def emit(self, topic: str, kind: str, type_: str, payload: dict[str, Any], *id_parts: object) -> None:
        self.outputs.append(Output(topic, caused_by(self.cause, kind, type_, payload,  # type: ignore[arg-type]
                                                    source=self.source, now=self.now, id_parts=id_parts)))

    def resolved_arguments(self, step: StepState) -> dict[str, Any]:
        values = {s.id: s.value for s in self.steps.values() if s.status == "succeeded"}
        return dict(resolve_arguments(step.arguments, values))

    def request_approval(self, step: StepState) -> None:
        """Ask a person before the step's tool runs; the step waits, as state, until its deadline."""
        expires_ms = _ms(self.now) + self.approvals[step.tool]
        expires_at = format_timestamp(datetime.fromtimestamp(expires_ms / 1000, UTC))
        self.emit(CONVERSATION_EVENTS, "event", "ApprovalRequested",
                  {"stepId": step.id, "tool": step.tool, "arguments": self.resolved_arguments(step),
                   "expiresAt": expires_at, "reason": f"{step.tool} needs a person's approval before it runs"},
                  step.id)
        self.steps[step.id] = replace(step, status="awaiting_approval", deadline_ms=expires_ms)

    def decide_approval(self, step: StepState, decision: str, decided_by: str, reason: str | None) -> None:
        """Record who decided; approved, the step is dispatched next, else it fails (not retried)."""
        payload = {"stepId": step.id, "decision": decision, "decidedBy": decided_by}
        if reason:
            payload["reason"] = reason
        self.emit(CONVERSATION_EVENTS, "event", "ApprovalDecided", payload, step.id)
        if decision == "approved":
            self.steps[step.id] = replace(step, status="pending", approved=True, deadline_ms=None)
            return
        if decision == "denied":
            error = {"type": "ApprovalDenied", "retryable": False,
                     "message": f"approval was denied by {decided_by}" + (f": {reason}" if reason else "")}
        else:
            error = {"type": "ApprovalExpired", "retryable": False,
                     "message": f"nobody approved it before {_iso(step.deadline_ms)}"}
        self.finish_step(step, "failed", error=error)

    def cancel(self, requested_by: str, reason: str | None) -> None:
        """Abandon every unfinished step: each fails as cancelled, and the turn closes as cancelled."""
        abandoned = [s for s in self.steps.values() if not s.terminal]
        payload: dict[str, Any] = {"requestedBy": requested_by, "abandonedStepIds": [s.id for s in abandoned]}
        if reason:
            payload["reason"] = reason
        self.emit(CONVERSATION_EVENTS, "event", "TurnCancelled", payload)
        self.cancelled = f"the turn was cancelled by {requested_by}" + (f": {reason}" if reason else "")
        for step in abandoned:
            self.finish_step(step, "failed", error={"type": "TurnCancelled", "message": self.cancelled,
                                                    "retryable": False})

    def dispatch(self, step: StepState) -> None:
        attempt = step.attempt + 1
        arguments = self.resolved_arguments(step)
        payload = {
            "invocationId": invocation_id(self.conversation_id, self.turn.turn_id, step.id, attempt),
            "idempotencyKey": idempotency_key(self.conversation_id, self.turn.turn_id, step.id),
            "stepId": step.id,
            "attempt": attempt,
            "tool": step.tool,
            "arguments": arguments,
            "timeoutMs": step.timeout_ms,
        }
        local = self.local_tools.get(step.tool)
        if local is None:
            self.emit(TOOL_INVOCATION_REQUESTS, "command", "ToolInvocationRequested", payload, step.id, attempt)
        self.emit(CONVERSATION_EVENTS, "event", "ToolInvocationRequested", payload, step.id, attempt)
        self.steps[step.id] = replace(step, status="running", attempt=attempt, retry_at_ms=None,
                                      deadline_ms=_ms(self.now) + step.timeout_ms)
        if local is not None:
            result = run_tool(local, self.outputs[-1].envelope, source=self.source, worker=f"{self.source} (local)",
                              now=self.now)
            self.ran_locally.append((self.steps[step.id], result))

    def settle_local_results(self) -> bool:
        """Record the results of steps run in-process and fold them like any worker's result."""
        settled = self.ran_locally
        self.ran_locally = []
        for step, result in settled:
            self.outputs.append(Output(CONVERSATION_EVENTS, result))
            if result.payload["status"] == "succeeded":
                self.finish_step(step, "succeeded", value=result.payload["output"]["value"])
            else:
                self.fail_attempt(step, result.payload["error"], _ms(self.now))
        return bool(settled)

    def finish_step(self, step: StepState, status: str, value: Any = None, error: dict[str, Any] | None = None) -> None:
        done = replace(step, status=status, value=value, error=error,  # type: ignore[arg-type]
                       deadline_ms=None, retry_at_ms=None)
        self.steps[step.id] = done
        self.emit(CONVERSATION_EVENTS, "event", "PlanStepCompleted",
                  {"stepId": step.id, "tool": step.tool, "status": status, "attempts": step.attempt,
                   "error": error}, step.id)

    def fail_attempt(self, step: StepState, error: dict[str, Any], at_ms: int) -> None:
        if error.get("retryable") and step.attempt < step.max_attempts:
            self.steps[step.id] = replace(step, status="backoff", deadline_ms=None, error=error,
                                          retry_at_ms=at_ms + backoff_ms(step.attempt))
        else:
            self.finish_step(step, "failed", error=error)

    def advance(self) -> TurnState:
        """Skip steps whose dependencies failed, dispatch ready ones, finish the turn when all are final."""
        progress = True
        while progress:
            progress = False
            for step in list(self.steps.values()):
                if step.status != "pending":
                    continue
                deps = [self.steps[d] for d in step.depends_on]
                if any(d.status in ("failed", "skipped") for d in deps):
                    self.finish_step(step, "skipped", error=None)
                    progress = True
                elif all(d.status == "succeeded" for d in deps):
                    if step.tool in self.approvals and not step.approved:
                        self.request_approval(step)
                    else:
                        self.dispatch(step)
            # Every ready step is requested before any local result is recorded, as with workers.
            progress = self.settle_local_results() or progress
        if self.turn.status == "running" and all(s.terminal for s in self.steps.values()):
            return self._close()
        return replace(self.turn, steps=self.steps)

    def _close(self) -> TurnState:
        failed = [s for s in self.steps.values() if s.status == "failed"]
        succeeded = [s.id for s in self.steps.values() if s.status == "succeeded"]
        if not failed and len(succeeded) == len(self.steps):
            self.emit(CONVERSATION_EVENTS, "event", "PlanCompleted",
                      {"finalAnswerSynthesisRequired": self.turn.synthesis_required, "stepCount": len(self.steps)})
            return replace(self.turn, steps=self.steps, status="completed")
        first = failed[0]
        error = first.error or {}
        message = error.get("message", "unknown error")
        if self.cancelled is not None:
            reason = self.cancelled
        elif error.get("type") in APPROVAL_ERRORS:
            reason = f"step {first.id} ({first.tool}) was not run: {message}"
        else:
            reason = f"step {first.id} ({first.tool}) failed after {first.attempt} attempt(s): {message}"
        self.emit(CONVERSATION_EVENTS, "event", "PlanFailed",
                  {"stage": "execution", "reason": reason, "failedStepIds": [s.id for s in failed],
                   "succeededStepIds": succeeded})
        return replace(self.turn, steps=self.steps, status="cancelled" if self.cancelled else "failed")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(epoch_ms: int | None) -> str:
    return format_timestamp(datetime.fromtimestamp((epoch_ms or 0) / 1000, UTC))


def start_turn(event: Envelope) -> TurnState:
    plan = Plan.from_json(event.payload["plan"])
    steps = {
        s.id: StepState(id=s.id, tool=s.tool, arguments=dict(s.arguments), depends_on=s.depends_on,
                        timeout_ms=s.timeout_ms or DEFAULT_TIMEOUT_MS, max_attempts=s.max_attempts or DEFAULT_MAX_ATTEMPTS)
        for s in plan.steps
    }
    return TurnState(turn_id=event.turn_id, user_id=event.user_id, plan_event_id=event.id,
                     synthesis_required=plan.synthesis_required, steps=steps)


class OrchestratorDecider:
    """The Decider the orchestrator service and `agentlog replay` share.

    `local_tools` are run in-process (pure and deterministic, so replay reaches the same result);
    all other tools go to the tool workers. `approvals` names the tools that wait for a person.
    `source` names the service whose events these are (the router when it runs a turn inline).
    """

    def __init__(self, local_tools: LocalTools | None = None, approvals: ApprovalTools | None = None,
                 source: str = SOURCE) -> None:
        self.local_tools: LocalTools = local_tools or {}
        self.approvals: ApprovalTools = approvals or {}
        self.source = source

    def initial(self, conversation_id: str) -> ConversationState:
        return ConversationState(conversation_id=conversation_id)

    def dump(self, state: ConversationState) -> Any:
        return state.to_json()

    def load(self, raw: Any) -> ConversationState:
        return ConversationState.from_json(raw)

    @staticmethod
    def recorded_inline(state: ConversationState, turn_id: str) -> bool:
        """The router ran this turn inline and it is recorded: its later events change nothing here."""
        turn = state.turns.get(turn_id)
        return turn is not None and turn.status == "inline"

    def decide(self, state: ConversationState, event: Envelope, now: datetime) -> Decision[ConversationState]:
        """The same state object back when the event changes nothing (FoldHandler then stores nothing);
        only events that change state are remembered in recent_ids, against their redelivery."""
        if event.kind != "event" or event.id in state.recent_ids:
            return Decision(state, [])
        turn = state.turns.get(event.turn_id)
        if event.type == "PlanGenerated":
            if turn is not None:
                return Decision(state, [])
            if event.payload.get("inline"):  # its events follow in the log: nothing to drive, nothing to send
                done = replace(start_turn(event), steps={}, status="inline")
                return Decision(_with_turn(state, done, event), [])
            work = _Turn(state.conversation_id, start_turn(event), event, now, self.local_tools, self.approvals,
                         self.source)
        elif turn is None or turn.status != "running":
            if event.type == "UserControlReceived":
                _ignore_control(event, "the turn is not running" if turn else "no plan of this turn is known")
            return Decision(state, [])
        else:
            work = _Turn(state.conversation_id, turn, event, now, self.local_tools, self.approvals, self.source)
            applied = _apply_control(work, event) if event.type == "UserControlReceived" else \
                _apply_step_event(work, event)
            if not applied:
                return Decision(state, [])
        return Decision(_with_turn(state, work.advance(), event), work.outputs)


def _with_turn(state: ConversationState, turn: TurnState, event: Envelope) -> ConversationState:
    recent = (*state.recent_ids[-(RECENT_IDS - 1):], event.id)
    return replace(state, turns={**state.turns, turn.turn_id: turn}, recent_ids=recent)


def _ignore_control(event: Envelope, why: str) -> None:
    log.info("ignored %s of turn %s by %s: %s", event.payload["command"], event.turn_id, event.user_id, why)


def _apply_control(work: _Turn, event: Envelope) -> bool:
    """Apply a user's approve/deny/cancel to the running turn; False (logged) when it does not apply."""
    command, reason = event.payload["command"], event.payload.get("reason")
    if command == "cancel":
        work.cancel(event.user_id, reason)
        return True
    waiting = [s for s in work.steps.values() if s.status == "awaiting_approval"]
    step_id = event.payload.get("stepId")
    if step_id is not None:
        waiting = [s for s in waiting if s.id == step_id]
    if not waiting:
        _ignore_control(event, f"step {step_id} is not waiting for approval" if step_id is not None
                        else "no step of the turn is waiting for approval")
        return False
    if len(waiting) > 1:  # a decision counts only for the request the user saw
        _ignore_control(event, f"{len(waiting)} steps are waiting for approval: name the one decided (stepId)")
        return False
    for step in waiting:
        work.decide_approval(step, "approved" if command == "approve" else "denied", event.user_id, reason)
    return True


def _apply_step_event(work: _Turn, event: Envelope) -> bool:
    """Fold a step-level event into the working turn; False when it changes nothing."""
    payload = event.payload
    step = work.steps.get(str(payload.get("stepId")))
    if step is None or step.terminal:
        return False
    if event.type == "ApprovalRequested":
        # Our own event: its expiresAt fixes the deadline, in live processing and in replay alike.
        deadline = timestamp_ms(payload["expiresAt"])
        if step.status != "awaiting_approval" or step.deadline_ms == deadline:
            return False
        work.steps[step.id] = replace(step, deadline_ms=deadline)
        return True
    attempt = int(payload.get("attempt", 0))
    if event.type == "ToolInvocationRequested":
        # Our own audit event: its timestamp fixes the deadline, in live processing and in replay alike.
        deadline = event.timestamp_ms + int(payload["timeoutMs"])
        if step.status != "running" or attempt != step.attempt or step.deadline_ms == deadline:
            return False
        work.steps[step.id] = replace(step, deadline_ms=deadline)
        return True
    if event.type == "ToolInvocationResulted":
        if payload["status"] == "succeeded":
            work.finish_step(step, "succeeded", value=payload["output"]["value"])
            return True
        if step.status != "running" or attempt != step.attempt:
            return False  # a stale failure of an attempt already timed out or retried
        work.fail_attempt(step, payload["error"], event.timestamp_ms)
        return True
    if event.type == "StepTimerFired":
        if payload["purpose"] == "timeout" and step.status == "running" and attempt == step.attempt:
            error = {"type": "Timeout", "retryable": True,
                     "message": f"attempt {attempt} got no result within {step.timeout_ms} ms"}
            work.fail_attempt(step, error, event.timestamp_ms)
            return True
        if payload["purpose"] == "retry" and step.status == "backoff" and attempt == step.attempt:
            work.dispatch(step)
            return True
        if payload["purpose"] == "approval" and step.status == "awaiting_approval":
            work.decide_approval(step, "expired", "deadline", None)
            return True
    return False


def pending_timers(state: ConversationState) -> list[Timer]:
    timers = []
    for turn in state.turns.values():
        if turn.status != "running":
            continue
        for step in turn.steps.values():
            if step.status == "running" and step.deadline_ms is not None:
                timers.append(Timer(step.deadline_ms, turn.turn_id, step.id, step.attempt, "timeout"))
            elif step.status == "backoff" and step.retry_at_ms is not None:
                timers.append(Timer(step.retry_at_ms, turn.turn_id, step.id, step.attempt, "retry"))
            elif step.status == "awaiting_approval" and step.deadline_ms is not None:
                timers.append(Timer(step.deadline_ms, turn.turn_id, step.id, step.attempt + 1, "approval"))
    return timers


def timer_event(state: ConversationState, timer: Timer, now: datetime) -> Envelope:
    """The StepTimerFired event for a due timer; its id is derived, so firing twice is harmless."""
    turn = state.turns[timer.turn_id]
    root = Envelope(id=turn.plan_event_id, kind="event", type="PlanGenerated",
                    conversation_id=state.conversation_id, turn_id=turn.turn_id, user_id=turn.user_id,
                    timestamp="", source=SOURCE, payload={}, correlation_id=turn.turn_id)
    return caused_by(root, "event", "StepTimerFired",
                     {"stepId": timer.step_id, "attempt": timer.attempt, "purpose": timer.purpose},
                     source=SOURCE, now=now, id_parts=(timer.step_id, timer.attempt, timer.purpose))
