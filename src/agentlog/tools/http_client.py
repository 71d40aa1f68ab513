"""The one HTTP GET the tools that call web APIs make, with failures sorted for the orchestrator.

A tool's ToolError tells the orchestrator whether another attempt may succeed: a timeout, a refused
connection, HTTP 408/429 or 5xx may (retryable); a 4xx or an unreadable reply will not. Messages name
the service and the URL without its query string, so an API key in the query never reaches the log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from agentlog.tools.registry import ToolError

DEFAULT_TIMEOUT_S = 10.0
RETRYABLE_STATUS = frozenset({408, 425, 429})


def timeout_s(env: Mapping[str, str] | None = None) -> float:
    """AGENTLOG_TOOL_HTTP_TIMEOUT_S (default 10): a slow API must end the attempt, not hang the worker."""
    raw = (os.environ if env is None else env).get("AGENTLOG_TOOL_HTTP_TIMEOUT_S", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ToolError(f"AGENTLOG_TOOL_HTTP_TIMEOUT_S must be a number, not {raw!r}",
                        error_type="NotConfigured") from None
    return value if value > 0 else DEFAULT_TIMEOUT_S


def get_json(url: str, *, params: Mapping[str, str], service: str, not_found: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
    """GET `url` with `params` and return the reply's JSON object, or raise a sorted ToolError.

    `not_found` is the message for HTTP 404 (e.g. "no such city"); without it a 404 is reported
    like any other rejected request.
    """
    try:
        with httpx.Client(timeout=timeout or timeout_s()) as client:
            response = client.get(url, params=dict(params))
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
        raise ToolError(f"{service}: HTTP {status} from {url}: {_excerpt(response)}", error_type="Rejected")
    try:
        data = response.json()
    except ValueError:
        raise ToolError(f"{service}: the reply from {url} is not JSON: {response.text[:120]!r}",
                        error_type="BadReply") from None
    if not isinstance(data, dict):
        raise ToolError(f"{service}: the reply from {url} is not a JSON object", error_type="BadReply")
    return data


def _excerpt(response: httpx.Response) -> str:
    """The provider's own explanation ({"message": ...} for both APIs used here), else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return response.text[:200]
