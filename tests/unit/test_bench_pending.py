"""The open loop's bookkeeping without Kafka: pending turns resolved by their answers or their
deadlines, the collector's intake (answers decoded as read, the other events only afterwards), and
commands sent without a flush whose refusal still raises."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, Message

from agentlog.bench.clients import Answer, DirectClient, RunEvents
from agentlog.bench.pending import PendingTurns
from agentlog.bench.scenarios import Question
from agentlog.conversation import ConversationClient, DeliveryCallback
from agentlog.errors import AgentlogError
from agentlog.events.codec import SUBJECT_HEADER, Codec, IncomingHeaders
from agentlog.events.envelope import Envelope, command, derive_id

CODEC = Codec()


class Recorded:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.timeouts = 0

    def __call__(self, answer: Answer | None) -> None:
        if answer is None:
            self.timeouts += 1
        else:
            self.answers.append(answer)


def test_latency_counts_from_the_scheduled_time_to_the_answers_arrival() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    turns.add("t1", "c1", started=100.0, timeout=60.0)
    assert turns.answered("t1", arrived=100.25, arrived_wall=5000.0, outcome="completed")
    (answer,) = recorded.answers
    assert (answer.conversation_id, answer.turn_id, answer.outcome) == ("c1", "t1", "completed")
    assert answer.latency == pytest.approx(0.25)
    assert answer.received_wall == 5000.0
    assert recorded.timeouts == 0


def test_the_wall_clock_send_time_is_the_scheduled_time_not_the_registration() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    scheduled = time.perf_counter() - 2.0  # a backlog: registered two seconds after it was due
    turns.add("t1", "c1", started=scheduled, timeout=60.0)
    turns.answered("t1", time.perf_counter(), time.time(), "completed")
    (answer,) = recorded.answers
    assert answer.latency >= 2.0
    assert answer.received_wall - answer.sent_wall == pytest.approx(answer.latency, abs=0.05)


def test_turns_past_their_deadline_are_counted_as_timeouts_once() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    turns.add("t1", "c1", started=0.0, timeout=1.0)
    turns.add("t2", "c2", started=0.5, timeout=1.0)
    assert turns.expire(0.99) == 0
    assert turns.expire(1.0) == 1
    assert turns.expire(1.4) == 0
    assert turns.expire(1.5) == 1
    assert turns.expire(10.0) == 0
    assert recorded.timeouts == 2 and recorded.answers == []


def test_a_late_answer_does_not_turn_a_timeout_into_an_answer() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    turns.add("t1", "c1", started=0.0, timeout=1.0)
    turns.expire(2.0)
    assert not turns.answered("t1", 3.0, 3.0, "completed")
    assert recorded.timeouts == 1 and recorded.answers == []


def test_a_second_copy_of_an_answer_is_ignored_and_an_answered_turn_never_times_out() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    turns.add("t1", "c1", started=0.0, timeout=1.0)
    assert turns.answered("t1", 0.5, 0.5, "completed")
    assert not turns.answered("t1", 0.7, 0.7, "failed")
    assert turns.expire(5.0) == 0
    assert [(a.outcome, a.latency) for a in recorded.answers] == [("completed", 0.5)]
    assert recorded.timeouts == 0


def test_an_answer_for_a_turn_never_registered_is_ignored() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    assert not turns.answered("unknown", 1.0, 1.0, "completed")
    assert recorded.answers == []


def test_wait_returns_when_the_last_turn_is_answered_from_another_thread() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    turns.add("t1", "c1", started=time.perf_counter(), timeout=60.0)
    waiter = threading.Thread(target=turns.wait)
    waiter.start()
    turns.answered("t1", time.perf_counter(), time.time(), "completed")
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(recorded.answers) == 1 and recorded.timeouts == 0


def test_wait_counts_the_turns_that_reach_their_deadline_unanswered() -> None:
    recorded = Recorded()
    turns = PendingTurns(recorded)
    now = time.perf_counter()
    turns.add("t1", "c1", started=now, timeout=0.05)
    turns.add("t2", "c2", started=now, timeout=0.1)
    turns.answered("t2", now + 0.01, time.time(), "completed")
    turns.wait()
    assert recorded.timeouts == 1 and [a.turn_id for a in recorded.answers] == ["t2"]
    assert time.perf_counter() >= now + 0.05


class FakeMessage:
    def __init__(self, envelope: Envelope | None, *, value: bytes | None = None, subject: str | None = "",
                 key: bytes | None = None) -> None:
        self._value = value if envelope is None else CODEC.encode(envelope)
        self._key = key if envelope is None or key is not None else envelope.conversation_id.encode()
        header = envelope.subject if envelope is not None and subject == "" else subject
        self._headers: IncomingHeaders = [(SUBJECT_HEADER, header.encode())] if header else None

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> IncomingHeaders:
        return self._headers


def event(type_: str, payload: dict[str, Any], *, turn: str = "t1", conversation: str = "run-1",
          event_id: str | None = None) -> Envelope:
    return Envelope(id=derive_id(event_id or turn, type_, conversation), kind="event", type=type_,
                    conversation_id=conversation, turn_id=turn, user_id="u", timestamp="2026-01-01T00:00:00.000Z",
                    source="test", payload=payload)


def answer(turn: str = "t1", conversation: str = "run-1", outcome: str = "completed", **kw: Any) -> Envelope:
    return event("FinalAnswerSynthesized", {"message": "42", "outcome": outcome, "synthesizer": "template"},
                 turn=turn, conversation=conversation, **kw)


QUERY = event("UserQueryReceived", {"userInput": "What is 2+3?", "language": "en"})


def test_an_answer_is_recorded_at_the_batchs_read_time_and_resolves_the_hook() -> None:
    intake = RunEvents(CODEC, "run-")
    resolved: list[tuple[str, float, float, str]] = []
    intake.on_answer = lambda *args: resolved.append(args)
    intake.take([FakeMessage(QUERY), FakeMessage(answer())], arrived=7.5, arrived_wall=1000.0)
    assert resolved == [("t1", 7.5, 1000.0, "completed")]
    assert intake.wait("t1", 0) == (7.5, 1000.0, "completed")


def test_only_the_first_copy_of_an_answer_counts() -> None:
    intake = RunEvents(CODEC, "run-")
    resolved: list[tuple[str, float, float, str]] = []
    intake.on_answer = lambda *args: resolved.append(args)
    intake.take([FakeMessage(answer())], 1.0, 1.0)
    intake.take([FakeMessage(answer(event_id="copy", outcome="failed"))], 2.0, 2.0)
    assert resolved == [("t1", 1.0, 1.0, "completed")]


def test_events_of_other_conversations_are_neither_answers_nor_kept() -> None:
    intake = RunEvents(CODEC, "run-")
    resolved: list[tuple[str, float, float, str]] = []
    intake.on_answer = lambda *args: resolved.append(args)
    other = answer(conversation="elsewhere-1")
    # without a key only the decoded conversation id tells
    intake.take([FakeMessage(other), FakeMessage(None, value=CODEC.encode(other), subject=other.subject)], 1.0, 1.0)
    assert resolved == [] and intake.events() == []


def test_a_header_naming_another_type_is_not_decoded_while_reading() -> None:
    intake = RunEvents(CODEC, "run-")
    resolved: list[tuple[str, float, float, str]] = []
    intake.on_answer = lambda *args: resolved.append(args)
    # the header is only a hint: an answer mislabelled as another type waits, and still counts in events()
    intake.take([FakeMessage(answer(), subject="event.PlanGenerated")], 1.0, 1.0)
    assert resolved == []
    assert [e.type for e in intake.events()] == ["FinalAnswerSynthesized"]


def test_a_message_without_a_header_may_be_an_answer() -> None:
    intake = RunEvents(CODEC, "run-")
    intake.take([FakeMessage(answer(), subject=None)], 3.0, 3.0)
    assert intake.wait("t1", 0) == (3.0, 3.0, "completed")


def test_events_are_decoded_afterwards_skipping_invalid_ones_and_copies() -> None:
    intake = RunEvents(CODEC, "run-")
    invalid = FakeMessage(None, value=b'{"kind": "event", "type": "PlanGenerated"}', subject="event.PlanGenerated",
                          key=b"run-1")
    not_json = FakeMessage(None, value=b"not json", subject=None, key=b"run-1")
    intake.take([FakeMessage(QUERY), invalid, not_json, FakeMessage(QUERY), FakeMessage(answer())], 1.0, 1.0)
    assert [e.type for e in intake.events()] == ["UserQueryReceived", "FinalAnswerSynthesized"]


class FakeProducer:
    """Delivery reports come at a poll, or only at the flush while `held`."""

    def __init__(self, error: KafkaError | None, held: bool) -> None:
        self.error = error
        self.held = held
        self.reports: list[tuple[DeliveryCallback, bytes]] = []

    def poll(self, timeout: float) -> int:
        if self.held:
            return 0
        served, self.reports = self.reports, []
        for callback, key in served:
            callback(self.error, cast(Message, FakeMessage(None, value=b"", key=key)))
        return len(served)

    def flush(self, timeout: float) -> int:
        self.held = False
        self.poll(0)
        return 0


class FakeConversation:
    """Stands in for ConversationClient: commands are queued, never flushed one by one."""

    def __init__(self, error: KafkaError | None = None, held: bool = False) -> None:
        self.producer = FakeProducer(error, held)
        self.sent: list[Envelope] = []

    def question_command(self, conversation_id: str, user_id: str, text: str, *, turn_id: str | None = None,
                         plan: Mapping[str, Any] | None = None) -> Envelope:
        return command("UserQueryReceived", conversation_id=conversation_id, turn_id=turn_id or "t",
                       user_id=user_id, payload={"userInput": text}, source="bench")

    def enqueue(self, envelope: Envelope, on_delivery: DeliveryCallback | None = None) -> None:
        assert on_delivery is not None
        self.sent.append(envelope)
        self.producer.reports.append((on_delivery, envelope.conversation_id.encode()))


def direct(conversation: FakeConversation) -> DirectClient:
    return DirectClient(cast(ConversationClient, conversation), RunEvents(CODEC, "run-"))


def test_submitted_turns_wait_for_their_answers_and_accepted_commands_do_not_raise() -> None:
    conversation = FakeConversation()
    recorded = Recorded()
    turns = PendingTurns(recorded)
    client = direct(conversation)
    client.submit("run-1", Question("What is 2+3?"), time.perf_counter(), 60.0, turns)
    client.submit("run-2", Question("What is 2+3?"), time.perf_counter(), 60.0, turns)
    client.flush()
    assert [e.conversation_id for e in conversation.sent] == ["run-1", "run-2"]
    assert turns.answered(conversation.sent[1].turn_id, time.perf_counter(), time.time(), "completed")
    assert [a.conversation_id for a in recorded.answers] == ["run-2"]


def test_a_refused_command_raises_at_the_next_poll() -> None:
    client = direct(FakeConversation(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
    with pytest.raises(AgentlogError, match=r"did not take a benchmark command.*run-1"):
        client.submit("run-1", Question("What is 2+3?"), time.perf_counter(), 60.0, PendingTurns(Recorded()))


def test_a_refusal_reported_only_at_the_final_flush_still_raises() -> None:
    client = direct(FakeConversation(KafkaError(KafkaError._MSG_TIMED_OUT), held=True))
    client.submit("run-1", Question("What is 2+3?"), time.perf_counter(), 60.0, PendingTurns(Recorded()))
    with pytest.raises(AgentlogError, match="did not take a benchmark command"):
        client.flush()
