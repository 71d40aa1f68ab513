"""The orchestrator's state: one ConversationState per conversation, folded from its events.

States are immutable; the decision functions return new ones. Everything here is plain data so
it round-trips through JSON into the local store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepStatus = Literal["pending", "awaiting_approval", "running", "backoff", "succeeded", "failed", "skipped"]
# "inline": the router ran the turn to its answer (router/inline.py); its events follow the plan in the log.
TurnStatus = Literal["running", "completed", "failed", "cancelled", "inline"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "skipped"})
RECENT_IDS = 512


@dataclass(frozen=True)
class StepState:
    id: str
    tool: str
    arguments: dict[str, Any]
    depends_on: tuple[str, ...]
    timeout_ms: int
    max_attempts: int
    status: StepStatus = "pending"
    attempt: int = 0
    deadline_ms: int | None = None
    retry_at_ms: int | None = None
    value: Any = None
    error: dict[str, Any] | None = None
    # True once a person approved the step's tool (only tools declared with approval=True ask).
    approved: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class TurnState:
    turn_id: str
    user_id: str
    plan_event_id: str
    synthesis_required: bool
    steps: dict[str, StepState]
    status: TurnStatus = "running"


@dataclass(frozen=True)
class ConversationState:
    conversation_id: str
    turns: dict[str, TurnState] = field(default_factory=dict)
    recent_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ConversationState:
        turns = {}
        for turn_id, turn in raw["turns"].items():
            steps = {sid: StepState(**{**s, "depends_on": tuple(s["depends_on"])}) for sid, s in turn["steps"].items()}
            turns[turn_id] = TurnState(**{**turn, "steps": steps})
        return cls(conversation_id=raw["conversation_id"], turns=turns, recent_ids=tuple(raw["recent_ids"]))
