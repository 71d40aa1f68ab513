"""The gateway's metrics panel: the shape the page lists, and where the metrics service is looked for."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agentlog.services.metrics.compute import MetricsFold
from agentlog.web.metrics import MetricsUnavailable, fetch_snapshot, metrics_url_from_env, panel_of


def test_the_panel_is_a_flat_object_of_numbers_from_the_snapshot() -> None:
    snapshot = MetricsFold().snapshot()
    snapshot.update({"conversations": 3, "answers": {"completed": 4, "failed": 1, "unknown": 1}, "events": 40,
                     "latencySeconds": {"end_to_end": {"count": 5, "p50": 0.2, "p95": 0.9}},
                     "lag": {"byGroup": {"router": 2, "synthesis": 1}, "partitions": []}})
    panel = panel_of(snapshot)
    assert panel == {"conversations": 3, "turnsCompleted": 4, "turnsFailed": 2, "turnsInFlight": 0, "events": 40,
                     "duplicates": 0, "eventsPerSecond": 0.0, "turnP50Seconds": 0.2, "turnP95Seconds": 0.9,
                     "consumerLag": 3}
    assert len(panel) <= 12, "the page lists at most 12 rows"


def test_an_empty_or_partial_snapshot_gives_zeros() -> None:
    assert set(panel_of({}).values()) == {0}


def test_the_url_comes_from_the_environment() -> None:
    assert metrics_url_from_env({}) == "http://127.0.0.1:9464/metrics.json"
    assert metrics_url_from_env({"AGENTLOG_METRICS_PORT": "9999"}) == "http://127.0.0.1:9999/metrics.json"
    assert metrics_url_from_env({"AGENTLOG_METRICS_URL": "http://m:1/x.json", "AGENTLOG_METRICS_PORT": "9"}) == \
        "http://m:1/x.json"


def test_an_unreachable_service_is_not_running() -> None:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/metrics.json"
        with pytest.raises(MetricsUnavailable) as raised:
            asyncio.run(fetch_snapshot(url, timeout=2))
    assert raised.value.not_running
