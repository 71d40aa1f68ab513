"""The web gateway's API against a real broker and the services as OS processes.

One stack and one gateway serve the whole module (starting five services per test would dominate
the run); each test uses its own conversation ids, so tests do not see each other's turns.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from agentlog.kafka.client import producer_config
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS, USER_COMMANDS, admin_client
from agentlog.web.partitioner import partition_for
from gateway_server import GatewayServer, sse_events
from helpers import Stack, isolated_env, wait_for

TURN_ORDER = ["UserQueryReceived", "PlanGenerated", "ToolInvocationRequested", "ToolInvocationResulted",
              "PlanStepCompleted", "PlanCompleted", "FinalAnswerSynthesized"]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(isolated_env(dict(os.environ), kafka_bootstrap, tmp_path_factory.mktemp("gateway"))) as stack:
        stack.start()
        yield stack


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[GatewayServer]:
    """One user sends this module's commands faster than a person would: a burst that its tests never exhaust."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTLOG_RATE_LIMIT_BURST", "100")
        server = GatewayServer(stack.settings)
    with server:
        yield server


def new_conversation() -> str:
    return f"web-{uuid.uuid4().hex[:12]}"


def ask(gateway: GatewayServer, prompt: str, conversation_id: str, **extra: object) -> httpx.Response:
    return gateway.client.post("/api/chat", json={"prompt": prompt, "conversationId": conversation_id, **extra})


def test_chat_answers_and_the_conversation_reads_back_as_events_history_and_list(gateway: GatewayServer) -> None:
    conversation_id = new_conversation()
    response = ask(gateway, "What is 12.5% of 240?", conversation_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversationId"] == conversation_id and body["outcome"] == "completed"
    assert "30" in body["message"]

    events = gateway.client.get(f"/api/conversations/{conversation_id}/events").json()["events"]
    assert [e["type"] for e in events] == TURN_ORDER
    assert {e["turnId"] for e in events} == {body["turnId"]}

    history = gateway.client.get(f"/api/conversations/{conversation_id}/history").json()["turns"]
    assert [(t["question"], t["answer"], t["outcome"]) for t in history] == [
        ("What is 12.5% of 240?", body["message"], "completed")]

    listed = gateway.client.get("/api/conversations").json()["conversations"]
    mine = next(c for c in listed if c["conversationId"] == conversation_id)
    assert mine["firstQuestion"] == "What is 12.5% of 240?" and mine["turns"] == 1
    assert mine["lastActivity"] == events[-1]["timestamp"]


def test_a_chat_without_a_conversation_id_starts_a_new_conversation(gateway: GatewayServer) -> None:
    response = gateway.client.post("/api/chat", json={"prompt": "What is 6*7?"})
    assert response.status_code == 200, response.text
    assert "42" in response.json()["message"] and response.json()["conversationId"].startswith("conv-")


def test_the_partition_of_a_key_is_computed_as_the_producers_place_it(stack: Stack, gateway: GatewayServer) -> None:
    """Java's murmur2, checked against where librdkafka's murmur2_random partitioner puts keys."""
    topic = stack.settings.topic("partition-check")
    admin = admin_client(stack.settings)
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=-1)])[topic].result(30)
    producer = Producer(producer_config(stack.settings, "partition-check"))
    placed: dict[bytes, int] = {}
    rng = random.Random(7)
    keys = [f"web-{rng.getrandbits(64):x}".encode() for _ in range(150)] + [b"a", b"ab", b"abc", b"conv-pct"]

    def record(error: object, message: object) -> None:
        assert error is None, error
        placed[message.key()] = message.partition()  # type: ignore[attr-defined]

    wait_for(lambda: _leaders_ready(producer, topic), what="the new topic's leaders")
    for key in keys:
        producer.produce(topic, key=key, value=b"x", on_delivery=record)
    assert producer.flush(30) == 0
    assert placed == {key: partition_for(key, 6) for key in keys}
    # ... and where the services put the events of the conversations asked so far.
    for message in read_range(stack.settings, stack.settings.topic(CONVERSATION_EVENTS)):
        stored_key = message.key()
        assert isinstance(stored_key, bytes) and message.partition() == partition_for(stored_key, 6)


def _leaders_ready(producer: Producer, topic: str) -> bool:
    partitions = producer.list_topics(topic, timeout=10).topics[topic].partitions
    return len(partitions) == 6 and all(p.leader >= 0 for p in partitions.values())


@pytest.mark.parametrize("body, field", [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "hi", "conversationId": "has spaces!"}, "conversationId"),
    ({"prompt": "hi", "conversationId": "x" * 129}, "conversationId"),
    ({"prompt": "hi", "userId": ""}, "userId"),
])
def test_a_bad_chat_request_is_refused_with_a_clear_message(gateway: GatewayServer, body: dict[str, object],
                                                            field: str) -> None:
    response = gateway.client.post("/api/chat", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"].startswith("invalid request") and field in error["error"]
    assert any(d["field"] == field for d in error["details"])


def test_malformed_json_and_unknown_places_are_refused_with_json_errors(gateway: GatewayServer) -> None:
    broken = gateway.client.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "error" in broken.json()
    unknown = new_conversation()
    for method, path in (("GET", f"/api/conversations/{unknown}/events"), ("GET", f"/api/conversations/{unknown}/history"),
                         ("POST", f"/api/conversations/{unknown}/reset")):
        response = gateway.client.request(method, path)
        assert response.status_code == 404, path
        assert unknown in response.json()["error"]
    bad_id = gateway.client.get("/api/conversations/bad%20id/stream")
    assert bad_id.status_code == 422 and "conversation_id" in bad_id.json()["error"]
    assert gateway.client.get("/api/nowhere").json() == {"error": "Not Found"}
    invalid_plan = ask(gateway, "plan", new_conversation(), plan={"steps": "not a list"})
    assert invalid_plan.status_code == 422 and "invalid" in invalid_plan.json()["error"]


def test_the_stream_yields_each_event_of_the_turn_as_it_lands(gateway: GatewayServer) -> None:
    conversation_id = new_conversation()
    ready = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        frames = pool.submit(lambda: list(sse_events(gateway.client, f"/api/conversations/{conversation_id}/stream",
                                                     stop="FinalAnswerSynthesized", ready=ready)))
        assert ready.wait(30), "the stream did not open"
        answer = ask(gateway, "What is 2+3 and what is 10*4?", conversation_id)
        events = frames.result(60)
    assert answer.status_code == 200
    types = [kind for kind, _ in events]
    assert types[:2] == ["UserQueryReceived", "PlanGenerated"] and types[-1] == "FinalAnswerSynthesized"
    assert types.count("ToolInvocationResulted") == 2
    assert all(envelope["type"] == kind and envelope["conversationId"] == conversation_id for kind, envelope in events)
    assert {envelope["turnId"] for _, envelope in events} == {answer.json()["turnId"]}


def test_a_slow_turn_answers_202_and_its_answer_lands_later(stack: Stack) -> None:
    plan = {"steps": [{"id": "slow", "tool": "recordEffect", "arguments": {"label": "slow", "delayMs": 3000},
                       "dependsOn": [], "timeoutMs": 20000}],
            "finalAnswerSynthesisRequired": True}
    conversation_id = new_conversation()
    with GatewayServer(stack.settings, chat_timeout=0.5) as impatient:
        response = ask(impatient, "run the slow tool", conversation_id, plan=plan)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body == {"conversationId": conversation_id, "turnId": body["turnId"], "status": "pending",
                        "stream": f"/api/conversations/{conversation_id}/stream"}

        def answered() -> list[dict[str, object]]:
            history = impatient.client.get(f"/api/conversations/{conversation_id}/history")
            return [t for t in history.json().get("turns", []) if t["answer"]] if history.status_code == 200 else []

        turn = wait_for(answered, timeout=60, what="the slow turn's answer")[0]
    assert turn["turnId"] == body["turnId"] and turn["outcome"] == "completed"


def test_two_gateway_instances_each_get_the_answers_to_their_own_requests(stack: Stack,
                                                                          gateway: GatewayServer) -> None:
    with GatewayServer(stack.settings) as other, ThreadPoolExecutor(4) as pool:
        asked = [(server, f"What is {n}*3?", str(n * 3)) for n, server in enumerate([gateway, other] * 2, start=11)]
        futures = [pool.submit(ask, server, prompt, new_conversation()) for server, prompt, _ in asked]
        for future, (_, _, expected) in zip(futures, asked, strict=True):
            response = future.result(90)
            assert response.status_code == 200 and expected in response.json()["message"]


def test_reset_is_accepted_and_recorded_as_user_history_reset(gateway: GatewayServer) -> None:
    conversation_id = new_conversation()
    assert ask(gateway, "What is 100-1?", conversation_id).status_code == 200
    response = gateway.client.post(f"/api/conversations/{conversation_id}/reset")
    assert response.status_code == 202 and response.json()["status"] == "accepted"

    def reset_recorded() -> list[dict[str, object]]:
        events = gateway.client.get(f"/api/conversations/{conversation_id}/events").json()["events"]
        return [e for e in events if e["type"] == "UserHistoryReset"]

    reset = wait_for(reset_recorded, timeout=30, what="UserHistoryReset")[0]
    me = gateway.client.get("/api/session").json()["userId"]
    assert reset["userId"] == me and reset["turnId"] == response.json()["turnId"]
    assert gateway.client.get(f"/api/conversations/{conversation_id}/history").json()["turns"] == []


def test_dead_letters_are_listed_readably(stack: Stack, gateway: GatewayServer) -> None:
    producer = Producer(producer_config(stack.settings, "test-garbage"))
    producer.produce(stack.settings.topic(USER_COMMANDS), key=b"web-garbage", value=b"this is not json")
    assert producer.flush(30) == 0
    admin = gateway.key_client("ops", admin=True)

    def listed() -> list[dict[str, object]]:
        letters = admin.get("/api/dead-letters").json()["deadLetters"]
        return [d for d in letters if d["original"] == "this is not json"]

    letter = wait_for(listed, timeout=30, what="the dead letter")[0]
    assert letter["service"] == "router" and letter["key"] == "web-garbage"
    assert "not valid JSON" in str(letter["reason"])
    assert letter["sourceTopic"] == stack.settings.topic(USER_COMMANDS)


def test_health_docs_and_page(gateway: GatewayServer) -> None:
    health = gateway.key_client("ops", admin=True).get("/api/health")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok" and all(health.json()["topics"].values())
    schema = gateway.client.get("/openapi.json").json()
    assert {"/api/chat", "/api/conversations/{conversation_id}/stream", "/api/dead-letters"} <= set(schema["paths"])
    assert gateway.client.get("/docs").status_code == 200
    page = gateway.client.get("/")
    assert page.status_code == 200 and "<title>agentlog</title>" in page.text
    assert gateway.client.get("/app.js").headers["content-type"].startswith(("text/javascript",
                                                                             "application/javascript"))
