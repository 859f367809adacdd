from .sparse_retrieval import SparseRetrieval, compute_from_dicts, ranking_metrics

__all__ = ["SparseRetrieval", "compute_from_dicts", "ranking_metrics"]
