"""Term-level behaviour on Korean-English term pairs (the term_pairs test split): does the model keep the Korean
term, activate its English translation, stay out of other languages, and rank the right translation first?"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from builders.contracts import TERM_PAIR, read_jsonl
from training.data import load_split
from training.vocab import token_scripts

from .index import SparseIndex, prune
from .sparse_retrieval.sparse_retrieval import ranking_metrics
from .stats import active_terms

TARGET_SCRIPTS = ("hangul", "latin", "common", "special")


def load_term_pairs(path, split: str = "test") -> list[dict]:
    """Term pairs from a JSONL file ({"ko", "en", ...} per line), a parquet file, or a dataset folder exported by
    `python -m builders build term_pairs` (its `term_pairs` config, `split`)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return list(read_jsonl(path, TERM_PAIR))
    import datasets

    if path.suffix == ".parquet":
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    else:
        ds = load_split(str(path), "term_pairs", split)
    return [{"ko": r["ko"], "en": r["en"]} for r in ds]


def text_bags(model, texts: Sequence[str], word_heads: bool = False) -> np.ndarray:
    """[texts, vocab] bool: the served ids of each text's pieces (`SparseEncoder.token_bag`; no truncation, no
    special tokens). `word_heads`: only each word's first piece, the one that carries its meaning (the later pieces
    of a 22k-piece vocabulary's English words are often suffixes: "s", "ation", "ing")."""
    batch = model.tokenizer(list(texts), padding=True, add_special_tokens=False, return_tensors="pt",
                            return_token_type_ids=False, verbose=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if word_heads:
        words = torch.tensor([[-1 if w is None else w for w in batch.word_ids(i)] for i in range(len(texts))])
        unique = ids.unique().tolist()  # a bare word marker ("▁" before a piece the vocabulary lacks) is no head
        bare = [i for i, t in zip(unique, model.tokenizer.convert_ids_to_tokens(unique)) if not t.strip("▁Ġ# ")]
        words[torch.isin(ids, torch.tensor(bare, dtype=ids.dtype))] = -1
        # word ids never decrease along a row: a head is a position whose word no earlier position had
        seen = F.pad(words.cummax(dim=1).values, (1, 0), value=-1)[:, :-1]
        mask = mask * (words > seen)
    device = getattr(model, "device", "cpu")
    return (model.token_bag(ids.to(device), mask.to(device)) > 0).cpu().numpy()


def _piece_ids(model, texts: Sequence[str], word_heads: bool = False) -> list[set[int]]:
    return [set(np.flatnonzero(bag).tolist()) for bag in text_bags(model, texts, word_heads)]


def _top_ids(matrix: sp.csr_matrix, n: int) -> list[set[int]]:
    top = prune(matrix, "top_k", n) if matrix.nnz else matrix
    return [set(top.indices[top.indptr[i]:top.indptr[i + 1]].tolist()) for i in range(top.shape[0])]


def term_metrics(model, pairs: Sequence[dict], top_n: int = 50, k_values: Sequence[int] = (1, 10),
                 batch_size: int = 64) -> dict[str, float]:
    """- ko_preservation: share of the Korean term's own pieces among its top_n activated terms;
    - en_activation: share of the English translation's pieces among the Korean term's top_n terms;
    - en_word_activation: the same for the first piece of each English word only (a translation, not a suffix);
    - dead_en_targets: share of those English pieces with weight 0 in the Korean term's vector (no weight-space
      loss can revive them: log1p(relu(.)) passes no gradient there);
    - ko_activation: the reverse, share of the Korean term's pieces among the English term's top_n terms;
    - non_target_top{n}: average number of top_n terms in other scripts (not Hangul, Latin, digits/punctuation);
    - avg_ko_vector_terms / avg_en_vector_terms: active terms of a Korean / English term's vector, i.e. of a one-word
      query, where the density of a model's queries is worst;
    - synonym_recall@K / synonym_mrr: each Korean term as a query against all English terms of the split,
      scored by the sparse dot product (a Korean term may have several correct translations)."""
    if not pairs:
        raise ValueError("no term pairs to evaluate")
    ko_terms = list(dict.fromkeys(p["ko"] for p in pairs))
    en_terms = list(dict.fromkeys(p["en"] for p in pairs))
    ko_row = {t: i for i, t in enumerate(ko_terms)}
    en_row = {t: i for i, t in enumerate(en_terms)}
    ko = model.encode(ko_terms, batch_size=batch_size).matrix
    en = model.encode(en_terms, batch_size=batch_size).matrix

    top = _top_ids(ko, top_n)
    ko_pieces = _piece_ids(model, ko_terms)
    en_pieces = _piece_ids(model, en_terms)
    preservation = [len(p & t) / len(p) for p, t in zip(ko_pieces, top) if p]

    def in_korean_top(targets: list[set[int]]) -> list[float]:  # per pair: share of its English targets in the top
        return [len(targets[en_row[p["en"]]] & top[ko_row[p["ko"]]]) / len(targets[en_row[p["en"]]])
                for p in pairs if targets[en_row[p["en"]]]]

    activation = in_korean_top(en_pieces)
    word_activation = in_korean_top(_piece_ids(model, en_terms, word_heads=True))
    active = [set(ko.indices[ko.indptr[i]:ko.indptr[i + 1]].tolist()) for i in range(ko.shape[0])]
    target_pieces = [(en_pieces[en_row[p["en"]]], active[ko_row[p["ko"]]]) for p in pairs]
    dead = sum(len(t - a) for t, a in target_pieces) / max(1, sum(len(t) for t, _ in target_pieces))
    en_top = _top_ids(en, top_n)
    reverse = [len(ko_pieces[ko_row[p["ko"]]] & en_top[en_row[p["en"]]]) / len(ko_pieces[ko_row[p["ko"]]])
               for p in pairs if ko_pieces[ko_row[p["ko"]]]]
    scripts = token_scripts(model.tokenizer)
    non_target = ~np.isin(scripts, TARGET_SCRIPTS)
    other = [sum(bool(non_target[j]) for j in t if j < len(non_target)) for t in top]

    translations = sp.csr_matrix((np.ones(len(pairs)), ([ko_row[p["ko"]] for p in pairs],
                                                        [en_row[p["en"]] for p in pairs])),
                                 shape=(len(ko_terms), len(en_terms)))
    translations.data[:] = 1.0  # a pair listed twice is still one translation
    depth = max(k_values)
    indices, _ = SparseIndex(en).search(ko, k=depth)
    gains = np.asarray(translations[np.arange(len(ko_terms))[:, None], indices].todense())
    num_relevant = np.diff(translations.indptr)
    ideal = np.ones((len(ko_terms), depth))
    ranked = ranking_metrics(gains, ideal * (np.arange(depth) < num_relevant[:, None]), num_relevant, k_values)
    out = {
        "ko_preservation": float(np.mean(preservation)) if preservation else 0.0,
        "en_activation": float(np.mean(activation)) if activation else 0.0,
        "en_word_activation": float(np.mean(word_activation)) if word_activation else 0.0,
        "dead_en_targets": float(dead),
        "ko_activation": float(np.mean(reverse)) if reverse else 0.0,
        f"non_target_top{top_n}": float(np.mean(other)),
        "avg_ko_vector_terms": float(active_terms(ko).mean()),
        "avg_en_vector_terms": float(active_terms(en).mean()),
    }
    out.update({f"synonym_recall@{k}": ranked[f"recall@{k}"] for k in k_values})
    out["synonym_mrr"] = ranked[f"mrr@{depth}"]
    out["num_term_pairs"] = float(len(pairs))
    return out
