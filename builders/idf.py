"""idf.json: `{token: idf}` for any tokenizer over any corpus, for doc-only (SPARSE_TOKENIZE) models, whose
query side is tokenizer + idf lookup, and for IDF-weighted FLOPS regularisation.

idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)), Lucene's BM25 idf, where df counts documents containing t
at least once. Tokens that never occur are left out (the consumer picks their default)."""
from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from builders.contracts import read_jsonl, read_lines


def compute_idf(tokenizer, texts: Sequence[str], batch_size: int = 1024) -> dict[str, float]:
    """`tokenizer`: a HF tokenizer (ids through its vocabulary, special tokens excluded) or any callable
    text -> list of token strings."""
    n = len(texts)
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        vocab = len(tokenizer)
        df = np.zeros(vocab, dtype=np.int64)
        for start in tqdm(range(0, n, batch_size), desc="idf", disable=n <= batch_size):
            ids = tokenizer(list(texts[start : start + batch_size]), add_special_tokens=False)["input_ids"]
            doc = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
            flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
            unique = np.unique(doc * vocab + flat) % vocab  # each (document, token) pair once
            df += np.bincount(unique, minlength=vocab)
        seen = np.flatnonzero(df)
        tokens, counts = tokenizer.convert_ids_to_tokens(seen.tolist()), df[seen]
    else:
        from collections import Counter

        counter = Counter(t for text in texts for t in set(tokenizer(text)))
        tokens, counts = list(counter), np.array(list(counter.values()), dtype=np.int64)
    idf = np.log1p((n - counts + 0.5) / (counts + 0.5))
    return {t: float(v) for t, v in zip(tokens, idf)}


def load_tokenizer(path: str) -> Callable:
    """A tokenizer folder (AutoTokenizer) or a bare tokenizer.json."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if os.path.isfile(path):
        return PreTrainedTokenizerFast(tokenizer_file=path)
    return AutoTokenizer.from_pretrained(path)


def read_texts(paths: Sequence[str], fields: Sequence[str] = ("text",)) -> list[str]:
    """Texts of .txt files (one a line) and .jsonl files (the named fields joined: BEIR corpus title + text)."""
    texts = []
    for path in paths:
        if path.endswith((".jsonl", ".jsonl.gz")):
            for rec in read_jsonl(path):
                texts.append(" ".join(str(rec[f]) for f in fields if rec.get(f)))
        else:
            texts += [t for _, t in read_lines(path) if t.strip()]
    return texts


def named_corpus(name: str, data_dir: str | None) -> list[str]:
    """Document texts of a raw source, training side only (idf must not peek at eval documents)."""
    from builders.corpora import korquad_articles, korquad_questions, msmarco

    if name == "korquad":
        return list(dict.fromkeys(q[2] for q in korquad_questions(korquad_articles(data_dir, "train"))))
    if name in ("msmarco_ko", "msmarco_en"):
        recs = msmarco(data_dir, "kor" if name == "msmarco_ko" else "eng", "train")
        return list(dict.fromkeys(p for r in recs for p in r["positive"]))
    raise ValueError(f"unknown corpus {name!r}; choose korquad, msmarco_ko or msmarco_en")


def save_idf(table: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, ensure_ascii=False)
