"""The LLM synthesizer: answers from the tool results in the question's language, falls back to the
template when no provider answers, and the synthesis service records who wrote the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agentlog.events.codec import Codec
from agentlog.events.envelope import command
from agentlog.llm.chain import GuardedModel, ProviderChain, RetryPolicy
from agentlog.llm.http import ProviderError
from agentlog.llm.ollama import OllamaChat
from agentlog.llm.synthesis import LLMSynthesizer
from agentlog.services.synthesis.compose import compose_answer
from agentlog.services.synthesis.service import SynthesisHandler
from llm_fakes import ScriptedModel, ollama_reply, refused_url, serving


def request(language: str = "en", synthesis: bool = True) -> dict[str, Any]:
    return {"userInput": "כמה זה 12.5% מ-240?" if language == "he" else "What is 12.5% of 240?",
            "language": language, "outcome": "completed", "failureReason": None, "synthesisRequired": synthesis,
            "steps": [{"stepId": "s1", "tool": "calculateMath", "arguments": {"expression": "12.5% of 240"},
                       "dependsOn": [], "status": "succeeded",
                       "output": {"value": 30, "text": "12.5% of 240 = 30", "data": {}}, "error": None}]}


def test_answer_is_written_from_the_tool_results_in_the_question_language() -> None:
    with serving(ollama_reply("  התוצאה היא 30.  ", prompt_tokens=120, completion_tokens=9)) as s:
        chain = ProviderChain([GuardedModel(OllamaChat(s.url), retry=RetryPolicy(max_attempts=1))])
        written = LLMSynthesizer(chain).synthesize_audited(request("he"))
    assert (written.text, written.synthesizer) == ("התוצאה היא 30.", "llm")
    assert written.llm is not None and (written.llm["provider"], written.llm["promptTokens"]) == ("ollama", 120)
    system, user = s.requests[0].body["messages"]
    assert "Answer in Hebrew" in system["content"] and "never invent" in system["content"]
    assert '"value":30' in user["content"] and "12.5% מ-240" in user["content"]
    assert "format" not in s.requests[0].body  # plain text, not JSON


def test_no_provider_or_an_empty_reply_gives_the_template_answer() -> None:
    chain = ProviderChain([GuardedModel(OllamaChat(refused_url()), retry=RetryPolicy(max_attempts=1))])
    written = LLMSynthesizer(chain).synthesize_audited(request())
    assert (written.text, written.synthesizer, written.llm) == (compose_answer(request()), "offline-template", None)
    empty = LLMSynthesizer(ScriptedModel("ollama", ["   "])).synthesize_audited(request())
    assert (empty.text, empty.synthesizer) == (compose_answer(request()), "offline-template")


def _synthesize(handler: SynthesisHandler, payload: dict[str, Any]) -> dict[str, Any]:
    cause = command("SynthesizeFinalAnswerRequested", conversation_id="c1", turn_id="t1", user_id="u1",
                    payload=payload, source="aggregator")
    (output,) = handler.handle(cause, None, datetime(2025, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
    Codec().encode(output.envelope)  # valid against event.FinalAnswerSynthesized
    return dict(output.envelope.payload)


def test_synthesis_service_records_the_llm_audit() -> None:
    handler = SynthesisHandler(LLMSynthesizer(ScriptedModel("ollama", ["It is 30."])))
    answer = _synthesize(handler, request())
    assert (answer["message"], answer["synthesizer"]) == ("It is 30.", "llm")
    assert answer["llm"] == {"provider": "ollama", "model": "m", "latencyMs": 1.0, "promptTokens": 3,
                             "completionTokens": 2}
    fallback = SynthesisHandler(LLMSynthesizer(ScriptedModel("ollama", [ProviderError("down", retryable=True)])))
    answer = _synthesize(fallback, request())
    assert answer["synthesizer"] == "offline-template" and "llm" not in answer
    # a plan that asked for no synthesis never reaches the model
    assert _synthesize(SynthesisHandler(LLMSynthesizer(ScriptedModel("ollama", []))),
                       request(synthesis=False))["synthesizer"] == "offline-template"
