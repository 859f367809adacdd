"""Training: `SparseEncoder` (an MLM turned into a sparse encoder), its vocabulary masks and fused pooling,
the losses, the batch schedule and collator, `SparseTrainer`, the config dataclasses and offline backbones.
Of the other folders it imports only `builders.contracts` (the data contracts), never `eval` or `deploy` (the run
scripts wire an evaluator in)."""
from .encoder import SparseConfig, SparseEmbeddings, SparseEncoder, prune

__all__ = ["SparseConfig", "SparseEmbeddings", "SparseEncoder", "prune"]
