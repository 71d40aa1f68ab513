"""Conversation memory against the real broker: earlier turns answer "what did I ask before?", the
window is bounded, a reset empties it, replay shows it, and a killed router (even one whose local
state is gone) rebuilds it from the log."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

from agentlog.events.envelope import Envelope
from agentlog.kafka.topics import CONVERSATION_EVENTS
from helpers import Stack, group_caught_up, wait_for

RECALL = "What did I ask you before?"


def ask(stack: Stack, text: str, conversation_id: str) -> tuple[Envelope, str, list[dict[str, Any]]]:
    """Ask, then wait until the router has read the answer back: the next question is planned with it
    (a question sent before that is planned without it, by design)."""
    sent, events = stack.ask(text, conversation_id)
    answer = next(e for e in events if e.type == "FinalAnswerSynthesized").payload["message"]
    plan = next(e for e in events if e.type == "PlanGenerated")
    wait_for(lambda: group_caught_up(stack.settings, "router", CONVERSATION_EVENTS), what="the router to read the answer")
    return sent, answer, plan.payload["memory"]


def test_earlier_turns_answer_recall_questions_within_the_window_until_a_reset(agentlog_env: dict[str, str]) -> None:
    with Stack({**agentlog_env, "AGENTLOG_MEMORY_TURNS": "2"}) as stack:
        stack.start()
        conversation = "conv-memory"
        first, _, memory = ask(stack, "What is 6*7?", conversation)
        assert memory == []
        second, _, _ = ask(stack, "What is 12.5% of 240?", conversation)
        third, _, memory = ask(stack, "What is 100-1?", conversation)
        assert [m["turnId"] for m in memory] == [first.turn_id, second.turn_id]
        recall, answer, memory = ask(stack, RECALL, conversation)
        assert [m["turnId"] for m in memory] == [second.turn_id, third.turn_id]  # two turns: the oldest is gone
        assert answer.startswith('Your previous question was: "What is 100-1?". My answer was: 100-1 = 99')
        assert 'Before that you asked, oldest first: "What is 12.5% of 240?".' in answer and "6*7" not in answer
        _, hebrew, _ = ask(stack, "מה שאלתי קודם?", conversation)
        assert hebrew.startswith(f'השאלה הקודמת שלך הייתה: "{RECALL}"')

        stack.client.reset(conversation, "tester")  # the question right behind it is planned without memory
        _, after_reset, memory = ask(stack, "What was my previous question?", conversation)
        assert memory == [] and after_reset == "You have not asked me anything earlier in this conversation."

        shown = subprocess.run([sys.executable, "-m", "agentlog", "replay", conversation, "--verify"],
                               env={**stack.env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        memory_part = shown.stdout.split("memory given to each turn")[1]
        assert f"turn {recall.turn_id[:8]}: 2 earlier turn(s)" in memory_part
        assert f"{third.turn_id[:8]}  Q: What is 100-1?  A: 100-1 = 99" in memory_part
        assert f"turn {first.turn_id[:8]}: no earlier turns" in memory_part and "verified: " in shown.stdout


def test_a_killed_router_rebuilds_the_memory_from_its_store_or_from_the_log(stack: Stack) -> None:
    conversation = "conv-memory-crash"
    first, _, _ = ask(stack, "What is 6*7?", conversation)
    second, _, _ = ask(stack, "What is 2+3 and what is 10*4?", conversation)
    stack.restart("router")
    recall, answer, memory = ask(stack, RECALL, conversation)
    assert [m["turnId"] for m in memory] == [first.turn_id, second.turn_id]
    assert 'Your previous question was: "What is 2+3 and what is 10*4?"' in answer

    stack.kill("router")
    shutil.rmtree(stack.settings.state_dir / "router-0")  # no local state: replay the log up to the commit
    stack.start("router")
    _, _, memory = ask(stack, RECALL, conversation)
    assert [m["turnId"] for m in memory] == [first.turn_id, second.turn_id, recall.turn_id]
    assert "events from the start to" in stack.log("router")  # the fold was rebuilt from the log
