"""Context-gated sparse expansion: a per-text, per-term gate g[batch, vocab] computed from the whole text scales the
pooled vocabulary logits before the SPLADE activation, so the same phrase can expand differently in different
contexts ("점심 메뉴" after "출근했는데" toward 회사 / 직장인, after "학교를 갔는데" toward 학생 / 급식).

    c = LayerNorm(MultiHeadAttention(q, H, H))     q a learned query, H the backbone's final hidden states
    g = 2 · sigmoid(W2 · gelu(W1 · c) + b2)         W2, b2 zero-initialised: g = 1 exactly, the gated model starts
                                                    as its ungated backbone and training decides
    gated max logits = g ⊙ max_s logits_s

Why multiply and not add a bias. Both commute with max pooling (g is constant over positions and g > 0, so
max_s g·l_s = g·max_s l_s), so the fused projection-max stays exact and untouched either way. A multiplicative gate
keeps every logit's sign: a text can only activate terms some of its positions propose, the gate re-weights them
(from 0 to twice their logit). An additive bias b[batch, vocab] would be a second, position-free MLM head on the
pooled context: it can switch on any vocabulary term for the whole text (a dense topic prior the FLOPS regulariser
must fight, and a way for every phrase of a text to "receive" the same context terms, which says nothing about
how that phrase expands). The price of multiplying: a term whose logit is <= 0 stays off and sends the gate no
gradient (as log1p∘relu already does for the backbone).

The gate needs the backbone's hidden states, which `training.fused.mlm_max_logits(return_hidden=True)` hands back
from the same forward pass. It lives inside `SparseEncoder.max_logits`, so `encode_documents`, every loss, and
the TorchScript / ONNX exports see it. The sentence-transformers layout (MLMTransformer + SpladePooling) has no
place for it: `require_ungated` says so."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

GATE_FILE = "context_gate.safetensors"


class ContextGate(nn.Module):
    def __init__(self, hidden_size: int, vocab_size: int, gate_hidden: int = 256, heads: int = 4):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"context_gate_heads={heads} must divide the backbone's hidden size {hidden_size}")
        self.query = nn.Parameter(torch.randn(1, 1, hidden_size) * hidden_size ** -0.5)
        self.attention = nn.MultiheadAttention(hidden_size, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size)
        self.hidden = nn.Linear(hidden_size, gate_hidden)
        self.out = nn.Linear(gate_hidden, vocab_size)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def context(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, hidden] attention pooling of the non-padding positions with the learned query."""
        query = self.query.expand(hidden.shape[0], -1, -1).to(hidden.dtype)
        pooled, _ = self.attention(query, hidden, hidden, key_padding_mask=~attention_mask.bool(),
                                   need_weights=False)
        return self.norm(pooled.squeeze(1))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """g [batch, vocab] in (0, 2)."""
        return 2 * torch.sigmoid(self.out(nn.functional.gelu(self.hidden(self.context(hidden, attention_mask)))))

    def save(self, folder) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(Path(folder) / GATE_FILE))

    def load(self, path) -> None:
        """From the gate file, or a folder holding it."""
        from safetensors.torch import load_file

        path = Path(path) / GATE_FILE if Path(path).is_dir() else Path(path)
        try:
            self.load_state_dict(load_file(str(path)))
        except RuntimeError as e:
            raise ValueError(f"{path}: does not fit this model's context gate (context_gate_hidden / "
                             f"context_gate_heads / vocabulary): {str(e).splitlines()[0]}") from None


def require_ungated(config, target: str = "the sentence-transformers layout") -> None:
    """Raise when a context-gated model is asked for a format that cannot hold the gate."""
    if getattr(config, "context_gate", False):
        raise ValueError(f"a context-gated model (context_gate: true) cannot be expressed in {target}: "
                         "MLMTransformer + SpladePooling have no context gate. Use SparseEncoder.from_pretrained, "
                         "or the OpenSearch TorchScript / ONNX exports, which include the gate")
