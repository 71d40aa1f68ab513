"""The history's fast decode decides exactly as the codec: same events accepted, same fields, same rejections."""

from __future__ import annotations

import copy
import functools
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


LLM = {"provider": "ollama", "model": "m", "latencyMs": 12.5, "promptTokens": 10, "completionTokens": None}
LLM_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                       st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["", "x", "1", 0, -0.0, 1.0]))


@pytest.mark.parametrize("llm", [
    LLM, {**LLM, "promptTokens": 0, "completionTokens": 2**63}, {**LLM, "latencyMs": 0}, {**LLM, "latencyMs": -0.0},
    {**LLM, "latencyMs": -1}, {**LLM, "latencyMs": True}, {**LLM, "latencyMs": "1"}, {**LLM, "promptTokens": 1.0},
    {**LLM, "promptTokens": -1}, {**LLM, "promptTokens": True}, {**LLM, "provider": ""}, {**LLM, "extra": 1},
    {k: v for k, v in LLM.items() if k != "model"}, None, [], "llm",
])
def test_a_nested_optional_payload_object_is_decided_as_the_codec_decides(llm: Any) -> None:
    data = event("FinalAnswerSynthesized").to_json()
    raw = orjson.dumps({**data, "payload": {**data["payload"], "llm": llm}})
    assert outcome(DECODER.decode, raw) == outcome(CODEC.decode, raw)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([*LLM, "other"]), LLM_VALUES, max_size=3),
       drop=st.sets(st.sampled_from(list(LLM))))
def test_any_change_to_the_nested_object_is_decided_as_the_codec_decides(changes: dict[str, Any], drop: set[str]) -> None:
    data = event("FinalAnswerSynthesized").to_json()
    llm = {k: v for k, v in {**LLM, **changes}.items() if k not in drop}
    raw = json.dumps({**data, "payload": {**data["payload"], "llm": llm}}).encode()
    assert outcome(DECODER.decode, raw) == outcome(CODEC.decode, raw)


def test_payloads_are_checked_by_their_struct_and_number_bounds_other_than_zero_are_left_to_the_codec() -> None:
    assert all(isinstance(check.payload, functools.partial) for check in DECODER.checks.values())
    schemas = copy.deepcopy(packaged_schemas())
    key = ("event.FinalAnswerSynthesized", 1)
    llm = schemas[key]["properties"]["payload"]["properties"]["llm"]
    llm["properties"]["latencyMs"] = {"type": "number", "minimum": 2**53}  # float rounding could pass 2**53 + 1
    codec = Codec(schemas)
    check = HistoryDecoder(codec, RELEVANT_SUBJECTS).checks[("event", "FinalAnswerSynthesized", 1)]
    assert not isinstance(check.payload, functools.partial)  # the payload's JSON-Schema validator
    data = event("FinalAnswerSynthesized").to_json()
    for latency in (2**53 + 1, 2**53 - 1):
        raw = orjson.dumps({**data, "payload": {**data["payload"], "llm": {**LLM, "latencyMs": latency}}})
        assert outcome(HistoryDecoder(codec, RELEVANT_SUBJECTS).decode, raw) == outcome(codec.decode, raw)
