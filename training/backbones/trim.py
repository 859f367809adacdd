"""Vocabulary trimming for HF masked LMs with a fast (Unigram or WordPiece) tokenizer.

A SPLADE vector has one dimension per vocabulary entry, so a 250k-piece multilingual vocabulary makes the
output layer (and every CPU training step) several times more expensive than the encoder needs for Korean and
English. Trimming keeps a subset of pieces, in their original order, and slices the embeddings and the MLM head.
For Unigram and WordPiece, removing pieces a text does not use cannot change that text's tokenisation (the best
Viterbi path / the greedy longest match only used kept pieces), so kept text encodes exactly as before.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from builders.scripts import HANGUL_CLASS

from ..vocab import special_token_ids

ASCII = "\x21-\x7e"
# single characters that Korean and English text uses besides letters: Latin-1 punctuation, general punctuation,
# CJK symbols (「」『』〈〉・) and middle dots
PUNCTUATION = "\u00a1-\u00bf\u00d7\u00f7\u2010-\u205e\u3000-\u303f\u30fb\u318d"
_PREFIXES = ("\u2581", "##")


def _piece_text(piece: str) -> str:
    for prefix in _PREFIXES:
        if piece.startswith(prefix) and piece != prefix:
            return piece[len(prefix):]
    return piece


def _tokenizer_model(tokenizer: PreTrainedTokenizerFast) -> dict:
    return json.loads(tokenizer.backend_tokenizer.to_str())["model"]


def kept_ids(tokenizer) -> set[int]:
    """What a trim always keeps: the special tokens and every added token (user-added ones too)."""
    return special_token_ids(tokenizer) | set(tokenizer.added_tokens_decoder)


def pieces_matching(tokenizer, chars: str, single_chars: str = "") -> list[int]:
    """Ids of pieces written only in the character class ``chars`` (the word-boundary marker ignored), plus
    single-character pieces from ``single_chars``; a lone word-boundary marker counts as a match."""
    whole = re.compile(f"[{chars}]+")
    single = re.compile(f"[{chars}{single_chars}]") if single_chars else whole
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [i for i, piece in enumerate(vocab)
            if piece in _PREFIXES or whole.fullmatch(_piece_text(piece)) or single.fullmatch(_piece_text(piece))]


def korean_english_ids(tokenizer, texts: Iterable[str] = (), min_count: int = 2) -> list[int]:
    """Specials + every Hangul piece + every single Hangul/ASCII/punctuation character (so Korean and English text
    still tokenises without unknowns) + the pieces ``texts`` use at least ``min_count`` times. Script rules alone
    cannot pick English: XLM-R's 83k pure-ASCII pieces cover every Latin-script language, so English (and the
    Hanja, symbols and loanwords Korean text uses) comes from a corpus."""
    singles = pieces_matching(tokenizer, "\x00", HANGUL_CLASS + ASCII + PUNCTUATION)
    used = corpus_ids(tokenizer, texts, min_count)
    return sorted(set(used) | set(pieces_matching(tokenizer, HANGUL_CLASS)) | set(singles))


def corpus_ids(tokenizer, texts: Iterable[str], min_count: int = 1, batch_size: int = 1000) -> list[int]:
    """Specials + the pieces the tokenizer produces on ``texts`` at least ``min_count`` times."""
    counts: Counter = Counter()
    batch: list[str] = []
    for text in (*texts, None):
        if text is not None:
            batch.append(text)
        if batch and (text is None or len(batch) == batch_size):
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                counts.update(ids)
            batch = []
    return sorted(kept_ids(tokenizer) | {i for i, c in counts.items() if c >= min_count})


def _remap_ids(node, old_to_new: dict[int, int]):
    """Remap token ids inside a post-processor JSON (TemplateProcessing ``ids`` lists, Bert/Roberta ``[token,
    id]`` pairs, and Sequences of them)."""
    if isinstance(node, dict):
        return {k: ([old_to_new[i] for i in v] if k == "ids" else
                    [v[0], old_to_new[v[1]]] if k in ("sep", "cls") else _remap_ids(v, old_to_new))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_remap_ids(v, old_to_new) for v in node]
    return node


def trim_tokenizer(tokenizer: PreTrainedTokenizerFast, keep_ids: list[int]) -> PreTrainedTokenizerFast:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    old_to_new = {old: new for new, old in enumerate(keep_ids)}
    model = spec["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep_ids]
        if model.get("unk_id") is not None:
            model["unk_id"] = old_to_new[model["unk_id"]]
    elif model["type"] == "WordPiece":
        by_id = {i: piece for piece, i in model["vocab"].items()}
        model["vocab"] = {by_id[old]: new for new, old in enumerate(keep_ids)}
    else:
        raise NotImplementedError(f"trimming a {model['type']} tokenizer (merges would need pruning too)")
    for token in spec["added_tokens"]:
        token["id"] = old_to_new[token["id"]]
    spec["post_processor"] = _remap_ids(spec["post_processor"], old_to_new)
    backend = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=tokenizer.model_max_length,
                                   **tokenizer.special_tokens_map)


@torch.no_grad()
def trim_vocabulary(model, tokenizer: PreTrainedTokenizerFast, keep_ids: Iterable[int]):
    """Keep only ``keep_ids`` (special tokens are always kept) in the model's embeddings, MLM head and config and in
    the tokenizer; new id = rank of the old id. Returns ``(model, tokenizer)``; the model is modified in place."""
    keep = sorted(set(keep_ids) | kept_ids(tokenizer))
    if keep[-1] >= len(tokenizer):
        raise ValueError(f"keep id {keep[-1]} outside the tokenizer's {len(tokenizer)} ids")
    old_to_new = {old: new for new, old in enumerate(keep)}
    index = torch.tensor(keep)
    vocab_size = model.get_input_embeddings().weight.shape[0]
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    params = [inputs.weight, outputs.weight, outputs.bias]
    params += [p for name, p in model.named_parameters() if name.endswith(("predictions.bias", "lm_head.bias"))]
    for param in {id(p): p for p in params if p is not None}.values():
        if param.shape[0] != vocab_size:
            raise ValueError(f"a vocabulary parameter has {param.shape[0]} rows, expected {vocab_size}")
        param.data = param.data[index].clone()
    inputs.num_embeddings = outputs.out_features = len(keep)
    if inputs.padding_idx is not None:
        inputs.padding_idx = old_to_new[inputs.padding_idx]
    model.config.vocab_size = len(keep)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id"):
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, old_to_new[getattr(model.config, key)])
    return model, trim_tokenizer(tokenizer, keep)
