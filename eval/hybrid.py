"""Hybrid retrieval as OpenSearch scores it: a `hybrid` query whose sub-query results a search pipeline's
`normalization-processor` fuses with `min_max` normalization and `arithmetic_mean` combination.

What the neural-search plugin does (MinMaxScoreNormalizationTechnique, ScoreCombiner,
ArithmeticMeanScoreCombinationTechnique; opensearch-project/neural-search, and the normalization-processor page of
the OpenSearch documentation):
- each sub-query returns its top `size` hits; min and max are taken over the hits of that sub-query for that request;
- a hit normalises to (s - min) / (max - min) in float, to 1.0 when all its hits score the same, and to 0.001
  (MIN_SCORE) instead of 0 (the lowest hit), so it still ranks ahead of a document the sub-query did not return;
- a document's per-sub-query scores start as Java's 0.0, so a sub-query that did not return it contributes 0 and
  its weight still counts: fused = sum(w_i * s_i) / sum(w_i), in float, in sub-query order (a maintainer confirms
  this reading in neural-search PR #1830; an early ScoreCombiner filled -1.0, leaving such sub-queries out).
Ties are broken by lower document index, as SparseIndex does, where Java's order is a HashMap's."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from builders.ranking import top_k

from .index import _BLOCK_FLOATS

MIN_SCORE = np.float32(0.001)


def min_max_normalize(indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[n_queries, depth] float32 min_max scores of one sub-query's run; entries with index -1 (not returned) get 0."""
    hit = indices >= 0
    scores = np.asarray(scores, dtype=np.float32)
    low = np.where(hit, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(hit, scores, -np.inf).max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # rows without hits: masked out below
        normalized = (scores - low) / (high - low)
    normalized = np.where(high == low, np.float32(1.0), np.where(normalized == 0, MIN_SCORE, normalized))
    return np.where(hit, normalized, np.float32(0)).astype(np.float32)


def fuse_min_max(runs: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float], num_docs: int,
                 depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Fuse sub-query runs ((indices, scores) [n_queries, k], index -1 where nothing was returned) into the top
    `depth` (indices, scores) per query. Documents no sub-query returned score 0 and follow in index order, as
    unmatched documents do in SparseIndex runs, so the result is as deep as the runs it is compared with."""
    weights = np.asarray(weights, dtype=np.float32)
    total_weight = np.cumsum(weights, dtype=np.float32)[-1]  # float sum in sub-query order, as Java's loop
    weighted = [(indices, min_max_normalize(indices, scores) * w) for (indices, scores), w in zip(runs, weights)]
    n = runs[0][0].shape[0]
    depth = min(depth, num_docs)
    out_indices = np.zeros((n, depth), dtype=np.int64)
    out_scores = np.zeros((n, depth), dtype=np.float32)
    rows_per_block = max(1, _BLOCK_FLOATS // max(1, num_docs))
    for start in range(0, n, rows_per_block):
        stop = min(start + rows_per_block, n)
        fused = np.zeros((stop - start, num_docs), dtype=np.float32)
        for indices, contribution in weighted:
            rows, cols = np.nonzero(indices[start:stop] >= 0)
            fused[rows, indices[start + rows, cols]] += contribution[start + rows, cols]
        out_indices[start:stop], out_scores[start:stop] = top_k(fused / total_weight, depth)
    return out_indices, out_scores
