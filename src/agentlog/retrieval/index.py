"""The product index: BM25 over chunks, optionally fused with MiniLM cosine ranking (hybrid).

`search(query)` builds the index for the configured directory and mode once per process and
rebuilds it only when a document changes. Hybrid ranking is reciprocal rank fusion (RRF, k=60) of
the BM25 and the embedding rankings: it needs no score calibration between the two, and a chunk
either ranking likes strongly rises. Mode: AGENTLOG_RETRIEVAL = bm25 (default) | hybrid.
Documents: AGENTLOG_PRODUCTS_DIR, else <AGENTLOG_HOME>/data/products, else the repository's data/products.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentlog.config import project_root
from agentlog.errors import ConfigurationError
from agentlog.retrieval.chunking import Chunk, load_directory
from agentlog.retrieval.text import expand, tokens

MODES = ("bm25", "hybrid")
RRF_K = 60
CANDIDATES = 20  # how deep each ranking goes into the fusion
REPO_PRODUCTS = Path(__file__).resolve().parents[3] / "data" / "products"


def products_directory() -> Path:
    configured = os.environ.get("AGENTLOG_PRODUCTS_DIR", "").strip()
    if configured:
        return Path(configured).resolve()
    home = project_root() / "data" / "products"
    return home if home.is_dir() else REPO_PRODUCTS


def configured_mode() -> str:
    mode = os.environ.get("AGENTLOG_RETRIEVAL", "bm25").strip().lower() or "bm25"
    if mode not in MODES:
        raise ConfigurationError(f"AGENTLOG_RETRIEVAL must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # BM25 score in bm25 mode, the RRF score in hybrid mode
    components: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.chunk.text, "score": round(self.score, 6), "source": self.chunk.source,
                "chunk": self.chunk.chunk, **({"components": self.components} if self.components else {})}


class Index:
    def __init__(self, chunks: Sequence[Chunk], mode: str = "bm25") -> None:
        import bm25s

        if not chunks:
            raise ConfigurationError("there are no product documents to search")
        self.chunks = list(chunks)
        self.mode = mode
        self.bm25 = bm25s.BM25()
        self.bm25.index([tokens(c.text) or ["<empty>"] for c in self.chunks], show_progress=False)
        self.vectors: np.ndarray[Any, np.dtype[np.float32]] | None = None
        if mode == "hybrid":
            from agentlog.retrieval.embeddings import shared_model

            self.vectors = shared_model().encode([c.text for c in self.chunks])

    def _bm25_ranking(self, query: str, depth: int) -> list[tuple[int, float]]:
        words = tokens(query)
        if not words:
            return []
        found, scores = self.bm25.retrieve([words], k=min(depth, len(self.chunks)), show_progress=False)
        return [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0]

    def _semantic_ranking(self, query: str, depth: int) -> list[tuple[int, float]]:
        from agentlog.retrieval.embeddings import shared_model

        assert self.vectors is not None
        similarities = self.vectors @ shared_model().encode([query])[0]
        order = np.argsort(-similarities)[:depth]
        return [(int(i), float(similarities[i])) for i in order]

    def search(self, query: str, k: int = 3) -> list[Hit]:
        query = expand(query)
        if self.vectors is None:
            return [Hit(self.chunks[i], s) for i, s in self._bm25_ranking(query, k)]
        rankings = {"bm25": self._bm25_ranking(query, CANDIDATES), "semantic": self._semantic_ranking(query, CANDIDATES)}
        fused: dict[int, float] = {}
        components: dict[int, dict[str, float]] = {}
        for name, ranking in rankings.items():
            for rank, (i, score) in enumerate(ranking, start=1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
                components.setdefault(i, {})[name] = round(score, 6)
        best = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        return [Hit(self.chunks[i], fused[i], components[i]) for i in best]


_lock = threading.Lock()
_cache: dict[tuple[Path, str], tuple[tuple[tuple[str, int, int], ...], Index]] = {}


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    if not directory.is_dir():
        raise ConfigurationError(f"the product documents directory {directory} does not exist "
                                 "(set AGENTLOG_PRODUCTS_DIR)")
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(directory.iterdir())
                 if p.suffix in (".md", ".txt"))


def shared_index(directory: Path | None = None, mode: str | None = None) -> Index:
    """The process's index for `directory` and `mode` (configured ones by default), built on first use."""
    directory = directory or products_directory()
    mode = mode or configured_mode()
    with _lock:
        fingerprint = _fingerprint(directory)
        cached = _cache.get((directory, mode))
        if cached is None or cached[0] != fingerprint:
            cached = _cache[(directory, mode)] = (fingerprint, Index(load_directory(directory), mode))
        return cached[1]


def search(query: str, k: int = 3, *, directory: Path | None = None, mode: str | None = None) -> list[Hit]:
    return shared_index(directory, mode).search(query, k)
