"""SPLADE pooling: weight_j = max over non-padding positions of log(1 + relu(logit_j)).

log1p∘relu is monotonic, so the max can be taken on the raw logits first and the activation applied to the pooled
[batch, vocab] tensor: the same values, and backward keeps one [batch, vocab] tensor instead of several
[batch, seq, vocab] ones (the memory bottleneck of every SPLADE trainer)."""
import torch


def masked_max(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq, vocab] logits + [batch, seq] mask -> [batch, vocab] max over non-padding positions."""
    return logits.masked_fill(~attention_mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)


def splade_max_pool(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, seq, vocab] logits + [batch, seq] mask -> [batch, vocab] non-negative weights (max first)."""
    return torch.log1p(torch.relu(masked_max(logits, attention_mask)))


def splade_max_pool_reference(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The textbook order (activation, mask, max); kept to pin that `splade_max_pool` equals it."""
    weights = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1).to(logits.dtype)
    return weights.amax(dim=1)
