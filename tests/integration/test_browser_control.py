"""Running turns on the page in a real headless Chromium: the answer shows as the model writes it and
is replaced by the recorded one; an approval card's Approve / Deny buttons and the Cancel button
decide what a tool that needs approval does (counted in the email outbox)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentlog.tools.email import sent_emails
from gateway_server import CHROMIUM, GatewayServer, chromium_page
from helpers import Stack
from stream_fakes import StreamingServer, start_with_model_synthesis

pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 60_000
PIECES = ["Both sums ", "are done: ", "2+3 = 5 ", "and 10*4 = 40."]
EMAIL = "Send an email to ana@example.com saying the build is green"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/install-system-deps.sh)")


def outbox(stack: Stack) -> list[dict[str, Any]]:
    return sent_emails(Path(stack.env["AGENTLOG_VAR_DIR"]) / "outbox" / "email.sqlite")


def ask(page: Any, gateway: GatewayServer, prompt: str) -> None:
    page.goto(gateway.url)
    page.wait_for_function("document.getElementById('conversation-id').textContent.startsWith('web-')")
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")


@pytest.fixture
def streaming_gateway(agentlog_env: dict[str, str]) -> Iterator[tuple[GatewayServer, threading.Event]]:
    """Offline services, except synthesis, which streams from a fake OpenAI-compatible model that
    writes its first piece and then waits for the test to open the gate."""
    gate = threading.Event()
    with StreamingServer("openai", PIECES, gate=gate) as model, Stack(agentlog_env) as stack:
        start_with_model_synthesis(stack, model.url)
        with GatewayServer(stack.settings, chat_timeout=90) as gateway:
            try:
                yield gateway, gate
            finally:
                gate.set()


def test_the_page_shows_the_answer_as_it_is_written_then_the_recorded_one(
        streaming_gateway: tuple[GatewayServer, threading.Event]) -> None:
    gateway, gate = streaming_gateway
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(viewport={"width": 1440, "height": 900}) as page:
        page.set_default_timeout(TIMEOUT_MS)
        ask(page, gateway, "What is 2+3 and what is 10*4?")
        streaming = page.wait_for_selector(".message.streaming")
        page.wait_for_function("document.querySelector('.message.streaming').textContent === 'Both sums '")
        assert page.locator(".message.assistant").count() == 0, "the model is still writing: no answer yet"
        assert page.is_visible("#cancel-turn"), "a running turn can be cancelled"
        page.screenshot(path=str(ARTIFACTS / "gateway-streaming.png"))

        gate.set()
        answer = page.wait_for_selector(".message.assistant")
        assert answer.inner_text() == "".join(PIECES)
        page.wait_for_selector(".message.streaming", state="detached")
        assert not streaming.is_visible()
        page.wait_for_selector(".event[data-type='FinalAnswerSynthesized']")
        page.wait_for_selector("#cancel-turn", state="hidden")


@pytest.fixture
def gateway(stack: Stack) -> Iterator[GatewayServer]:
    with GatewayServer(stack.settings, chat_timeout=2) as server:
        yield server


def test_approve_on_the_page_sends_the_email_once(stack: Stack, gateway: GatewayServer) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(viewport={"width": 1440, "height": 900}) as page:
        page.set_default_timeout(TIMEOUT_MS)
        ask(page, gateway, EMAIL)
        card = page.wait_for_selector(".approval-card .approve")
        text = page.inner_text(".approval-card")
        assert "sendEmail" in text and "ana@example.com" in text
        assert outbox(stack) == [], "nothing is sent before a person approves"
        page.screenshot(path=str(ARTIFACTS / "gateway-approval.png"))

        card.click()
        page.wait_for_selector(".approval-card[data-decision='approved']")
        answer = page.wait_for_selector(".message.assistant")
        assert "ana@example.com" in answer.inner_text()
        page.wait_for_selector(".event[data-type='ApprovalDecided']")
    assert [m["to"] for m in outbox(stack)] == ["ana@example.com"]


def test_deny_and_cancel_on_the_page_send_nothing(stack: Stack, gateway: GatewayServer) -> None:
    with chromium_page(viewport={"width": 1440, "height": 900}) as page:
        page.set_default_timeout(TIMEOUT_MS)
        ask(page, gateway, EMAIL)
        page.click(".approval-card .deny")
        page.wait_for_selector(".approval-card[data-decision='denied']")
        page.wait_for_selector(".message.assistant")
        page.wait_for_selector("#cancel-turn", state="hidden")

        page.fill("#prompt", EMAIL)
        page.press("#prompt", "Enter")
        page.wait_for_selector(".approval-card:not([data-decision]) .approve")
        page.click("#cancel-turn")
        page.wait_for_selector(".event[data-type='TurnCancelled']")
        page.wait_for_selector(".note:has-text('turn cancelled')")
        page.wait_for_function("document.querySelectorAll('.message.assistant').length === 2")
        assert "cancel" in page.locator(".message.assistant").last.inner_text().lower()
    assert outbox(stack) == []
