"""Ranking a dense block of scores: the one exact top-k that dense mining (builders) and every index and baseline
(eval) use, so ties break the same way everywhere (score descending, then the lower document index)."""
from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int):
    """Exact per-row top k of a dense block, score descending then column ascending, without a full sort."""
    n, m = scores.shape
    k = min(k, m)
    rows = np.arange(n)[:, None]
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = scores[rows, part].min(axis=1, keepdims=True)
        if n == 1:  # one query (a search server's case): index arithmetic, no cumulative sum over the corpus
            row, threshold = scores[0], kth[0, 0]
            ties = np.flatnonzero(row == threshold)
            if len(ties) == np.count_nonzero(row[part[0]] == threshold):
                cols = part  # no document outside the partition ties the k-th score: nothing to arbitrate
            else:  # of the documents tied with the k-th score, the lowest indices that still fit
                greater = np.flatnonzero(row > threshold)
                cols = np.concatenate([greater, ties[:k - len(greater)]])[None, :]
        else:
            greater = scores > kth
            equal = scores == kth
            # Of the documents tied with the k-th score, take the lowest indices that still fit.
            room = k - greater.sum(axis=1, keepdims=True)
            take = greater | (equal & (np.cumsum(equal, axis=1) <= room))
            cols = np.nonzero(take)[1].reshape(n, k)
    else:
        cols = np.broadcast_to(np.arange(m), (n, m))
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals), axis=1)
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)
