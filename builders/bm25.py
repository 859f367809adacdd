"""Korean BM25, the baseline every model must clear and the hard-negative miner: bm25s over python-mecab-ko
morphemes (what OpenSearch's nori analyser does), or over character bigrams (no analyser at all).

Lives in `builders` because mining needs it and `builders` imports nothing of ours; `eval` reuses it."""
from __future__ import annotations

import logging
import re
import unicodedata
from typing import Iterable, Sequence

import bm25s
import numpy as np

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import: one line per index built

ANALYZERS = ("mecab", "bigram")
_PUNCT = re.compile(r"^[\W_]+$")
_SPACE = re.compile(r"\s+")


class KoreanAnalyzer:
    """Text -> terms. `mecab`: NFC, mecab morphemes, lowercased, punctuation dropped.
    `bigram`: character bigrams of each whitespace token (a unigram for 1-character tokens)."""

    def __init__(self, kind: str = "mecab"):
        if kind not in ANALYZERS:
            raise ValueError(f"unknown analyzer {kind!r}; choose one of {ANALYZERS}")
        self.kind = kind
        self._mecab = None
        if kind == "mecab":
            import mecab

            self._mecab = mecab.MeCab()

    def __call__(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", text).lower()
        if self.kind == "mecab":
            return [m for m in self._mecab.morphs(text) if not _PUNCT.match(m)]
        terms = []
        for word in _SPACE.split(text):
            word = "".join(ch for ch in word if ch.isalnum())
            if len(word) == 1:
                terms.append(word)
            terms.extend(word[i : i + 2] for i in range(len(word) - 1))
        return terms

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(t) for t in texts]


class KoreanBM25:
    """bm25s index over analysed Korean text. `search` returns (indices [n, k], scores [n, k]) as numpy arrays,
    ranked by score, ties broken by lower document index."""

    def __init__(self, analyzer: str = "mecab", k1: float = 0.9, b: float = 0.4, method: str = "lucene"):
        self.analyzer = KoreanAnalyzer(analyzer)
        self.retriever = bm25s.BM25(k1=k1, b=b, method=method)
        self.num_docs = 0

    def index(self, corpus: Sequence[str], show_progress: bool = False) -> "KoreanBM25":
        self.num_docs = len(corpus)
        self.retriever.index(self.analyzer.batch(corpus), show_progress=show_progress)
        return self

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """Dense [n_queries, n_docs] BM25 scores (for small corpora, hybrid fusion and exact tie handling)."""
        out = np.zeros((len(queries), self.num_docs), dtype=np.float32)
        for i, terms in enumerate(self.analyzer.batch(queries)):
            if terms:
                out[i] = self.retriever.get_scores(terms)
        return out

    def search(self, queries: Sequence[str], k: int = 10, show_progress: bool = False):
        k = min(k, self.num_docs)
        indices = np.zeros((len(queries), k), dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        for i, terms in enumerate(self.analyzer.batch(queries)):
            row = self.retriever.get_scores(terms) if terms else np.zeros(self.num_docs, dtype=np.float32)
            # Only documents scoring at least the k-th best can be in the top k: sort those (exact, ties included).
            kth = np.partition(row, self.num_docs - k)[self.num_docs - k] if k else 0.0
            cand = np.flatnonzero(row >= kth)
            top = cand[np.lexsort((cand, -row[cand]))][:k]
            indices[i], scores[i] = top, row[top]
        return indices, scores

    def scores_for(self, queries: Sequence[str], doc_ids: np.ndarray) -> np.ndarray:
        """BM25 scores of chosen documents, [n_queries, m] for `doc_ids` [n_queries, m] (teacher lists)."""
        out = np.zeros(doc_ids.shape, dtype=np.float32)
        for i, terms in enumerate(self.analyzer.batch(queries)):
            if terms:
                out[i] = self.retriever.get_scores(terms)[doc_ids[i]]
        return out
