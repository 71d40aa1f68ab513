"""A service with tracing off passes the trace headers of the message it handles on to what it sends,
so a deployment where only some services trace keeps its traces linked across the others."""

from __future__ import annotations

import pytest

from agentlog import observability
from agentlog.events.envelope import command
from agentlog.observability import current_headers, handling

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_tracing_off_forwards_the_handled_messages_trace_headers_only_while_handling_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observability, "_tracing", False)
    envelope = command("UserQueryReceived", conversation_id="c", turn_id="t", user_id="u",
                       payload={"userInput": "hi"}, source="test")
    incoming = [("agentlog-subject", b"command.UserQueryReceived"), ("traceparent", PARENT),
                ("tracestate", "vendor=1")]
    assert current_headers() == []
    with handling("router", envelope, incoming):
        assert current_headers() == [("traceparent", PARENT), ("tracestate", b"vendor=1")]
        with handling("router", envelope, {"agentlog-subject": "x"}):  # a message without trace headers
            assert current_headers() == []
        assert current_headers() == [("traceparent", PARENT), ("tracestate", b"vendor=1")]
    assert current_headers() == []
