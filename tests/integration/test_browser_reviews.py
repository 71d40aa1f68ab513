"""The reviews page in a real headless Chromium (Debian's /usr/bin/chromium through Playwright),
served by the gateway with the services running: the four products with their star ratings, one
product's reviews, and a summary produced by the agent. Screenshots go to test-artifacts/."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_server import CHROMIUM, GatewayServer, chromium_page
from helpers import Stack

pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 60_000
SUMMARY_TIMEOUT_MS = 120_000  # the agent analyses six reviews on a busy machine
PRODUCTS = ["PrintForge Mini", "BrewMaster 360", "EvoPhone X", "VoltRider E2"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/install-system-deps.sh)")


@pytest.fixture
def gateway(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayServer]:
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the sample catalogue in this test's var/
    monkeypatch.setenv("AGENTLOG_REVIEW_SUMMARY_TIMEOUT_S", "90")  # the agent, not the offline fallback
    with GatewayServer(stack.settings) as server:
        yield server


def test_the_reviews_page_lists_products_shows_reviews_and_an_agent_summary(gateway: GatewayServer) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(viewport={"width": 1440, "height": 900}) as page:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{gateway.url}/reviews.html")

        page.wait_for_function("document.querySelectorAll('#products li').length === 4")
        assert page.eval_on_selector_all("#products li .title", "items => items.map(i => i.textContent)") == PRODUCTS
        ratings = page.eval_on_selector_all("#products li .stars", "items => items.map(i => i.title)")
        assert len(ratings) == 4 and all(r.endswith(" of 5") and 1 <= float(r.split()[0]) <= 5 for r in ratings)
        lit = page.eval_on_selector_all("#products li .stars", "items => items.map(i => i.firstChild.textContent)")
        assert [len(stars) for stars in lit] == [math.floor(float(r.split()[0]) + 0.5) for r in ratings]

        page.locator("#products li", has_text="EvoPhone X").click()
        page.wait_for_function("document.getElementById('product-name').textContent === 'EvoPhone X'")
        assert page.text_content("#products li.current .title") == "EvoPhone X"
        page.wait_for_function("document.querySelectorAll('#reviews .review').length === 6")
        assert page.text_content("#reviews-title") == "Reviews (6)"
        assert page.inner_text("#product-price").startswith("USD ")
        assert "הסוללה" in page.inner_text("#reviews"), "the Hebrew reviews are shown"
        assert page.inner_text("#summary-text") == "No summary for the current reviews yet."

        page.click("#summarize")
        page.wait_for_selector("#summarize[disabled]")
        page.wait_for_selector("#summary-meta .source", timeout=SUMMARY_TIMEOUT_MS)
        assert page.get_attribute("#summary-meta .source", "class") == "source agent", \
            f"the offline fallback answered: {page.inner_text('#summary')}"
        assert page.inner_text("#summary-meta .source") == "by the agent"
        assert page.inner_text("#summary-text").startswith("6 review(s) of EvoPhone X analysed")
        page.wait_for_selector("#summarize:not([disabled])")
        page.screenshot(path=str(ARTIFACTS / "reviews-page.png"))

        page.click("#summarize")  # the reviews did not change: the cached summary comes back
        page.wait_for_function("document.getElementById('summary-meta').textContent.includes('from the cache')")

        page.set_viewport_size({"width": 390, "height": 844})
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=str(ARTIFACTS / "reviews-page-narrow.png"), full_page=True)
