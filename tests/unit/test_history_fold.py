"""The history fold: turns in order, answers attached, resets clear, duplicates by id change nothing."""

from __future__ import annotations

from typing import Any

from agentlog.events.envelope import Envelope, derive_id
from agentlog.services.projections.history import HistoryState, fold


def event(type_: str, conversation: str, turn: str, payload: dict[str, Any], *, second: int,
          kind: str = "event") -> Envelope:
    return Envelope(id=derive_id(conversation, turn, kind, type_), kind=kind, type=type_,  # type: ignore[arg-type]
                    conversation_id=conversation, turn_id=turn, user_id="u1",
                    timestamp=f"2025-01-01T00:00:{second:02d}.000Z", source="test", payload=payload)


def question(conversation: str, turn: str, text: str, second: int) -> Envelope:
    return event("UserQueryReceived", conversation, turn, {"userInput": text, "language": "en"}, second=second)


def answer(conversation: str, turn: str, text: str, second: int, outcome: str = "completed") -> Envelope:
    return event("FinalAnswerSynthesized", conversation, turn,
                 {"message": text, "outcome": outcome, "synthesizer": "template"}, second=second)


def reset(conversation: str, turn: str, second: int) -> Envelope:
    return event("UserHistoryReset", conversation, turn, {"command": "reset"}, second=second)


def turns(state: HistoryState, conversation: str) -> list[tuple[str, str | None]]:
    return [(t.question, t.answer) for t in state.conversations[conversation].turns]


def test_questions_and_answers_become_turns_in_order_per_conversation() -> None:
    state = fold([question("a", "t1", "2+2?", 1), question("b", "t2", "hi", 2), answer("a", "t1", "4", 3),
                  question("a", "t3", "3*3?", 4), answer("b", "t2", "hello", 5)])
    assert turns(state, "a") == [("2+2?", "4"), ("3*3?", None)]
    assert turns(state, "b") == [("hi", "hello")]
    first = state.conversations["a"].turns[0].to_json()
    assert first == {"turnId": "t1", "question": "2+2?", "answer": "4", "outcome": "completed",
                     "askedAt": "2025-01-01T00:00:01.000Z", "answeredAt": "2025-01-01T00:00:03.000Z"}
    assert state.conversations["a"].updated_at == "2025-01-01T00:00:04.000Z"


def test_a_reset_clears_only_its_conversation_and_later_turns_start_afresh() -> None:
    state = fold([question("a", "t1", "one", 1), answer("a", "t1", "1", 2), question("b", "t2", "keep", 3),
                  reset("a", "r1", 4), question("a", "t3", "two", 5), answer("a", "t3", "2", 6)])
    assert turns(state, "a") == [("two", "2")]
    assert turns(state, "b") == [("keep", None)]


def test_an_answer_to_a_turn_removed_by_a_reset_stays_out() -> None:
    state = fold([question("a", "t1", "slow", 1), reset("a", "r1", 2), answer("a", "t1", "late", 3)])
    assert turns(state, "a") == []


def test_duplicated_events_are_applied_once_even_a_reset_after_a_new_question() -> None:
    q1, a1 = question("a", "t1", "one", 1), answer("a", "t1", "1", 2)
    r1, q2 = reset("a", "r1", 3), question("a", "t2", "two", 4)
    state = fold([q1, a1, q1, r1, q2, r1, a1, q1])
    assert turns(state, "a") == [("two", None)]
    assert state.applied == [q1.id, a1.id, r1.id, q2.id]


def test_commands_and_other_events_are_ignored() -> None:
    command = event("UserQueryReceived", "a", "t1", {"userInput": "cmd"}, second=1, kind="command")
    plan = event("PlanGenerated", "a", "t1", {}, second=2)
    state = fold([command, plan])
    assert state.conversations == {} and state.applied == []


def test_folding_in_two_parts_with_loaded_state_equals_folding_at_once() -> None:
    events = [question("a", "t1", "one", 1), answer("a", "t1", "1", 2), reset("a", "r", 3), question("a", "t2", "two", 4)]
    whole = fold(events + events)
    first = fold(events[:2])
    second = fold(events[2:] + events, HistoryState(conversations=first.conversations, seen=set(first.seen)))
    assert turns(second, "a") == turns(whole, "a") == [("two", None)]
    assert second.conversations["a"].messages() == [{"role": "user", "content": "two"}]
