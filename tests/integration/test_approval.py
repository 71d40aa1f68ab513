"""Human-in-the-loop approval against the real broker: a sendEmail step waits for a person,
durably across SIGKILLs of every service, and is approved (CLI), denied (client) or expires.
The outbox counts effects: one email when approved, none otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.events.envelope import Envelope
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.ops.replay import verify
from agentlog.tools.email import sent_emails
from helpers import ALL_SERVICES, Stack, group_caught_up, wait_for

EMAIL_PLAN = {
    "steps": [
        {"id": "total", "tool": "calculateMath", "arguments": {"expression": "12 * 4"}, "dependsOn": []},
        {"id": "mail", "tool": "sendEmail",
         "arguments": {"to": "dana@example.com", "subject": "Total", "body": "The total is {{total}}."},
         "dependsOn": ["total"]},
    ],
    "finalAnswerSynthesisRequired": True,
}


def make_stack(env: dict[str, str], approval_timeout_s: float) -> Iterator[Stack]:
    with Stack({**env, "AGENTLOG_APPROVAL_TIMEOUT_S": str(approval_timeout_s)}) as stack:
        stack.start()
        yield stack


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    yield from make_stack(agentlog_env, 300)


def outbox(stack: Stack) -> list[dict[str, object]]:
    return sent_emails(Path(stack.env["AGENTLOG_VAR_DIR"]) / "outbox" / "email.sqlite")


def turn_events(stack: Stack, sent: Envelope) -> list[Envelope]:
    return [e for e in stack.conversation_log(sent.conversation_id) if e.turn_id == sent.turn_id]


def wait_for_event(stack: Stack, sent: Envelope, type_: str, timeout: float = 120) -> Envelope:
    def found() -> Envelope | None:
        return next((e for e in turn_events(stack, sent) if e.type == type_), None)

    try:
        return wait_for(found, timeout=timeout, what=f"{type_} in turn {sent.turn_id}")
    except AssertionError:
        stack.assert_alive()
        raise


def agentlog(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentlog", *args], env={**stack.env, "COLUMNS": "240"},
                          capture_output=True, text=True, timeout=120)


def answer_of(stack: Stack, sent: Envelope) -> Envelope:
    return wait_for_event(stack, sent, "FinalAnswerSynthesized", timeout=180)


@pytest.mark.crash
def test_approval_waits_across_sigkills_of_every_service_then_sends_once(stack: Stack) -> None:
    sent = stack.client.question("conv-approve", "tester", "email the total", plan=EMAIL_PLAN)
    requested = wait_for_event(stack, sent, "ApprovalRequested")
    assert requested.payload["arguments"]["body"] == "The total is 48."
    for service in ALL_SERVICES:  # the wait is state in the log, not in any process
        stack.restart(service)
    done = agentlog(stack, "approve", sent.turn_id, "--conversation", sent.conversation_id, "--user", "dana",
                    "--reason", "ok to send", "--wait", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "approved by dana" in done.stdout
    answer = answer_of(stack, sent)
    assert answer.payload["outcome"] == "completed", answer.payload
    assert "dana@example.com" in answer.payload["message"]
    emails = outbox(stack)
    assert [(e["to"], e["body"]) for e in emails] == [("dana@example.com", "The total is 48.")]
    events = turn_events(stack, sent)
    decided = [e for e in events if e.type == "ApprovalDecided"]
    assert [(d.payload["decision"], d.payload["decidedBy"]) for d in decided] == [("approved", "dana")]
    assert verify(events) == []
    replay = agentlog(stack, "replay", sent.conversation_id, "--verify")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "mail approved by dana: ok to send" in replay.stdout
    assert "sendEmail mail waits for approval until" in replay.stdout


def test_deny_fails_the_step_and_ask_shows_the_request_and_the_answer(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text(json.dumps(EMAIL_PLAN))
    ask = subprocess.Popen([sys.executable, "-m", "agentlog", "ask", "email the total", "--conversation", "conv-deny",
                            "--plan", str(tmp_path / "plan.json"), "--timeout", "120"],
                           env={**stack.env, "COLUMNS": "240"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        requested = wait_for(lambda: next((e for e in stack.conversation_log("conv-deny")
                                           if e.type == "ApprovalRequested"), None), timeout=90,
                             what="the approval request")
        stack.client.control("conv-deny", "boss", "deny", turn_id=requested.turn_id, reason="not today")
        printed, errors = ask.communicate(timeout=120)
    finally:
        ask.kill()
    assert ask.returncode == 0, printed + errors
    assert f"sendEmail needs approval: agentlog approve|deny|cancel {requested.turn_id} --conversation conv-deny" \
        in " ".join(printed.split())
    answer = next(e for e in turn_events(stack, requested) if e.type == "FinalAnswerSynthesized")
    assert answer.payload["outcome"] == "failed"
    assert "approval was denied by boss: not today" in answer.payload["message"]
    assert "12 * 4 = 48" in answer.payload["message"]  # what did run is still reported
    assert answer.payload["message"].splitlines()[-1] in " ".join(printed.split())
    assert outbox(stack) == []
    assert not any(e.type == "ToolInvocationRequested" and e.payload["tool"] == "sendEmail"
                   for e in turn_events(stack, requested))


@pytest.fixture
def short_stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    yield from make_stack(agentlog_env, 5)


def test_an_unanswered_request_expires_and_a_late_approve_is_recorded_and_ignored(short_stack: Stack) -> None:
    stack = short_stack
    sent = stack.client.question("conv-expire", "tester", "Send an email to dana@example.com saying hello")
    wait_for_event(stack, sent, "ApprovalRequested")
    stack.restart("orchestrator")  # the deadline is state: a restarted orchestrator re-arms its timer
    answer = answer_of(stack, sent)
    assert "I did not run step s1 (sendEmail): nobody approved it before" in answer.payload["message"]
    assert answer.payload["outcome"] == "failed"
    assert "nobody approved it before" in answer.payload["message"]
    decided = [e for e in turn_events(stack, sent) if e.type == "ApprovalDecided"]
    assert [(d.payload["decision"], d.payload["decidedBy"]) for d in decided] == [("expired", "deadline")]
    stack.client.control(sent.conversation_id, "dana", "approve", turn_id=sent.turn_id)
    wait_for_event(stack, sent, "UserControlReceived")
    wait_for(lambda: group_caught_up(stack.settings, "orchestrator", CONVERSATION_EVENTS),
             what="the orchestrator to read the late approve")
    assert [e.type for e in turn_events(stack, sent)].count("ApprovalDecided") == 1
    assert outbox(stack) == []
    assert "ignored approve of turn" in stack.log("orchestrator")
