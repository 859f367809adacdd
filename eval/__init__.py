"""Evaluation: the `evaluate` metric module (eval/sparse_retrieval), an exact sparse index with OpenSearch scoring
and pruning, BEIR loading, the Korean BM25 baseline, sparsity/language statistics, term-pair metrics, reports."""
from .beir import Benchmark, BenchmarkError, load_beir
from .index import SparseIndex, feature_field_round, prune
from .retrieval import RetrievalEvaluator, evaluate_run
from .sparse_retrieval import SparseRetrieval

__all__ = ["Benchmark", "BenchmarkError", "load_beir", "SparseIndex", "feature_field_round", "prune",
           "RetrievalEvaluator", "evaluate_run", "SparseRetrieval"]
