"""GET /api/metrics: the gateway proxies the metrics service's numbers for the page's panel, and
answers 404 (the page then hides the panel) while that service is not running."""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

import httpx
import pytest

from agentlog.web.metrics import NOT_RUNNING
from gateway_server import CHROMIUM, GatewayServer, chromium_page
from helpers import Stack, wait_for

BROWSER = CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None
PANEL_KEYS = ["conversations", "turnsCompleted", "turnsFailed", "turnsInFlight", "events", "duplicates",
              "eventsPerSecond", "turnP50Seconds", "turnP95Seconds", "consumerLag"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_not_running(admin: httpx.Client, url: str) -> None:
    response = admin.get("/api/metrics")
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["error"] == NOT_RUNNING and body["details"]["url"] == url


def page_panel(gateway: GatewayServer, admin: httpx.Client) -> dict[str, str] | None:
    """The metrics panel of the page loaded now by an admin, name -> shown value; None when the page
    hides it (it does when /api/metrics is 404)."""
    with chromium_page(extra_http_headers={"authorization": admin.headers["authorization"]}) as page:
        page.set_default_timeout(30_000)
        with page.expect_response(lambda r: r.url.endswith("/api/metrics")) as fetched:
            page.goto(gateway.url)
        if fetched.value.status != 200:
            page.wait_for_selector("#metrics", state="hidden")
            return None
        page.wait_for_selector("#metrics:not([hidden]) dt")
        names = page.eval_on_selector_all("#metrics-list dt", "items => items.map(i => i.textContent)")
        values = page.eval_on_selector_all("#metrics-list dd", "items => items.map(i => i.textContent)")
        return dict(zip(names, values, strict=True))


def test_api_metrics_proxies_the_metrics_service_and_is_404_while_it_is_down(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics.json"
    monkeypatch.setenv("AGENTLOG_METRICS_URL", url)
    with GatewayServer(stack.settings, chat_timeout=90) as gateway:
        admin = gateway.key_client("ops", admin=True)
        assert gateway.client.get("/api/metrics").status_code == 403, "metrics are for admins"
        assert_not_running(admin, url)

        stack.start("metrics", extra_env={"AGENTLOG_METRICS_PORT": str(port)})
        wait_for(lambda: admin.get("/api/metrics").status_code == 200, timeout=60,
                 what="/api/metrics once the metrics service is up")
        answer = gateway.client.post("/api/chat", json={"prompt": "What is 2+3 and what is 10*4?",
                                                        "conversationId": "web-metrics-1"})
        assert answer.status_code == 200, answer.text

        def answered() -> dict[str, Any]:
            response = admin.get("/api/metrics")
            assert response.status_code == 200, response.text
            data: dict[str, Any] = response.json()
            return data if data["turnsCompleted"] == 1 else {}

        data = wait_for(answered, timeout=30, what="the answered turn in /api/metrics")
        assert list(data) == PANEL_KEYS, "a flat object of numbers, in the order the panel lists them"
        assert data["conversations"] == 1 and data["turnsFailed"] == 0 and data["duplicates"] == 0
        assert data["events"] >= 7, "question, plan, two tool calls and results, completion, answer"
        # an inline turn records question and answer in one transaction: 0 s apart in the log's clock
        assert 0 <= data["turnP50Seconds"] <= data["turnP95Seconds"] < 90
        assert all(isinstance(value, int | float) for value in data.values())
        if BROWSER:
            panel = page_panel(gateway, admin)
            assert panel is not None and list(panel) == PANEL_KEYS and panel["conversations"] == "1"

        stack.kill("metrics")
        assert_not_running(admin, url)
        if BROWSER:
            assert page_panel(gateway, admin) is None, "no metrics service: the page hides the panel"
        stack.assert_alive()
