"""The generalChat tool: a short conversational answer from the configured language model.

Offline there is no model, and the tool says so (error_type NotConfigured, not retryable) instead of
inventing an answer. One exception, by decision: questions on politics, voting or malware get the
same polite refusal with or without a model, before any model is called. A refusal needs no model,
is identical online and offline, and cannot be talked around by a prompt; the topic list is the
router's (services/router/rules.py REFUSAL_TOPICS), so planner and tool agree on what is refused.
"""

from __future__ import annotations

import logging

from agentlog.services.router.rules import REFUSAL_TOPICS
from agentlog.tools.llm_access import HOW_TO_CONFIGURE, chat_model
from agentlog.tools.registry import ToolError, ToolOutput, tool

log = logging.getLogger(__name__)

REFUSAL = ("I'm sorry, but I don't give opinions or advice on politics or voting, and I can't help with "
           "malware or breaking into systems. I'm happy to help with something else.")
SYSTEM_PROMPT = ("You are agentlog's assistant. Answer briefly and helpfully, in the language of the message. "
                 "You see only this one message, not the earlier conversation: if asked about earlier "
                 "messages, say that you cannot see them. Do not give political opinions or voting advice.")


@tool("generalChat", "Conversational reply to a message that needs no other tool (greetings, jokes, general "
      "questions), from the configured language model; politics, voting and malware are politely refused.")
def general_chat(message: str) -> ToolOutput:
    if REFUSAL_TOPICS.search(message):
        return ToolOutput(value=REFUSAL, text=REFUSAL, data={"method": "refusal", "reason": "restricted topic"})
    model = chat_model()
    if model is None:
        raise ToolError(f"no language model is configured, so general chat is unavailable: {HOW_TO_CONFIGURE}",
                        error_type="NotConfigured")
    from agentlog.llm.base import LLMUnavailable

    try:
        completion = model.complete([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": message}],
                                    temperature=0.7, max_tokens=300)
    except LLMUnavailable as error:
        raise ToolError(f"the language model did not answer: {error}", retryable=True,
                        error_type="LLMUnavailable") from error
    answer = completion.text.strip()
    return ToolOutput(value=answer, text=answer, data={"method": "llm", "llm": completion.audit()})
