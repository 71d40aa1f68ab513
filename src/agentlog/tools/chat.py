"""The generalChat tool: a short conversational answer from the configured language model.

Offline there is no model, and the tool says so (error_type NotConfigured, not retryable) instead of
inventing an answer. One exception, by decision: questions on politics, voting or malware get the
same polite refusal with or without a model, before any model is called. A refusal needs no model,
is identical online and offline, and cannot be talked around by a prompt; the topic list is the
router's (services/router/rules.py REFUSAL_TOPICS), so planner and tool agree on what is refused.
The conversation's earlier turns come as `history` (written into the plan by the router from its
memory window) and reach the model as the earlier user and assistant messages.
"""

from __future__ import annotations

import logging

from agentlog.llm.base import ChatMessage
from agentlog.llm.streaming import TextSink
from agentlog.services.router.rules import REFUSAL_TOPICS
from agentlog.tools.llm_access import HOW_TO_CONFIGURE, chat_model
from agentlog.tools.registry import ToolContext, ToolError, ToolOutput, tool

log = logging.getLogger(__name__)

REFUSAL = ("I'm sorry, but I don't give opinions or advice on politics or voting, and I can't help with "
           "malware or breaking into systems. I'm happy to help with something else.")
SYSTEM_PROMPT = ("You are agentlog's assistant. Answer briefly and helpfully, in the language of the message. "
                 "You see the conversation's earlier turns only as far as they are given before the message: "
                 "if asked about earlier messages you cannot see, say so. Do not give political opinions or "
                 "voting advice.")


@tool("generalChat", "Conversational reply to a message that needs no other tool (greetings, jokes, general "
      "questions), from the configured language model; politics, voting and malware are politely refused.")
def general_chat(message: str, history: list[dict[str, str]] | None = None,
                 context: ToolContext | None = None) -> ToolOutput:
    if REFUSAL_TOPICS.search(message):
        return ToolOutput(value=REFUSAL, text=REFUSAL, data={"method": "refusal", "reason": "restricted topic"})
    model = chat_model()
    if model is None:
        raise ToolError(f"no language model is configured, so general chat is unavailable: {HOW_TO_CONFIGURE}",
                        error_type="NotConfigured")
    from agentlog.llm.base import LLMUnavailable
    from agentlog.llm.streaming import stream_completion

    try:
        completion = stream_completion(model, [{"role": "system", "content": SYSTEM_PROMPT}, *_earlier_turns(history),
                                               {"role": "user", "content": message}], _answer_sink(context),
                                       temperature=0.7, max_tokens=300)
    except LLMUnavailable as error:
        raise ToolError(f"the language model did not answer: {error}", retryable=True,
                        error_type="LLMUnavailable") from error
    answer = completion.text.strip()
    return ToolOutput(value=answer, text=answer, data={"method": "llm", "llm": completion.audit()})


def _earlier_turns(history: list[dict[str, str]] | None) -> list[ChatMessage]:
    turns: list[ChatMessage] = []
    for turn in history or []:
        turns.append({"role": "user", "content": str(turn.get("question", ""))})
        turns.append({"role": "assistant", "content": str(turn.get("answer", ""))})
    return turns


def _answer_sink(context: ToolContext | None) -> TextSink:
    """The turn's answer stream, so that the page shows the reply as the model writes it (the
    synthesizer's stream restarts it with the final wording). The tool does not know the user: the
    gateway shows such deltas to the conversation's owner only."""
    from agentlog.llm.streaming import NullSink
    from agentlog.services.synthesis.deltas import shared_publisher

    if context is not None and (publisher := shared_publisher("tool-worker-deltas")) is not None:
        return publisher.turn(context.conversation_id, context.turn_id, "")
    return NullSink()
