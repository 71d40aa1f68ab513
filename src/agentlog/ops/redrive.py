"""Redrive a dead letter: re-publish its original (or a fixed) message to the topic it came from.

The message must now pass its schema (a producer never sends an invalid message), and the redrive
is recorded as a DeadLetterRedriven event in the conversation's log, in the same transaction as
the re-published message, so the audit trail shows who redrove what and whether it was changed.
A dead letter is redriven at most once: its event id is derived from the dead letter's offset.
"""

from __future__ import annotations

import getpass
from dataclasses import replace

from confluent_kafka import Producer

from agentlog.config import Settings
from agentlog.errors import AgentlogError, InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, caused_by, derive_id, utc_now
from agentlog.kafka.client import transactional_producer_config
from agentlog.kafka.dlq import DeadLetter, read_dead_letters
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.ops.replay import conversation_events


class RedriveError(AgentlogError):
    """The dead letter cannot be redriven as asked; the message says why and what to do."""


def find_dead_letter(settings: Settings, offset: int) -> DeadLetter:
    for letter in read_dead_letters(settings):
        if letter.offset == offset:
            return letter
    raise RedriveError(f"no dead letter at offset {offset} (see `agentlog dlq list`)")


def redrive(settings: Settings, codec: Codec, offset: int, fixed: bytes | None = None,
            operator: str | None = None) -> Envelope:
    """Re-publish dead letter `offset` (or `fixed` in its place); returns the DeadLetterRedriven event."""
    letter = find_dead_letter(settings, offset)
    value = fixed if fixed is not None else letter.original_value
    try:
        message = codec.decode(value)
    except InvalidMessageError as error:
        hint = "" if fixed is not None else " — fix it and pass the corrected message with --file"
        raise RedriveError(f"the {'fixed' if fixed is not None else 'original'} message is invalid: "
                           f"{error.reason}{hint}") from error
    record_id = derive_id("dead-letter", letter.record["sourceTopic"], offset, "redriven")
    if any(e.id == record_id for e in conversation_events(settings, codec, message.conversation_id)):
        raise RedriveError(f"dead letter {offset} was already redriven (see `agentlog replay "
                           f"{message.conversation_id}`)")
    payload = {"dlqOffset": offset, "sourceTopic": letter.record["sourceTopic"],
               "sourcePartition": letter.record["sourcePartition"], "sourceOffset": letter.record["sourceOffset"],
               "originalReason": letter.record["reason"], "fixed": fixed is not None,
               "operator": operator or getpass.getuser()}
    event = caused_by(message, "event", "DeadLetterRedriven", payload, source="operator", now=utc_now())
    event = replace(event, id=record_id)
    producer = Producer(transactional_producer_config(settings, "operator-redrive"))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(letter.record["sourceTopic"], key=letter.original_key, value=codec.encode(message))
    producer.produce(settings.topic(CONVERSATION_EVENTS), key=message.conversation_id.encode(),
                     value=codec.encode(event))
    producer.commit_transaction(30)
    return event
