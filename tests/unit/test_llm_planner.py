"""The LLM planner: prompt, validation, one repair, fallback to the next provider and to the rules,
and the `llm` audit the router records in PlanGenerated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from agentlog.events.codec import Codec
from agentlog.events.envelope import command
from agentlog.events.plan import Plan
from agentlog.llm.chain import GuardedModel, RetryPolicy
from agentlog.llm.http import ProviderError
from agentlog.llm.ollama import OllamaChat
from agentlog.llm.openai import OpenAIChat
from agentlog.llm.planner import LLMPlanner, plan_schema
from agentlog.services.router.planner import OfflinePlanner, PlanningQuery, detect_language
from agentlog.services.router.service import route_question
from llm_fakes import Reply, ScriptedModel, ollama_reply, openai_reply, refused_url, serving


def _tool(name: str, **properties: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": f"the {name} tool",
            "parameters": {"type": "object", "properties": properties, "required": list(properties),
                           "additionalProperties": False}}


TEXT = {"type": "string", "minLength": 1}
CATALOGUE = [
    _tool("calculateMath", expression=TEXT), _tool("getWeather", city=TEXT),
    _tool("getExchangeRate", **{"from": TEXT, "to": TEXT}), _tool("generalChat", message=TEXT),
    _tool("getProductInformation", query=TEXT), _tool("ragGeneration", question=TEXT, passages={"type": "array"}),
    _tool("analyzeReview", review_text=TEXT),
]
WEATHER_PLAN = {"steps": [{"id": "s1", "tool": "getWeather", "arguments": {"city": "Haifa"}, "dependsOn": []}],
                "finalAnswerSynthesisRequired": True}
GOOD = json.dumps(WEATHER_PLAN)


def query(text: str) -> PlanningQuery:
    return PlanningQuery(user_input=text, conversation_id="c1", turn_id="t1", language=detect_language(text))


def guarded(model: OllamaChat | OpenAIChat) -> GuardedModel:
    return GuardedModel(model, retry=RetryPolicy(max_attempts=1))


def test_primary_answers_with_a_valid_plan_and_the_audit_is_recorded() -> None:
    with serving(ollama_reply(f"Here is the plan:\n```json\n{GOOD}\n```", prompt_tokens=900, completion_tokens=40)) as s:
        planned = LLMPlanner([guarded(OllamaChat(s.url))], CATALOGUE).plan_audited(query("Weather in Haifa?"))
    assert planned.plan == Plan.from_json(WEATHER_PLAN)
    assert planned.planner == "llm"
    assert planned.llm is not None
    assert {k: planned.llm[k] for k in ("provider", "model", "promptTokens", "completionTokens")} == {
        "provider": "ollama", "model": "llama3", "promptTokens": 900, "completionTokens": 40}
    assert planned.llm["latencyMs"] > 0
    body = s.requests[0].body
    assert body["format"]["properties"]["steps"]["items"]["properties"]["tool"]["enum"] == sorted(
        t["name"] for t in CATALOGUE)
    system, *shots, last = body["messages"]
    assert '"name":"getExchangeRate"' in system["content"] and "finalAnswerSynthesisRequired" in system["content"]
    assert any("ש\"ח" in m["content"] for m in shots)  # the Hebrew examples are there
    assert last == {"role": "user", "content": "Weather in Haifa?"}


def test_seed_form_with_result_tokens_is_accepted() -> None:
    seed = {"plan": [{"tool": "getExchangeRate", "parameters": {"from": "USD", "to": "ILS"}},
                     {"tool": "calculateMath", "parameters": {"expression": "500 - 80 * <result_from_tool_1>"}}],
            "final_answer_synthesis_required": True}
    model = ScriptedModel("ollama", [json.dumps(seed)])
    plan = LLMPlanner([model], CATALOGUE).plan(query("500 shekels minus 80 dollars?"))
    assert [(s.tool, s.depends_on) for s in plan.steps] == [("getExchangeRate", ()), ("calculateMath", ("s1",))]
    assert plan.steps[1].arguments == {"expression": "500 - 80 * {{s1}}"}


def test_malformed_reply_is_repaired_once_and_both_calls_are_counted() -> None:
    with serving(ollama_reply('{"steps": [{"id": "s1", "tool": "getWeather"', prompt_tokens=100, completion_tokens=9),
                 ollama_reply(GOOD, prompt_tokens=150, completion_tokens=20)) as s:
        planned = LLMPlanner([guarded(OllamaChat(s.url))], CATALOGUE).plan_audited(query("Weather in Haifa?"))
    assert planned.planner == "llm" and planned.plan.steps[0].tool == "getWeather"
    assert planned.llm is not None
    assert (planned.llm["promptTokens"], planned.llm["completionTokens"]) == (250, 29)
    *_, previous, repair = s.requests[1].body["messages"]
    assert previous["role"] == "assistant"
    assert repair["role"] == "user" and repair["content"].startswith("That reply is not a valid plan: ")


@pytest.mark.parametrize(("reply", "error"), [
    ("I cannot help with that.", "no JSON object"),
    ('{"steps": [{"id": "s1", "tool": "sendEmail", "arguments": {}, "dependsOn": []}], '
     '"finalAnswerSynthesisRequired": true}', "the plan"),  # not in the schema's tool enum
    ('{"plan": [{"tool": "sendEmail", "parameters": {"to": "x"}}]}', "'sendEmail', which is not a tool"),
    ('{"steps": [{"id": "s1", "tool": "getWeather", "arguments": {"town": "Haifa"}, "dependsOn": []}], '
     '"finalAnswerSynthesisRequired": true}', "step s1 (getWeather) arguments"),
    ('{"steps": [], "finalAnswerSynthesisRequired": true}', "the plan"),
    ('{"plan": [{"tool": "getWeather", "parameters": "Haifa"}]}', "the plan is malformed"),
    ('{"steps": [{"id": "s1", "tool": "calculateMath", "arguments": {"expression": "{{s2}} + 1"}, "dependsOn": []}], '
     '"finalAnswerSynthesisRequired": true}', "refers to"),
])
def test_invalid_plans_are_sent_back_with_the_reason(reply: str, error: str) -> None:
    model = ScriptedModel("ollama", [reply, GOOD])
    plan = LLMPlanner([model], CATALOGUE).plan(query("Weather in Haifa?"))
    assert plan.steps[0].tool == "getWeather"
    assert error in model.calls[1][-1]["content"]


def test_unrepaired_plan_falls_back_to_the_next_provider() -> None:
    with serving(ollama_reply("not json"), ollama_reply("still not json")) as primary, \
            serving(openai_reply(GOOD, prompt_tokens=70, completion_tokens=8)) as secondary:
        planner = LLMPlanner([guarded(OllamaChat(primary.url)), guarded(OpenAIChat(secondary.url))], CATALOGUE)
        planned = planner.plan_audited(query("Weather in Haifa?"))
    assert len(primary.requests) == 2
    assert planned.llm is not None
    assert (planned.llm["provider"], planned.llm["promptTokens"]) == ("openai", 70)


def test_primary_slow_falls_back_and_both_down_falls_back_to_the_rules() -> None:
    with serving(Reply(hang=True)) as slow, serving(openai_reply(GOOD)) as secondary:
        planner = LLMPlanner([guarded(OllamaChat(slow.url, timeout_s=0.2)), guarded(OpenAIChat(secondary.url))],
                             CATALOGUE)
        assert planner.plan_audited(query("Weather in Haifa?")).llm is not None
    planner = LLMPlanner([guarded(OllamaChat(refused_url())), guarded(OpenAIChat(refused_url()))], CATALOGUE)
    planned = planner.plan_audited(query("What is 2+3 and what is 10*4?"))
    assert (planned.planner, planned.llm) == ("offline-rules", None)
    assert planned.plan == OfflinePlanner().plan(query("What is 2+3 and what is 10*4?"))


def test_examples_calling_unlisted_tools_are_left_out() -> None:
    model = ScriptedModel("ollama", ['{"steps": [{"id": "s1", "tool": "calculateMath", "arguments": '
                                     '{"expression": "1+1"}, "dependsOn": []}], "finalAnswerSynthesisRequired": false}'])
    LLMPlanner([model], [CATALOGUE[0]]).plan(query("1+1?"))
    shown = [m["content"] for m in model.calls[0][1:-1] if m["role"] == "assistant"]
    assert shown and all('"calculateMath"' in s and "getWeather" not in s for s in shown)


def test_no_provider_error_escapes_and_history_is_shown() -> None:
    model = ScriptedModel("ollama", [ProviderError("ollama: HTTP 500", retryable=True)])
    history = (("What is 2+2?", "4"),)
    q = PlanningQuery(user_input="and times 3?", conversation_id="c", turn_id="t", language="en", history=history)
    assert LLMPlanner([model], CATALOGUE).plan_audited(q).planner == "offline-rules"
    assert model.calls[0][-1]["content"].startswith("Earlier in this conversation:\nQ: What is 2+2?\nA: 4")


def test_plan_schema_is_self_contained() -> None:
    assert "$ref" not in json.dumps(plan_schema(["a"]))


def test_router_records_the_llm_audit_in_a_valid_plan_generated_event() -> None:
    planner = LLMPlanner([ScriptedModel("ollama", [GOOD])], CATALOGUE)
    question = command("UserQueryReceived", conversation_id="c1", turn_id="t1", user_id="u1",
                       payload={"userInput": "Weather in Haifa?"}, source="test")
    _, generated = route_question(planner, question, datetime(2025, 1, 1, tzinfo=UTC))
    assert generated.envelope.payload["planner"] == "llm"
    assert generated.envelope.payload["llm"] == {"provider": "ollama", "model": "m", "latencyMs": 1.0,
                                                 "promptTokens": 3, "completionTokens": 2}
    Codec().encode(generated.envelope)  # valid against event.PlanGenerated
    _, offline = route_question(OfflinePlanner(), question, datetime(2025, 1, 1, tzinfo=UTC))
    assert "llm" not in offline.envelope.payload
    Codec().encode(offline.envelope)
