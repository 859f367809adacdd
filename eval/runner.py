"""One system on one benchmark: index, search, metrics, sparsity and latency. Shared by run_eval.py for models
and baselines, so both are measured the same way. Each returns its run too (indices, scores), for hybrid fusion."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .baselines import BM25Baseline, DenseBaseline, dense_search
from .beir import Benchmark
from .hybrid import fuse_min_max
from .index import SparseIndex, prune
from .retrieval import encode_cached, evaluate_run
from .stats import active_terms, sparsity_stats


def evaluate_sparse(benchmark: Benchmark, queries: sp.csr_matrix, documents: sp.csr_matrix,
                    k_values: Sequence[int], encode_one: Callable[[str], sp.csr_matrix], tokenizer=None,
                    latency_queries: int = 100, depth: int = 0, **index_options):
    """(metrics, {"query": active terms, "doc": active terms}, run); latency_ms is the median time to encode one
    query and search the index for it, over the first latency_queries queries. The run is searched to
    max(k_values, depth), with index -1 where a document shares no term with the query (score 0): a search engine
    would not return it."""
    index = SparseIndex(documents, **index_options)
    indices, scores = index.search(queries, k=max(*k_values, depth))
    metrics = evaluate_run(benchmark, indices, k_values)
    metrics.update(sparsity_stats(queries, index.documents, tokenizer))
    metrics.update(_latency(benchmark, lambda text: index.search(encode_one(text), k=max(k_values)), latency_queries))
    metrics.update(_sizes(benchmark))
    counts = {"query": active_terms(queries), "doc": active_terms(index.documents)}
    return metrics, counts, (np.where(scores > 0, indices, -1), scores)


def run_model(model, benchmark: Benchmark, k_values: Sequence[int], cache_dir: Optional[Path] = None,
              model_dir: Optional[Path] = None, batch_size: int = 32, latency_queries: int = 100, depth: int = 0,
              query_top_k: Optional[int] = None, **index_options):
    """Encode the corpus (cached) and the queries (each cut to its `query_top_k` largest weights, as a client
    may send fewer tokens to OpenSearch), then evaluate_sparse."""
    docs = encode_cached(model, benchmark.corpus_texts, cache_dir, model_dir=model_dir, batch_size=batch_size)
    queries = encode_cached(model, benchmark.query_texts, cache_dir, is_query=True, model_dir=model_dir,
                            batch_size=batch_size)
    cut = (lambda m: prune(m, "top_k", query_top_k)) if query_top_k else (lambda m: m)  # noqa: E731
    queries = cut(queries)
    encode_one = lambda text: cut(model.encode([text], is_query=True).matrix)  # noqa: E731
    return evaluate_sparse(benchmark, queries, docs, k_values, encode_one, tokenizer=model.tokenizer,
                           latency_queries=latency_queries, depth=depth, **index_options)


def run_bm25(analyzer: str, benchmark: Benchmark, k_values: Sequence[int], latency_queries: int = 100,
             depth: int = 0):
    baseline = BM25Baseline(analyzer)
    docs = baseline.index(benchmark.corpus_texts)
    queries = baseline.encode_queries(benchmark.query_texts)
    encode_one = lambda text: baseline.encode_queries([text])  # noqa: E731
    return evaluate_sparse(benchmark, queries, docs, k_values, encode_one, latency_queries=latency_queries,
                           depth=depth)


def run_dense(benchmark: Benchmark, k_values: Sequence[int], cache_dir: Optional[Path] = None,
              latency_queries: int = 100, depth: int = 0):
    """(metrics, run) of the dense baseline: exact cosine search to max(k_values, depth); latency_ms includes
    embedding the query. There are no active terms to count."""
    baseline = DenseBaseline()
    docs = baseline.encode(benchmark.corpus_texts, cache_dir=cache_dir)
    queries = baseline.encode(benchmark.query_texts, is_query=True, cache_dir=cache_dir)
    indices, scores = dense_search(queries, docs, k=max(*k_values, depth))
    metrics = evaluate_run(benchmark, indices, k_values)

    def search_one(text):
        return dense_search(baseline.encode([text], is_query=True, show_progress=False), docs, k=max(k_values))

    metrics.update(_latency(benchmark, search_one, latency_queries))
    metrics.update(_sizes(benchmark))
    return metrics, (indices, scores)


def run_hybrid(benchmark: Benchmark, runs: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float],
               k_values: Sequence[int]) -> dict[str, float]:
    """Metrics of the runs fused as an OpenSearch hybrid query (eval.hybrid): each run is one sub-query's hits, and
    the fused list is as deep as the deepest run (OpenSearch returns as many hits as the longest sub-query list)."""
    depth = max(indices.shape[1] for indices, _ in runs)
    indices, _ = fuse_min_max(runs, weights, len(benchmark.corpus_ids), depth)
    return {**evaluate_run(benchmark, indices, k_values), **_sizes(benchmark)}


def _latency(benchmark: Benchmark, search_one: Callable[[str], object], latency_queries: int) -> dict[str, float]:
    timings = []
    for text in benchmark.query_texts[:latency_queries]:
        start = time.perf_counter()
        search_one(text)
        timings.append(time.perf_counter() - start)
    return {"latency_ms": float(np.median(timings) * 1000)} if timings else {}


def _sizes(benchmark: Benchmark) -> dict[str, float]:
    return {"num_queries": float(benchmark.num_queries), "num_docs": float(len(benchmark.corpus_ids))}
