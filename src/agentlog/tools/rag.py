"""The ragGeneration tool: an answer to a question grounded in retrieved passages, with citations.

With a language model configured, the model answers from the numbered passages only and cites them
as [1], [2]. Without one (or when it fails) the answer is extractive: the sentences of the passages
that best match the question, quoted with their citation, under a plain statement that they are
quoted, not composed. `data.citations` lists the passages the answer cites.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from typing import Any

from agentlog.retrieval.text import expand, tokens
from agentlog.tools.llm_access import chat_model
from agentlog.tools.registry import ToolOutput, tool

log = logging.getLogger(__name__)

SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
CITATION = re.compile(r"\[(\d{1,2})\]")
MAX_SENTENCES = 3
SYSTEM_PROMPT = (
    "You answer questions about products using only the numbered passages provided. Cite every fact with "
    "the passage number in square brackets, like [1] or [2]. If the passages do not contain the answer, say "
    "so plainly and do not guess. Answer in the language of the question, in at most four sentences.")


def _passage_texts(passages: list[Any] | str) -> list[str]:
    """Accept what getProductInformation gives (a list of texts), its data.passages, or one string."""
    if isinstance(passages, str):
        return [passages] if passages.strip() else []
    texts = [str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in passages]
    return [t for t in texts if t.strip()]


def _sentences(passage: str) -> list[str]:
    lines = passage.split("\n")
    body = "\n".join(lines[1:]) if len(lines) > 1 and "›" in lines[0] else passage  # drop the heading path
    return [s.strip(" -|") for s in SENTENCE.split(body) if len(tokens(s)) >= 3]


def extractive_answer(question: str, passages: list[str]) -> tuple[str, list[int]]:
    """The best-matching sentences (BM25-like: term frequency x IDF), in passage order, with citations."""
    candidates = [(n, i, s) for n, p in enumerate(passages, start=1) for i, s in enumerate(_sentences(p))]
    wanted = set(tokens(expand(question)))
    frequency = Counter(word for _, _, s in candidates for word in set(tokens(s)))
    scored = []
    for n, i, sentence in candidates:
        words = tokens(sentence)
        overlap = sum(math.log(1 + len(candidates) / frequency[w]) for w in set(words) & wanted)
        if overlap > 0:
            scored.append((overlap / math.sqrt(len(words)), n, i, sentence))
    best = sorted(sorted(scored, key=lambda c: -c[0])[:MAX_SENTENCES], key=lambda c: (c[1], c[2]))
    if not best:
        return "", []
    return " ".join(f"{sentence} [{n}]" for _, n, _, sentence in best), sorted({n for _, n, _, _ in best})


def _citations(cited: list[int], passages: list[str]) -> list[dict[str, Any]]:
    return [{"index": n, "passage": passages[n - 1][:300]} for n in cited if 1 <= n <= len(passages)]


@tool("ragGeneration", "Answer a question from retrieved passages (pass getProductInformation's result), "
      "citing them as [1], [2]; extractive quotes when no language model is configured.")
def rag_generation(question: str, passages: list[Any] | str) -> ToolOutput:
    texts = _passage_texts(passages)
    if not texts:
        return ToolOutput(value="No passages were provided, so there is nothing to answer from.",
                          text="No passages were provided, so there is nothing to answer from.",
                          data={"method": "none", "citations": []})
    model = chat_model()
    note = None
    if model is not None:
        from agentlog.llm.base import LLMUnavailable

        numbered = "\n\n".join(f"[{n}] {t}" for n, t in enumerate(texts, start=1))
        try:
            completion = model.complete([{"role": "system", "content": SYSTEM_PROMPT},
                                         {"role": "user", "content": f"Passages:\n{numbered}\n\nQuestion: {question}"}],
                                        temperature=0.2, max_tokens=400)
        except LLMUnavailable as error:
            log.warning("ragGeneration falls back to the extractive answer: %s", error)
            note = f"language model unavailable ({error}); extractive answer instead"
        else:
            answer = completion.text.strip()
            cited = sorted({int(n) for n in CITATION.findall(answer)})
            return ToolOutput(value=answer, text=answer, data={"method": "llm", "llm": completion.audit(),
                                                               "citations": _citations(cited, texts)})
    answer, cited = extractive_answer(question, texts)
    if answer:
        text = f"Extractive answer (sentences quoted from the passages, no language model): {answer}"
    else:
        text = "The passages do not contain sentences matching the question (extractive mode, no language model)."
    data: dict[str, Any] = {"method": "extractive", "citations": _citations(cited, texts)}
    if note:
        data["note"] = note
    return ToolOutput(value=text, text=text, data=data)
