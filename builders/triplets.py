"""Triplets `{"query","positive","negatives","difficulty","source"}` with mined hard negatives.

Sources: KorQuAD (question -> paragraph, by article split), msmarco-ko (query -> passage, by query split),
chatbot Q/A, question-pair paraphrases, KorSTS / KLUE-STS pairs scored >= 4, and Korean <-> English sentence
pairs from the parallel corpora (both directions; the query-language side is ranked, its translation emitted).
The `parallel_passages` config pairs each MS MARCO train passage with its translation (ko -> en and en -> ko): the
passage is the query, read as a pseudo-query or, with `query_is_document` in the training sources, as a document.
Each source is mined within its own corpus and is one shard, so `num_proc` builds sources in parallel.
Splits: `train`, and `validation` (KorQuAD eval articles + msmarco-ko eval queries) for an eval loss."""
from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

import datasets
import numpy as np

from builders.base import ToolkitBuilder, ToolkitConfig, normalize, stable_seed
from builders.corpora import korquad_articles, korquad_questions, msmarco
from builders.mining import Bands, Pool, mine
from builders.contracts import TRIPLET, BadRecords, read_jsonl, read_lines
from builders.records import read_csv, read_json, read_tsv
from builders.sources import locate

logger = logging.getLogger(__name__)

TRIPLET_SOURCES = ("korquad", "msmarco_ko", "msmarco_koen", "msmarco_enko", "chatbot_qa", "question_pair", "korsts",
                   "klue_sts", "parallel_news", "parallel_jhe", "msmarco_parallel")
EVAL_SOURCES = ("korquad", "msmarco_ko", "msmarco_koen", "msmarco_enko")
MIN_STS_SCORE = 4.0


def read_pools(name: str, split: str, data_dir: str | None, bad: BadRecords, limit: int | None = None) -> list[Pool]:
    """The mining pools of one source and split ("train" or "eval"); `limit` caps queries per pool."""
    return [pool.head(limit) for pool in _read_pools(name, split, data_dir, bad)]


def _read_pools(name: str, split: str, data_dir: str | None, bad: BadRecords) -> list[Pool]:
    if split == "eval" and name not in EVAL_SOURCES:
        return []
    if name == "korquad":
        rows = list(korquad_questions(korquad_articles(data_dir, split)))
        corpus = list(dict.fromkeys(r[2] for r in rows))
        index = {t: i for i, t in enumerate(corpus)}
        return [Pool(name, [r[1] for r in rows], [r[2] for r in rows], corpus,
                     relevant=[{index[r[2]]} for r in rows], answers=[r[3] for r in rows])]
    if name == "msmarco_ko":
        recs = msmarco(data_dir, "kor", split, bad)
        corpus = list(dict.fromkeys(p for r in recs for p in r["positive"]))
        index = {t: i for i, t in enumerate(corpus)}
        return [Pool(name, [r["query"] for r in recs], [r["positive"][0] for r in recs], corpus,
                     relevant=[{index[p] for p in r["positive"]} for r in recs])]
    if name in ("msmarco_koen", "msmarco_enko"):
        return [_msmarco_cross_pool(name, split, data_dir, bad)]
    if name in ("parallel_news", "parallel_jhe"):
        return _parallel_pools(name, data_dir, bad)
    if name == "msmarco_parallel":
        return _msmarco_parallel_pools(data_dir, bad)
    return [_pair_pool(name, list(_pairs(name, data_dir, bad)))]


def _pairs(name: str, data_dir: str | None, bad: BadRecords):
    """(query, positive) pairs of the paired-sentence sources."""
    if name == "chatbot_qa":
        for _, (q, a) in read_csv(locate(data_dir, name, "songys_chatbot_qpair/ChatbotData.csv"), 2, bad):
            yield q, a
    elif name == "question_pair":
        path = locate(data_dir, name, "songys_chatbot_qpair/kor_pair_train.csv")
        for _, row in read_csv(path, 6, bad):
            if row[5].strip() == "1":
                yield row[3], row[4]
    elif name == "korsts":
        for file in ("sts-train.tsv", "sts-dev.tsv"):
            path = locate(data_dir, name, f"kor_nlu_kakaobrain/{file}")
            for number, row in read_tsv(path, 7, bad, header=True):
                try:
                    score = float(row[4])
                except ValueError:
                    bad(path, number, f"field 'score': not a number: {row[4]!r}")
                    continue
                if score >= MIN_STS_SCORE:
                    yield row[5], row[6]
    elif name == "klue_sts":
        path = locate(data_dir, name, "klue_dev_sts_nli/klue-sts-v1.1_dev.json")
        for i, rec in enumerate(read_json(path)):
            try:
                score = float(rec["labels"]["label"])
                pair = rec["sentence1"], rec["sentence2"]
            except (KeyError, TypeError, ValueError) as e:
                bad(path, 1, f"record {i}: missing or bad field {e}")
                continue
            if score >= MIN_STS_SCORE:
                yield pair
    else:
        raise ValueError(f"unknown triplet source {name!r}; choose from {TRIPLET_SOURCES}")


def _pair_pool(name: str, pairs) -> Pool:
    """Negatives come from every sentence of the source; sentences linked to the query are never negatives."""
    pairs = [(normalize(q), normalize(p)) for q, p in pairs if q.strip() and p.strip()]
    corpus = list(dict.fromkeys(t for pair in pairs for t in pair))
    index = {t: i for i, t in enumerate(corpus)}
    linked = defaultdict(set)
    for q, p in pairs:
        linked[q] |= {index[q], index[p]}
    return Pool(name, [q for q, _ in pairs], [p for _, p in pairs], corpus, relevant=[linked[q] for q, _ in pairs])


def _parallel_pools(name: str, data_dir: str | None, bad: BadRecords) -> list[Pool]:
    stems = {"parallel_news": ("korean-english-park.dev", "korean-english-park.test"),
             "parallel_jhe": ("jhe-koen-dev", "jhe-koen-eval")}[name]
    ko, en = [], []
    for stem in stems:
        ko_path = locate(data_dir, name, f"ko_en_parallel_jungyeul/{stem}.ko")
        en_path = locate(data_dir, name, f"ko_en_parallel_jungyeul/{stem}.en")
        ko_lines = [normalize(t) for _, t in read_lines(ko_path, bad)]
        en_lines = [normalize(t) for _, t in read_lines(en_path, bad)]
        if len(ko_lines) != len(en_lines):
            raise ValueError(f"{ko_path} has {len(ko_lines)} lines but {en_path} has {len(en_lines)}: not aligned")
        for k, e in zip(ko_lines, en_lines):
            if k and e:
                ko.append(k)
                en.append(e)
    return _translation_pools(name, ko, en)


def _translation_pools(name: str, ko: list[str], en: list[str]) -> list[Pool]:
    """Both directions over aligned texts: the query's language is ranked and the translations emitted."""
    same = [{i} for i in range(len(ko))]
    return [Pool(f"{name}:ko-en", ko, en, en, search_corpus=ko, relevant=same),
            Pool(f"{name}:en-ko", en, ko, ko, search_corpus=en, relevant=same)]


def _msmarco_parallel_pools(data_dir: str | None, bad: BadRecords) -> list[Pool]:
    """The train queries' positive passages and their translations, each distinct passage once. Train split only:
    the eval queries' passages never become training text."""
    pairs, seen = {}, set()
    for r, translations in _aligned_msmarco("kor", "eng", "train", data_dir, bad):
        for k, e in zip(r["positive"], translations):
            if k not in pairs and e not in seen:
                pairs[k] = e
                seen.add(e)
    return _translation_pools("msmarco_parallel", list(pairs), list(pairs.values()))


def _aligned_msmarco(query_lang: str, doc_lang: str, split: str, data_dir: str | None, bad: BadRecords):
    """(record in query_lang, its positives in doc_lang) for the records whose positives align one to one."""
    docs_by_id = {r["id"]: r["positive"] for r in msmarco(data_dir, doc_lang, split, bad)}
    return [(r, docs_by_id[r["id"]]) for r in msmarco(data_dir, query_lang, split, bad)
            if len(docs_by_id.get(r["id"], ())) == len(r["positive"])]


def _msmarco_cross_pool(name: str, split: str, data_dir: str | None, bad: BadRecords) -> Pool:
    """MS MARCO across languages (koen: Korean query -> English passage; enko the reverse). Negatives are mined
    with the query's language over the query-language passages, and their translations are emitted."""
    query_lang, doc_lang = ("kor", "eng") if name == "msmarco_koen" else ("eng", "kor")
    aligned = _aligned_msmarco(query_lang, doc_lang, split, data_dir, bad)
    search, corpus = {}, []
    for r, translations in aligned:
        for same, translated in zip(r["positive"], translations):
            if same not in search:
                search[same] = len(corpus)
                corpus.append(translated)
    return Pool(name, [r["query"] for r, _ in aligned], [t[0] for _, t in aligned], corpus,
                search_corpus=list(search), relevant=[{search[p] for p in r["positive"]} for r, _ in aligned])


def user_pool(path: str, bad: BadRecords) -> Pool:
    """A user's JSONL of {"query","positive"} pairs (the triplet contract, negatives left to the miner), mined like
    any other source."""
    pairs = [(r["query"], r["positive"]) for r in read_jsonl(path, TRIPLET, bad)]
    return _pair_pool(os.path.splitext(os.path.basename(path))[0], pairs)


def query_splits(cfg) -> list:
    """Train over every active source (plus the user's JSONL shards); validation over the eval sources' held-out
    queries. Shared by the triplet and distillation builders, which follow the same splits."""
    shards = list(cfg.active_sources()) + [f"jsonl:{p}" for p in cfg.extra_jsonl]
    eval_shards = [s for s in cfg.active_sources() if s in EVAL_SOURCES]
    splits = [datasets.SplitGenerator(name="train", gen_kwargs={"shards": shards, "split": "train"})]
    if eval_shards:
        splits.append(datasets.SplitGenerator(name="validation", gen_kwargs={"shards": eval_shards, "split": "eval"}))
    return splits


@dataclass
class TripletsConfig(ToolkitConfig):
    """Mining: `miner` bm25 | dense, `analyzer` mecab | bigram, negatives per band and band limits (`Bands`),
    optional `teacher_ratio`: drop candidates the dense teacher scores >= ratio x the positive."""

    sources: tuple = TRIPLET_SOURCES
    miner: str = "bm25"
    analyzer: str = "mecab"
    num_hard: int = 2
    num_medium: int = 1
    num_easy: int = 1
    hard_ranks: int = 10
    medium_ranks: int = 50
    teacher_ratio: float | None = None
    code_switch: bool = False  # add code-switched copies of each query (see builders.code_switch)

    def bands(self) -> Bands:
        return Bands(self.num_hard, self.num_medium, self.num_easy, self.hard_ranks, self.medium_ranks)


class Triplets(ToolkitBuilder):
    BUILDER_CONFIG_CLASS = TripletsConfig
    BUILDER_CONFIGS = [
        TripletsConfig(name="triplets", description="Queries with positives and BM25-mined hard negatives"),
        TripletsConfig(name="code_switched", code_switch=True,
                       description="Triplets whose Korean query terms are switched to English, plus originals"),
        TripletsConfig(name="parallel_passages", sources=("msmarco_parallel",),
                       description="MS MARCO train passages -> their translations (ko -> en, en -> ko), with "
                                   "negatives mined in the passage's language"),
    ]
    DEFAULT_CONFIG_NAME = "triplets"
    SCHEMA = TRIPLET
    DESCRIPTION = __doc__

    def _split_generators(self, dl_manager):
        return query_splits(self.config)

    def _generate_examples(self, shards, split):
        cfg = self.config
        teacher = None
        if cfg.miner == "dense" or cfg.teacher_ratio:
            from builders.teacher import DenseTeacher

            teacher = DenseTeacher()
        switcher = None
        if cfg.code_switch:
            from builders.code_switch import CodeSwitcher

            switcher = CodeSwitcher.from_sources(cfg.data_dir, cfg.exclude_noncommercial)
        for shard in shards:
            bad = self.bad_records()
            if shard.startswith("jsonl:"):
                pools = [user_pool(shard[len("jsonl:"):], bad)]
            else:
                pools = read_pools(shard, split, cfg.data_dir, bad, cfg.max_per_source)
            for pool in pools:
                stats = Counter()
                rng = np.random.default_rng(stable_seed(cfg.seed, split, pool.source))
                count = 0
                for qi, negatives, difficulty in mine(pool, cfg.bands(), rng, miner=cfg.miner, analyzer=cfg.analyzer,
                                                      teacher=teacher, teacher_ratio=cfg.teacher_ratio, stats=stats):
                    row = {"query": pool.queries[qi], "positive": pool.positives[qi], "negatives": negatives,
                           "difficulty": difficulty, "source": pool.source}
                    queries = [row["query"]] if switcher is None else switcher.variants(row["query"])
                    for vi, query in enumerate(queries):
                        source = pool.source if vi == 0 else f"code_switch:{pool.source}"
                        yield f"{pool.source}-{qi}-{vi}", {**row, "query": query, "source": source}
                        count += 1
                logger.info("triplets %s/%s: %d rows from %d queries; %s; %s", split, pool.source, count,
                            len(pool.queries), dict(stats) or "no drops", bad.summary())
