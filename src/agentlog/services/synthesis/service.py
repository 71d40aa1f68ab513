"""The synthesis worker: one FinalAnswerSynthesized per SynthesizeFinalAnswerRequested.

The answer event's id is derived from the turn, so a redelivered request yields the same id and
every reader keeps one answer. While the answer is written it is also streamed as AnswerDelta
records on answer-stream (services/synthesis/deltas.py): a model's text as it arrives, the
template's in a few pieces, so the page shows it before the transaction recording it commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import Message

from agentlog.events.envelope import Envelope, caused_by
from agentlog.kafka.eos import Handler, Output, TransactionalLoop
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.llm.audit import WrittenBy, is_streaming_synthesizer
from agentlog.llm.streaming import NullSink, TextSink, write_chunks
from agentlog.services.synthesis.compose import Synthesizer, TemplateSynthesizer
from agentlog.services.synthesis.deltas import DeltaPublisher

SOURCE = "synthesis"


def write_answer(synthesizer: Synthesizer, request: Mapping[str, Any], sink: TextSink) -> WrittenBy:
    """The answer and who wrote it, streamed into `sink` as it is written."""
    if is_streaming_synthesizer(synthesizer):  # a model synthesizer says who wrote it (it may fall back)
        return synthesizer.synthesize_streaming(request, sink)
    text = synthesizer.synthesize(request)
    write_chunks(sink, text)
    return WrittenBy(text, synthesizer.name, None)


class SynthesisHandler(Handler):
    def __init__(self, synthesizer: Synthesizer | None = None) -> None:
        self.synthesizer = synthesizer or TemplateSynthesizer()
        self.deltas: DeltaPublisher | None = None

    def bind(self, loop: TransactionalLoop) -> None:
        self.deltas = DeltaPublisher(loop.settings, loop.codec, f"{SOURCE}-deltas-{loop.instance}")

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        if envelope.subject != "command.SynthesizeFinalAnswerRequested":
            raise ValueError(f"synthesis-requests carries SynthesizeFinalAnswerRequested only, got {envelope.subject}")
        # A handler not bound to a loop (a unit test) has no producer and streams nothing.
        stream = self.deltas.turn(envelope.conversation_id, envelope.turn_id, envelope.user_id) if self.deltas else None
        answer = answer_event(self.synthesizer, envelope.payload, envelope, now, stream or NullSink())
        if stream is not None:
            stream.finish()
        return [Output(CONVERSATION_EVENTS, answer)]


def answer_event(synthesizer: Synthesizer, request: Mapping[str, Any], cause: Envelope, now: datetime,
                 sink: TextSink, source: str = SOURCE) -> Envelope:
    """The FinalAnswerSynthesized event for a SynthesizeFinalAnswerRequested payload.
    A plan that asks for no synthesis still gets the template's wording of its results."""
    written = write_answer(synthesizer if request["synthesisRequired"] else TemplateSynthesizer(), request, sink)
    payload = {"message": written.text, "outcome": request["outcome"], "synthesizer": written.synthesizer}
    if written.llm is not None:
        payload["llm"] = written.llm
    # The id ignores the cause's id: one answer per turn, whatever asked for it.
    return caused_by(cause, "event", "FinalAnswerSynthesized", payload, source=source, now=now)
