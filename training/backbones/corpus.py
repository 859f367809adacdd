"""Korean and English raw text from the shared data folder, for MLM warm-up and vocabulary selection.

Only passages and sentences are used, never queries, and only the train side of the split the benchmarks obey
(``builders.corpora``): KorQuAD's eval articles and the MS MARCO eval queries' passages are benchmark corpora, so
the warm-up (and the vocabulary chosen from its text) never sees them. Held-out Korean text for masked-token
accuracy is every ``HELD_OUT_EVERY``-th train-side KorQuAD paragraph and msmarco-ko passage (by position), and
never enters training.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from builders.corpora import korquad_articles, msmarco

HELD_OUT_EVERY = 10
DATA_DIR_ENV = "KO_SPARSE_DATA_DIR"


def default_data_dir() -> Path:
    """``$KO_SPARSE_DATA_DIR``, else ``../shared/data`` next to the repository."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _paragraphs(path: Path, min_chars: int = 20) -> list[str]:
    blocks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
    return [" ".join(b.split()) for b in blocks if len(b.strip()) >= min_chars]


def _train_side(read):
    """The train split ``read()`` returns (``builders.corpora`` owns the paths), or None if its file is absent."""
    try:
        return read()
    except FileNotFoundError:
        return None


def read_sources(data_dir: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    """{source: {"ko": [...], "en": [...]}} for the sources present in ``data_dir`` (missing ones are skipped)."""
    root = Path(data_dir or default_data_dir())
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} not found (set {DATA_DIR_ENV} or pass data_dir)")
    out: dict[str, dict[str, list[str]]] = {}
    korquad = _train_side(lambda: korquad_articles(str(root), "train"))
    if korquad is not None:
        out["korquad"] = {"ko": list(dict.fromkeys(p["context"] for a in korquad for p in a["paragraphs"])), "en": []}
    passages = {lang: _train_side(lambda name=name: msmarco(str(root), name, "train"))
                for lang, name in (("ko", "kor"), ("en", "eng"))}
    if passages["ko"] is not None:
        out["msmarco"] = {lang: list(dict.fromkeys(p for rec in recs for p in rec["positive"]))
                          for lang, recs in passages.items() if recs is not None}
    parallel = {"ko": [], "en": []}
    for ko_file in sorted((root / "ko_en_parallel_jungyeul").glob("*.ko")):
        parallel["ko"] += _lines(ko_file)
        parallel["en"] += _lines(ko_file.with_suffix(".en"))
    tatoeba = root / "tatoeba_laser_kor_eng"
    if tatoeba.is_dir():
        parallel["ko"] += _lines(tatoeba / "tatoeba.kor-eng.kor")
        parallel["en"] += _lines(tatoeba / "tatoeba.kor-eng.eng")
    if parallel["ko"]:
        out["parallel"] = parallel
    konlpy = sorted((root / "konlpy_corpus").glob("*/*.txt"))
    if konlpy:
        out["konlpy"] = {"ko": [p for f in konlpy for p in _paragraphs(f)], "en": []}
    return out


def warmup_texts(data_dir=None) -> tuple[list[str], list[str]]:
    """(training texts in Korean and English, held-out Korean texts)."""
    train, held_out = [], []
    for name, langs in read_sources(data_dir).items():
        for lang, texts in langs.items():
            for i, text in enumerate(texts):
                is_held = lang == "ko" and name in ("korquad", "msmarco") and i % HELD_OUT_EVERY == 0
                (held_out if is_held else train).append(text)
    return train, held_out
