"""Korean BM25 (builders.bm25) viewed as a sparse model: bm25s precomputes one weight per (term, document), so
documents are a CSR matrix over the analyser's term vocabulary and a query is its bag of term counts. BM25 then
runs through the same SparseIndex, sparsity statistics and metrics as a neural model, with scores identical to
bm25s's own `get_scores`."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from builders.bm25 import KoreanBM25


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
