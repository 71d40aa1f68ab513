"""The getProductInformation tool: passages from the product documents that answer a query.

Retrieval runs in-process over data/products (see agentlog.retrieval): BM25 by default, BM25 fused
with MiniLM embeddings when AGENTLOG_RETRIEVAL=hybrid. The value is the list of passage texts (what
ragGeneration takes by reference); `data.passages` keeps each passage's score, source file and chunk
id, so an answer can be traced to the exact part of a document.
"""

from __future__ import annotations

import logging

from agentlog.errors import ConfigurationError
from agentlog.retrieval.index import Hit, configured_mode, search
from agentlog.tools.registry import ToolError, ToolOutput, tool

log = logging.getLogger(__name__)
MAX_K = 10


def _search(query: str, k: int) -> tuple[list[Hit], str, str | None]:
    """Hits, the mode used and, if hybrid was asked for but cannot run here, why bm25 ran instead."""
    try:
        mode = configured_mode()
        if mode == "hybrid":
            try:
                return search(query, k, mode="hybrid"), "hybrid", None
            except (ConfigurationError, ImportError) as missing:
                log.warning("hybrid retrieval unavailable, using bm25: %s", missing)
                return search(query, k, mode="bm25"), "bm25", f"hybrid retrieval unavailable: {missing}"
        return search(query, k, mode=mode), mode, None
    except ConfigurationError as error:
        raise ToolError(str(error), error_type="NotConfigured") from error


@tool("getProductInformation", "Search the product catalogue documents (PrintForge Mini, BrewMaster 360, "
      "EvoPhone X, VoltRider E2) and return the passages most relevant to the query, with sources.")
def get_product_information(query: str, top_k: int = 3) -> ToolOutput:
    if not 1 <= top_k <= MAX_K:
        raise ToolError(f"top_k must be between 1 and {MAX_K}, not {top_k}", error_type="InvalidArguments")
    hits, mode, note = _search(query, top_k)
    passages = [hit.to_json() for hit in hits]
    if passages:
        sources = ", ".join(dict.fromkeys(f"{p['source']}#{p['chunk']}" for p in passages))
        text = f"{len(passages)} passage(s) for {query!r} ({mode}): {sources}"
    else:
        text = f"no passage in the product documents matches {query!r}"
    data: dict[str, object] = {"query": query, "retrieval": mode, "passages": passages}
    if note:
        data["note"] = note
    return ToolOutput(value=[p["text"] for p in passages], text=text, data=data)
