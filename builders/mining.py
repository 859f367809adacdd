"""Hard-negative mining: rank a source's own corpus for each query (Korean BM25 by default, the dense teacher on
request), drop false negatives, and draw negatives from rank bands labelled hard / medium / easy.

A false negative is a candidate that is a known positive of the query, has the positive's or the query's text,
contains the query's answer string (KorQuAD), or (optionally) scores at least `teacher_ratio` of the positive's
teacher score."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from builders.bm25 import KoreanBM25


@dataclass
class Pool:
    """One source's queries and the corpus their negatives come from.

    `search_corpus[j]` is what the miner ranks and `corpus[j]` what becomes a negative: the same text for
    monolingual sources; for parallel text the query-language side is ranked and its translation emitted."""

    source: str
    queries: list
    positives: list
    corpus: list
    search_corpus: list | None = None
    relevant: list = field(default_factory=list)  # per query: corpus indices that are never negatives
    answers: list | None = None  # per query: answer strings or None

    def __post_init__(self):
        self.search_corpus = self.search_corpus or self.corpus
        self.relevant = self.relevant or [set() for _ in self.queries]

    def head(self, n: int | None) -> "Pool":
        """The first `n` queries, over the whole corpus (a capped build still mines realistic negatives)."""
        if n is None:
            return self
        return Pool(self.source, self.queries[:n], self.positives[:n], self.corpus, self.search_corpus,
                    self.relevant[:n], self.answers[:n] if self.answers else None)


@dataclass
class Bands:
    """Negatives per band; `hard_ranks` / `medium_ranks` are where the hard and medium bands end (0-based,
    exclusive); easy negatives are drawn at random from beyond the medium band."""

    hard: int = 2
    medium: int = 1
    easy: int = 1
    hard_ranks: int = 10
    medium_ranks: int = 50

    @property
    def total(self) -> int:
        return self.hard + self.medium + self.easy


def rank(pool: Pool, depth: int, miner: str = "bm25", analyzer: str = "mecab", teacher=None):
    """Candidate indices [n_queries, depth] in rank order, and their scores."""
    if miner == "bm25":
        return KoreanBM25(analyzer).index(pool.search_corpus).search(pool.queries, k=depth)
    if miner == "dense":
        return teacher.search(pool.queries, pool.search_corpus, k=depth, show_progress=True)
    raise ValueError(f"unknown miner {miner!r}; choose bm25 or dense")


def mine(pool: Pool, bands: Bands, rng: np.random.Generator, *, miner: str = "bm25", analyzer: str = "mecab",
         teacher=None, teacher_ratio: float | None = None, stats=None):
    """Yields (query index, negatives, difficulties) for every query that gets exactly `bands.total` negatives;
    a query that cannot (tiny corpus) is counted in `stats["too_few_negatives"]`, never silently lost."""
    stats = stats if stats is not None else {}
    n_docs = len(pool.corpus)
    ranked, scores = rank(pool, min(bands.medium_ranks, n_docs), miner, analyzer, teacher)
    ratio_ok = _teacher_check(pool, ranked, teacher, teacher_ratio) if teacher_ratio else None
    for qi, query in enumerate(pool.queries):
        positive = pool.positives[qi]
        answers = pool.answers[qi] if pool.answers else None

        def usable(j, qi=qi, positive=positive, answers=answers):
            text = pool.corpus[j]
            if j in pool.relevant[qi] or text == positive or text == query:
                return False
            if answers and any(a and a in text for a in answers):
                stats["answer_false_negatives"] = stats.get("answer_false_negatives", 0) + 1
                return False
            return True

        by_band = {"hard": [], "medium": []}
        for r, j in enumerate(ranked[qi]):
            if scores[qi, r] <= 0:  # no term in common: not a hard negative, leave it to the easy band
                break
            if not usable(int(j)):
                continue
            if ratio_ok is not None and not ratio_ok[qi][r]:
                stats["teacher_false_negatives"] = stats.get("teacher_false_negatives", 0) + 1
                continue
            by_band["hard" if r < bands.hard_ranks else "medium"].append(int(j))
        picked, labels = [], []
        want = {"hard": bands.hard, "medium": bands.medium}
        carry = 0
        for band in ("hard", "medium"):  # a short band passes its quota on to the next, easier one
            need = want[band] + carry
            take = list(rng.permutation(by_band[band])[:need]) if by_band[band] else []
            picked += take
            labels += [band] * len(take)
            carry = need - len(take)
        need = bands.easy + carry
        top = {int(j) for j, s in zip(ranked[qi], scores[qi]) if s > 0}  # in the hard/medium bands
        for j in rng.permutation(n_docs):
            if need == 0:
                break
            j = int(j)
            if j in top or j in picked or not usable(j):
                continue
            picked.append(j)
            labels.append("easy")
            need -= 1
        texts = [pool.corpus[j] for j in picked]
        if len(set(texts)) < bands.total:
            stats["too_few_negatives"] = stats.get("too_few_negatives", 0) + 1
            continue
        yield qi, texts, labels


def _teacher_check(pool: Pool, ranked: np.ndarray, teacher, ratio: float) -> np.ndarray:
    """[n_queries, depth] bool: candidate's teacher score below `ratio` x the positive's (positive-aware
    false-negative filter)."""
    q = teacher.encode(pool.queries, is_query=True, show_progress=True)
    docs = teacher.encode(pool.corpus, is_query=False, show_progress=True)
    pos = np.einsum("nd,nd->n", q, teacher.encode(pool.positives, is_query=False))
    cand = np.einsum("nd,nkd->nk", q, docs[ranked])
    return cand < ratio * pos[:, None]
