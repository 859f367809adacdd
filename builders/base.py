"""What every builder shares: its config fields, `datasets.Features` from a contract, text normalisation."""
from __future__ import annotations

import re
import typing
import unicodedata
import zlib
from dataclasses import dataclass

import datasets

from builders.contracts import BadRecords, Contract
from builders.sources import SOURCES, allowed

_SPACE = re.compile(r"\s+")
LATIN = re.compile(r"[a-z]", re.IGNORECASE)


@dataclass
class ToolkitConfig(datasets.BuilderConfig):
    """`data_dir` holds the raw sources (see `builders.sources`); `exclude_noncommercial` drops sources whose
    licence forbids commercial use; `skip_bad_records` skips (and counts) malformed records instead of failing;
    `extra_jsonl` adds a user's own records in the config's contract; `max_per_source` caps rows per source
    (quick builds and tests); `seed` fixes every random choice."""

    sources: tuple = ()
    exclude_noncommercial: bool = False
    skip_bad_records: bool = False
    extra_jsonl: tuple = ()
    max_per_source: int | None = None
    seed: int = 13

    def active_sources(self) -> list[str]:
        return allowed(self.sources, self.exclude_noncommercial)


class ToolkitBuilder(datasets.GeneratorBasedBuilder):
    """Base: features from `SCHEMA`, and the list of sources a config reads (for the dataset card)."""

    BUILDER_CONFIG_CLASS = ToolkitConfig
    SCHEMA: Contract
    DESCRIPTION = ""

    def _info(self):
        return datasets.DatasetInfo(description=self.DESCRIPTION, features=features(self.SCHEMA))

    def bad_records(self) -> BadRecords:
        return BadRecords(skip=self.config.skip_bad_records)

    def sources_used(self) -> list:
        return [SOURCES[n] for n in self.config.active_sources()]


def features(contract: Contract) -> datasets.Features:
    """`datasets.Features` for a contract from `builders.contracts` (all its fields, in order)."""
    dtype = {str: "string", float: "float32", int: "int64"}
    out = {}
    for name, kind in contract.fields.items():
        if typing.get_origin(kind) is list:
            out[name] = datasets.List(datasets.Value(dtype[typing.get_args(kind)[0]]))
        else:
            out[name] = datasets.Value(dtype[kind])
    return datasets.Features(out)


def normalize(text: str) -> str:
    """NFC and single spaces; no accent stripping (it would split Hangul into jamo)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def stable_seed(seed: int, *parts: str) -> int:
    """A seed per (seed, name) that does not depend on process or PYTHONHASHSEED, so shards built in parallel
    draw the same numbers as a single-process build."""
    return zlib.crc32("/".join([str(seed), *parts]).encode()) & 0x7FFFFFFF
