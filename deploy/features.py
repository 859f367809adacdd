"""Feature names: the one place that decides what each vocabulary id is called inside OpenSearch.

ML Commons names an output id by `tokenizer.decode([id], skip_special_tokens=True)` (SparseEncodingTranslator,
SparseTokenizerModel), not by the raw vocabulary piece, so SentencePiece pieces "▁word" and "word" both become
"word", and the translator keeps only one of them. Elasticsearch's `rank_features` / `sparse_vector` reject names
with '.', and ML Commons drops empty names. To keep every path identical (the exported model inside OpenSearch,
the ingest pipeline, `query_text` + `model_id`, and vectors computed here for bulk indexing or `query_tokens`):

- an id whose name is empty or contains '.' is dropped (weight 0), here and inside the exported model;
- ids sharing a name are merged into the lowest such id with the max weight, here and inside the exported model.

`sparse_vector` (seismic) fields take token ids as keys instead: the same merged ids, written as decimal strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch

# The ingest pipeline's pruning, shared with eval so locally indexed vectors match ingested ones.
from training.pruning import PRUNE_TYPES, prune_dict as prune_features, validate_prune  # noqa: F401

FIELD_TYPES = ("rank_features", "sparse_vector")
# Lucene's FeatureField takes only positive normal floats.
MIN_FEATURE_VALUE = float(np.finfo(np.float32).tiny)


def is_valid_feature_name(name: str) -> bool:
    """Whether OpenSearch and Elasticsearch both accept `name` as a rank feature (non-empty, no '.')."""
    return bool(name) and "." not in name


@dataclass
class FeatureVocabulary:
    """Per-id OpenSearch names plus the merge map: `canonical[i]` is the id that carries id i's weight, and
    `valid[i]` says whether id i may carry weight at all."""

    names: list[Optional[str]]
    canonical: np.ndarray  # int64 [vocab]
    valid: np.ndarray  # bool [vocab]

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: Optional[int] = None) -> "FeatureVocabulary":
        backend = tokenizer.backend_tokenizer if hasattr(tokenizer, "backend_tokenizer") else tokenizer
        size = vocab_size or backend.get_vocab_size(with_added_tokens=True)
        names: list[Optional[str]] = []
        for i in range(size):
            name = backend.decode([i], skip_special_tokens=True) if i < backend.get_vocab_size(True) else ""
            names.append(name if is_valid_feature_name(name) else None)
        first: dict[str, int] = {}
        canonical = np.arange(size, dtype=np.int64)
        for i, name in enumerate(names):
            if name is not None:
                canonical[i] = first.setdefault(name, i)
        valid = np.array([n is not None for n in names], dtype=bool)
        return cls(names, canonical, valid)

    @property
    def has_merges(self) -> bool:
        return bool((self.canonical != np.arange(len(self.canonical))).any())

    def merge(self, weights: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] weights -> the same shape with invalid ids zeroed and each name's weight (the max over
        its ids) on its canonical id. Pure tensor ops, so it traces into TorchScript and ONNX."""
        weights = weights * torch.as_tensor(self.valid, dtype=weights.dtype, device=weights.device)
        if not self.has_merges:
            return weights
        index = torch.as_tensor(self.canonical, device=weights.device).expand_as(weights)
        return torch.zeros_like(weights).scatter_reduce(1, index, weights, reduce="amax", include_self=True)

    def merge_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """`merge` for a CSR matrix [n, vocab] (what `SparseEncoder.encode` returns)."""
        coo = matrix.tocoo()
        keep = self.valid[coo.col] & (coo.data >= MIN_FEATURE_VALUE)
        rows, cols, vals = coo.row[keep], self.canonical[coo.col[keep]], coo.data[keep].astype(np.float32)
        if len(vals):  # max per (row, canonical id): sort so each cell's max comes last, keep the last
            order = np.lexsort((vals, cols, rows))
            rows, cols, vals = rows[order], cols[order], vals[order]
            last = np.ones(len(vals), dtype=bool)
            last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
            rows, cols, vals = rows[last], cols[last], vals[last]
        return sp.csr_matrix((vals, (rows, cols)), shape=matrix.shape, dtype=np.float32)

    def to_features(self, matrix: sp.csr_matrix, field_type: str = "rank_features",
                    prune_type: str = "none", prune_ratio: float = 0.0) -> list[dict[str, float]]:
        """One {feature: weight} dict per row, named for `field_type` and pruned as the ingest pipeline would."""
        if field_type not in FIELD_TYPES:
            raise ValueError(f"field_type must be one of {FIELD_TYPES}, got {field_type!r}")
        merged = self.merge_matrix(sp.csr_matrix(matrix))
        out = []
        for i in range(merged.shape[0]):
            cols = merged.indices[merged.indptr[i]:merged.indptr[i + 1]]
            vals = merged.data[merged.indptr[i]:merged.indptr[i + 1]]
            keys = [str(int(c)) for c in cols] if field_type == "sparse_vector" else [self.names[c] for c in cols]
            out.append(prune_features(dict(zip(keys, map(float, vals))), prune_type, prune_ratio))
        return out


def parse_prune(value: str) -> tuple[str, float]:
    """'max_ratio:0.1' -> ('max_ratio', 0.1); 'none' -> ('none', 0.0). The CLI form of a prune setting."""
    kind, _, ratio = value.partition(":")
    prune = (kind, float(ratio or 0.0))
    validate_prune(*prune)
    return prune


def encode_features(encoder, texts, is_query: bool = False, field_type: str = "rank_features",
                    prune_type: str = "none", prune_ratio: float = 0.0, batch_size: int = 32,
                    features: Optional[FeatureVocabulary] = None) -> list[dict[str, float]]:
    """Encode texts locally into what OpenSearch stores (documents) or takes as `query_tokens` (queries): the
    single path both sides go through, so index and query always name features the same way."""
    features = features or FeatureVocabulary.from_tokenizer(encoder.tokenizer, encoder.vocab_size)
    # No encode-time top_k / threshold: OpenSearch's model does not apply them; prune_type is the knob instead.
    emb = encoder.encode(list(texts), batch_size=batch_size, is_query=is_query, top_k=encoder.vocab_size,
                         threshold=0.0)
    return features.to_features(emb.matrix, field_type, prune_type, prune_ratio)
