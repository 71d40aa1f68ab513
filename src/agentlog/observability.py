"""Structured JSON logs and OpenTelemetry tracing, both keyed by the conversation.

Every log line carries the conversation, turn (= correlation id) and message id of the message
being handled, through context variables set by the processing loop. Traces: one turn is one
trace. Its trace id is derived from the turn id, and the W3C `traceparent` of the span that
produced a message travels in that message's Kafka headers, so each service's span is a child of
the span that caused it, even across processes and restarts. Tracing costs little unless an
exporter is configured (OTEL_EXPORTER_OTLP_ENDPOINT with the optional `otlp` extra installed).

Log lines never carry a secret: the values of the environment's secret settings (names ending in
_KEY, _KEYS, PASSWORD, SECRET or TOKEN, e.g. OPENAI_API_KEY, AGENTLOG_KAFKA_SASL_PASSWORD) are
replaced by [REDACTED] in every formatted line, whatever code logged them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agentlog.events.envelope import Envelope

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_NAMESPACE = uuid.UUID("0d5e7f3a-41b8-4c43-9d0e-5f1a8e2c7b64")
_message: contextvars.ContextVar[Envelope | None] = contextvars.ContextVar("agentlog_message", default=None)

Headers = list[tuple[str, str | bytes | None]]
IncomingHeaders = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None


# -- logs ----------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the ids of the message being handled (null outside one)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        message = _message.get()
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
            "conversationId": message.conversation_id if message else None,
            "correlationId": (message.correlation_id or message.turn_id) if message else None,
            "messageId": message.id if message else None,
            "messageType": message.type if message else None,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


SECRET_NAME = re.compile(r"(_KEY|_KEYS|PASSWORD|SECRET|TOKEN)$")
MIN_SECRET_LENGTH = 6  # shorter values ("1", "dev") would blank out ordinary words, and guard nothing
REDACTED = "[REDACTED]"


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret settings in `env` (comma-separated lists split), longest first."""
    found: set[str] = set()
    for name, value in (os.environ if env is None else env).items():
        if SECRET_NAME.search(name.upper()):
            found.update(part.strip() for part in [value, *value.split(",")])
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as written and as escaped inside a JSON string (how a JSON log line holds it),
    longest first so that a secret containing another is replaced whole."""
    forms = {form for secret in secrets for form in (secret, orjson.dumps(secret).decode()[1:-1])}
    return tuple(sorted(forms, key=len, reverse=True))


def _replace_forms(text: str, forms: Iterable[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, as written and as escaped inside a JSON string, replaced by [REDACTED]."""
    return _replace_forms(text, secret_forms(secrets))


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then redacts the secrets: one place covers messages, arguments and tracebacks.

    The secrets come from the environment at setup, so their forms are encoded once, not per line."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = tuple(sorted(secrets, key=len, reverse=True))
        self.forms = secret_forms(self.secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        redacted = _replace_forms(line, self.forms)
        if redacted == line or not isinstance(self.inner, JsonFormatter):
            return redacted
        # Redact the decoded values and encode again: replacing inside the escaped line could cut a
        # JSON escape in two (a secret "000000" after a NUL, written \u0000) and break the line.
        fields = orjson.loads(line)
        return orjson.dumps({key: _replace_forms(value, self.secrets) if isinstance(value, str) else value
                             for key, value in fields.items()}).decode()


def log_handler(service: str, stream: TextIO) -> logging.Handler:
    """JSON lines by default (AGENTLOG_LOG_FORMAT=text for people at a terminal), secrets redacted."""
    handler = logging.StreamHandler(stream)
    inner: logging.Formatter
    if os.environ.get("AGENTLOG_LOG_FORMAT", "json") == "json":
        inner = JsonFormatter(service)
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    handler.setFormatter(RedactingFormatter(inner, secret_values()))
    return handler


def setup_logging(service: str) -> None:
    """The process's only log handler: `log_handler` on stderr."""
    handler = log_handler(service, sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("AGENTLOG_LOG_LEVEL", "INFO"))


# -- traces --------------------------------------------------------------------------------------
def configure_tracing(service: str) -> None:
    """Export spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set and the exporter is installed."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]
    except ImportError:
        logging.getLogger(__name__).warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not "
                                            "installed: pip install 'agentlog[otlp]'; tracing stays off")
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"agentlog-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_tracer_provider(provider)


def turn_trace_id(turn_id: str) -> int:
    return uuid.uuid5(_TRACE_NAMESPACE, turn_id).int


def _turn_root(turn_id: str) -> Context:
    """A remote parent in the turn's trace, for messages that arrive without a traceparent."""
    root = SpanContext(trace_id=turn_trace_id(turn_id), span_id=uuid.uuid5(_TRACE_NAMESPACE, f"{turn_id}/root").int
                       & 0xFFFFFFFFFFFFFFFF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(root))


def _parent(envelope: Envelope, headers: IncomingHeaders) -> Context:
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    carrier = {key: value.decode() if isinstance(value, bytes) else value for key, value in pairs if value is not None}
    context = _PROPAGATOR.extract(carrier)
    if trace.get_current_span(context).get_span_context().is_valid:
        return context
    return _turn_root(envelope.correlation_id or envelope.turn_id)


@contextmanager
def handling(service: str, envelope: Envelope, headers: IncomingHeaders = None,
             kind: SpanKind = SpanKind.CONSUMER) -> Iterator[None]:
    """Handle one message inside its span and log context; messages produced meanwhile carry the span.
    Without a tracer provider only the log context is set: a no-op span costs ~10 % of a service's CPU."""
    token = _message.set(envelope)
    if not tracing_enabled():
        forwarded = _forwarded.set(_trace_headers(headers))
        try:
            yield
        finally:
            _forwarded.reset(forwarded)
            _message.reset(token)
        return
    tracer = trace.get_tracer("agentlog")
    try:
        with tracer.start_as_current_span(f"{service} {envelope.type}", context=_parent(envelope, headers),
                                          kind=kind, attributes={"agentlog.conversation_id": envelope.conversation_id,
                                                                 "agentlog.turn_id": envelope.turn_id,
                                                                 "agentlog.message_id": envelope.id,
                                                                 "agentlog.subject": envelope.subject}):
            yield
    finally:
        _message.reset(token)


_tracing: bool | None = None  # decided at the first message, or by use_tracer_provider


def use_tracer_provider(provider: trace.TracerProvider) -> None:
    """Send spans to `provider` (configure_tracing's OTLP exporter, a test's in-memory one)."""
    global _tracing
    trace.set_tracer_provider(provider)
    _tracing = True


def tracing_enabled() -> bool:
    """Whether spans go anywhere. Decided once, at the first message: asking OpenTelemetry reads the
    environment each time (~5 % of a service's CPU). A provider set later must come through
    `use_tracer_provider`."""
    global _tracing
    if _tracing is None:
        _tracing = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _tracing


_TRACE_HEADERS = ("traceparent", "tracestate")
# While tracing is off, the trace headers of the message being handled, passed on unchanged.
_forwarded: contextvars.ContextVar[tuple[tuple[str, bytes], ...]] = contextvars.ContextVar("agentlog_forwarded",
                                                                                           default=())


def _trace_headers(headers: IncomingHeaders) -> tuple[tuple[str, bytes], ...]:
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    return tuple((key, value.encode() if isinstance(value, str) else value) for key, value in pairs
                 if key in _TRACE_HEADERS and value is not None)


def current_headers() -> Headers:
    """The `traceparent` of the current span, for the headers of a message being produced. While tracing
    is off here, the handled message's own trace headers are passed on: in a deployment where only some
    services trace, spans downstream still link to the last traced one."""
    if not tracing_enabled():
        return list(_forwarded.get())
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]
