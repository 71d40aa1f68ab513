"""The page in a real headless Chromium (Debian's /usr/bin/chromium through Playwright): ask, see the
answer and the timeline fill in, open an event's JSON; screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.web.keys import KeyStore
from gateway_server import CHROMIUM, GatewayServer, chromium_page
from helpers import Stack

pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/install-system-deps.sh)")


@pytest.fixture
def gateway(stack: Stack) -> Iterator[GatewayServer]:
    with GatewayServer(stack.settings) as server:
        yield server


def test_a_question_on_the_page_gets_its_answer_and_a_live_timeline(gateway: GatewayServer) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(viewport={"width": 1440, "height": 900}) as page:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(gateway.url)
        page.wait_for_function("document.getElementById('conversation-id').textContent.startsWith('web-')")
        conversation_id = page.text_content("#conversation-id")
        assert page.evaluate("localStorage.getItem('agentlog.conversationId')") == conversation_id
        session = next(c for c in page.context.cookies() if c["name"] == "agentlog_session")
        assert session["httpOnly"] and session["sameSite"] == "Lax", "the user is a cookie no script can read"
        assert "agentlog_session" not in page.evaluate("document.cookie")
        me = page.evaluate("fetch('/api/session').then(r => r.json())")
        assert me["userId"].startswith("user-") and not me["admin"]

        # The answer may come back within milliseconds (an inline turn): note that the typing indicator
        # was shown at all, rather than hoping to catch it on screen.
        page.evaluate("""() => { const typing = document.getElementById('typing'); window.typingShown = false;
            new MutationObserver(() => { if (!typing.hidden) window.typingShown = true; })
                .observe(typing, {attributes: true}); }""")
        page.fill("#prompt", "What is 2+3 and what is 10*4?")
        page.press("#prompt", "Enter")
        answer = page.wait_for_selector(".message.assistant")
        assert "= 5" in answer.inner_text() and "= 40" in answer.inner_text()
        assert page.evaluate("window.typingShown") is True, "the typing indicator was shown while waiting"
        page.wait_for_selector("#typing", state="hidden")
        page.wait_for_selector(".event[data-type='FinalAnswerSynthesized']")
        types = page.eval_on_selector_all(".event", "items => items.map(i => i.dataset.type)")
        assert types[0] == "UserQueryReceived" and types.count("ToolInvocationResulted") == 2

        page.click(".event[data-type='ToolInvocationResulted']")
        shown = page.wait_for_selector(".event.open pre.json")
        assert '"type": "ToolInvocationResulted"' in shown.inner_text()
        assert f'"conversationId": "{conversation_id}"' in shown.inner_text()

        page.wait_for_selector(f"#conversations li[data-id='{conversation_id}']")
        assert page.is_hidden("#metrics"), "no /api/metrics here: the panel stays hidden"
        page.screenshot(path=str(ARTIFACTS / "gateway-page.png"))

        page.reload()  # the ids live in localStorage: the conversation comes back with its history
        page.wait_for_selector(".message.assistant")
        assert page.text_content("#conversation-id") == conversation_id
        assert page.locator(".message.user").inner_text() == "What is 2+3 and what is 10*4?"

        page.click("#tab-dlq")
        refused = page.wait_for_selector("#dead-letters .empty")
        assert "admin API key" in refused.inner_text(), "dead letters are for admins: the page says so"
        _, admin_key = KeyStore.of(gateway.settings).create("ops", admin=True)
        page.fill("#admin-key", admin_key)
        page.click(".sign-in button")  # the key becomes a session cookie; the page does not keep it
        page.wait_for_function("document.getElementById('dead-letters').textContent.includes('is empty')")
        assert admin_key not in page.evaluate("JSON.stringify(localStorage) + document.cookie")
        assert KeyStore.of(gateway.settings).revoke(admin_key.split("_")[1])
        page.click("#dlq-refresh")  # a revoked key's session is a new anonymous user: the sign-in form is back
        page.wait_for_selector("#admin-key")
        page.set_viewport_size({"width": 390, "height": 844})
        page.emulate_media(color_scheme="dark")
        page.click("#tab-chat")
        page.screenshot(path=str(ARTIFACTS / "gateway-page-narrow.png"), full_page=True)
