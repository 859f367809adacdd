"""Reading raw and user files without ever dropping a record silently.

Every reader reports a bad record (invalid UTF-8, malformed JSON, a missing field, a wrong type, a short TSV row)
as a `RecordError` naming file, line and field. With `BadRecords(skip=True)` the record is skipped instead, and
counted with a few examples so the build log and the dataset card can say what was lost."""
from __future__ import annotations

import gzip
import json
import logging
import os
import typing
from collections import Counter
from typing import Iterator

logger = logging.getLogger(__name__)


class RecordError(ValueError):
    """A bad record: `path:line: message` (field named in the message when one is at fault)."""

    def __init__(self, path: str, line: int, message: str):
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}")


class BadRecords:
    """Raise on the first bad record (default), or skip and count them (`skip=True`)."""

    def __init__(self, skip: bool = False, max_examples: int = 5):
        self.skip = skip
        self.max_examples = max_examples
        self.counts: Counter = Counter()
        self.examples: list[str] = []

    def __call__(self, path: str, line: int, message: str) -> None:
        error = RecordError(path, line, message)
        if not self.skip:
            raise error
        self.counts[path] += 1
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


def check_record(record, schema: dict) -> str | None:
    """Why `record` breaks `schema` (a dict field -> type from `builders.schemas`), or None when it conforms.
    Extra fields are allowed; ints are accepted where floats are expected."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for field, kind in schema.items():
        if field not in record:
            return f"missing field {field!r}"
        value = record[field]
        if typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            if not isinstance(value, list):
                return f"field {field!r}: expected a list of {item.__name__}, got {type(value).__name__}"
            bad = next((v for v in value if not _is(v, item)), _MISSING)
            if bad is not _MISSING:
                return f"field {field!r}: expected a list of {item.__name__}, found {bad!r}"
        elif not _is(value, kind):
            return f"field {field!r}: expected {kind.__name__}, got {type(value).__name__}"
    return None


_MISSING = object()


def _is(value, kind) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def read_lines(path: str, bad: BadRecords | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text without newline) of a UTF-8 file (gzipped if named .gz); a byte-order mark is ignored, blank lines are kept
    (callers decide). A line that is not UTF-8 is a bad record, not a crash in the middle of a build."""
    bad = bad or BadRecords()
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


def read_jsonl(path: str, schema: dict | None = None, bad: BadRecords | None = None) -> Iterator[dict]:
    """Records of a JSONL file, each checked against `schema` (blank lines are ignored)."""
    bad = bad or BadRecords()
    for number, text in read_lines(path, bad):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            bad(path, number, f"malformed JSON ({e.msg} at column {e.colno})")
            continue
        problem = check_record(record, schema) if schema else None
        if problem:
            bad(path, number, problem)
            continue
        yield record


def read_tsv(path: str, columns: int, bad: BadRecords | None = None, comment: str | None = None,
             header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, first `columns` fields) of a tab-separated file; blank lines and `comment` lines are skipped,
    a row with fewer fields is a bad record."""
    bad = bad or BadRecords()
    for number, text in read_lines(path, bad):
        if (header and number == 1) or not text.strip() or (comment and text.startswith(comment)):
            continue
        fields = text.split("\t")
        if len(fields) < columns:
            bad(path, number, f"expected {columns} tab-separated fields, got {len(fields)}")
            continue
        yield number, fields[:columns]


def read_json(path: str):
    """A whole JSON file; errors name the file, line and column."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RecordError(path, line, f"not valid UTF-8 ({e.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(path, e.lineno, f"malformed JSON ({e.msg} at column {e.colno})") from None


def validate_file(path: str, schema: dict, skip: bool = False) -> tuple[int, BadRecords]:
    """Check a user's JSONL file against a contract: (number of good records, the bad-record report)."""
    bad = BadRecords(skip=skip)
    good = sum(1 for _ in read_jsonl(path, schema, bad))
    return good, bad


def read_csv(path: str, columns: int, bad: BadRecords | None = None, header: bool = True
             ) -> Iterator[tuple[int, list[str]]]:
    """(line number, first `columns` fields) of a UTF-8 CSV file (quoted fields may span lines)."""
    import csv

    bad = bad or BadRecords()
    lines = (text + "\n" for _, text in read_lines(path, bad))
    reader = csv.reader(lines)
    for row in reader:
        if header and reader.line_num == 1:
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < columns:
            bad(path, reader.line_num, f"expected {columns} comma-separated fields, got {len(row)}")
            continue
        yield reader.line_num, row[:columns]
