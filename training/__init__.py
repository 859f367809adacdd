from .encoder import SparseConfig, SparseEmbeddings, SparseEncoder, prune

__all__ = ["SparseConfig", "SparseEmbeddings", "SparseEncoder", "prune"]
