"""The data contracts, one place: what every JSONL record of the toolkit holds, how it is checked, and the one
JSONL reader that builders, training, eval and deploy all use.

A `Contract` names its fields and their Python types (the `datasets.Features` of a built dataset), which of them
a user's record must have (the others are checked when present; None counts as absent), and the value rules the
trainer relies on: texts are not empty, a required list is not empty, parallel lists have one entry each, numbers
are finite, a difficulty is one of `DIFFICULTIES`.

Every problem is a `RecordError` naming file, line and field (`path:line: field 'x' ...`). With
`BadRecords(skip=True)` a bad record is skipped instead, and counted with a few examples so a build log and a
dataset card can say what was lost."""
from __future__ import annotations

import gzip
import json
import logging
import math
import os
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Optional

logger = logging.getLogger(__name__)

# Hard-negative bands, easiest first: a negative curriculum opens them in this order.
DIFFICULTIES = ("easy", "medium", "hard")
ID = (str, int)  # BEIR ids: strings, though some files write numbers (read as their string)


@dataclass(frozen=True)
class Contract:
    name: str
    fields: dict  # field -> type (str, int, float, list[str], list[float], or ID); the order of a built dataset
    required: tuple = ()  # the fields a record must have; empty: all of them
    texts: tuple = ()  # str / list[str] fields whose texts must not be empty (or blank)
    parallel: tuple = ()  # (a, b) pairs of list fields with one entry each
    choices: dict = field(default_factory=dict)  # field -> allowed values (of each item, for a list)

    @property
    def must_have(self) -> tuple:
        return self.required or tuple(self.fields)


TERM_PAIR = Contract("term_pairs", {"ko": str, "en": str, "source": str, "category": str},
                     required=("ko", "en"), texts=("ko", "en"))
TRIPLET = Contract("triplets", {"query": str, "positive": str, "negatives": list[str], "difficulty": list[str],
                                "source": str},
                   required=("query", "positive"), texts=("query", "positive", "negatives"),
                   parallel=(("difficulty", "negatives"),), choices={"difficulty": DIFFICULTIES})
DISTILLATION = Contract("distillation", {"query": str, "docs": list[str], "scores": list[float]},
                        texts=("query", "docs"), parallel=(("scores", "docs"),))
# A benchmark is a BEIR folder: corpus.jsonl, queries.jsonl and qrels/test.tsv (tab-separated, with a header).
BENCHMARK = {
    "corpus": Contract("corpus", {"_id": ID, "title": str, "text": str}, required=("_id", "text")),
    "queries": Contract("queries", {"_id": ID, "text": str}),
    "qrels": Contract("qrels", {"query-id": str, "corpus-id": str, "score": int}),
}
# eval/context.py's context-discrimination pairs: one phrase in two texts, with a reference sense for each.
CONTEXT_PAIR = Contract("context_pairs", {"phrase": str, "text_a": str, "reference_a": str, "text_b": str,
                                          "reference_b": str, "span_a": list[int], "span_b": list[int]},
                        required=("phrase", "text_a", "reference_a", "text_b", "reference_b"),
                        texts=("phrase", "text_a", "reference_a", "text_b", "reference_b"))

SCHEMAS = {"term_pairs": TERM_PAIR, "triplets": TRIPLET, "distillation": DISTILLATION, **BENCHMARK}
# What the trainer reads, in the order a record's task is inferred (a distillation record may also hold a positive).
TRAINING_CONTRACTS = {c.name: c for c in (DISTILLATION, TRIPLET, TERM_PAIR)}


def document_text(title: Optional[str], text: Optional[str]) -> str:
    """What gets encoded and indexed for a corpus record: the title (when present) then the text, as BEIR
    evaluations do."""
    title, text = (title or "").strip(), (text or "").strip()
    return f"{title} {text}" if title else text


def read_corpus(path, include_title: bool = True, bad: Optional["BadRecords"] = None) -> tuple[list, list]:
    """(ids, texts) of a BEIR corpus.jsonl, each text its `document_text`; a duplicate _id or a document without
    text is a bad record."""
    bad = bad or BadRecords()
    ids, texts, seen = [], [], {}
    for number, record in read_jsonl_lines(path, BENCHMARK["corpus"], bad):
        doc_id = str(record["_id"])
        text = document_text(record.get("title") if include_title else None, record["text"])
        if doc_id in seen:
            bad(path, number, f"duplicate _id {doc_id!r} (first on line {seen[doc_id]})")
        elif not text:
            bad(path, number, f"document {doc_id!r} has no text")
        else:
            seen[doc_id] = number
            ids.append(doc_id)
            texts.append(text)
    return ids, texts


def infer_task(record: dict, where: str) -> str:
    """The training contract whose required fields the record has (`where`: file:line or a dataset row, for the
    error when none does)."""
    task = next((name for name, c in TRAINING_CONTRACTS.items() if set(c.must_have) <= record.keys()), None)
    if task is None:
        expected = ", ".join(f"{'+'.join(c.must_have)} ({name})" for name, c in TRAINING_CONTRACTS.items())
        raise RecordError(where, None, f"cannot infer the task from fields {sorted(record)}; expected {expected}, "
                                       "or set the source's task")
    return task


# ---------------------------------------------------------------------------------------------------- checking
def check_record(record, contract) -> Optional[str]:
    """Why `record` breaks `contract` (a `Contract`, or a plain {field: type} dict whose fields are all
    required), or None when it conforms. Extra fields are allowed; ints are accepted where floats are expected."""
    if not isinstance(contract, Contract):
        contract = Contract("record", dict(contract))
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for name in contract.must_have:
        if record.get(name) is None:
            return f"missing field {name!r}" + (f" required for {contract.name}" if contract.name != "record" else "")
    for name, kind in contract.fields.items():
        value = record.get(name)
        if value is None:
            continue
        problem = _check_value(name, value, kind, contract, required=name in contract.must_have)
        if problem:
            return problem
    for a, b in contract.parallel:
        if record.get(a) is not None and len(record[a]) != len(record.get(b) or ()):
            return f"{a!r} has {len(record[a])} entries but {b!r} has {len(record.get(b) or ())}"
    return None


def _check_value(name: str, value, kind, contract: Contract, required: bool) -> Optional[str]:
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            return f"field {name!r} must be a list of {_kind_name(item)}, got {type(value).__name__}"
        if required and not value:
            return f"field {name!r} must be a non-empty list"
        for i, v in enumerate(value):
            problem = _check_item(f"{name}[{i}]", v, item, name in contract.texts, contract.choices.get(name))
            if problem:
                return problem
        return None
    return _check_item(name, value, kind, name in contract.texts, contract.choices.get(name))


def _check_item(name: str, value, kind, text: bool, choices) -> Optional[str]:
    if not _is(value, kind):
        return f"field {name!r} must be {_kind_name(kind, article=True)}, got {_shown(value)}"
    if text and not value.strip():
        return f"field {name!r} is an empty text"
    if choices is not None and value not in choices:
        return f"field {name!r} must be one of {choices}, got {value!r}"
    return None


def _is(value, kind) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _kind_name(kind, article: bool = False) -> str:
    names = {str: ("str", "a string"), float: ("float", "a finite number"), int: ("int", "an integer"),
             ID: ("str", "a string or an integer")}
    short, long = names.get(kind, (getattr(kind, "__name__", str(kind)),) * 2)
    return long if article else short


def _shown(value) -> str:
    return repr(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else type(value).__name__


# ---------------------------------------------------------------------------------------------------- errors
class RecordError(ValueError):
    """A bad record: `path:line: message` (the field named in the message when one is at fault); `line` None
    for a whole file, or when `path` already says where (a dataset row)."""

    def __init__(self, path, line: Optional[int], message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


class BadRecords:
    """Raise `error` on the first bad record (default), or skip and count them (`skip=True`)."""

    def __init__(self, skip: bool = False, max_examples: int = 5, error: type = RecordError):
        self.skip = skip
        self.max_examples = max_examples
        self.error = error
        self.counts: Counter = Counter()
        self.examples: list[str] = []

    def __call__(self, path, line: Optional[int], message: str) -> None:
        error = self.error(path, line, message)
        if not self.skip:
            raise error
        self.counts[str(path)] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))
        logger.warning("skipped bad record %s", error)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no bad records"
        per_file = ", ".join(f"{os.path.basename(p)}: {n}" for p, n in self.counts.items())
        return f"skipped {self.total} bad records ({per_file}); e.g. " + " | ".join(self.examples)


# ---------------------------------------------------------------------------------------------------- reading
def read_lines(path, bad: Optional[BadRecords] = None) -> Iterator[tuple[int, str]]:
    """(line number, text without newline) of a UTF-8 file (gzipped if named .gz); a byte-order mark is ignored,
    blank lines are kept (callers decide). A line that is not UTF-8 is a bad record, not a crash mid-build."""
    bad = bad or BadRecords()
    path = str(path)
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad(path, number, f"not valid UTF-8 ({e.reason} at byte {e.start})")
                continue
            if number == 1:
                text = text.lstrip("\ufeff")
            yield number, text.rstrip("\r\n")


def read_jsonl_lines(path, contract=None, bad: Optional[BadRecords] = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSONL file, each record checked against `contract` (blank lines are ignored)."""
    bad = bad or BadRecords()
    for number, text in read_lines(path, bad):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            bad(path, number, f"malformed JSON ({e.msg}, column {e.colno})")
            continue
        problem = check_record(record, contract) if contract is not None else \
            None if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"
        if problem:
            bad(path, number, problem)
            continue
        yield number, record


def read_jsonl(path, contract=None, bad: Optional[BadRecords] = None) -> Iterator[dict]:
    """The records of a JSONL file, each checked against `contract`; errors name file, line and field."""
    for _, record in read_jsonl_lines(path, contract, bad):
        yield record


def validate_file(path: str, contract, skip: bool = False) -> tuple[int, BadRecords]:
    """Check a user's JSONL file against a contract: (number of good records, the bad-record report)."""
    bad = BadRecords(skip=skip)
    good = sum(1 for _ in read_jsonl(path, contract, bad))
    return good, bad
