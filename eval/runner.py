"""One system on one benchmark: index, search, metrics, sparsity and latency. Shared by run_eval.py for models
and baselines, so both are measured the same way."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .baselines import BM25Baseline
from .beir import Benchmark
from .index import SparseIndex
from .retrieval import encode_cached, evaluate_run
from .stats import active_terms, sparsity_stats


def evaluate_sparse(benchmark: Benchmark, queries: sp.csr_matrix, documents: sp.csr_matrix,
                    k_values: Sequence[int], encode_one: Callable[[str], sp.csr_matrix], tokenizer=None,
                    latency_queries: int = 100, **index_options):
    """(metrics, {"query": active terms, "doc": active terms}); latency_ms is the median time to encode one query
    and search the index for it, over the first latency_queries queries."""
    index = SparseIndex(documents, **index_options)
    indices, _ = index.search(queries, k=max(k_values))
    metrics = evaluate_run(benchmark, indices, k_values)
    metrics.update(sparsity_stats(queries, index.documents, tokenizer))
    timings = []
    for text in benchmark.query_texts[:latency_queries]:
        start = time.perf_counter()
        index.search(encode_one(text), k=max(k_values))
        timings.append(time.perf_counter() - start)
    if timings:
        metrics["latency_ms"] = float(np.median(timings) * 1000)
    metrics["num_queries"] = float(benchmark.num_queries)
    metrics["num_docs"] = float(len(benchmark.corpus_ids))
    return metrics, {"query": active_terms(queries), "doc": active_terms(index.documents)}


def run_model(model, benchmark: Benchmark, k_values: Sequence[int], cache_dir: Optional[Path] = None,
              model_dir: Optional[Path] = None, batch_size: int = 32, latency_queries: int = 100,
              **index_options):
    """Encode the corpus (cached) and the queries, then evaluate_sparse."""
    docs = encode_cached(model, benchmark.corpus_texts, cache_dir, model_dir=model_dir, batch_size=batch_size)
    queries = encode_cached(model, benchmark.query_texts, cache_dir, is_query=True, model_dir=model_dir,
                            batch_size=batch_size)
    encode_one = lambda text: model.encode([text], is_query=True).matrix  # noqa: E731
    return evaluate_sparse(benchmark, queries, docs, k_values, encode_one, tokenizer=model.tokenizer,
                           latency_queries=latency_queries, **index_options)


def run_bm25(analyzer: str, benchmark: Benchmark, k_values: Sequence[int], latency_queries: int = 100):
    baseline = BM25Baseline(analyzer)
    docs = baseline.index(benchmark.corpus_texts)
    queries = baseline.encode_queries(benchmark.query_texts)
    encode_one = lambda text: baseline.encode_queries([text])  # noqa: E731
    return evaluate_sparse(benchmark, queries, docs, k_values, encode_one, latency_queries=latency_queries)
