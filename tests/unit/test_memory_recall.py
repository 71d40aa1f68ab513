"""Memory in a turn: the offline planner's recall plan, the router recording the window it gave, the
template synthesizer answering from it, and the window reaching the LLM planner and generalChat."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentlog.events.codec import Codec
from agentlog.events.envelope import command
from agentlog.llm.planner import LLMPlanner
from agentlog.ops.replay import memory_lines
from agentlog.services.router.memory import RememberedTurn
from agentlog.services.router.planner import OfflinePlanner, Planner, detect_language
from agentlog.services.router.service import route_question
from agentlog.services.synthesis.compose import compose_answer
from agentlog.tools import chat
from agentlog.tools.chat import general_chat
from agentlog.tools.recall import recall_conversation
from llm_fakes import ScriptedModel

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = (RememberedTurn("t1", "What is 6*7?", "6 * 7 = 42."),
          RememberedTurn("t2", "What is 12.5% of 240?", "12.5% of 240 = 30."))


def routed(text: str, memory: tuple[RememberedTurn, ...] = WINDOW, planner: Planner | None = None) -> dict[str, Any]:
    question = command("UserQueryReceived", conversation_id="c1", turn_id="t3", user_id="u1",
                       payload={"userInput": text}, source="test")
    _, generated = route_question(planner or OfflinePlanner(), question, NOW, memory)
    Codec().encode(generated.envelope)  # valid against event.PlanGenerated
    return dict(generated.envelope.payload)


def synthesized(payload: dict[str, Any], language: str) -> str:
    """The template's answer for a recall plan whose step ran (what the aggregator would send)."""
    step = payload["plan"]["steps"][0]
    output = recall_conversation(**step["arguments"]).to_json()
    return compose_answer({"userInput": "?", "language": language, "outcome": "completed", "failureReason": None,
                           "steps": [{"stepId": step["id"], "tool": step["tool"], "arguments": step["arguments"],
                                      "dependsOn": [], "status": "succeeded", "output": output, "error": None}]})


@pytest.mark.parametrize("question", ["What did I ask you before?", "what was my previous question?",
                                      "מה שאלתי קודם?", "מה הייתה השאלה הקודמת שלי?"])
def test_questions_about_earlier_turns_get_the_recall_step_with_the_recorded_window(question: str) -> None:
    payload = routed(question)
    turns = [{"question": t.question, "answer": t.answer} for t in WINDOW]
    assert payload["plan"] == {"steps": [{"id": "s1", "tool": "recallConversation", "arguments": {"turns": turns},
                                          "dependsOn": []}], "finalAnswerSynthesisRequired": True}
    assert payload["memory"] == [t.to_json() for t in WINDOW]
    assert detect_language(question) == payload["language"]


def test_the_synthesizer_answers_from_the_window_in_english_and_hebrew() -> None:
    english = synthesized(routed("What did I ask you before?"), "en")
    assert english.startswith('Your previous question was: "What is 12.5% of 240?". My answer was: 12.5% of 240 = 30')
    assert 'Before that you asked, oldest first: "What is 6*7?".' in english
    hebrew = synthesized(routed("מה שאלתי קודם?"), "he")
    assert hebrew.startswith('השאלה הקודמת שלך הייתה: "What is 12.5% of 240?"')


def test_with_an_empty_window_the_answer_says_nothing_was_asked() -> None:
    payload = routed("What did I ask you before?", memory=())
    assert payload["memory"] == [] and payload["plan"]["steps"][0]["arguments"] == {}
    assert synthesized(payload, "en") == "You have not asked me anything earlier in this conversation."
    assert synthesized(routed("מה שאלתי קודם?", memory=()), "he") == "לא שאלת אותי שום דבר קודם בשיחה הזאת."


def test_a_client_plan_runs_as_sent_without_memory() -> None:
    plan = {"steps": [{"id": "a", "tool": "generalChat", "arguments": {"message": "hi"}, "dependsOn": []}],
            "finalAnswerSynthesisRequired": False}
    question = command("UserQueryReceived", conversation_id="c1", turn_id="t3", user_id="u1",
                       payload={"userInput": "hi", "plan": plan}, source="test")
    _, generated = route_question(OfflinePlanner(), question, NOW, WINDOW)
    assert "memory" not in generated.envelope.payload
    assert generated.envelope.payload["plan"]["steps"][0]["arguments"] == {"message": "hi"}


def test_the_llm_planner_sees_the_whole_window_and_general_chat_gets_it_as_history() -> None:
    reply = ('{"steps": [{"id": "s1", "tool": "generalChat", "arguments": {"message": "and before?"}, '
             '"dependsOn": []}], "finalAnswerSynthesisRequired": false}')
    model = ScriptedModel("ollama", [reply])
    catalogue = [{"name": "generalChat", "description": "chat", "parameters": {
        "type": "object", "properties": {"message": {"type": "string"}, "history": {"type": "array"}},
        "required": ["message"], "additionalProperties": False}}]
    window = tuple(RememberedTurn(f"t{i}", f"q{i}", f"a{i}") for i in range(5))
    payload = routed("and before?", memory=window, planner=LLMPlanner([model], catalogue))
    prompt = model.calls[0][-1]["content"]
    assert prompt.startswith("Earlier in this conversation:\nQ: q0\nA: a0\n") and "Q: q4\nA: a4" in prompt
    step = payload["plan"]["steps"][0]
    assert step["arguments"]["history"] == [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]


def test_general_chat_sends_the_history_as_earlier_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel("fake", ["You asked what 6*7 is."])
    monkeypatch.setattr(chat, "chat_model", lambda: model)
    general_chat("What did I ask?", history=[{"question": "What is 6*7?", "answer": "42"}])
    assert model.calls[0][1:] == [{"role": "user", "content": "What is 6*7?"},
                                  {"role": "assistant", "content": "42"},
                                  {"role": "user", "content": "What did I ask?"}]


def test_replay_lists_the_memory_each_turn_was_given() -> None:
    question = command("UserQueryReceived", conversation_id="c1", turn_id="t3abcdefgh", user_id="u1",
                       payload={"userInput": "What did I ask you before?"}, source="test")
    first = route_question(OfflinePlanner(), question, NOW, ())
    second = route_question(OfflinePlanner(), question, NOW, WINDOW[:1])
    lines = memory_lines([o.envelope for o in (*first, *second)])
    assert lines == ["turn t3abcdef: no earlier turns"]  # one block per turn, the first recorded
    lines = memory_lines([o.envelope for o in second])
    assert lines == ["turn t3abcdef: 1 earlier turn(s)", "  t1  Q: What is 6*7?  A: 6 * 7 = 42."]
