"""Recall@k of the product retrieval against a labelled set (tests/data/retrieval.jsonl).

Each line: {"question": ..., "source": "voltrider-e2.md", "chunks": ["charging-charging-time", ...]}.
A question counts as found when any of the top k passages is from `source` and one of `chunks`
(several chunks may answer one question, e.g. a FAQ entry and the section it summarises).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agentlog.retrieval.index import search


@dataclass(frozen=True)
class Label:
    question: str
    source: str
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class Recall:
    mode: str
    k: int
    found: int
    total: int
    misses: tuple[tuple[str, list[str]], ...]  # question, what came back instead

    @property
    def value(self) -> float:
        return self.found / self.total if self.total else 0.0


def load_labels(path: Path) -> list[Label]:
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            try:
                labels.append(Label(str(row["question"]), str(row["source"]), tuple(row["chunks"])))
            except KeyError as missing:
                raise ValueError(f"{path}:{number}: missing field {missing}") from None
    return labels


def recall_at_k(labels: list[Label], mode: str, k: int = 3, directory: Path | None = None) -> Recall:
    found = 0
    misses: list[tuple[str, list[str]]] = []
    for label in labels:
        hits = search(label.question, k, directory=directory, mode=mode)
        if any(h.chunk.source == label.source and h.chunk.chunk in label.chunks for h in hits):
            found += 1
        else:
            misses.append((label.question, [f"{h.chunk.source}#{h.chunk.chunk}" for h in hits]))
    return Recall(mode, k, found, len(labels), tuple(misses))
