"""Distillation lists `{"query","docs","scores"}` (the OpenSearch sparse tuning sample's "kd" format).

For each query: its positive first, then BM25-mined candidates from the same corpus, all scored by a teacher:
`dense` (multilingual-e5-small cosine x `dense_scale`, 100 = E5's own training temperature), `bm25` (raw Korean
BM25), or `ensemble` (both normalised per list, `ensemble_normalization` min_max as OpenSearch's hybrid query does
or z_score, mixed by `dense_weight`; scaled by `dense_scale` so its softmax is as peaked as the dense teacher's).
Same splits as triplets: no eval article or query reaches `train`. The build log reports each teacher's nDCG@10
over the lists of every split (the positive is the one relevant document): how well the student could do."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import datasets
import numpy as np

from builders.base import ToolkitBuilder, ToolkitConfig
from builders.bm25 import KoreanBM25
from builders.mining import Pool
from builders.contracts import DISTILLATION
from builders.teacher import E5_LOGIT_SCALE
from builders.triplets import EVAL_SOURCES, query_splits, read_pools, user_pool

logger = logging.getLogger(__name__)
TEACHERS = ("dense", "bm25", "ensemble")
NORMALIZATIONS = ("min_max", "z_score")


def candidate_lists(pool: Pool, bm25: KoreanBM25, docs_per_query: int, stats: Counter):
    """(query rows kept, doc ids [n, docs_per_query]): the positive, then the best-ranked other documents."""
    index = {t: i for i, t in enumerate(pool.corpus)}
    ranked, _ = bm25.search(pool.queries, k=docs_per_query + 1)
    rows, ids = [], []
    for qi, positive in enumerate(pool.positives):
        pos = index[positive]
        others = [int(j) for j in ranked[qi] if j != pos][: docs_per_query - 1]
        if len(others) < docs_per_query - 1:
            stats["too_few_docs"] += 1
            continue
        rows.append(qi)
        ids.append([pos] + others)
    return rows, np.asarray(ids, dtype=np.int64).reshape(len(ids), docs_per_query)


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-row standardisation, so teachers on different scales can be mixed."""
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)


def min_max(x: np.ndarray) -> np.ndarray:
    """Per-row (x - min) / (max - min), OpenSearch's min_max normalisation (a constant row becomes 0)."""
    low, high = x.min(1, keepdims=True), x.max(1, keepdims=True)
    return np.where(high > low, (x - low) / np.where(high > low, high - low, 1), 0.0)


def list_ndcg_at_10(scores: np.ndarray) -> float:
    """Mean nDCG@10 of lists whose first document (the positive) is the only relevant one (ties rank it last)."""
    rank = (scores[:, 1:] >= scores[:, :1]).sum(1)  # 0-based rank of the positive
    return float(np.mean(np.where(rank < 10, 1.0 / np.log2(rank + 2), 0.0)))


def teacher_scores(kind: str, queries, doc_texts: list[list[str]], bm25_scores: np.ndarray, teacher,
                   dense_scale: float, dense_weight: float, normalization: str = "min_max") -> np.ndarray:
    if kind == "bm25":
        return bm25_scores
    q = teacher.encode(queries, is_query=True, show_progress=True)
    unique = list(dict.fromkeys(d for docs in doc_texts for d in docs))  # lists share documents: encode each once
    vectors = teacher.encode(unique, is_query=False, show_progress=True)
    row = {text: i for i, text in enumerate(unique)}
    d = vectors[[[row[t] for t in docs] for docs in doc_texts]]
    cosine = np.einsum("nd,nkd->nk", q, d)
    if kind == "dense":
        return cosine * dense_scale
    if kind == "ensemble":
        norm = {"min_max": min_max, "z_score": zscore}[normalization]
        mixed = dense_weight * norm(cosine) + (1 - dense_weight) * norm(bm25_scores)
        # min_max lies in [0, 1]: give its softmax the spread of the dense teacher's (cosines x 100 span ~10)
        return mixed * (10.0 if normalization == "min_max" else 1.0)
    raise ValueError(f"unknown teacher {kind!r}; choose from {TEACHERS}")


@dataclass
class DistillationConfig(ToolkitConfig):
    sources: tuple = EVAL_SOURCES
    teacher: str = "dense"
    docs_per_query: int = 8
    dense_scale: float = E5_LOGIT_SCALE
    dense_weight: float = 0.5
    ensemble_normalization: str = "min_max"
    analyzer: str = "mecab"

    def __post_init__(self):
        super().__post_init__()
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.ensemble_normalization not in NORMALIZATIONS:
            raise ValueError(f"ensemble_normalization must be one of {NORMALIZATIONS}, got "
                             f"{self.ensemble_normalization!r}")
        if not 0 <= self.dense_weight <= 1:
            raise ValueError(f"dense_weight must be in [0, 1], got {self.dense_weight}")


class Distillation(ToolkitBuilder):
    BUILDER_CONFIG_CLASS = DistillationConfig
    BUILDER_CONFIGS = [DistillationConfig(name="distillation", description="Teacher-scored candidate lists")]
    DEFAULT_CONFIG_NAME = "distillation"
    SCHEMA = DISTILLATION
    DESCRIPTION = __doc__

    def _split_generators(self, dl_manager):
        return query_splits(self.config)

    def _generate_examples(self, shards, split):
        cfg = self.config
        teacher = None
        if cfg.teacher != "bm25":
            from builders.teacher import DenseTeacher

            # one teacher for every split and pool, so its cache spans them (pools share passages and queries)
            if getattr(self, "_teacher", None) is None:
                self._teacher = DenseTeacher()
            teacher = self._teacher
        for shard in shards:
            bad = self.bad_records()
            if shard.startswith("jsonl:"):
                pools = [user_pool(shard[len("jsonl:"):], bad)]
            else:
                pools = read_pools(shard, split, cfg.data_dir, bad, cfg.max_per_source)
            for pool in pools:
                stats = Counter()
                bm25 = KoreanBM25(cfg.analyzer).index(pool.search_corpus)
                rows, ids = candidate_lists(pool, bm25, cfg.docs_per_query, stats)
                if not rows:
                    logger.info("distillation %s/%s: no lists; %s", split, pool.source, dict(stats))
                    continue
                queries = [pool.queries[i] for i in rows]
                docs = [[pool.corpus[j] for j in row] for row in ids]
                scores = teacher_scores(cfg.teacher, queries, docs, bm25.scores_for(queries, ids), teacher,
                                        cfg.dense_scale, cfg.dense_weight, cfg.ensemble_normalization)
                self.build_report = getattr(self, "build_report", []) + [
                    f"{split}/{pool.source}: {cfg.teacher} teacher nDCG@10 over its {len(rows)} lists "
                    f"{list_ndcg_at_10(np.asarray(scores)):.3f}"]
                for i, (query, texts, row_scores) in enumerate(zip(queries, docs, scores)):
                    yield f"{pool.source}-{rows[i]}", {"query": query, "docs": texts,
                                                      "scores": [float(s) for s in row_scores]}
                logger.info("distillation %s/%s: %d lists of %d docs (%s teacher); %s; %s", split, pool.source,
                            len(rows), cfg.docs_per_query, cfg.teacher, dict(stats) or "no drops", bad.summary())
