"""The LLM synthesizer: the final answer written by a model from the tool results only.

Any provider failure (LLMUnavailable) or an empty reply hands the request to the template
synthesizer, so the user always gets an answer; the event records which one wrote it. The answer is
streamed as the model writes it; a fallback restarts the stream with the template's text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from agentlog.llm.audit import WrittenBy
from agentlog.llm.base import ChatMessage, ChatModel, LLMUnavailable
from agentlog.llm.prompts import SYNTHESIS_PROMPT, SYNTHESIS_RULES
from agentlog.llm.streaming import NullSink, TextSink, TrackingSink, stream_completion, write_chunks
from agentlog.services.synthesis.compose import Synthesizer, TemplateSynthesizer

log = logging.getLogger(__name__)

MAX_STEP_CHARS = 2000  # a step's results beyond this are cut: retrieval passages can be long


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _step_facts(step: Mapping[str, Any]) -> str:
    output, error = _mapping(step.get("output")), _mapping(step.get("error"))
    facts = {"step": step.get("stepId"), "tool": step.get("tool"), "arguments": step.get("arguments"),
             "status": step.get("status"), "value": output.get("value"), "text": output.get("text"),
             "error": error.get("message")}
    text = orjson.dumps(facts).decode()
    return text if len(text) <= MAX_STEP_CHARS else text[:MAX_STEP_CHARS] + " ...(cut)"


def synthesis_messages(request: Mapping[str, Any]) -> list[ChatMessage]:
    language = "he" if request.get("language") == "he" else "en"
    steps = [s for s in request.get("steps") or [] if isinstance(s, Mapping)]
    results = "\n".join(_step_facts(s) for s in steps) or "(no tool ran)"
    failure = f"\nThe turn failed: {request['failureReason']}" if request.get("failureReason") else ""
    user = f"Question: {request.get('userInput', '')}\nTool results, one per line:\n{results}{failure}"
    return [{"role": "system", "content": SYNTHESIS_PROMPT.format(language=SYNTHESIS_RULES[language])},
            {"role": "user", "content": user}]


class LLMSynthesizer:
    """Writes the answer with `model` (normally the provider chain), else with `fallback`."""

    name = "llm"

    def __init__(self, model: ChatModel, *, fallback: Synthesizer | None = None, max_tokens: int = 400) -> None:
        self.model = model
        self.fallback = fallback or TemplateSynthesizer()
        self.max_tokens = max_tokens

    def synthesize(self, request: Mapping[str, Any]) -> str:
        return self.synthesize_audited(request).text

    def synthesize_audited(self, request: Mapping[str, Any]) -> WrittenBy:
        return self.synthesize_streaming(request, NullSink())

    def synthesize_streaming(self, request: Mapping[str, Any], sink: TextSink) -> WrittenBy:
        tracked = TrackingSink(sink)
        try:
            completion = stream_completion(self.model, synthesis_messages(request), tracked,
                                           max_tokens=self.max_tokens)
        except LLMUnavailable as error:
            log.warning("LLM synthesis failed, using %s: %s", self.fallback.name, error)
            return self._fallback(request, tracked)
        text = completion.text.strip()
        if not text:
            log.warning("LLM synthesis by %s was empty, using %s", completion.provider, self.fallback.name)
            return self._fallback(request, tracked)
        return WrittenBy(text, self.name, completion.audit())

    def _fallback(self, request: Mapping[str, Any], sink: TrackingSink) -> WrittenBy:
        sink.restart()
        text = self.fallback.synthesize(request)
        write_chunks(sink, text)
        return WrittenBy(text, self.fallback.name, None)


def configured_synthesizer(env: Mapping[str, str] | None = None) -> Synthesizer:
    """The LLM synthesizer over the configured providers, else the template one."""
    from agentlog.llm.chain import configured_chat_model

    model = configured_chat_model(env)
    return TemplateSynthesizer() if model is None else LLMSynthesizer(model)
