"""One turn is one trace: each service's span is a child of the span that produced its input,
through the `traceparent` header of the Kafka message (in-process services, in-memory exporter)."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentlog.config import Settings
from agentlog.conversation import ConversationClient, EventWatcher, follow_turn
from agentlog.events.codec import Codec
from agentlog.kafka.topics import ensure_topics
from agentlog.observability import turn_trace_id, use_tracer_provider
from agentlog.services.runtime import build_loop
from helpers import wait_for

SERVICES = ("router", "orchestrator", "aggregator", "synthesis")


def test_a_turn_is_one_trace_across_services(agentlog_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in agentlog_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AGENTLOG_INLINE_TURNS", "0")  # every service takes part (else the router answers alone)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    settings = Settings.from_env(agentlog_env)
    ensure_topics(settings)
    loops = [build_loop(name, settings) for name in SERVICES]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        codec = Codec()
        watcher = EventWatcher(settings, codec)
        sent = ConversationClient(settings, codec, source="client").question("conv-trace", "u", "What is 6*7?")
        events = list(follow_turn(watcher, "conv-trace", sent.turn_id, 60))
        assert events[-1].type == "FinalAnswerSynthesized"
        spans = wait_for(lambda: (found := [s for s in exporter.get_finished_spans()
                                            if s.attributes and s.attributes.get("agentlog.turn_id") == sent.turn_id])
                         and {s.name.split()[0] for s in found} >= {"client", *SERVICES} and found,
                         what="spans from the client and every service")
    finally:
        for loop in loops:
            loop.stopping.set()
        for thread in threads:
            thread.join(30)
    assert {s.context.trace_id for s in spans} == {turn_trace_id(sent.turn_id)}
    by_id = {s.context.span_id: s for s in spans}
    client = next(s for s in spans if s.name == "client UserQueryReceived")
    router = next(s for s in spans if s.name == "router UserQueryReceived")
    assert router.parent is not None and router.parent.span_id == client.context.span_id
    plan_span = next(s for s in spans if s.name == "orchestrator PlanGenerated")
    assert plan_span.parent is not None and plan_span.parent.span_id == router.context.span_id
    answer = next(s for s in spans if s.name.startswith("synthesis "))
    assert answer.parent is not None and by_id[answer.parent.span_id].name == "aggregator PlanCompleted"
