"""OpenSearch's ingest pruning (neural-search `PruneUtils`): the one implementation behind `eval` (local indexes)
and `deploy` (bulk vectors, pipeline bodies), so the vectors measured locally are the ones a cluster stores.

The Java rules, in Java's float32 arithmetic (the ratio arrives as `floatValue()` of the JSON number):
- max_ratio: keep w where w >= ratio * max(row)  (the product rounded to float);
- abs_value: keep w where w >= ratio;
- top_k: keep the int(ratio) largest;
- alpha_mass: largest first, `topSum += w` in float; keep w while topSum <= ratio * sum, with sum the row total
  added in double and cast to float (Java's compensated sum and numpy's pairwise one agree: float32 weights whose
  magnitudes span under ~2^20 add up exactly in double). The weight whose addition crosses ratio * sum is dropped, and so is every
  later one (the running sum of positive weights never decreases).
Weights must be positive (Java throws otherwise). Ties, which Java settles by HashMap iteration and heap order
(unspecified): the lower column wins, for a dict the earlier key. Only which of several equal weights is kept can
differ from a cluster; how many and their values cannot.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PRUNE_TYPES = ("none", "max_ratio", "alpha_mass", "top_k", "abs_value")
# PruneUtils.getValidPruneRatioDescription
RATIO_RULES = {"top_k": "prune_ratio should be a positive integer", "max_ratio": "prune_ratio should be in [0, 1)",
               "alpha_mass": "prune_ratio should be in [0, 1)", "abs_value": "prune_ratio should be non-negative"}
# Padded [rows, longest row] float32 blocks for alpha_mass's per-row running sums are at most this many floats.
_BLOCK_FLOATS = 4_000_000


def is_valid_prune_ratio(prune_type: str, prune_ratio: float) -> bool:
    """PruneUtils.isValidPruneRatio, on the ratio as the float Java sees."""
    ratio = np.float32(prune_ratio)
    if prune_type == "top_k":
        return bool(ratio > 0 and ratio == np.floor(ratio))
    if prune_type in ("max_ratio", "alpha_mass"):
        return bool(0 <= ratio < 1)
    if prune_type == "abs_value":
        return bool(ratio >= 0)
    return True


def validate_prune(prune_type: str, prune_ratio: float) -> None:
    """Reject what the `sparse_encoding` processor factory rejects, saying which range applies."""
    if prune_type not in PRUNE_TYPES:
        raise ValueError(f"prune_type must be one of {PRUNE_TYPES}, got {prune_type!r}")
    if not is_valid_prune_ratio(prune_type, prune_ratio):
        raise ValueError(f"illegal prune_ratio {prune_ratio} for prune_type {prune_type}: {RATIO_RULES[prune_type]}")


def prune_matrix(matrix: sp.spmatrix, prune_type: str = "none", prune_ratio: float = 0.0) -> sp.csr_matrix:
    """Every row of a CSR matrix pruned as the ingest processor prunes one document (a float32 copy, sorted
    indices), vectorised over rows."""
    validate_prune(prune_type, prune_ratio)
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.sum_duplicates()
    if prune_type == "none" or m.nnz == 0:
        return m
    if not np.all(m.data > 0):
        raise ValueError("pruned values must be positive (OpenSearch rejects zero, negative or NaN weights)")
    ratio = np.float32(prune_ratio)
    lengths = np.diff(m.indptr)
    row_of = np.repeat(np.arange(m.shape[0]), lengths)
    if prune_type == "abs_value":
        keep = m.data >= ratio
    elif prune_type == "max_ratio":
        keep = m.data >= (ratio * _row_reduce(np.maximum, m.data, m.indptr))[row_of]
    else:
        # Within each row: weight descending, then column ascending. Positive float32 bits order like the values,
        # so one stable sort of (row, inverted bits) does it; indices are sorted, so ties keep column order.
        inverted = (np.uint32(0xFFFFFFFF) - m.data.view(np.uint32)).astype(np.int64)
        order = np.argsort((row_of.astype(np.int64) << 32) | inverted, kind="stable")
        rank = np.arange(m.nnz) - m.indptr[row_of]  # sorted position p still lies in row row_of[p]
        if prune_type == "top_k":
            keep_sorted = rank < int(ratio)
        else:
            total = _row_reduce(np.add, m.data.astype(np.float64), m.indptr).astype(np.float32)
            running = _row_running_sums(m.data[order], lengths)
            keep_sorted = running <= (ratio * total)[row_of]
        keep = np.empty(m.nnz, dtype=bool)
        keep[order] = keep_sorted
    m.data[~keep] = 0
    m.eliminate_zeros()
    return m


def prune_dict(features: dict, prune_type: str = "none", prune_ratio: float = 0.0) -> dict:
    """`prune_matrix` for one {feature: weight} dict (its keys in their order as columns): the same rules by
    construction. Decides on the float32 weights and returns the kept entries unchanged, in their order."""
    validate_prune(prune_type, prune_ratio)
    if prune_type == "none" or not features:
        return dict(features)
    keys = list(features)
    row = sp.csr_matrix((np.asarray([features[k] for k in keys], dtype=np.float32), np.arange(len(keys)),
                         [0, len(keys)]), shape=(1, len(keys)))
    kept = prune_matrix(row, prune_type, prune_ratio).indices
    return {keys[i]: features[keys[i]] for i in kept}


def _row_reduce(ufunc: np.ufunc, data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """ufunc over each CSR row, sequentially in data's dtype (0 for empty rows)."""
    out = np.zeros(len(indptr) - 1, dtype=data.dtype)
    nonempty = np.diff(indptr) > 0
    if nonempty.any():
        out[nonempty] = ufunc.reduceat(data, indptr[:-1][nonempty])
    return out


def _row_running_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Running float32 sums restarting at each row, added one by one as Java's `topSum += value` does (a global
    cumulative sum minus each row's offset would round differently). Rows are padded [rows, longest] in blocks."""
    out = np.empty(len(values), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    rows_per_block = max(1, _BLOCK_FLOATS // max(1, int(lengths.max(initial=0))))
    for r0 in range(0, len(lengths), rows_per_block):
        r1 = min(r0 + rows_per_block, len(lengths))
        lo, hi = starts[r0], starts[r1]
        row = np.repeat(np.arange(r1 - r0), lengths[r0:r1])
        col = np.arange(hi - lo) - (starts[r0:r1] - lo)[row]
        padded = np.zeros((r1 - r0, int(lengths[r0:r1].max(initial=0))), dtype=np.float32)
        padded[row, col] = values[lo:hi]
        out[lo:hi] = np.cumsum(padded, axis=1, dtype=np.float32)[row, col]
    return out
