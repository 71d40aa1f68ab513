"""A duplicated command or event is harmless: readers drop it by id or by state."""

from __future__ import annotations

from confluent_kafka import Producer

from agentlog.kafka.client import producer_config
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS, TOOL_INVOCATION_REQUESTS
from helpers import Stack, group_caught_up, tool_counts, wait_for

PLAN = {"steps": [{"id": "a", "tool": "recordEffect", "arguments": {"label": "dup"}, "dependsOn": []}],
        "finalAnswerSynthesisRequired": True}


def resend(stack: Stack, topic: str, predicate: object) -> int:
    """Produce again, byte for byte, every message of `topic` whose decoded envelope matches."""
    producer = Producer(producer_config(stack.settings, "test-duplicator"))
    count = 0
    for message in read_range(stack.settings, stack.settings.topic(topic)):
        envelope = stack.codec.decode(message.value())
        if predicate(envelope):  # type: ignore[operator]
            producer.produce(message.topic(), key=message.key(), value=message.value())
            count += 1
    producer.flush(10)
    return count


def test_a_duplicated_tool_command_is_answered_from_the_record_without_running_again(stack: Stack) -> None:
    sent, _ = stack.ask("dup", "conv-dup-cmd", plan=PLAN)
    assert len(tool_counts(stack.env)[0]) == 1
    assert resend(stack, TOOL_INVOCATION_REQUESTS, lambda e: e.turn_id == sent.turn_id) == 1
    # The worker answers the copy with the recorded result: the same event id appears twice in the log.
    results = wait_for(lambda: (r := [e for e in stack.conversation_log("conv-dup-cmd")
                                      if e.type == "ToolInvocationResulted"]) and len(r) == 2 and r,
                       what="the re-emitted result")
    assert results[0].id == results[1].id
    wait_for(lambda: group_caught_up(stack.settings, "orchestrator", CONVERSATION_EVENTS) and
             group_caught_up(stack.settings, "aggregator", CONVERSATION_EVENTS), what="readers to catch up")
    starts, effects = tool_counts(stack.env)
    assert len(starts) == 1 and list(effects.values()) == [1]
    types = [e.type for e in stack.conversation_log("conv-dup-cmd")]
    assert types.count("FinalAnswerSynthesized") == 1 and types.count("PlanStepCompleted") == 1


def test_duplicated_events_change_nothing(stack: Stack) -> None:
    sent, _ = stack.ask("dup", "conv-dup-evt", plan=PLAN)
    copied = resend(stack, CONVERSATION_EVENTS, lambda e: e.turn_id == sent.turn_id and e.type in (
        "PlanGenerated", "ToolInvocationResulted", "PlanCompleted"))
    assert copied == 3
    wait_for(lambda: len(stack.conversation_log("conv-dup-evt")) >= 10, what="the copies to land")
    wait_for(lambda: group_caught_up(stack.settings, "orchestrator", CONVERSATION_EVENTS) and
             group_caught_up(stack.settings, "aggregator", CONVERSATION_EVENTS), what="readers to catch up")
    wait_for(lambda: group_caught_up(stack.settings, "synthesis", "synthesis-requests"), what="synthesis")
    types = [e.type for e in stack.conversation_log("conv-dup-evt")]
    assert types.count("ToolInvocationRequested") == 1
    assert types.count("FinalAnswerSynthesized") == 1
    assert len(tool_counts(stack.env)[0]) == 1
