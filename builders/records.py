"""Readers of the raw sources' other formats (TSV, CSV, whole JSON files), with the JSONL reader's error rules:
a bad record (invalid UTF-8, a short row) is a `RecordError` naming file and line, or skipped and counted by
`BadRecords(skip=True)`. JSONL and the record contracts live in `builders.contracts`."""
from __future__ import annotations

import json
from typing import Iterator

from builders.contracts import BadRecords, RecordError, read_lines


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
