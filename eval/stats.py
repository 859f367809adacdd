"""Sparsity and language statistics of encoded texts: the cost side of a sparse model (active terms, FLOPS) and
where its weight goes (Hangul / Latin / other pieces), next to the quality metrics."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.vocab import token_scripts

LANGUAGE_GROUPS = ("hangul", "latin", "common", "other")


def active_terms(matrix: sp.csr_matrix) -> np.ndarray:
    """Number of non-zero terms per row."""
    return np.diff(sp.csr_matrix(matrix).indptr)


def activation_probability(matrix: sp.csr_matrix) -> np.ndarray:
    """p(j): the share of rows in which term j is active."""
    matrix = sp.csr_matrix(matrix)
    counts = np.bincount(matrix.indices[matrix.data != 0], minlength=matrix.shape[1])
    return counts / max(1, matrix.shape[0])


def flops(queries: sp.csr_matrix, documents: sp.csr_matrix) -> float:
    """Expected multiplications per query-document pair, sum_j p_q(j) * p_d(j) (Paria et al., 2020)."""
    return float(activation_probability(queries) @ activation_probability(documents))


def language_shares(matrix: sp.csr_matrix, scripts: np.ndarray) -> dict[str, float]:
    """Share of the total activated weight on Hangul / Latin / common (digits, punctuation) / other pieces.
    `scripts` is training.vocab.token_scripts(tokenizer): one script rule for training and evaluation."""
    matrix = sp.csr_matrix(matrix)
    scripts = np.asarray(scripts)[: matrix.shape[1]]
    weight = np.asarray(matrix.sum(axis=0)).ravel()[: len(scripts)]
    total = weight.sum()
    return {g: float(weight[scripts == g].sum() / total) if total > 0 else 0.0 for g in LANGUAGE_GROUPS}


def sparsity_stats(queries: sp.csr_matrix, documents: sp.csr_matrix, tokenizer=None) -> dict[str, float]:
    """avg/median/99th-percentile/max active terms for queries and documents, FLOPS, and (given the tokenizer)
    language shares. The tail is reported because a mean hides it: a model can keep the average query at 30 terms
    while its two-word queries carry a thousand."""
    q, d = active_terms(queries), active_terms(documents)
    out = {}
    for side, counts in (("query", q), ("doc", d)):
        counts = counts if len(counts) else np.zeros(1)
        out.update({f"avg_{side}_terms": float(counts.mean()), f"median_{side}_terms": float(np.median(counts)),
                    f"p99_{side}_terms": float(np.percentile(counts, 99)), f"max_{side}_terms": float(counts.max())})
    out["flops"] = flops(queries, documents)
    if tokenizer is not None:
        scripts = token_scripts(tokenizer)
        for side, matrix in (("query", queries), ("doc", documents)):
            for group, share in language_shares(matrix, scripts).items():
                out[f"{side}_{group}_share"] = share
    return out
