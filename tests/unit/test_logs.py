"""Every log line is JSON and names the conversation and correlation of the message being handled."""

from __future__ import annotations

import logging

import orjson

from agentlog.events.envelope import command
from agentlog.observability import JsonFormatter, handling


def test_log_lines_carry_the_ids_of_the_message_being_handled() -> None:
    formatter = JsonFormatter("router")
    record = logging.LogRecord("agentlog.test", logging.INFO, __file__, 1, "planning %s", ("now",), None)
    outside = orjson.loads(formatter.format(record))
    assert outside["conversationId"] is None and outside["msg"] == "planning now"
    envelope = command("UserQueryReceived", conversation_id="conv-1", turn_id="turn-1", user_id="u",
                       payload={"userInput": "x"}, source="test")
    with handling("router", envelope):
        inside = orjson.loads(formatter.format(record))
    assert inside["conversationId"] == "conv-1" and inside["correlationId"] == "turn-1"
    assert inside["messageId"] == envelope.id and inside["service"] == "router"
    assert orjson.loads(formatter.format(record))["conversationId"] is None
