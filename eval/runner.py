"""One system on one benchmark: index, search, metrics, sparsity and latency. Shared by run_eval.py for models
and baselines, so both are measured the same way. Each returns its run too (indices, scores), for hybrid fusion."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .baselines import BM25Baseline, DenseBaseline, dense_search
from .beir import Benchmark
from .hybrid import fuse_min_max
from .index import SparseIndex, prune
from .retrieval import encode_cached, evaluate_run
from .seismic_index import SeismicIndex, SeismicOptions
from .stats import active_terms, sparsity_stats

logger = logging.getLogger(__name__)


@dataclass
class IndexOptions:
    """How the documents are indexed: OpenSearch's ingest pruning (`prune_type`, `prune_ratio`), then the exact
    SparseIndex (with `opensearch` scoring and `two_phase_ratio` search), or with `seismic` set an approximate
    SEISMIC index."""

    opensearch: bool = False
    prune_type: str = "none"
    prune_ratio: float = 0.0
    two_phase_ratio: float = 0.0
    seismic: Optional[SeismicOptions] = None

    def __post_init__(self):
        if self.seismic is not None and (self.opensearch or self.two_phase_ratio):
            raise ValueError(f"SEISMIC search takes no exact-index options, got opensearch={self.opensearch}, "
                             f"two_phase_ratio={self.two_phase_ratio}")

    def build(self, documents: sp.csr_matrix):
        """(the index, the documents as indexed)."""
        if self.seismic is not None:
            documents = prune(documents, self.prune_type, self.prune_ratio)
            return SeismicIndex(documents, self.seismic), documents
        index = SparseIndex(documents, opensearch=self.opensearch, prune_type=self.prune_type,
                            prune_ratio=self.prune_ratio, two_phase_ratio=self.two_phase_ratio)
        return index, index.documents


def evaluate_sparse(benchmark: Benchmark, queries: sp.csr_matrix, documents: sp.csr_matrix,
                    k_values: Sequence[int], encode_one: Callable[[str], sp.csr_matrix], *, tokenizer=None,
                    latency_queries: int = 100, depth: int = 0, index: IndexOptions = IndexOptions()):
    """(metrics, {"query": active terms, "doc": active terms}, run); encode_ms / search_ms / latency_ms are the
    median times to encode one query, to search the index for it, and both, over the first latency_queries
    queries. The run is searched to max(k_values, depth), with index -1 where a document shares no term with the
    query (score 0): a search engine would not return it."""
    searcher, documents = index.build(documents)
    indices, scores = searcher.search(queries, k=max(*k_values, depth))
    metrics = evaluate_run(benchmark, indices, k_values)
    metrics.update(sparsity_stats(queries, documents, tokenizer))
    metrics.update(_latency(benchmark, encode_one, lambda q: searcher.search(q, k=max(k_values)), latency_queries))
    metrics.update(_sizes(benchmark))
    counts = {"query": active_terms(queries), "doc": active_terms(documents)}
    return metrics, counts, (np.where(scores > 0, indices, -1), scores)


def run_model(model, benchmark: Benchmark, k_values: Sequence[int], *, cache_dir: Optional[Path] = None,
              model_dir: Optional[Path] = None, batch_size: int = 32, latency_queries: int = 100, depth: int = 0,
              query_top_k: Optional[int] = None, index: IndexOptions = IndexOptions()):
    """Encode the corpus (cached) and the queries (each cut to its `query_top_k` largest weights, as a client
    may send fewer tokens to OpenSearch), then evaluate_sparse."""
    docs = encode_cached(model, benchmark.corpus_texts, cache_dir, model_dir=model_dir, batch_size=batch_size)
    queries = encode_cached(model, benchmark.query_texts, cache_dir, is_query=True, model_dir=model_dir,
                            batch_size=batch_size)
    cut = (lambda m: prune(m, "top_k", query_top_k)) if query_top_k else (lambda m: m)  # noqa: E731
    queries = cut(queries)
    encode_one = lambda text: cut(model.encode([text], is_query=True).matrix)  # noqa: E731
    metrics, counts, run = evaluate_sparse(benchmark, queries, docs, k_values, encode_one, tokenizer=model.tokenizer,
                                           latency_queries=latency_queries, depth=depth, index=index)
    for side, texts, limit in (("docs", benchmark.corpus_texts, model.config.max_seq_length),
                               ("queries", benchmark.query_texts, model.config.max_query_length)):
        metrics[f"truncated_{side}"] = share = truncated_share(model.tokenizer, texts, limit)
        if share:
            logger.warning("%s: %.1f%% of the %s are longer than the model's %d pieces and are cut there (%s)",
                           benchmark.name, 100 * share, side, limit,
                           "--max-seq-length" if side == "docs" else "max_query_length in sparse_config.json")
    return metrics, counts, run


def truncated_share(tokenizer, texts: Sequence[str], limit: int) -> float:
    """Share of `texts` with more than `limit` pieces (special tokens included): the encoder reads only their
    first `limit`."""
    if not len(texts):
        return 0.0
    ids = tokenizer(list(texts), truncation=False, return_attention_mask=False, return_token_type_ids=False,
                    verbose=False)["input_ids"]
    return float(np.mean(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) > limit))


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

    encode_one = lambda text: baseline.encode([text], is_query=True, show_progress=False)  # noqa: E731
    metrics.update(_latency(benchmark, encode_one, lambda q: dense_search(q, docs, k=max(k_values)), latency_queries))
    metrics.update(_sizes(benchmark))
    return metrics, (indices, scores)


def run_hybrid(benchmark: Benchmark, runs: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float],
               k_values: Sequence[int]) -> dict[str, float]:
    """Metrics of the runs fused as an OpenSearch hybrid query (eval.hybrid): each run is one sub-query's hits, and
    the fused list is as deep as the deepest run (OpenSearch returns as many hits as the longest sub-query list)."""
    depth = max(indices.shape[1] for indices, _ in runs)
    indices, _ = fuse_min_max(runs, weights, len(benchmark.corpus_ids), depth)
    return {**evaluate_run(benchmark, indices, k_values), **_sizes(benchmark)}


def _latency(benchmark: Benchmark, encode_one: Callable[[str], object], search: Callable[[object], object],
             latency_queries: int) -> dict[str, float]:
    """Median ms to encode one query, to search for it, and both (encoding and search are separate costs: a
    server may cache or batch the first)."""
    timings = []
    for text in benchmark.query_texts[:latency_queries]:
        start = time.perf_counter()
        query = encode_one(text)
        encoded = time.perf_counter()
        search(query)
        timings.append((encoded - start, time.perf_counter() - encoded))
    if not timings:
        return {}
    encode, search_time = np.asarray(timings).T * 1000
    return {"encode_ms": float(np.median(encode)), "search_ms": float(np.median(search_time)),
            "latency_ms": float(np.median(encode + search_time))}


def _sizes(benchmark: Benchmark) -> dict[str, float]:
    return {"num_queries": float(benchmark.num_queries), "num_docs": float(len(benchmark.corpus_ids))}
