"""The synthesis worker: one FinalAnswerSynthesized per SynthesizeFinalAnswerRequested.

The answer event's id is derived from the turn, so a redelivered request yields the same id and
every reader keeps one answer.
"""

from __future__ import annotations

from datetime import datetime

from confluent_kafka import Message

from agentlog.events.envelope import Envelope, caused_by
from agentlog.kafka.eos import Handler, Output
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.llm.audit import AuditedSynthesizer
from agentlog.services.synthesis.compose import Synthesizer, TemplateSynthesizer

SOURCE = "synthesis"


class SynthesisHandler(Handler):
    def __init__(self, synthesizer: Synthesizer | None = None) -> None:
        self.synthesizer = synthesizer or TemplateSynthesizer()

    def handle(self, envelope: Envelope, message: Message, now: datetime) -> list[Output]:
        if envelope.subject != "command.SynthesizeFinalAnswerRequested":
            raise ValueError(f"synthesis-requests carries SynthesizeFinalAnswerRequested only, got {envelope.subject}")
        request = envelope.payload
        # A plan that asks for no synthesis still gets the template's wording of its results.
        synthesizer = self.synthesizer if request["synthesisRequired"] else TemplateSynthesizer()
        if isinstance(synthesizer, AuditedSynthesizer):  # a model synthesizer says who wrote it (it may fall back)
            written = synthesizer.synthesize_audited(request)
            text, name, llm = written.text, written.synthesizer, written.llm
        else:
            text, name, llm = synthesizer.synthesize(request), synthesizer.name, None
        payload = {"message": text, "outcome": request["outcome"], "synthesizer": name}
        if llm is not None:
            payload["llm"] = llm
        # The id ignores the request's id: one answer per turn, whatever asked for it.
        answer = caused_by(envelope, "event", "FinalAnswerSynthesized", payload, source=SOURCE, now=now)
        return [Output(CONVERSATION_EVENTS, answer)]
