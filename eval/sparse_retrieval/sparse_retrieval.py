"""Ranking metrics for retrieval runs: Recall@K, Precision@K, MRR@K, nDCG@K and MAP@K for several K at once.

Loadable offline with `evaluate.load("eval/sparse_retrieval")` and importable as
`eval.sparse_retrieval.SparseRetrieval`. Definitions follow trec_eval (what BEIR reports through pytrec_eval):
linear gains for nDCG, MAP@K divided by all relevant documents, Precision@K divided by K. Ties in score are
broken by doc id (ascending) so results never depend on dict order. This file is self-contained (numpy only)
because `evaluate.load` copies it into its module cache."""
from __future__ import annotations

from typing import Iterable, Sequence

import datasets
import evaluate
import numpy as np

METRICS = ("ndcg", "mrr", "recall", "precision", "map")
DEFAULT_K_VALUES = (1, 10, 100)

_DESCRIPTION = """Information-retrieval metrics (Recall, Precision, MRR, nDCG, MAP at several cut-offs) from run
scores and graded relevance judgements, one dict per query."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {doc_id: score} dicts, one per query: the retrieved documents and their scores.
    references: list of {doc_id: relevance} dicts, same order: graded judgements (relevance > 0 is relevant;
        documents absent from a query's judgements count as non-relevant). Every query needs a relevant document.
    k_values: cut-offs, e.g. [1, 10, 100].
Returns:
    A flat dict {"ndcg@10": float, "mrr@10": float, "recall@100": float, "precision@1": float, "map@10": float, ...}
    averaged over queries.
Examples:
    >>> metric = evaluate.load("eval/sparse_retrieval")
    >>> metric.compute(predictions=[{"d1": 2.0, "d2": 1.0}], references=[{"d2": 1}], k_values=[1, 2])["mrr@2"]
    0.5
"""


def check_k_values(k_values: Iterable[int]) -> list[int]:
    ks = sorted({int(k) for k in k_values})
    if not ks or ks[0] < 1:
        raise ValueError(f"k_values must be positive integers, got {list(k_values)}")
    return ks


def ranking_metrics(gains: np.ndarray, ideal_gains: np.ndarray, num_relevant: np.ndarray,
                    k_values: Sequence[int]) -> dict[str, float]:
    """Metrics from ranked gains, vectorised over queries.

    gains: [n_queries, depth] relevance of the document at each rank (0 past the end of a short run);
    ideal_gains: [n_queries, >= max k] relevance sorted descending (0-padded); num_relevant: [n_queries] count of
    documents with relevance > 0. Depth may be shorter than max k: missing ranks count as non-relevant."""
    ks = check_k_values(k_values)
    n = gains.shape[0]
    if n == 0:
        raise ValueError("no queries to evaluate")
    if np.any(num_relevant <= 0):
        bad = int(np.flatnonzero(num_relevant <= 0)[0])
        raise ValueError(f"query {bad} has no relevant document (relevance > 0); remove it before evaluating")
    depth = max(ks)
    gains = _pad(np.asarray(gains, dtype=np.float64), depth)
    ideal = _pad(np.asarray(ideal_gains, dtype=np.float64), depth)
    relevant = gains > 0
    ranks = np.arange(1, depth + 1)
    discount = 1.0 / np.log2(ranks + 1)
    dcg = np.cumsum(np.where(relevant, gains, 0.0) * discount, axis=1)
    idcg = np.cumsum(np.where(ideal > 0, ideal, 0.0) * discount, axis=1)
    hits = np.cumsum(relevant, axis=1)
    precision_at_rank = np.cumsum(np.where(relevant, hits / ranks, 0.0), axis=1)
    first_hit = np.where(relevant.any(axis=1), relevant.argmax(axis=1) + 1, depth + 1)
    num_relevant = np.asarray(num_relevant, dtype=np.float64)
    per_k = {
        "ndcg": lambda k: dcg[:, k - 1] / idcg[:, k - 1],
        "mrr": lambda k: np.where(first_hit <= k, 1.0 / first_hit, 0.0),
        "recall": lambda k: hits[:, k - 1] / num_relevant,
        "precision": lambda k: hits[:, k - 1] / k,
        "map": lambda k: precision_at_rank[:, k - 1] / num_relevant,
    }
    return {f"{name}@{k}": float(np.mean(per_k[name](k))) for name in METRICS for k in ks}


def _pad(matrix: np.ndarray, depth: int) -> np.ndarray:
    if matrix.ndim != 2:
        raise ValueError(f"expected a [n_queries, depth] matrix, got shape {matrix.shape}")
    if matrix.shape[1] >= depth:
        return matrix[:, :depth]
    return np.pad(matrix, ((0, 0), (0, depth - matrix.shape[1])))


def rank_run(run: dict, depth: int) -> list:
    """Doc ids of one query's run, best first: score descending, then doc id ascending."""
    items = sorted(run.items(), key=lambda kv: (-float(kv[1]), str(kv[0])))
    return [doc for doc, _ in items[:depth]]


def compute_from_dicts(predictions: Sequence[dict], references: Sequence[dict],
                       k_values: Sequence[int] = DEFAULT_K_VALUES) -> dict[str, float]:
    """The metric on {doc_id: score} / {doc_id: relevance} dicts, without evaluate's Arrow round trip."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: one dict per query each")
    ks = check_k_values(k_values)
    depth = max(ks)
    n = len(predictions)
    gains = np.zeros((n, depth))
    ideal = np.zeros((n, depth))
    num_relevant = np.zeros(n)
    for i, (run, qrels) in enumerate(zip(predictions, references)):
        qrels = {str(d): float(r) for d, r in qrels.items()}
        for doc, score in run.items():
            if not np.isfinite(float(score)):
                raise ValueError(f"predictions[{i}]: score of {doc!r} is not finite ({score})")
        ranked = rank_run({str(d): s for d, s in run.items()}, depth)
        gains[i, :len(ranked)] = [qrels.get(doc, 0.0) for doc in ranked]
        positive = sorted((r for r in qrels.values() if r > 0), reverse=True)
        ideal[i, :min(depth, len(positive))] = positive[:depth]
        num_relevant[i] = len(positive)
    if np.any(num_relevant == 0):
        bad = int(np.flatnonzero(num_relevant == 0)[0])
        raise ValueError(f"references[{bad}] has no document with relevance > 0; remove that query before evaluating")
    return ranking_metrics(gains, ideal, num_relevant, ks)


def _to_columns(rows: Sequence[dict], value_name: str) -> list[dict]:
    """{doc_id: value} dicts -> the Arrow-friendly {"doc_ids": [...], value_name: [...]} form evaluate stores."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"expected one {{doc_id: {value_name}}} dict per query, got {type(row).__name__} at {i}")
        out.append({"doc_ids": [str(d) for d in row], value_name: [float(v) for v in row.values()]})
    return out


def _from_columns(rows: Sequence[dict], value_name: str) -> list[dict]:
    return [dict(zip(row["doc_ids"], row[value_name])) for row in rows]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SparseRetrieval(evaluate.Metric):
    """evaluate.Metric wrapper; the dicts are stored as (doc_ids, values) columns because Arrow needs a schema."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": {"doc_ids": datasets.Sequence(datasets.Value("string")),
                                "scores": datasets.Sequence(datasets.Value("float64"))},
                "references": {"doc_ids": datasets.Sequence(datasets.Value("string")),
                               "relevance": datasets.Sequence(datasets.Value("float64"))},
            }),
            reference_urls=["https://github.com/usnistgov/trec_eval"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add one {doc_id: score} / {doc_id: relevance} dict per query."""
        return super().add_batch(predictions=_to_columns(predictions, "scores"),
                                 references=_to_columns(references, "relevance"), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one query's {doc_id: score} and {doc_id: relevance} dicts."""
        return super().add(prediction=_to_columns([prediction], "scores")[0],
                           reference=_to_columns([reference], "relevance")[0], **kwargs)

    def _compute(self, predictions, references, k_values=DEFAULT_K_VALUES):
        return compute_from_dicts(_from_columns(predictions, "scores"), _from_columns(references, "relevance"),
                                  k_values)
