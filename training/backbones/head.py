"""Initialise and calibrate the MLM head of a backbone that has none (multilingual-e5-small).

The decoder is tied to the word embeddings, or (``init_state_decoder``) untied and made of the backbone's own
final-layer state of each piece. The transform starts as an identity: the dense layer is the unit
matrix plus a constant shift that keeps GELU in its linear range (the LayerNorm after it removes the constant).
The LayerNorm bias then subtracts the mean transformed hidden state: without that centring one shared direction
dominates every token's logits and every SPLADE vector activates the same few terms. Finally one scalar offset of
the decoder bias (softmax-invariant, so it never changes MLM predictions) sets how many terms
``log1p(relu(logits))`` activates; special tokens get a large negative bias.
"""
from __future__ import annotations

import torch

from ..fused import mlm_head
from ..vocab import special_token_ids

CALIBRATION_TEXTS = [
    "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "Seoul is the capital of South Korea and the Han River runs through the city.",
    "머신러닝 모델은 데이터에서 패턴을 학습해 새로운 입력을 예측한다.",
    "Machine learning models learn patterns from data to make predictions on new inputs.",
    "추천 시스템은 사용자의 과거 행동을 바탕으로 상품을 추천한다.",
    "A recommender system suggests products based on a user's past behaviour.",
    "검색 엔진은 문서를 색인하고 사용자의 질의와 관련된 결과를 보여준다.",
    "Search engines index documents and show results relevant to a user's query.",
    "세종대왕은 1443년에 훈민정음을 창제하여 백성들이 글을 쉽게 익히도록 했다.",
    "The vaccine trial enrolled 3,000 volunteers across twelve hospitals in 2021.",
    "오늘 날씨가 맑아서 친구들과 공원에서 자전거를 탔다.",
    "How many calories should an adult eat per day to maintain a healthy weight?",
]
# "tied": the decoder is the word embeddings; "states": rows of its own, each piece's final-layer state
DECODERS = ("tied", "states")
SPECIAL_TOKEN_BIAS = -20.0  # <s>, <pad>, <mask>... are never expansion terms nor MLM targets
DEFAULT_TERMS_PER_TEXT = 64  # for sentence-length texts: healthy SPLADE queries have ~30-50 terms, documents ~200


@torch.no_grad()
def final_hidden_states(model, tokenizer, texts, max_length: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states [batch, length, H] and the attention mask of ``texts``."""
    max_length = min(max_length, tokenizer.model_max_length, model.config.max_position_embeddings)
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    was_training = model.training
    model.eval()
    hidden = model.base_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    model.train(was_training)
    return hidden, enc["attention_mask"].bool()


@torch.no_grad()
def splade_logits(model, tokenizer, texts, max_length: int = 256) -> torch.Tensor:
    """Max-pooled MLM logits [batch, vocab] over each text's tokens (the SPLADE pooling before log1p/relu)."""
    hidden, mask = final_hidden_states(model, tokenizer, texts, max_length)
    scores = mlm_head(model)(hidden)
    return scores.masked_fill(~mask[..., None], float("-inf")).amax(1)


@torch.no_grad()
def calibrate_logit_bias(model, tokenizer, texts=CALIBRATION_TEXTS,
                         terms_per_text: float = DEFAULT_TERMS_PER_TEXT) -> dict:
    """Shift the decoder bias by one scalar so that log1p(relu(max-pooled logits)) activates about
    ``terms_per_text`` terms per text on average; return the measured statistics."""
    pooled = splade_logits(model, tokenizer, texts)
    lo, hi = -pooled.max().item() - 1.0, -pooled.min().item() + 1.0
    for _ in range(50):  # bisection on the offset: active counts grow monotonically with it
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (pooled + mid > 0).sum(1).float().mean() < terms_per_text else (lo, mid)
    offset = (lo + hi) / 2
    model.get_output_embeddings().bias += offset
    weights = torch.log1p(torch.relu(pooled + offset))
    active = weights > 0
    return {"bias_offset": offset, "terms_per_text": active.sum(1).float().mean().item(),
            "mean_weight": weights[active].mean().item(), "max_weight": weights.max().item()}


@torch.no_grad()
def piece_states(model, tokenizer, batch_size: int = 512) -> torch.Tensor:
    """[vocab, H]: the final-layer state of every piece encoded alone (``<s> piece </s>``, the piece's position)."""
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.arange(vocab)
    inputs = torch.stack([torch.full_like(ids, tokenizer.cls_token_id), ids,
                          torch.full_like(ids, tokenizer.sep_token_id)], dim=1)
    was_training = model.training
    model.eval()
    states = torch.cat([model.base_model(input_ids=chunk, attention_mask=torch.ones_like(chunk)).last_hidden_state[:, 1]
                        for chunk in inputs.split(batch_size)])
    model.train(was_training)
    return states


@torch.no_grad()
def init_state_decoder(model, tokenizer) -> dict:
    """Untie the decoder from the word embeddings and make each row the piece's own final-layer state (centred, at
    the embeddings' mean norm). A dense multilingual encoder puts a word and its translation close in its output
    space, not in its input embeddings: before any training, an identity head on these rows ranks the English
    pieces of MUSE test translations 2.4x as often among a Korean term's top 50 as the tied decoder does (the MLM
    warm-up undoes most of it; docs/results/experiments.md). Call before ``init_identity_head``."""
    states = piece_states(model, tokenizer)
    states -= states.mean(0)
    scale = model.get_input_embeddings().weight.norm(dim=1).mean()
    decoder = model.get_output_embeddings()
    model.config.tie_word_embeddings = False
    decoder.weight = torch.nn.Parameter(states / states.norm(dim=1, keepdim=True).clamp(min=1e-6) * scale)
    # transformers ties BERT's decoder bias to the head's `bias` only together with the word embeddings: untied,
    # the decoder keeps a bias of its own, saved and loaded under its own name (SparseEncoder freezes the other).
    decoder.bias = torch.nn.Parameter(decoder.bias.detach().clone())
    return {"decoder": "states", "rows": states.shape[0]}


@torch.no_grad()
def init_identity_head(model, tokenizer, texts=CALIBRATION_TEXTS,
                       terms_per_text: float = DEFAULT_TERMS_PER_TEXT) -> dict:
    """Identity transform + centring + calibrated bias for a ``BertForMaskedLM`` head (see module docstring)."""
    if getattr(model.config, "tie_word_embeddings", True):
        model.tie_weights()
    transform = model.cls.predictions.transform
    hidden, mask = final_hidden_states(model, tokenizer, texts)
    tokens = hidden[mask]
    shift = 3.0 - min(tokens.min().item(), 0.0)  # GELU(x) = x * Phi(x) is within 0.5% of x for x > 3
    transform.dense.weight.copy_(torch.eye(tokens.shape[1]))
    transform.dense.bias.fill_(shift)
    normed = torch.nn.functional.layer_norm(tokens, tokens.shape[1:], eps=transform.LayerNorm.eps)
    transform.LayerNorm.weight.fill_(1.0)
    transform.LayerNorm.bias.copy_(-normed.mean(0))
    bias = model.get_output_embeddings().bias
    bias.zero_()
    bias[list(special_token_ids(tokenizer))] = SPECIAL_TOKEN_BIAS
    return {"dense_shift": shift, **calibrate_logit_bias(model, tokenizer, texts, terms_per_text)}
