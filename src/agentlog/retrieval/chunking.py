"""Split markdown product documents into retrievable chunks, one per (sub)section.

Sections are natural answer units in these documents (a spec table, one FAQ entry, one
troubleshooting case), so a chunk is the text under a `##`/`###` heading, split further at paragraph
boundaries only when longer than MAX_CHARS. Every chunk's text starts with its heading path
("VoltRider E2 › FAQ › How long does charging take?"), which lets a query naming the product or the
topic match it. Chunk ids are slugs of the heading ("faq-how-long-does-charging-take", "#2" for a
continuation), so labels in an evaluation set survive edits elsewhere in the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAX_CHARS = 1200
HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*#*\s*$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    source: str  # file name, e.g. "voltrider-e2.md"
    chunk: str  # id unique within the source
    title: str  # heading path
    text: str  # heading path + body: what is indexed and returned


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _pieces(paragraphs: list[str], limit: int) -> list[str]:
    """Pack paragraphs into pieces of at most `limit` characters; split an overlong one by sentences."""
    units: list[str] = []
    for paragraph in paragraphs:
        units.extend([paragraph] if len(paragraph) <= limit else SENTENCE_END.split(paragraph))
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + len(unit) + 2 > limit:
            pieces.append(current)
            current = unit
        else:
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def chunk_markdown(text: str, source: str, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Chunks of one document; the `#` title names the product and prefixes every heading path."""
    document = Path(source).stem
    path: list[str] = []
    body: list[str] = []
    sections: list[tuple[list[str], list[str]]] = []

    def flush() -> None:
        paragraphs = [p.strip() for p in "\n".join(body).split("\n\n") if p.strip()]
        if paragraphs:
            sections.append((list(path), paragraphs))
        body.clear()

    for line in text.splitlines():
        match = HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level = len(match.group(1))
        del path[level - 1 :]
        path.extend([""] * (level - 1 - len(path)))
        path.append(match.group(2))
    flush()
    chunks: list[Chunk] = []
    used: set[str] = set()
    for headings, paragraphs in sections:
        named = [h for h in headings if h]
        title = " › ".join(named) or document
        base = slug(" ".join(named[1:]) if len(named) > 1 else "overview")
        while base in used:
            base += "-x"
        used.add(base)
        for n, piece in enumerate(_pieces(paragraphs, max_chars - len(title) - 2), start=1):
            chunks.append(Chunk(source, base if n == 1 else f"{base}#{n}", title, f"{title}\n{piece}"))
    return chunks


def load_directory(directory: Path) -> list[Chunk]:
    """Chunks of every *.md and *.txt file in `directory`, in file-name order (a stable index)."""
    chunks: list[Chunk] = []
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".md", ".txt") and p.is_file()):
        chunks.extend(chunk_markdown(path.read_text(encoding="utf-8"), path.name))
    return chunks
