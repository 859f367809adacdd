"""Load a BEIR benchmark folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) with errors that name the file
and line: a bad benchmark must fail loudly, not produce plausible wrong numbers."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)
QRELS_HEADER = ("query-id", "corpus-id", "score")


class BenchmarkError(ValueError):
    """A malformed benchmark file; the message names the file and line."""


@dataclass
class Benchmark:
    """One benchmark split. Queries are those with at least one relevant judgement (relevance > 0), in
    queries.jsonl order; `qrels[i]` is query i's {corpus_id: relevance}."""

    name: str
    corpus_ids: list[str]
    corpus_texts: list[str] = field(repr=False)
    query_ids: list[str]
    query_texts: list[str] = field(repr=False)
    qrels: list[dict[str, int]] = field(repr=False)
    path: Optional[Path] = None

    def __post_init__(self):
        self._doc_index = {d: i for i, d in enumerate(self.corpus_ids)}

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    def qrels_matrix(self) -> sp.csr_matrix:
        """[n_queries, n_docs] relevance, to look up gains of retrieved document indices without Python loops."""
        rows, cols, vals = [], [], []
        for i, judged in enumerate(self.qrels):
            for doc, rel in judged.items():
                rows.append(i)
                cols.append(self._doc_index[doc])
                vals.append(rel)
        return sp.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)),
                             shape=(self.num_queries, len(self.corpus_ids)))

    def subset(self, max_queries: Optional[int]) -> "Benchmark":
        """The first max_queries queries (deterministic), e.g. for quick evaluation during training."""
        if max_queries is None or max_queries >= self.num_queries:
            return self
        return Benchmark(self.name, self.corpus_ids, self.corpus_texts, self.query_ids[:max_queries],
                         self.query_texts[:max_queries], self.qrels[:max_queries], self.path)


def _read_jsonl(path: Path, required: tuple[str, ...]):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a BEIR folder has corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise BenchmarkError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in required if key not in record]
            if missing:
                raise BenchmarkError(f"{path}:{line_no}: missing field(s) {missing}")
            record["_id"] = str(record["_id"])
            yield line_no, record


def document_text(title: str, text: str) -> str:
    """What gets indexed for a corpus record: the title (when present) then the text, as BEIR evaluations do."""
    title, text = (title or "").strip(), (text or "").strip()
    return f"{title} {text}" if title else text


def load_beir(path, split: str = "test", name: Optional[str] = None, include_title: bool = True) -> Benchmark:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a BEIR benchmark folder")
    corpus_file, queries_file = path / "corpus.jsonl", path / "queries.jsonl"
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():  # before reading a large corpus
        found = sorted(p.stem for p in qrels_file.parent.glob("*.tsv")) if qrels_file.parent.is_dir() else []
        raise FileNotFoundError(f"{qrels_file}: missing (qrels splits found: {found or 'none'})")

    corpus_ids, corpus_texts, seen = [], [], {}
    for line_no, rec in _read_jsonl(corpus_file, ("_id", "text")):
        if rec["_id"] in seen:
            raise BenchmarkError(f"{corpus_file}:{line_no}: duplicate _id {rec['_id']!r} (first on line "
                                 f"{seen[rec['_id']]})")
        text = document_text(rec.get("title", "") if include_title else "", rec["text"])
        if not text:
            raise BenchmarkError(f"{corpus_file}:{line_no}: document {rec['_id']!r} has no text")
        seen[rec["_id"]] = line_no
        corpus_ids.append(rec["_id"])
        corpus_texts.append(text)

    queries, query_lines = {}, {}
    for line_no, rec in _read_jsonl(queries_file, ("_id", "text")):
        if rec["_id"] in queries:
            raise BenchmarkError(f"{queries_file}:{line_no}: duplicate _id {rec['_id']!r}")
        queries[rec["_id"]] = rec["text"]
        query_lines[rec["_id"]] = line_no

    qrels = _read_qrels(qrels_file, seen, queries)
    for qid in qrels:
        if not isinstance(queries[qid], str) or not queries[qid].strip():
            raise BenchmarkError(f"{queries_file}:{query_lines[qid]}: query {qid!r} is empty")
    answerable = [q for q in queries if any(r > 0 for r in qrels.get(q, {}).values())]
    unanswerable = set(qrels) - set(answerable)
    if unanswerable:
        logger.warning("%s: %d judged queries have no relevant document (relevance > 0) and are not evaluated",
                       qrels_file, len(unanswerable))
    if not answerable:
        raise BenchmarkError(f"{qrels_file}: no query has a relevant document (relevance > 0)")
    return Benchmark(name or path.name, corpus_ids, corpus_texts, answerable,
                     [queries[q].strip() for q in answerable], [qrels[q] for q in answerable], path)


def _read_qrels(path: Path, corpus: dict, queries: dict) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if line_no == 1 and tuple(p.strip() for p in parts) == QRELS_HEADER:
                continue
            if len(parts) != 3:
                raise BenchmarkError(f"{path}:{line_no}: expected 3 tab-separated fields (query-id, corpus-id, "
                                     f"score), got {len(parts)}: {line!r}")
            qid, did, score = (p.strip() for p in parts)
            try:
                relevance = int(score)
            except ValueError:
                raise BenchmarkError(f"{path}:{line_no}: score {score!r} is not an integer") from None
            if qid not in queries:
                raise BenchmarkError(f"{path}:{line_no}: query-id {qid!r} is not in queries.jsonl")
            if did not in corpus:
                raise BenchmarkError(f"{path}:{line_no}: corpus-id {did!r} is not in corpus.jsonl")
            judged = qrels.setdefault(qid, {})
            if did in judged and judged[did] != relevance:
                raise BenchmarkError(f"{path}:{line_no}: ({qid!r}, {did!r}) judged twice with different scores")
            judged[did] = relevance
    return qrels


def resolve_benchmark(spec: str, benchmark_dir="benchmarks") -> Path:
    """`beir:PATH` -> PATH; a bare NAME -> <benchmark_dir>/NAME (where `python -m builders` exports them)."""
    if spec.startswith("beir:"):
        return Path(spec[len("beir:"):])
    candidate = Path(benchmark_dir) / spec
    if candidate.is_dir():
        return candidate
    root = Path(benchmark_dir)
    known = sorted(p.name for p in root.iterdir() if (p / "corpus.jsonl").is_file()) if root.is_dir() else []
    raise FileNotFoundError(f"benchmark {spec!r} not found in {root}/ (available: {known or 'none'}); "
                            f"pass beir:PATH for any BEIR folder")
