"""Running turns against the real broker: the deltas on answer-stream, the gateway's SSE endpoint,
a streaming model whose first words are on the stream before the answer is in the log, and the
control endpoint (approve, deny, cancel)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from agentlog.events.codec import Codec
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import ANSWER_STREAM, USER_COMMANDS
from agentlog.services.synthesis.deltas import SUBJECT
from gateway_server import GatewayServer
from helpers import ALL_SERVICES, Stack, wait_for
from stream_fakes import StreamingServer, start_with_model_synthesis

PIECES = ["Streaming ", "works: ", "the answer ", "is 42."]
# a plan that asks for synthesis: the model writes the answer (else the template words the results)
SYNTHESIZED = {"steps": [{"id": "s1", "tool": "calculateMath", "arguments": {"expression": "6*7"}, "dependsOn": []}],
               "finalAnswerSynthesisRequired": True}


def deltas_of(stack: Stack, turn_id: str) -> list[dict[str, Any]]:
    records = [orjson.loads(m.value() or b"{}") for m in read_range(stack.settings, stack.settings.topic(ANSWER_STREAM))]
    return [r for r in records if r.get("turnId") == turn_id]


def streamed_text(deltas: list[dict[str, Any]]) -> str:
    """What a reader shows: seq 0 starts over, each next seq appends."""
    text = ""
    for delta in deltas:
        text = delta["text"] if delta["seq"] == 0 else text + delta["text"]
    return text


def test_the_offline_answer_is_streamed_in_pieces_and_only_the_final_answer_is_recorded(
        agentlog_env: dict[str, str]) -> None:
    with Stack(agentlog_env) as stack:
        # Turns of local tools only are answered by the router itself, unstreamed (router/inline.py):
        # this one goes through the synthesis service.
        stack.start(*(s for s in ALL_SERVICES if s != "router"))
        stack.start("router", extra_env={"AGENTLOG_INLINE_TURNS": "0"})
        streams_the_offline_answer(stack)


def streams_the_offline_answer(stack: Stack) -> None:
    sent, events = stack.ask("What is 2+3 and what is 10*4?", f"conv-{uuid.uuid4().hex[:8]}")
    answer = events[-1]
    assert answer.type == "FinalAnswerSynthesized"
    deltas = wait_for(lambda: [d for d in deltas_of(stack, sent.turn_id) if d["done"]] and deltas_of(stack, sent.turn_id),
                      what="the done delta")
    assert [d["seq"] for d in deltas] == list(range(len(deltas))) and 2 <= len(deltas) <= 5
    assert streamed_text(deltas) == answer.payload["message"]
    assert {(d["conversationId"], d["userId"]) for d in deltas} == {(sent.conversation_id, "tester")}
    for delta in deltas:
        Codec().encode_record(SUBJECT, delta)  # every delta is valid against record.AnswerDelta
    log = stack.conversation_log(sent.conversation_id)
    assert [e.type for e in log].count("FinalAnswerSynthesized") == 1
    assert not any("Delta" in e.type for e in log), "deltas never enter the event store"


@pytest.fixture
def gated_stack(agentlog_env: dict[str, str]) -> Iterator[tuple[Stack, StreamingServer, threading.Event]]:
    """Offline services, except synthesis, which streams from a fake OpenAI-compatible server that
    writes the first piece and then waits for the test to open the gate."""
    gate = threading.Event()
    with StreamingServer("openai", PIECES, gate=gate) as model, Stack(agentlog_env) as stack:
        start_with_model_synthesis(stack, model.url)
        try:
            yield stack, model, gate
        finally:
            gate.set()


def test_a_streaming_model_is_on_the_gateway_stream_before_its_answer_is_recorded(
        gated_stack: tuple[Stack, StreamingServer, threading.Event]) -> None:
    stack, model, gate = gated_stack
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    received: list[dict[str, Any]] = []
    ready = threading.Event()
    with GatewayServer(stack.settings, chat_timeout=90) as gateway:
        def follow() -> None:
            path = f"/api/conversations/{conversation_id}/answer-stream"
            with gateway.client.stream("GET", path, timeout=httpx.Timeout(90)) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                ready.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.append(orjson.loads(line[len("data: "):]))
                        if received[-1]["done"]:
                            return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert ready.wait(30), "the answer stream did not open"
        answer: dict[str, Any] = {}
        asking = threading.Thread(target=lambda: answer.update(gateway.client.post(
            "/api/chat", json={"prompt": "What is 6*7?", "conversationId": conversation_id, "plan": SYNTHESIZED}).json()),
            daemon=True)
        asking.start()

        wait_for(lambda: received, timeout=60, what="the first delta on the gateway's stream")
        assert received[0]["seq"] == 0 and received[0]["text"] == PIECES[0]
        turn_id = received[0]["turnId"]
        recorded = [e.type for e in stack.conversation_log(conversation_id) if e.turn_id == turn_id]
        assert "FinalAnswerSynthesized" not in recorded, "the first words arrive while the model is still writing"

        gate.set()
        reader.join(60)
        asking.join(60)
    assert [d["seq"] for d in received] == list(range(len(received))) and received[-1]["done"]
    assert streamed_text(received) == answer["message"] == "".join(PIECES)
    assert model.requests[0]["stream"] is True


def test_the_control_endpoint_checks_its_input_and_a_late_cancel_is_harmless(stack: Stack) -> None:
    with GatewayServer(stack.settings, chat_timeout=60) as gateway:
        answered = gateway.client.post("/api/chat", json={"prompt": "What is 2+3?"}).json()
        conversation_id, turn_id = answered["conversationId"], answered["turnId"]
        path = f"/api/conversations/{conversation_id}/turns/{turn_id}/control"
        assert gateway.client.post(path, json={"command": "reset"}).status_code == 422
        assert gateway.client.post(path, json={"command": "cancel", "userId": "someone-else"}).status_code == 403
        unknown = gateway.client.post(f"/api/conversations/conv-nobody/turns/{turn_id}/control", json={"command": "cancel"})
        assert unknown.status_code == 404
        sent = gateway.client.post(path, json={"command": "cancel", "reason": "too late"})
        assert sent.status_code == 202
        assert sent.json() == {"conversationId": conversation_id, "turnId": turn_id, "command": "cancel"}
        topic = stack.settings.topic(USER_COMMANDS)
        commands = [orjson.loads(m.value() or b"{}") for m in read_range(stack.settings, topic)]
        control = [c for c in commands if c["type"] == "UserControl" and c["turnId"] == turn_id]
        assert [c["payload"] for c in control] == [{"command": "cancel", "reason": "too late"}]
    log = [e for e in stack.conversation_log(conversation_id) if e.turn_id == turn_id]
    assert [e.type for e in log].count("FinalAnswerSynthesized") == 1 and "TurnCancelled" not in [e.type for e in log]
