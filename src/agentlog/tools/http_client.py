"""The one HTTP GET the tools that call web APIs make, with failures sorted for the orchestrator.

A tool's ToolError tells the orchestrator whether another attempt may succeed: a timeout, a refused
connection, HTTP 408/429 or 5xx may (retryable); a 4xx or an unreadable reply will not. Messages name
the service and the URL without its query string, so an API key in the query never reaches the log.

Replies are hostile input too: redirects are never followed (the configured base URL is the only host
a tool talks to, whatever its arguments say) and the body is read as a stream that stops at
AGENTLOG_TOOL_HTTP_MAX_BYTES (default 1 MiB), so a huge or endless reply cannot fill a worker's memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import httpx

from agentlog.config import positive_number
from agentlog.errors import ConfigurationError
from agentlog.tools.registry import ToolError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_BYTES = 1 << 20
RETRYABLE_STATUS = frozenset({408, 425, 429})


def _positive(name: str, default: float, env: Mapping[str, str] | None) -> float:
    """The setting, with a bad value reported as this call's NotConfigured failure."""
    try:
        return positive_number(os.environ if env is None else env, name, default)
    except ConfigurationError as error:
        raise ToolError(str(error), error_type="NotConfigured") from None


def timeout_s(env: Mapping[str, str] | None = None) -> float:
    """AGENTLOG_TOOL_HTTP_TIMEOUT_S (default 10): a slow API must end the attempt, not hang the worker."""
    return _positive("AGENTLOG_TOOL_HTTP_TIMEOUT_S", DEFAULT_TIMEOUT_S, env)


def max_bytes(env: Mapping[str, str] | None = None) -> int:
    """AGENTLOG_TOOL_HTTP_MAX_BYTES (default 1 MiB): the largest reply body a tool will read."""
    return int(_positive("AGENTLOG_TOOL_HTTP_MAX_BYTES", DEFAULT_MAX_BYTES, env))


def _read_capped(response: httpx.Response, limit: int, service: str, url: str) -> bytes:
    """The body, or a BadReply as soon as it grows past `limit` bytes (whatever Content-Length claims)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise ToolError(f"{service}: the reply from {url} is larger than {limit} bytes", error_type="BadReply")
    return bytes(body)


def get_json(url: str, *, params: Mapping[str, str], service: str, not_found: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
    """GET `url` with `params` and return the reply's JSON object, or raise a sorted ToolError.

    `not_found` is the message for HTTP 404 (e.g. "no such city"); without it a 404 is reported
    like any other rejected request.
    """
    limit = max_bytes()
    try:
        with httpx.Client(timeout=timeout or timeout_s(), follow_redirects=False) as client, \
                client.stream("GET", url, params=dict(params)) as response:
            body = _read_capped(response, limit, service, url)
    except httpx.TimeoutException as error:
        raise ToolError(f"{service}: no answer from {url} in time ({type(error).__name__})", retryable=True,
                        error_type="Timeout") from error
    except httpx.InvalidURL as error:
        raise ToolError(f"{service}: {url} is not a usable URL: {error}", error_type="NotConfigured") from error
    except httpx.HTTPError as error:
        raise ToolError(f"{service}: cannot reach {url}: {type(error).__name__}", retryable=True,
                        error_type="Unavailable") from error
    status = response.status_code
    if status == 404 and not_found is not None:
        raise ToolError(not_found, error_type="NotFound")
    if status >= 500 or status in RETRYABLE_STATUS:
        raise ToolError(f"{service}: HTTP {status} from {url}; try again later", retryable=True,
                        error_type="Unavailable")
    if status >= 400:
        raise ToolError(f"{service}: HTTP {status} from {url}: {_excerpt(body)}", error_type="Rejected")
    if status >= 300:
        raise ToolError(f"{service}: HTTP {status} from {url}: redirects are not followed (configure the final URL)",
                        error_type="Rejected")
    try:
        data = json.loads(body)
    except ValueError:
        raise ToolError(f"{service}: the reply from {url} is not JSON: {_text(body, 120)!r}",
                        error_type="BadReply") from None
    if not isinstance(data, dict):
        raise ToolError(f"{service}: the reply from {url} is not a JSON object", error_type="BadReply")
    return data


def _text(body: bytes, limit: int) -> str:
    return body[: limit * 4].decode("utf-8", errors="replace")[:limit]


def _excerpt(body: bytes) -> str:
    """The provider's own explanation ({"message": ...} for both APIs used here), else the body's start."""
    try:
        data = json.loads(body)
    except ValueError:
        return _text(body, 200)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:200]
    return _text(body, 200)
