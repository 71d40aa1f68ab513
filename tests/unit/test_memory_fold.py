"""The memory fold: which turns a conversation remembers, in what order, within which bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentlog.errors import ConfigurationError
from agentlog.events.envelope import Envelope, caused_by, command
from agentlog.events.plan import Plan, PlanStep
from agentlog.services.router.memory import (
    MemoryDecider,
    MemoryLimits,
    MemoryState,
    RememberedTurn,
    bounded,
    remember,
    with_memory,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = MemoryLimits(turns=3, chars=1000)


def event(type_: str, turn: str, payload: dict[str, object]) -> Envelope:
    root = command("UserQueryReceived", conversation_id="c1", turn_id=turn, user_id="u1",
                   payload={"userInput": "x"}, source="test")
    return caused_by(root, "event", type_, payload, source="test", now=T0)


def asked(turn: str, question: str) -> Envelope:
    return event("UserQueryReceived", turn, {"userInput": question, "language": "en"})


def answered(turn: str, answer: str) -> Envelope:
    return event("FinalAnswerSynthesized", turn, {"message": answer, "outcome": "completed", "synthesizer": "t"})


def fold(events: list[Envelope], limits: MemoryLimits = LIMITS) -> MemoryState:
    state = MemoryState("c1")
    for e in events:
        state = remember(state, e, limits)
    return state


def questions(state: MemoryState) -> list[str]:
    return [t.question for t in state.window]


def test_a_turn_is_remembered_once_answered_oldest_first() -> None:
    state = fold([asked("t1", "What is 2+3?"), answered("t1", "2 + 3 = 5."), asked("t2", "And 10*4?")])
    assert state.window == (RememberedTurn("t1", "What is 2+3?", "2 + 3 = 5."),)
    state = fold([asked("t1", "q1"), answered("t1", "a1"), asked("t2", "q2"), answered("t2", "a2")])
    assert questions(state) == ["q1", "q2"] and state.waiting == ()


def test_answers_are_matched_by_turn_not_by_arrival_order() -> None:
    state = fold([asked("t1", "q1"), asked("t2", "q2"), answered("t2", "a2"), answered("t1", "a1")])
    assert [(t.turn_id, t.answer) for t in state.window] == [("t2", "a2"), ("t1", "a1")]


def test_duplicates_and_answers_without_a_question_are_not_remembered() -> None:
    state = fold([asked("t1", "q1"), asked("t1", "q1"), answered("t1", "a1"), answered("t1", "a1"),
                  asked("t1", "q1"), answered("t1", "a1"), answered("t9", "stray")])
    assert questions(state) == ["q1"]


def test_a_reset_forgets_the_window_and_questions_still_waiting() -> None:
    reset = event("UserHistoryReset", "r1", {"command": "reset"})
    state = fold([asked("t1", "q1"), answered("t1", "a1"), asked("t2", "q2"), reset, answered("t2", "a2")])
    assert state.window == () and state.waiting == ()
    state = remember(remember(state, asked("t3", "q3"), LIMITS), answered("t3", "a3"), LIMITS)
    assert questions(state) == ["q3"]


def test_the_window_keeps_the_newest_turns_within_the_turn_and_character_limits() -> None:
    events = [e for i in range(5) for e in (asked(f"t{i}", f"q{i}"), answered(f"t{i}", "a" * 10))]
    assert questions(fold(events)) == ["q2", "q3", "q4"]
    assert questions(fold(events, MemoryLimits(turns=5, chars=25))) == ["q3", "q4"]
    assert fold(events, MemoryLimits(turns=0, chars=1000)).window == ()


def test_a_newest_turn_longer_than_the_budget_is_kept_clipped() -> None:
    turn = RememberedTurn("t1", "q" * 50, "a" * 500)
    (kept,) = bounded([turn], MemoryLimits(turns=3, chars=100))
    assert len(kept.question) + len(kept.answer) <= 100
    assert kept.question.startswith("qqq") and kept.answer.endswith("…")


def test_state_round_trips_through_json_and_the_decider_emits_nothing() -> None:
    decider = MemoryDecider(LIMITS)
    state = fold([asked("t1", "q1"), answered("t1", "a1"), asked("t2", "q2")])
    assert decider.load(decider.dump(state)) == state
    decision = decider.decide(state, answered("t2", "a2"), T0)
    assert decision.outputs == [] and questions(decision.state) == ["q1", "q2"]


def test_limits_come_from_the_environment_and_bad_values_are_refused() -> None:
    assert MemoryLimits.from_env({}) == MemoryLimits(turns=5, chars=4000)
    assert MemoryLimits.from_env({"AGENTLOG_MEMORY_TURNS": "2", "AGENTLOG_MEMORY_CHARS": "300"}) == \
        MemoryLimits(turns=2, chars=300)
    with pytest.raises(ConfigurationError, match="AGENTLOG_MEMORY_TURNS"):
        MemoryLimits.from_env({"AGENTLOG_MEMORY_TURNS": "-1"})


def test_the_window_replaces_what_a_plan_says_in_memory_arguments_only() -> None:
    plan = Plan(steps=(PlanStep("s1", "generalChat", {"message": "hi", "history": [{"question": "invented"}]}),
                       PlanStep("s2", "recallConversation", {}),
                       PlanStep("s3", "calculateMath", {"expression": "1+1"})))
    window = (RememberedTurn("t1", "q1", "a1"),)
    given = with_memory(plan, window)
    assert given.steps[0].arguments == {"message": "hi", "history": [{"question": "q1", "answer": "a1"}]}
    assert given.steps[1].arguments == {"turns": [{"question": "q1", "answer": "a1"}]}
    assert given.steps[2] == plan.steps[2]
    assert with_memory(plan, ()).steps[0].arguments == {"message": "hi"}
