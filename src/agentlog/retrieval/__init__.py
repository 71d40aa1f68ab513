"""Retrieval over the product documents: markdown chunking, BM25 (bm25s), optional MiniLM embeddings
and reciprocal rank fusion. `retrieval.index.search` is the entry point; AGENTLOG_RETRIEVAL picks
`bm25` (default, needs only bm25s and numpy) or `hybrid` (needs the [semantic] extra)."""
