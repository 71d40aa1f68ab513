"""The history's fast decode decides exactly as the codec: same events accepted, same fields, same rejections."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.errors import InvalidMessageError
from agentlog.events.codec import SUBJECT_HEADER, Codec
from agentlog.events.envelope import Envelope, caused_by, command, parse_timestamp
from agentlog.events.schemas import packaged_schemas
from agentlog.services.projections.decode import HistoryDecoder
from agentlog.services.projections.history import fold
from agentlog.services.projections.service import RELEVANT_SUBJECTS, decode_batch

CODEC = Codec()
DECODER = HistoryDecoder(CODEC, RELEVANT_SUBJECTS)
FIELDS = ("id", "kind", "type", "conversation_id", "turn_id", "user_id", "timestamp", "payload")
PAYLOADS = {
    "UserQueryReceived": {"userInput": "What is 2+2?", "language": "en"},
    "FinalAnswerSynthesized": {"message": "2+2 = 4.", "outcome": "completed", "synthesizer": "template"},
    "UserHistoryReset": {"command": "reset"},
}


def event(type_: str, conversation: str = "conv-1", turn: str = "t1") -> Envelope:
    root = command("UserQueryReceived", conversation_id=conversation, turn_id=turn, user_id="u1",
                   payload={"userInput": "What is 2+2?"}, source="test")
    return caused_by(root, "event", type_, PAYLOADS[type_], source="test", now=parse_timestamp(root.timestamp))


def outcome(decode: Any, raw: bytes) -> tuple[str, ...] | None:
    """The fields the fold reads, or None when the message is rejected."""
    try:
        decoded = decode(raw)
    except InvalidMessageError:
        return None
    return tuple(orjson.dumps(getattr(decoded, name)).decode() for name in FIELDS)


def test_every_history_subject_takes_the_fast_path() -> None:
    assert {f"{kind}.{type_}" for kind, type_, _ in DECODER.checks} == RELEVANT_SUBJECTS
    for type_ in PAYLOADS:
        raw = CODEC.encode(event(type_))
        decoded = DECODER.decode(raw)
        assert not isinstance(decoded, Envelope)  # the msgspec record, not the codec's fallback
        assert outcome(DECODER.decode, raw) == outcome(CODEC.decode, raw)


def test_a_fold_of_fast_records_equals_the_fold_of_envelopes() -> None:
    events = [event("UserQueryReceived", turn="t1"), event("FinalAnswerSynthesized", turn="t1"),
              event("UserHistoryReset", turn="r1"), event("UserQueryReceived", turn="t2")]
    raws = [CODEC.encode(e) for e in events]
    fast, exact = fold(DECODER.decode(r) for r in raws), fold(CODEC.decode(r) for r in raws)
    assert {c: x.messages() for c, x in fast.conversations.items()} == \
        {c: x.messages() for c, x in exact.conversations.items()} == \
        {"conv-1": [{"role": "user", "content": "What is 2+2?"}]}


@pytest.mark.parametrize("change", [
    {"id": "a5b2b45f-a56a-5956-853d-b6899e2ec13d\n"},  # `$` must not match before a final newline
    {"schemaVersion": True}, {"schemaVersion": 1.0}, {"schemaVersion": 2},
    {"kind": "command"}, {"timestamp": "2026-01-01T00:00:00.000Z\n"}, {"timestamp": "٢٠٢٦-01-01T00:00:00Z"},
    {"conversationId": ""}, {"userId": "u" * 129}, {"source": None}, {"extra": 1}, {"payload": []},
    {"payload": {"userInput": "q", "language": "fr"}}, {"payload": {"message": "", "outcome": "completed",
                                                                     "synthesizer": "x"}},
])
def test_edge_cases_are_decided_as_the_codec_decides(change: dict[str, Any]) -> None:
    for type_ in ("UserQueryReceived", "FinalAnswerSynthesized"):
        raw = orjson.dumps({**event(type_).to_json(), **change})
        assert outcome(DECODER.decode, raw) == outcome(CODEC.decode, raw)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=140) | st.sampled_from(["event", "command", "en", "completed", "1", "\n", "t1\n"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(type_=st.sampled_from(sorted(PAYLOADS)), in_payload=st.booleans(), key=st.text(min_size=1, max_size=16),
       known=st.integers(min_value=0, max_value=20), value=JSON_VALUES, drop=st.booleans(), escape=st.booleans())
def test_any_single_change_is_decided_as_the_codec_decides(
        type_: str, in_payload: bool, key: str, known: int, value: Any, drop: bool, escape: bool) -> None:
    data = event(type_).to_json()
    target = data["payload"] if in_payload else data
    keys = sorted(target)
    name = keys[known] if known < len(keys) else key  # mostly a known field, sometimes a new one
    if drop:
        target.pop(name, None)
    else:
        target[name] = value
    # The standard library writes what orjson cannot: integers past 64 bits, Infinity, \u escapes.
    raw = json.dumps(data, ensure_ascii=escape).encode(errors="surrogatepass")
    assert outcome(DECODER.decode, raw) == outcome(CODEC.decode, raw)


def test_a_batch_skips_and_counts_invalid_messages_and_still_moves_past_them() -> None:
    good = [event("UserQueryReceived", turn="t1"), event("FinalAnswerSynthesized", turn="t1")]
    header = [(SUBJECT_HEADER, b"event.UserQueryReceived")]
    bad_payload = {**event("UserQueryReceived", turn="t2").to_json(), "payload": {"userInput": 42}}
    values = [CODEC.encode(good[0]), orjson.dumps(bad_payload), b"not json", None, CODEC.encode(good[1])]
    messages = [Message(topic="ce", partition=3, offset=10 + n, value=v, headers=header) for n, v in enumerate(values)]
    skipped = Message(topic="ce", partition=3, offset=15, value=b"never read",
                      headers=[(SUBJECT_HEADER, b"event.PlanGenerated")])
    batch = decode_batch(DECODER, [*messages, skipped])
    assert batch.invalid == 3
    assert batch.offsets == {("ce", 3): 16}
    assert [(e.type, e.turn_id) for e in batch.events] == [("UserQueryReceived", "t1"), ("FinalAnswerSynthesized", "t1")]


def test_a_schema_the_fast_check_cannot_translate_leaves_its_subject_to_the_codec() -> None:
    schemas = packaged_schemas()
    key = ("event.UserQueryReceived", 1)
    schemas[key] = {**schemas[key], "minProperties": 12}  # a keyword the msgspec type does not carry
    codec = Codec(schemas)
    decoder = HistoryDecoder(codec, RELEVANT_SUBJECTS)
    assert ("event", "UserQueryReceived", 1) not in decoder.checks
    assert ("event", "FinalAnswerSynthesized", 1) in decoder.checks
    raw = codec.encode(event("UserQueryReceived"))
    assert isinstance(decoder.decode(raw), Envelope)
    assert outcome(decoder.decode, raw) == outcome(codec.decode, raw) is not None
