"""Exact sparse retrieval over scipy CSR matrices (column = token id), OpenSearch's ingest pruning, and Lucene's
FeatureField weight rounding, so local scores can be compared with what a cluster returns."""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp

from builders.ranking import top_k

# OpenSearch's ingest pruning: the one implementation eval and deploy share.
from training.pruning import PRUNE_TYPES, prune_matrix as prune, validate_prune as check_prune  # noqa: F401

# Dense score blocks are at most this many floats (queries x documents) at a time.
_BLOCK_FLOATS = 8_000_000


def feature_field_round(values: np.ndarray) -> np.ndarray:
    """What Lucene's FeatureField stores (rank_features fields): the float's bits >>> 15 as term frequency,
    decoded as bits << 15, i.e. the low 15 mantissa bits cut off (truncation, 9 significant bits)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return (bits & np.uint32(0xFFFF8000)).view(np.float32)


class SparseIndex:
    """Exact top-k by inner product over documents [n_docs, vocab]. `opensearch=True` stores document weights as
    a rank_features field does (FeatureField rounding) and accumulates each query's products in double, as Lucene's
    disjunction scorer sums its clauses, before returning float32 scores. Ties: lower document index first (Lucene's order).

    `two_phase_ratio > 0` searches as OpenSearch's `neural_sparse_two_phase_processor` does: the query terms
    weighing at least ratio x its largest weight find the top k x `expansion_rate` documents (at most
    `max_window_size`), and only those are rescored with the whole query. Approximate, and much faster for the long
    expanded queries of learned sparse models. For approximate search with bounded posting lists (OpenSearch's
    `sparse_vector` field), see eval.seismic_index."""

    def __init__(self, documents: sp.spmatrix, opensearch: bool = False, prune_type: str = "none",
                 prune_ratio: float = 0.0, two_phase_ratio: float = 0.0, expansion_rate: float = 5.0,
                 max_window_size: int = 10_000):
        if not 0.0 <= two_phase_ratio < 1.0:
            raise ValueError(f"two_phase_ratio must be in [0, 1), got {two_phase_ratio}")
        if expansion_rate < 1.0 or max_window_size < 1:
            raise ValueError("expansion_rate must be >= 1 and max_window_size >= 1")
        self.two_phase = (two_phase_ratio, expansion_rate, max_window_size)
        docs = prune(sp.csr_matrix(documents, dtype=np.float32), prune_type, prune_ratio)
        if opensearch:
            docs.data = feature_field_round(docs.data)
            docs.eliminate_zeros()
        self.opensearch = opensearch
        self.documents = docs
        self._docs_t = docs.T.tocsr().astype(np.float64 if opensearch else np.float32, copy=False)

    @property
    def num_docs(self) -> int:
        return self.documents.shape[0]

    def scores(self, queries: sp.spmatrix) -> np.ndarray:
        """Dense [n_queries, n_docs] float32 scores (small corpora, tests)."""
        queries = self._check(queries)
        return np.asarray((queries @ self._docs_t).toarray(), dtype=np.float32)

    def search(self, queries: sp.spmatrix, k: int = 100, batch_size: Optional[int] = None):
        """(indices [n_queries, k], scores [n_queries, k]) best first; k is capped at the number of documents."""
        queries = self._check(queries)
        k = min(int(k), self.num_docs)
        n = queries.shape[0]
        indices = np.zeros((n, k), dtype=np.int64)
        scores = np.zeros((n, k), dtype=np.float32)
        if k == 0:
            return indices, scores
        if self.two_phase[0] > 0:
            for i in range(n):
                indices[i], scores[i] = self._two_phase_search(queries[i], k)
            return indices, scores
        if n == 1:  # a search server's case: one query, walk its posting lists
            indices[0], scores[0] = top_k(self._postings_scores(queries)[None, :], k)
            return indices, scores
        batch_size = batch_size or max(1, _BLOCK_FLOATS // max(1, self.num_docs))
        for start in range(0, n, batch_size):
            block = np.asarray((queries[start:start + batch_size] @ self._docs_t).toarray(), dtype=np.float32)
            indices[start:start + len(block)], scores[start:start + len(block)] = top_k(block, k)
        return indices, scores

    def _postings_scores(self, query: sp.csr_matrix, dtype=np.float32) -> np.ndarray:
        """Scores of one query by summing the posting lists of its terms (as an inverted index does): the work is
        the total length of those lists, not a sparse matrix product with its per-call set-up."""
        t = self._docs_t
        offsets, lengths = _row_offsets(t.indptr, query.indices)
        weights = t.data[offsets] * np.repeat(query.data, lengths)
        return np.bincount(t.indices[offsets], weights, minlength=self.num_docs).astype(dtype, copy=False)

    def _two_phase_search(self, query: sp.csr_matrix, k: int):
        ratio, expansion_rate, max_window = self.two_phase
        high = query.data >= query.data.max(initial=0) * ratio
        first = query.copy()  # eliminate_zeros works in place: never on arrays shared with the caller's query
        first.data = first.data * high
        first.eliminate_zeros()
        window = min(self.num_docs, max(k, min(int(k * expansion_rate), max_window)))
        candidates, _ = top_k(self._postings_scores(first, np.float64)[None, :], window)  # candidates only: no cast
        candidates = candidates[0]
        full = self._rescore(candidates, query)
        order = np.lexsort((candidates, -full.astype(np.float32)))[:k]
        return candidates[order], full[order].astype(np.float32)

    def _rescore(self, candidates: np.ndarray, query: sp.csr_matrix) -> np.ndarray:
        """Whole-query scores of a few documents from their stored vectors (a forward index), in float64."""
        d = self.documents
        offsets, lengths = _row_offsets(d.indptr, candidates)
        dense_query = np.zeros(d.shape[1])
        dense_query[query.indices] = query.data
        products = d.data[offsets].astype(np.float64) * dense_query[d.indices[offsets]]
        return np.bincount(np.repeat(np.arange(len(candidates)), lengths), products, minlength=len(candidates))

    def _check(self, queries) -> sp.csr_matrix:
        queries = sp.csr_matrix(queries)
        if queries.shape[1] != self.documents.shape[1]:
            raise ValueError(f"queries have {queries.shape[1]} columns but the index vocabulary has "
                             f"{self.documents.shape[1]}: were they encoded by the same model?")
        return queries.astype(self._docs_t.dtype)


def _row_offsets(indptr: np.ndarray, rows: np.ndarray):
    """(positions in data/indices of the entries of `rows` of a CSR matrix, in row order; each row's length)."""
    starts, lengths = indptr[rows], np.diff(indptr)[rows]
    return np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths), lengths
