"""The HTTP call both providers make, with failures sorted into retryable and not.

The chain (llm/chain.py) retries only what may succeed on a second try: a refused connection, a
timeout, HTTP 408/409/429 or 5xx. A 4xx or an unreadable body is the same on every try.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from agentlog.llm.base import LLMUnavailable

RETRYABLE_STATUS = frozenset({408, 409, 429})


class ProviderError(LLMUnavailable):
    """One provider failed one call; `retryable` says whether the same call may succeed later."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def normalise_url(value: str) -> str:
    """Accept `host:port` as Ollama's own OLLAMA_HOST does, and drop a trailing slash."""
    value = value.strip().rstrip("/")
    return value if "://" in value else f"http://{value}"


@contextmanager
def _translated(provider: str, url: str) -> Iterator[None]:
    """httpx failures as ProviderErrors that say whether the same call may succeed later."""
    try:
        yield
    except httpx.TimeoutException as error:
        raise ProviderError(f"{provider}: no answer from {url} in time ({type(error).__name__})",
                            retryable=True) from error
    except httpx.InvalidURL as error:
        raise ProviderError(f"{provider}: {url} is not a usable URL: {error}", retryable=False) from error
    except httpx.HTTPError as error:
        raise ProviderError(f"{provider}: cannot reach {url}: {type(error).__name__}: {error}",
                            retryable=True) from error


def _check_status(response: httpx.Response, provider: str, url: str) -> None:
    if response.status_code >= 400:
        retryable = response.status_code in RETRYABLE_STATUS or response.status_code >= 500
        raise ProviderError(f"{provider}: HTTP {response.status_code} from {url}: {response.text[:300]}",
                            retryable=retryable)


def post_json(client: httpx.Client, url: str, body: Mapping[str, Any], *, provider: str,
              headers: Mapping[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """POST `body` as JSON; the reply's JSON object and the round trip in milliseconds."""
    started = time.perf_counter()
    with _translated(provider, url):
        response = client.post(url, json=dict(body), headers=dict(headers or {}))
    latency_ms = (time.perf_counter() - started) * 1000.0
    _check_status(response, provider, url)
    try:
        data = response.json()
    except ValueError as error:
        raise ProviderError(f"{provider}: the reply from {url} is not JSON: {response.text[:200]!r}",
                            retryable=False) from error
    if not isinstance(data, dict):
        raise ProviderError(f"{provider}: the reply from {url} is not a JSON object", retryable=False)
    return data, latency_ms


def post_stream(client: httpx.Client, url: str, body: Mapping[str, Any], *, provider: str,
                headers: Mapping[str, str] | None = None) -> Iterator[str]:
    """POST `body` as JSON and yield the reply's lines as they arrive (SSE or NDJSON streams).

    A failure mid-stream (the server stops answering, the connection drops) is a ProviderError like
    a failure before the first line; the caller decides what its partial text is worth.
    """
    with _translated(provider, url), client.stream("POST", url, json=dict(body),
                                                   headers=dict(headers or {})) as response:
        if response.status_code >= 400:
            response.read()
            _check_status(response, provider, url)
        yield from response.iter_lines()


def json_object(line: str, provider: str) -> dict[str, Any]:
    """One JSON object of a stream; anything else means the server speaks another protocol."""
    try:
        data = orjson.loads(line)
    except ValueError as error:
        raise ProviderError(f"{provider}: a streamed line is not JSON: {line[:200]!r}", retryable=False) from error
    if not isinstance(data, dict):
        raise ProviderError(f"{provider}: a streamed line is not a JSON object: {line[:200]!r}", retryable=False)
    return data


def optional_int(value: Any) -> int | None:
    """Token counts as servers report them: an int, or None when absent or not a number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
