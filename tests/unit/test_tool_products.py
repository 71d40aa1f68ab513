"""getProductInformation and the retrieval behind it: chunking, BM25 recall, MiniLM, hybrid fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentlog.retrieval.chunking import chunk_markdown
from agentlog.retrieval.evaluate import load_labels, recall_at_k
from agentlog.retrieval.text import expand, tokens
from agentlog.tools.products import get_product_information
from agentlog.tools.registry import ToolError

LABELS = Path(__file__).resolve().parent.parent / "data" / "retrieval.jsonl"


@pytest.fixture(autouse=True)
def repository_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTLOG_PRODUCTS_DIR", raising=False)
    monkeypatch.delenv("AGENTLOG_RETRIEVAL", raising=False)
    monkeypatch.setenv("AGENTLOG_HOME", "/nonexistent")  # so the repository's data/products is used


def test_chunks_follow_headings_and_carry_their_path() -> None:
    text = "# Gadget\nIntro.\n\n## FAQ\n### How long?\nTwo hours.\n\n## Warranty\n" + "Long. " * 300
    chunks = chunk_markdown(text, "gadget.md", max_chars=400)
    assert [c.chunk for c in chunks][:2] == ["overview", "faq-how-long"]
    assert chunks[1].text.startswith("Gadget › FAQ › How long?\n") and "Two hours." in chunks[1].text
    warranty = [c for c in chunks if c.chunk.startswith("warranty")]
    assert len(warranty) > 1 and warranty[1].chunk == "warranty#2" and all(len(c.text) <= 400 for c in chunks)


def test_hebrew_topic_words_gain_english_ones() -> None:
    assert "charging" in expand("כמה זמן לוקח לטעון את VoltRider E2")
    assert tokens("Charging the batteries") == tokens("charge battery") == ["charg", "battery"]


def test_result_has_passages_with_score_source_and_chunk() -> None:
    out = get_product_information("How long does the VoltRider E2 take to charge from 10% to 80%?")
    passages = out.data["passages"]
    assert len(passages) == 3 and out.value == [p["text"] for p in passages]
    assert {"text", "score", "source", "chunk"} <= set(passages[0]) and passages[0]["source"] == "voltrider-e2.md"
    assert passages[0]["score"] >= passages[1]["score"] > 0 and out.data["retrieval"] == "bm25"
    assert "3.5 hours" in " ".join(out.value)


def test_a_query_matching_nothing_returns_no_passages() -> None:
    out = get_product_information("zzzz qqqq")
    assert out.value == [] and "no passage" in out.text


def test_documents_directory_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "widget.md").write_text("# Widget\n## Colour\nThe Widget comes in teal only.\n")
    monkeypatch.setenv("AGENTLOG_PRODUCTS_DIR", str(tmp_path))
    out = get_product_information("widget colour")
    assert out.data["passages"][0]["source"] == "widget.md"
    monkeypatch.setenv("AGENTLOG_PRODUCTS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ToolError) as failure:
        get_product_information("widget")
    assert failure.value.error_type == "NotConfigured"


def test_unknown_retrieval_mode_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_RETRIEVAL", "psychic")
    with pytest.raises(ToolError, match="AGENTLOG_RETRIEVAL"):
        get_product_information("EvoPhone X battery")


def test_bm25_recall_at_3_on_the_labelled_set_is_at_least_0_9() -> None:
    labels = load_labels(LABELS)
    assert len(labels) >= 20
    recall = recall_at_k(labels, "bm25", 3)
    print(f"\nbm25 recall@3 = {recall.value:.3f} ({recall.found}/{recall.total}); misses: {recall.misses}")
    assert recall.value >= 0.9, recall.misses


def test_hybrid_recall_at_3_is_reported() -> None:
    recall = recall_at_k(load_labels(LABELS), "hybrid", 3)
    print(f"\nhybrid recall@3 = {recall.value:.3f} ({recall.found}/{recall.total}); misses: {recall.misses}")
    assert recall.value >= 0.8, recall.misses


def test_minilm_in_numpy_matches_sentence_transformers() -> None:
    """Reference: sentence-transformers' all-MiniLM-L6-v2 output for its documentation example."""
    from agentlog.retrieval.embeddings import shared_model

    vectors = shared_model().encode(["This is an example sentence", "Each sentence is converted"])
    reference = np.array([[0.06765691, 0.06349591, 0.04871311, 0.07930502, 0.03744803],
                          [0.08643857, 0.10276265, 0.00539454, 0.00204448, -0.00996337]], dtype=np.float32)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors[:, :5], reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_hybrid_mode_fuses_both_rankings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLOG_RETRIEVAL", "hybrid")
    out = get_product_information("Can I take my scooter on an aeroplane?")
    assert out.data["retrieval"] == "hybrid"
    top = out.data["passages"][0]
    assert top["chunk"] == "faq-can-i-take-it-on-a-plane" and "semantic" in top["components"]
