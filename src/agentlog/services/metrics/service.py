"""The metrics service: reads conversation-events, serves /metrics (Prometheus) and /metrics.json.

It only reads. It has no consumer group and commits nothing: its state is the fold in memory,
rebuilt from the log on start (AGENTLOG_METRICS_FROM=beginning, the default, so totals cover the
whole history) or started fresh at the log's end (`end`, for a huge log). Consumer lag of the
transactional services is read from the broker every few seconds.

Environment: AGENTLOG_METRICS_PORT (default 9464), AGENTLOG_METRICS_HOST (default 127.0.0.1),
AGENTLOG_METRICS_FROM (beginning|end), AGENTLOG_METRICS_WINDOW (throughput window, s, default 60).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agentlog.config import Settings
from agentlog.errors import AgentlogError
from agentlog.events.codec import Codec
from agentlog.events.registry import SchemaRegistry
from agentlog.kafka.client import consumer_config, poll_batch
from agentlog.kafka.topics import CONVERSATION_EVENTS
from agentlog.services.metrics.compute import DEFAULT_WINDOW_SECONDS, MetricsFold, Observation
from agentlog.services.metrics.lag import LagReader, PartitionLag, total_by_group

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464
LAG_INTERVAL = 5.0
# 1 ms to 30 s: a hop is milliseconds, a turn with an LLM can take tens of seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PrometheusView:
    """The fold's observations as Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turn = Histogram("agentlog_turn_latency_seconds", "UserQueryReceived event to FinalAnswerSynthesized",
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage = Histogram("agentlog_stage_latency_seconds", "Latency of one stage of a turn", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tool = Histogram("agentlog_tool_latency_seconds", "ToolInvocationRequested to ToolInvocationResulted",
                              ["tool"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("agentlog_events", "Distinct events read", ["type"], registry=self.registry)
        self.duplicates = Counter("agentlog_duplicate_events", "Events dropped as duplicates", registry=self.registry)
        self.events_rate = Gauge("agentlog_events_per_second", "Events per second over the window",
                                 registry=self.registry)
        self.conversations_rate = Gauge("agentlog_conversations_per_second", "Answered turns per second over the window",
                                        registry=self.registry)
        self.lag = Gauge("agentlog_consumer_lag", "High watermark minus committed offset",
                         ["group", "topic", "partition"], registry=self.registry)

    def observe(self, observations: list[Observation]) -> None:
        for observation in observations:
            if observation.stage == "end_to_end":
                self.turn.observe(observation.seconds)
            elif observation.tool is not None:
                self.tool.labels(tool=observation.tool).observe(observation.seconds)
            else:
                self.stage.labels(stage=observation.stage).observe(observation.seconds)

    def set_lag(self, lags: list[PartitionLag]) -> None:
        for lag in lags:
            self.lag.labels(group=lag.group, topic=lag.topic, partition=str(lag.partition)).set(lag.lag)


class MetricsService:
    """Consumes in one thread; the HTTP server answers from the fold under a lock."""

    def __init__(self, settings: Settings, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 from_beginning: bool = True, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> None:
        self.settings = settings
        self.codec = Codec(SchemaRegistry(settings).read_all() or None)
        self.fold = MetricsFold(window_seconds=window_seconds)
        self.view = PrometheusView()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.lags: list[PartitionLag] = []
        self.lag_reader = LagReader(settings)
        self.consumer = Consumer(consumer_config(settings, None, "agentlog-metrics"))
        topic = settings.topic(CONVERSATION_EVENTS)
        metadata = self.consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise AgentlogError(f"topic {topic} does not exist: run `agentlog init`")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self.consumer.assign([TopicPartition(topic, p, start) for p in sorted(metadata.partitions)])
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            data = self.fold.snapshot()
            lags = list(self.lags)
        data["lag"] = {
            "byGroup": total_by_group(lags),
            "partitions": [{"group": x.group, "topic": x.topic, "partition": x.partition, "committed": x.committed,
                            "high": x.high, "lag": x.lag} for x in lags],
        }
        return data

    def prometheus(self) -> bytes:
        with self.lock:
            return bytes(generate_latest(self.view.registry))

    def run(self) -> None:
        http = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)
        http.start()
        log.info("metrics on http://%s:%s/metrics and /metrics.json", *self.server.server_address[:2])
        next_lag = 0.0
        try:
            while not self.stopping.is_set():
                self._consume_once()
                if time.monotonic() >= next_lag:
                    self._refresh_lag()
                    next_lag = time.monotonic() + LAG_INTERVAL
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.consumer.close()
            self.lag_reader.close()

    def _consume_once(self) -> None:
        messages = poll_batch(self.consumer, 500, 0.25)
        with self.lock:
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("metrics consume error: %s", error)
                    continue
                try:
                    envelope = self.codec.decode(message.value())
                except AgentlogError:
                    continue  # the services dead-letter it; metrics only count what the pipeline accepts
                duplicates = self.fold.duplicates
                observations = self.fold.apply(envelope)
                if self.fold.duplicates > duplicates:
                    self.view.duplicates.inc()
                elif envelope.kind == "event":
                    self.view.events.labels(type=envelope.type).inc()
                self.view.observe(observations)
            events_rate, conversations_rate = self.fold.throughput(int(time.time() * 1000))
            self.view.events_rate.set(events_rate)
            self.view.conversations_rate.set(conversations_rate)

    def _refresh_lag(self) -> None:
        try:
            lags = self.lag_reader.read()
        except Exception as error:  # a broker hiccup must not stop the metrics
            log.warning("could not read consumer lag: %s", error)
            return
        with self.lock:
            self.lags = lags
            self.view.set_lag(lags)


def _handler_for(service: MetricsService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, service.prometheus())
            elif path == "/metrics.json":
                self._reply(200, "application/json", orjson.dumps(service.snapshot()))
            else:
                self._reply(404, "text/plain", b"try /metrics or /metrics.json\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds would flood the service log."""

    return Handler


def run_metrics_service(settings: Settings) -> None:
    """Entry point of `agentlog service metrics`."""
    start = os.environ.get("AGENTLOG_METRICS_FROM", "beginning")
    if start not in ("beginning", "end"):
        raise AgentlogError(f"AGENTLOG_METRICS_FROM must be beginning or end, not {start!r}")
    service = MetricsService(settings, port=int(os.environ.get("AGENTLOG_METRICS_PORT", DEFAULT_PORT)),
                             host=os.environ.get("AGENTLOG_METRICS_HOST", "127.0.0.1"),
                             from_beginning=start == "beginning",
                             window_seconds=float(os.environ.get("AGENTLOG_METRICS_WINDOW", DEFAULT_WINDOW_SECONDS)))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stopping.set())
    service.run()
