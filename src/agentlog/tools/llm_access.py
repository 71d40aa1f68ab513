"""The language model the LLM-backed tools use, when one is configured.

The chain is built once per process and configuration, so its circuit breakers remember a provider
that keeps failing across invocations. agentlog.llm is imported lazily: a tool worker without any
provider configured never loads it, and its absence counts as "not configured".
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentlog.llm.base import ChatModel

CONFIG_KEYS = ("OLLAMA_HOST", "OLLAMA_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL",
               "AGENTLOG_LLM_TIMEOUT_S", "AGENTLOG_LLM_ATTEMPTS")
HOW_TO_CONFIGURE = ("set OLLAMA_HOST (a local Ollama server, e.g. http://127.0.0.1:11434), or OPENAI_API_KEY "
                    "and/or OPENAI_BASE_URL (an OpenAI-compatible server) for the tool workers")

_lock = threading.Lock()
_models: dict[tuple[str, ...], ChatModel | None] = {}


def chat_model() -> ChatModel | None:
    """The configured provider chain, or None when no provider is configured (the tools then work offline)."""
    key = tuple(os.environ.get(name, "") for name in CONFIG_KEYS)
    with _lock:
        if key not in _models:
            try:
                from agentlog.llm.chain import configured_chat_model
            except ImportError:
                _models[key] = None
            else:
                _models[key] = configured_chat_model()
        return _models[key]
