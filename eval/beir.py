"""Load a BEIR benchmark folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) with errors that name the file
and line: a bad benchmark must fail loudly, not produce plausible wrong numbers."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from builders.contracts import BENCHMARK, BadRecords, RecordError, read_corpus, read_jsonl_lines

logger = logging.getLogger(__name__)
QRELS_HEADER = ("query-id", "corpus-id", "score")


class BenchmarkError(RecordError):
    """A malformed benchmark file: `BenchmarkError(path, line, message)` (line None: the whole file)."""


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


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a BEIR folder has corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    return path


def load_beir(path, split: str = "test", name: Optional[str] = None, include_title: bool = True) -> Benchmark:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a BEIR benchmark folder")
    corpus_file, queries_file = path / "corpus.jsonl", path / "queries.jsonl"
    qrels_file = path / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():  # before reading a large corpus
        found = sorted(p.stem for p in qrels_file.parent.glob("*.tsv")) if qrels_file.parent.is_dir() else []
        raise FileNotFoundError(f"{qrels_file}: missing (qrels splits found: {found or 'none'})")

    bad = BadRecords(error=BenchmarkError)
    corpus_ids, corpus_texts = read_corpus(_existing(corpus_file), include_title, bad)

    queries, query_lines = {}, {}
    for line_no, rec in read_jsonl_lines(_existing(queries_file), BENCHMARK["queries"], bad):
        rec["_id"] = str(rec["_id"])
        if rec["_id"] in queries:
            raise BenchmarkError(queries_file, line_no, f"duplicate _id {rec['_id']!r}")
        queries[rec["_id"]] = rec["text"]
        query_lines[rec["_id"]] = line_no

    qrels = _read_qrels(qrels_file, set(corpus_ids), queries)
    for qid in qrels:
        if not isinstance(queries[qid], str) or not queries[qid].strip():
            raise BenchmarkError(queries_file, query_lines[qid], f"query {qid!r} is empty")
    answerable = [q for q in queries if any(r > 0 for r in qrels.get(q, {}).values())]
    unanswerable = set(qrels) - set(answerable)
    if unanswerable:
        logger.warning("%s: %d judged queries have no relevant document (relevance > 0) and are not evaluated",
                       qrels_file, len(unanswerable))
    if not answerable:
        raise BenchmarkError(qrels_file, None, "no query has a relevant document (relevance > 0)")
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
                raise BenchmarkError(path, line_no, "expected 3 tab-separated fields (query-id, corpus-id, "
                                     f"score), got {len(parts)}: {line!r}")
            qid, did, score = (p.strip() for p in parts)
            try:
                relevance = int(score)
            except ValueError:
                raise BenchmarkError(path, line_no, f"score {score!r} is not an integer") from None
            if qid not in queries:
                raise BenchmarkError(path, line_no, f"query-id {qid!r} is not in queries.jsonl")
            if did not in corpus:
                raise BenchmarkError(path, line_no, f"corpus-id {did!r} is not in corpus.jsonl")
            judged = qrels.setdefault(qid, {})
            if did in judged and judged[did] != relevance:
                raise BenchmarkError(path, line_no, f"({qid!r}, {did!r}) judged twice with different scores")
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
