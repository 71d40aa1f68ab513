"""Replay (time travel, verification) and dead-letter redrive against the real broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from agentlog.events.envelope import command
from agentlog.kafka.client import producer_config
from agentlog.kafka.dlq import read_dead_letters
from agentlog.kafka.topics import USER_COMMANDS
from agentlog.ops.redrive import RedriveError, redrive
from agentlog.ops.replay import conversation_events, verify
from helpers import Stack, wait_for


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentlog", *args], env={**stack.env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=60)


def test_replay_shows_the_history_reconstructs_state_at_an_event_and_verifies(stack: Stack) -> None:
    plan = {"steps": [{"id": "a", "tool": "recordEffect", "arguments": {"label": "a"}, "dependsOn": []},
                      {"id": "b", "tool": "recordEffect", "arguments": {"label": "{{a}}b"}, "dependsOn": ["a"]}],
            "finalAnswerSynthesisRequired": True}
    stack.ask("two steps", "conv-replay", plan=plan)
    events = conversation_events(stack.settings, stack.codec, "conv-replay")
    assert verify(events) == []
    first_request = [e.type for e in events].index("ToolInvocationRequested")
    done = cli(stack, "replay", "conv-replay", "--at", str(first_request), "--verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FinalAnswerSynthesized" in done.stdout and "verified: " in done.stdout
    state_lines = done.stdout.split("orchestrator state after event")[1]
    assert "a " in state_lines and "running" in state_lines and "pending" in state_lines
    missing = cli(stack, "replay", "no-such-conversation")
    assert missing.returncode == 1 and "has no events" in missing.stdout


def test_a_dead_letter_is_redriven_once_fixed_and_recorded_as_an_event(stack: Stack, tmp_path: Path) -> None:
    good = command("UserQueryReceived", conversation_id="conv-redrive", turn_id="turn-redrive", user_id="u",
                   payload={"userInput": "What is 20*2?"}, source="test").to_json()
    broken = orjson.dumps({**good, "payload": {"userInput": 42}})
    producer = Producer(producer_config(stack.settings, "test-raw"))
    producer.produce(stack.settings.topic(USER_COMMANDS), key=b"conv-redrive", value=broken)
    producer.flush(10)
    (letter,) = wait_for(lambda: list(read_dead_letters(stack.settings)), what="the dead letter")
    with pytest.raises(RedriveError, match="original message is invalid"):
        redrive(stack.settings, stack.codec, letter.offset)
    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(orjson.dumps(good))
    done = cli(stack, "dlq", "redrive", str(letter.offset), "--file", str(fixed))
    assert done.returncode == 0, done.stdout + done.stderr
    answer = wait_for(lambda: [e for e in conversation_events(stack.settings, stack.codec, "conv-redrive")
                               if e.type == "FinalAnswerSynthesized"], what="the redriven question's answer")
    assert "40" in answer[0].payload["message"]
    recorded = [e for e in conversation_events(stack.settings, stack.codec, "conv-redrive")
                if e.type == "DeadLetterRedriven"]
    assert len(recorded) == 1 and recorded[0].payload["fixed"] is True
    assert recorded[0].payload["dlqOffset"] == letter.offset
    assert verify(conversation_events(stack.settings, stack.codec, "conv-redrive")) == []
    with pytest.raises(RedriveError, match="already redriven"):
        redrive(stack.settings, stack.codec, letter.offset, fixed=orjson.dumps(good))
    shown = cli(stack, "dlq", "show", str(letter.offset))
    assert "violates its schema" in shown.stdout and "conv-redrive" in shown.stdout
