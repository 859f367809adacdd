"""Fused vocabulary projection + SPLADE max pooling: no [batch, seq, vocab] tensor, forward or backward.

The plain path materialises the MLM logits H·Wᵀ + b as [batch, seq, vocab] (the largest tensor of a SPLADE
step, kept for backward) and back-propagates through it with two dense [batch·seq, vocab] x [vocab, hidden]
matrix products. Max pooling passes gradient only to each (row, term)'s argmax position, so:
- forward walks the vocabulary in chunks and keeps, per (row, term), the max over non-padding positions and
  its position (one [batch, vocab] value and index tensor);
- backward touches only (row, term) pairs with a non-zero incoming gradient (after log1p∘relu and the output
  mask most terms are inactive): grad_H[row, argmax] += g·W[term] (index_add), grad_W[term] += g·H[row, argmax]
  (gather), grad_b = Σ_rows g. This is exact, not an approximation.
"""
from __future__ import annotations

import torch
from torch import nn

from .pooling import masked_max

# Vocabulary columns per forward chunk: large enough for efficient matrix products, small enough that a
# [batch·seq, chunk] block stays a few tens of MB.
DEFAULT_CHUNK_ELEMENTS = 1 << 23
# (row, term) pairs per backward block; bounds the [pairs, hidden] temporaries when many terms are active.
BACKWARD_BLOCK = 1 << 16

_ROBERTA_STYLE = {"RobertaForMaskedLM", "XLMRobertaForMaskedLM", "CamembertForMaskedLM"}
_BERT_STYLE = {"BertForMaskedLM"}


def _chunk_size(rows: int, vocab: int, chunk_elements: int) -> int:
    return max(256, min(vocab, chunk_elements // max(rows, 1)))


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    """The dtype the decoder Linear would run in: the autocast dtype when autocast is on, else H's."""
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


@torch.no_grad()
def chunked_max_logits(h, weight, bias, attention_mask, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                       return_argmax: bool = False):
    """max over non-padding positions of h·Wᵀ + b, [batch, vocab] (and the argmax positions), chunk by chunk."""
    batch, seq, hidden = h.shape
    vocab = weight.shape[0]
    dtype = _compute_dtype(h)
    flat = h.reshape(batch * seq, hidden).to(dtype)
    padding = ~attention_mask.bool().unsqueeze(-1)  # [batch, seq, 1]
    values = torch.empty(batch, vocab, dtype=dtype, device=h.device)
    positions = torch.empty(batch, vocab, dtype=torch.long, device=h.device) if return_argmax else None
    step = _chunk_size(batch * seq, vocab, chunk_elements)
    with torch.autocast(h.device.type, enabled=False):
        for start in range(0, vocab, step):
            stop = min(start + step, vocab)
            w = weight[start:stop].to(dtype)
            logits = flat @ w.T if bias is None else torch.addmm(bias[start:stop].to(dtype), flat, w.T)
            logits = logits.view(batch, seq, stop - start).masked_fill_(padding, float("-inf"))
            if return_argmax:
                values[:, start:stop], positions[:, start:stop] = logits.max(dim=1)
            else:
                values[:, start:stop] = logits.amax(dim=1)
    return (values, positions) if return_argmax else values


class FusedProjectionMax(torch.autograd.Function):
    """(H [batch, seq, hidden], W [vocab, hidden], b [vocab] or None, mask [batch, seq]) -> [batch, vocab] max
    logits over non-padding positions; see the module docstring for the backward."""

    @staticmethod
    def forward(ctx, h, weight, bias, attention_mask, chunk_elements):
        values, positions = chunked_max_logits(h, weight, bias, attention_mask, chunk_elements, return_argmax=True)
        ctx.save_for_backward(h, weight, positions)
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return values

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, positions = ctx.saved_tensors
        batch, seq, hidden = h.shape
        acc = torch.promote_types(grad_out.dtype, torch.float32)  # accumulate low-precision grads in fp32
        grad_h = grad_w = grad_b = None
        rows, terms = grad_out.nonzero(as_tuple=True)  # only pairs that receive gradient
        g = grad_out[rows, terms].to(acc)
        token = rows * seq + positions[rows, terms]  # flat [batch·seq] index of each argmax position
        flat_h = h.reshape(batch * seq, hidden)
        if ctx.needs_input_grad[0]:
            grad_h = torch.zeros(batch * seq, hidden, dtype=acc, device=h.device)
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        for start in range(0, g.numel(), BACKWARD_BLOCK):
            sl = slice(start, start + BACKWARD_BLOCK)
            gs = g[sl].unsqueeze(1)
            if grad_h is not None:
                grad_h.index_add_(0, token[sl], gs * weight[terms[sl]].to(acc))
            if grad_w is not None:
                grad_w.index_add_(0, terms[sl], gs * flat_h[token[sl]].to(acc))
        if grad_h is not None:
            grad_h = grad_h.view(batch, seq, hidden).to(h.dtype)
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.to(acc).sum(0).to(ctx.bias_dtype)
        return grad_h, grad_w, grad_b, None, None


def fused_max_logits(h: torch.Tensor, weight: torch.Tensor, bias, attention_mask: torch.Tensor,
                     chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """max over non-padding positions of h·Wᵀ + b, [batch, vocab], without the [batch, seq, vocab] logits; the
    autograd function (and its argmax positions) only when a gradient is needed."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (h, weight, bias))
    if needs_grad:
        return FusedProjectionMax.apply(h, weight, bias, attention_mask, chunk_elements)
    return chunked_max_logits(h, weight, bias, attention_mask, chunk_elements)


def fused_splade_pool(h: torch.Tensor, weight: torch.Tensor, bias, attention_mask: torch.Tensor,
                      chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """log1p(relu(max over non-padding positions of h·Wᵀ + b)): SPLADE weights [batch, vocab], computed
    without the [batch, seq, vocab] logits (same values and gradients as `splade_max_pool` on full logits)."""
    return torch.log1p(torch.relu(fused_max_logits(h, weight, bias, attention_mask, chunk_elements)))


# ------------------------------------------------------------------------------------------ masked-LM heads
def mlm_head_name(mlm: nn.Module) -> str:
    """The attribute that holds a masked LM's head: `cls` (BERT-style) or `lm_head` (RoBERTa / XLM-R-style)."""
    for name in ("cls", "lm_head"):
        if hasattr(mlm, name):
            return name
    raise ValueError(f"{type(mlm).__name__} has no masked-LM head (cls or lm_head)")


def mlm_head(mlm: nn.Module) -> nn.Module:
    """A masked LM's head: hidden states -> vocabulary logits."""
    return getattr(mlm, mlm_head_name(mlm))


def mlm_head_parts(mlm: nn.Module):
    """(backbone, transform, decoder Linear) when the MLM's head is transform -> decoder Linear (BERT, RoBERTa,
    XLM-R; the backbone returns hidden states), else None: callers then take the plain logits path."""
    name = type(mlm).__name__
    if name in _BERT_STYLE:
        head = mlm_head(mlm).predictions
        return mlm.bert, head.transform, head.decoder
    if name in _ROBERTA_STYLE:
        head = mlm_head(mlm)
        if not all(hasattr(head, a) for a in ("dense", "layer_norm", "decoder")):
            return None
        from transformers.activations import gelu

        return getattr(mlm, mlm.base_model_prefix), (lambda x: head.layer_norm(gelu(head.dense(x)))), head.decoder
    return None


def exporting() -> bool:
    """Tracing / ONNX export / torch.compile capture a plain graph; the fused autograd function is for eager."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def mlm_max_logits(mlm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   fused: bool = True, pool_mask=None, return_hidden: bool = False):
    """Max over non-padding positions of a masked LM's vocabulary logits, [batch, vocab]: the fused
    projection-and-max when the head allows it, otherwise the full logits (identical values). Losses that must
    reach inactive terms act on these (log1p∘relu passes no gradient below 0).

    `pool_mask` [batch, seq] restricts the max to some positions (e.g. one phrase of the text; the backbone still
    attends to the whole text); `return_hidden` also returns the backbone's final hidden states [batch, seq,
    hidden] from the same forward pass (what a context gate pools)."""
    pool_mask = attention_mask if pool_mask is None else pool_mask
    parts = mlm_head_parts(mlm) if fused and not exporting() else None
    if parts is None:
        out = mlm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=return_hidden)
        values = masked_max(out.logits, pool_mask)
        return (values, out.hidden_states[-1]) if return_hidden else values
    backbone, transform, decoder = parts
    last = backbone(input_ids=input_ids, attention_mask=attention_mask)[0]
    values = fused_max_logits(transform(last), decoder.weight, decoder.bias, pool_mask)
    return (values, last) if return_hidden else values


def mlm_splade_pool(mlm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    fused: bool = True) -> torch.Tensor:
    """SPLADE weights [batch, vocab] of a masked LM: log1p(relu(max logits))."""
    return torch.log1p(torch.relu(mlm_max_logits(mlm, input_ids, attention_mask, fused=fused)))
