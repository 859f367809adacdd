"""Would the dense teacher make a good teacher for term vectors? For each Korean term of the term_pairs test split
(MUSE 5000-6500 + Wiktionary test, never in training), rank the model vocabulary's English pieces by e5's cosine
(each piece embedded alone) and count the English translation's pieces among the teacher's top N, next to the same
count for the sparse model's N largest English weights of the Korean term's vector.

    python bench/term_teacher.py --model outputs/ko-en-base [--pairs data/ko-en/term_pairs] [--top 25 50]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builders.teacher import DenseTeacher  # noqa: E402
from eval.terms import _piece_ids, load_term_pairs  # noqa: E402
from training.encoder import SparseEncoder  # noqa: E402
from training.vocab import token_scripts  # noqa: E402


def top_sets(scores: np.ndarray, n: int) -> list[set[int]]:
    return [set(row.tolist()) for row in np.argpartition(-scores, n, axis=1)[:, :n]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--pairs", default="data/ko-en/term_pairs")
    parser.add_argument("--top", type=int, nargs="+", default=[25, 50])
    args = parser.parse_args()
    model = SparseEncoder.from_pretrained(args.model).eval()
    pairs = load_term_pairs(args.pairs)
    ko_terms, en_terms = list(dict.fromkeys(p["ko"] for p in pairs)), list(dict.fromkeys(p["en"] for p in pairs))
    ko_row, en_row = {t: i for i, t in enumerate(ko_terms)}, {t: i for i, t in enumerate(en_terms)}

    # Served English pieces, by their text (word marker dropped): "▁gov" and "gov" are one candidate for the teacher,
    # which counts a hit on either as a hit; the model must hit the target's own id, so the comparison favours e5.
    served = model.output_mask.cpu().numpy() > 0
    scripts = token_scripts(model.tokenizer)[: len(served)]
    english = np.flatnonzero((scripts == "latin") & served[: len(scripts)])
    pieces = model.tokenizer.convert_ids_to_tokens(english.tolist())
    piece_text = {int(i): t.replace("▁", "") for i, t in zip(english, pieces)}
    texts = sorted({t for t in piece_text.values() if t})
    started = time.time()
    teacher = DenseTeacher()
    scores = teacher.encode(ko_terms, is_query=True) @ teacher.encode(texts, is_query=True, show_progress=True).T
    print(f"{len(pairs)} pairs, {len(ko_terms)} Korean terms, {len(texts)} English pieces embedded in "
          f"{time.time() - started:.0f} s", flush=True)

    vectors = model.encode(ko_terms, batch_size=64).matrix.tocsr()
    english_weights = vectors[:, english]
    targets = {"pieces": _piece_ids(model, en_terms), "first pieces": _piece_ids(model, en_terms, word_heads=True)}
    for n in args.top:
        teacher_top = [{texts[j] for j in row} for row in top_sets(scores, n)]
        model_top = [set(english[row.indices[np.argsort(-row.data)[:n]]].tolist()) for row in english_weights]
        result = {}
        for name, target in targets.items():
            teacher_share, model_share = [], []
            for p in pairs:
                wanted = [i for i in target[en_row[p["en"]]] if piece_text.get(i)]
                if wanted:
                    term = ko_row[p["ko"]]
                    teacher_share.append(np.mean([piece_text[i] in teacher_top[term] for i in wanted]))
                    model_share.append(np.mean([i in model_top[term] for i in wanted]))
            result[name] = {"teacher": round(float(np.mean(teacher_share)), 4),
                            "model": round(float(np.mean(model_share)), 4)}
        print(json.dumps({f"English translation pieces among the top {n} English pieces": result}), flush=True)
    for term in range(0, len(ko_terms), max(1, len(ko_terms) // 5))[:5]:
        print(ko_terms[term], "teacher:", [texts[j] for j in np.argsort(-scores[term])[:8]])


if __name__ == "__main__":
    main()
