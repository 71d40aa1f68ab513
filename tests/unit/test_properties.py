"""Property-based tests (hypothesis) of what hostile input reaches first: the envelope codec and the
schemas, plan normalisation and checking, the math evaluator and log redaction. Each property says
"whatever arrives, the answer is a valid value or the one documented error", never a crash."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.errors import InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope, command
from agentlog.events.plan import Plan, PlanError, normalize_seed_plan, referenced_steps, validate_plan
from agentlog.events.schemas import packaged_schemas
from agentlog.llm.planner import check_tools, parse_plan, plan_schema
from agentlog.observability import JsonFormatter, RedactingFormatter, redact, secret_values
from agentlog.services.runtime import load_tools
from agentlog.tools.math import evaluate
from agentlog.tools.registry import ToolError

CODEC = Codec()
CATALOGUE = {str(e["name"]): dict(e["parameters"]) for e in load_tools().catalogue()}
PLAN_SCHEMA = plan_schema(sorted(CATALOGUE))
SUBJECTS = sorted(f"{s}" for s, _ in packaged_schemas())
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)
ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)


def _valid_command(conversation_id: str, user_id: str, text: str) -> Envelope:
    return command("UserQueryReceived", conversation_id=conversation_id, turn_id=conversation_id + "-t",
                   user_id=user_id, payload={"userInput": text}, source="test")


# -- envelope and schemas ------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_decode_to_an_envelope_or_an_invalid_message_error(raw: bytes) -> None:
    try:
        envelope = CODEC.decode(raw)
    except InvalidMessageError as error:
        assert str(error)  # the reason the dead letter will carry
    else:
        assert CODEC.decode(CODEC.encode(envelope)) == envelope


@FAST
@given(ids, st.text(min_size=1, max_size=128).filter(str.strip), st.text(min_size=1, max_size=4000))
def test_valid_commands_round_trip(conversation_id: str, user_id: str, text: str) -> None:
    envelope = _valid_command(conversation_id, user_id, text)
    assert CODEC.decode(CODEC.encode(envelope)) == envelope


@FAST
@given(st.sampled_from(SUBJECTS), st.sampled_from(["id", "kind", "type", "schemaVersion", "conversationId",
                                                   "turnId", "userId", "timestamp", "causationId", "source",
                                                   "payload", "extra"]), json_values)
def test_hostile_field_values_are_refused_with_a_reason_never_a_crash(subject: str, field: str, value: Any) -> None:
    """Any field of a well-formed message of any subject replaced by any JSON value."""
    kind, _, type_ = subject.partition(".")
    data = _valid_command("c1", "u1", "hi").to_json() | {"kind": kind, "type": type_}
    data[field] = value
    raw = json.dumps(data).encode()  # the standard library writes integers of any size; orjson cannot
    try:
        decoded = CODEC.decode(raw)
    except InvalidMessageError as error:
        assert str(error)
    else:
        assert decoded.to_json() == orjson.loads(raw)


@FAST
@given(json_values)
def test_every_schema_judges_any_payload_without_crashing(payload: Any) -> None:
    for subject in SUBJECTS:
        kind, _, type_ = subject.partition(".")
        data = _valid_command("c1", "u1", "hi").to_json() | {"kind": kind, "type": type_, "payload": payload}
        with contextlib.suppress(InvalidMessageError):
            CODEC.decode(json.dumps(data).encode())


# -- plans ---------------------------------------------------------------------------------------

seed_items = st.lists(st.fixed_dictionaries({}, optional={
    "tool": st.sampled_from(sorted(CATALOGUE)) | st.text(max_size=10) | json_scalars,
    "parameters": st.dictionaries(st.text(max_size=10), json_values | st.from_regex(
        r"<result_from_tool_[0-9]{1,2}>", fullmatch=True), max_size=3) | json_values}), max_size=20)
seed_plans = st.fixed_dictionaries({"plan": seed_items | json_values},
                                   optional={"final_answer_synthesis_required": json_values})


def _assert_sound(plan: Plan) -> None:
    """What the orchestrator relies on: a valid plan, references covered by dependencies."""
    validate_plan(plan)
    for step in plan.steps:
        assert referenced_steps(dict(step.arguments)) <= set(step.depends_on)


@FAST
@given(seed_plans)
def test_seed_plan_normalisation_yields_a_sound_plan_or_a_plan_error(raw: dict[str, Any]) -> None:
    try:
        plan = normalize_seed_plan(raw)
    except PlanError:
        return
    _assert_sound(plan)
    assert [s.id for s in plan.steps] == [f"s{i}" for i in range(1, len(plan.steps) + 1)]
    assert Plan.from_json(plan.to_json()) == plan


@FAST
@given(seed_plans | st.fixed_dictionaries({"steps": st.lists(st.fixed_dictionaries({
    "id": st.sampled_from(["s1", "s2", "s3"]) | st.text(max_size=5), "tool": st.sampled_from(sorted(CATALOGUE)),
    "arguments": st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    "dependsOn": st.lists(st.sampled_from(["s1", "s2"]), max_size=2, unique=True)}), max_size=4),
    "finalAnswerSynthesisRequired": st.booleans()}), st.sampled_from(["", "Sure! ", "```json\n"]))
def test_a_model_reply_becomes_a_catalogue_plan_or_a_plan_error(raw: dict[str, Any], prose: str) -> None:
    """Whatever the model writes, an accepted plan only calls catalogue tools with schema-valid arguments."""
    try:
        plan = parse_plan(prose + json.dumps(raw), CATALOGUE, PLAN_SCHEMA)
    except PlanError:
        return
    _assert_sound(plan)
    check_tools(plan, CATALOGUE)
    assert all(step.tool in CATALOGUE for step in plan.steps)


# -- the math evaluator and redaction ------------------------------------------------------------


@FAST
@given(st.lists(st.sampled_from([*"0123456789.,+-*/^%()e ×÷−", "**", "sqrt(", "round(", "of ", "99"]),
                max_size=80).map("".join) | st.text(max_size=200))
def test_any_text_evaluates_to_a_bounded_number_or_a_math_error(expression: str) -> None:
    try:
        value = evaluate(expression)
    except ToolError as error:
        assert error.error_type == "MathError" and error.message
    else:
        assert value.is_finite() and abs(value) <= Decimal("1e100")


@FAST
@given(st.text(min_size=6, max_size=40).filter(lambda s: s.strip() == s), st.text(max_size=40),
       st.text(max_size=40))
def test_a_secret_never_survives_into_a_log_line(secret: str, before: str, after: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(JsonFormatter("test"), secret_values({"X_API_KEY": secret})))
    logger = logging.getLogger("agentlog.test.redaction")
    logger.addHandler(handler)
    try:
        logger.error("%s%s%s", before, secret, after)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    # Valid JSON, and no secret in what it says; the escaped line itself may show the secret's characters
    # only by accident of escaping (a NUL written \u0000 before "00...").
    assert secret not in orjson.loads(line)["msg"]
    assert redact(before + secret + after, [secret]).count(secret) == 0


@given(st.lists(st.one_of(st.text(), st.integers()), max_size=6))
def test_derived_ids_are_the_uuid5_of_the_joined_parts(parts: list[object]) -> None:
    """derive_id writes uuid5 out by hand for speed: ids already in logs must not change."""
    import uuid

    from agentlog.events.envelope import ID_NAMESPACE, derive_id

    assert derive_id(*parts) == str(uuid.uuid5(ID_NAMESPACE, "/".join(str(p) for p in parts)))
