"""Masked-LM warm-up of a backbone's head (and optionally its top layers) on Korean and English text.

e5's head starts as an identity map (see :mod:`.head`), which already yields related terms but no MLM skill;
a few hundred CPU steps of masked-LM training teach the transform and the per-token bias to predict tokens from
context. The word embeddings and the decoder rows stay frozen, so the encoder's input side is unchanged. The ko-en
recipe now skips the training (``max_steps=0``): its piece-state decoder ranks translations higher untrained, and
MLM training undoes that. Either way the decoder bias then gets one scalar offset (softmax-invariant) to put the
number of active SPLADE terms back where :mod:`.head` calibrated it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

from ..fused import mlm_head
from . import KO_EN_WARMUP
from .corpus import warmup_texts
from .head import CALIBRATION_TEXTS, DECODERS, calibrate_logit_bias, init_identity_head, init_state_decoder
from .trim import korean_english_ids, trim_vocabulary

PROBE_SENTENCES = [
    "대한민국의 수도는 <mask>이다.",
    "나는 아침에 <mask>를 마셨다.",
    "세종대왕은 한글을 <mask>했다.",
    "이 영화는 정말 <mask>.",
    "머신러닝은 <mask> 지능의 한 분야이다.",
]


class MaskedPositionsMLM(torch.nn.Module):
    """Masked-LM loss computing the vocabulary projection only at masked positions: the same loss as
    ``*ForMaskedLM`` at a fraction of the cost, since the output layer dominates a CPU step."""

    def __init__(self, mlm):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids, attention_mask, labels, **unused):
        hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        chosen = labels != -100
        return {"loss": torch.nn.functional.cross_entropy(mlm_head(self.mlm)(hidden[chosen]), labels[chosen])}


@torch.no_grad()
def masked_token_accuracy(model, tokenizer, texts, probability: float = 0.15, max_length: int = 128,
                          batch_size: int = 32, seed: int = 0) -> dict:
    """Top-1 accuracy at a fixed random 15% of non-special tokens, each replaced by the mask token."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt", return_special_tokens_mask=True)
        ids = enc["input_ids"]
        chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~enc["special_tokens_mask"].bool() \
            & enc["attention_mask"].bool()
        hidden = model.base_model(input_ids=ids.masked_fill(chosen, tokenizer.mask_token_id),
                                  attention_mask=enc["attention_mask"]).last_hidden_state
        correct += (mlm_head(model)(hidden[chosen]).argmax(-1) == ids[chosen]).sum().item()
        total += chosen.sum().item()
    return {"masked_token_accuracy": correct / max(total, 1), "masked_tokens": total}


@torch.no_grad()
def top_predictions(model, tokenizer, sentences=PROBE_SENTENCES, k: int = 5) -> dict[str, list[str]]:
    model.eval()
    out = {}
    for sentence in sentences:
        enc = tokenizer(sentence.replace("<mask>", tokenizer.mask_token), return_tensors="pt")
        position = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
        top = model(**enc).logits[0, position].topk(k).indices.tolist()
        out[sentence] = [tokenizer.decode([i]).strip() or tokenizer.convert_ids_to_tokens(i) for i in top]
    return out


def _freeze_all_but_head(model, train_layers: int) -> int:
    for param in model.parameters():
        param.requires_grad = False
    trainable = [mlm_head(model), *model.base_model.encoder.layer[len(
        model.base_model.encoder.layer) - train_layers:]]
    for module in trainable:
        for param in module.parameters():
            param.requires_grad = True
    model.get_input_embeddings().weight.requires_grad = False
    model.get_output_embeddings().weight.requires_grad = False  # the decoder rows (tied or piece states) stay
    model.get_output_embeddings().bias.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def warmup_mlm(model, tokenizer, train_texts, held_out, output_dir, max_steps: int = 200, train_layers: int = 0,
               batch_size: int = 8, max_length: int = 64, learning_rate: float = 2e-3, seed: int = 0) -> dict:
    """Train the MLM head (+ top ``train_layers``) with a plain Trainer; report accuracy before and after.
    ``max_steps=0`` trains nothing and only calibrates the bias: the piece-state decoder keeps e5's cross-lingual
    alignment that way, which MLM training (predicting the exact, mostly Korean piece) undoes."""
    report = {"before": {**masked_token_accuracy(model, tokenizer, held_out),
                         "top_predictions": top_predictions(model, tokenizer)}}
    if max_steps > 0:
        report["trainable_parameters"] = _freeze_all_but_head(model, train_layers)
        report["train"] = _train_mlm(model, tokenizer, train_texts, output_dir, max_steps=max_steps,
                                     batch_size=batch_size, max_length=max_length, learning_rate=learning_rate,
                                     seed=seed)
        report["train"]["train_layers"] = train_layers
        report["after"] = {**masked_token_accuracy(model, tokenizer, held_out),
                           "top_predictions": top_predictions(model, tokenizer)}
    else:
        report["train"] = {"steps": 0}
        report["after"] = report["before"]
    report["calibration"] = calibrate_logit_bias(model, tokenizer, CALIBRATION_TEXTS)
    return report


def _train_mlm(model, tokenizer, train_texts, output_dir, *, max_steps: int, batch_size: int, max_length: int,
               learning_rate: float, seed: int) -> dict:
    data = Dataset.from_dict({"text": train_texts}).shuffle(seed=seed)
    data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length,
                                        return_overflowing_tokens=True), batched=True,
                    remove_columns=["text"]).remove_columns(["overflow_to_sample_mapping"])
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=max(1, max_steps // 10), weight_decay=0.0, logging_steps=25,
        save_strategy="no", report_to=[], use_cpu=True, seed=seed, dataloader_num_workers=0,
        disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    started = time.time()
    result = Trainer(model=MaskedPositionsMLM(model), args=args, train_dataset=data, data_collator=collator).train()
    for param in model.parameters():
        param.requires_grad = True
    return {"steps": max_steps, "seconds": round(time.time() - started, 1), "final_loss": result.training_loss,
            "chunks": len(data)}


def build_korean_english(model_dir, out_dir, data_dir=None, trim: bool = True, held_out_limit: int = 300,
                         **recipe) -> Path:
    """Trim a backbone to Korean+English pieces (Hangul + pieces the shared text uses ``min_count`` times),
    re-initialise its head, warm it (and the top ``train_layers``) up, and save it with ``warmup.json`` (the report)
    to ``out_dir``. ``recipe`` overrides keys of ``KO_EN_WARMUP``."""
    recipe = {**KO_EN_WARMUP, **recipe}
    min_count, decoder = recipe.pop("min_count"), recipe.pop("decoder")
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r}; expected one of {DECODERS}")
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train, held_out = warmup_texts(data_dir)
    held_out = held_out[:held_out_limit]
    if trim:
        model, tokenizer = trim_vocabulary(model, tokenizer, korean_english_ids(tokenizer, train, min_count))
    head = init_state_decoder(model, tokenizer) if decoder == "states" else {"decoder": "tied"}
    head.update(init_identity_head(model, tokenizer))
    out_dir = Path(out_dir)
    report = {"vocab_size": len(tokenizer), "head_init": head, "held_out_texts": len(held_out),
              **warmup_mlm(model, tokenizer, train, held_out, out_dir / "trainer", **recipe)}
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "warmup.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return out_dir
