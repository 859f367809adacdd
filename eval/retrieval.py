"""Evaluate a retrieval run on a Benchmark, encode with an on-disk cache, and the callable evaluator the trainer
uses (`RetrievalEvaluator(benchmark_dir)(model) -> {"ndcg@10": ...}`)."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .beir import Benchmark, load_beir
from .index import SparseIndex
from .sparse_retrieval.sparse_retrieval import check_k_values, ranking_metrics
from .stats import sparsity_stats

logger = logging.getLogger(__name__)


def run_gains(benchmark: Benchmark, indices: np.ndarray):
    """Relevance of each retrieved document index ([n_queries, depth]), the ideal gains and the number of relevant
    documents per query, looked up in the qrels without a per-query loop."""
    qrels = benchmark.qrels_matrix().tocoo()
    n_docs = qrels.shape[1]
    keys = qrels.row.astype(np.int64) * n_docs + qrels.col
    order = np.argsort(keys)
    keys, values = keys[order], qrels.data[order]
    lookup = np.arange(len(indices))[:, None] * n_docs + indices
    pos = np.clip(np.searchsorted(keys, lookup), 0, max(len(keys) - 1, 0))
    gains = np.where(keys[pos] == lookup, values[pos], 0.0) if len(keys) else np.zeros(lookup.shape)
    positive = values > 0
    rows, rel = qrels.row[order][positive], values[positive]
    num_relevant = np.bincount(rows, minlength=benchmark.num_queries)
    by_row = np.lexsort((-rel, rows))
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(num_relevant) - num_relevant, num_relevant)
    ideal = np.zeros((benchmark.num_queries, max(1, int(num_relevant.max(initial=0)))))
    ideal[rows[by_row], rank] = rel[by_row]
    return gains, ideal, num_relevant


def evaluate_run(benchmark: Benchmark, indices: np.ndarray, k_values: Sequence[int]) -> dict[str, float]:
    """Metrics of a run given as retrieved document indices per query, best first (the index's tie order)."""
    gains, ideal, num_relevant = run_gains(benchmark, np.asarray(indices, dtype=np.int64))
    return ranking_metrics(gains, ideal, num_relevant, k_values)


def encode_cached(model, texts: Sequence[str], cache_dir: Optional[Path], is_query: bool = False,
                  model_dir: Optional[Path] = None, batch_size: int = 32,
                  show_progress_bar: bool = True) -> sp.csr_matrix:
    """model.encode(...).matrix, stored as .npz under cache_dir keyed by the model (the files of model_dir, else its
    parameters), its sparse config and the texts, so a corpus is encoded once per model."""
    if cache_dir is None:
        return model.encode(list(texts), batch_size=batch_size, is_query=is_query,
                            show_progress_bar=show_progress_bar).matrix
    path = Path(cache_dir) / f"{'queries' if is_query else 'corpus'}-{_cache_key(model, texts, is_query, model_dir)}.npz"
    if path.is_file():
        logger.info("loading cached encodings from %s", path)
        return sp.load_npz(path).tocsr()
    matrix = model.encode(list(texts), batch_size=batch_size, is_query=is_query,
                          show_progress_bar=show_progress_bar).matrix
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    sp.save_npz(tmp, matrix)
    tmp.replace(path)
    return matrix


QUERY_ONLY_CONFIG = ("mode", "max_query_length", "default_idf")


def _cache_key(model, texts: Sequence[str], is_query: bool, model_dir: Optional[Path]) -> str:
    h = hashlib.sha256()
    if model_dir is not None:  # the saved weights: names, sizes and mtimes identify a checkpoint cheaply
        for f in sorted(Path(model_dir).glob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:  # an in-memory model: hash its parameters
        for p in model.state_dict().values():
            h.update(p.detach().cpu().numpy().tobytes())
    config = asdict(model.config)
    if not is_query:  # the query side's settings do not change a document's vector
        for name in QUERY_ONLY_CONFIG:
            config.pop(name, None)
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(b"query" if is_query else b"doc")
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:20]


class RetrievalEvaluator:
    """Quality and sparsity of a SparseEncoder on a BEIR folder, for evaluation during training:
    `RetrievalEvaluator("OUT/korquad-dev-ret", max_queries=500)(model)` ->
    {"ndcg@10", "mrr@10", "recall@10", ..., "avg_query_terms", "avg_doc_terms", "flops"}. The whole corpus is
    encoded on every call (the weights change); keep the benchmark small."""

    def __init__(self, benchmark_dir: "str | Path | Benchmark", k_values: Sequence[int] = (10,), max_queries: Optional[int] = None,
                 split: str = "test", batch_size: int = 32, show_progress_bar: bool = False):
        benchmark = benchmark_dir if isinstance(benchmark_dir, Benchmark) else load_beir(benchmark_dir, split=split)
        self.benchmark = benchmark.subset(max_queries)
        self.k_values = check_k_values(k_values)
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar

    def __call__(self, model) -> dict[str, float]:
        b = self.benchmark
        docs = model.encode(b.corpus_texts, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar)
        queries = model.encode(b.query_texts, batch_size=self.batch_size, is_query=True,
                               show_progress_bar=self.show_progress_bar)
        indices, _ = SparseIndex(docs.matrix).search(queries.matrix, k=max(self.k_values))
        metrics = evaluate_run(b, indices, self.k_values)
        stats = sparsity_stats(queries.matrix, docs.matrix)
        metrics.update({k: stats[k] for k in ("avg_query_terms", "avg_doc_terms", "flops")})
        return metrics
