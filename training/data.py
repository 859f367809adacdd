"""Training data: validated sources (JSONL files in the contracts of docs/architecture.md, or `datasets` folders/hub ids), a
deterministic multi-task batch schedule, and the collator that tokenises one scheduled batch.

Every batch holds one task, and under DDP every rank gets a slice of the same global batch, so all ranks run the
same losses on same-shaped tensors (the sparse vectors are gathered across ranks before the loss)."""
from __future__ import annotations

import glob
import itertools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from builders.contracts import (DIFFICULTIES, TRAINING_CONTRACTS, RecordError, check_record, infer_task,
                                read_jsonl_lines)


def read_jsonl(path, task: Optional[str] = None) -> tuple[str, list[dict]]:
    """Read and validate a JSONL training file; the task is inferred from the first record unless given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file not found: {path}")
    lines = read_jsonl_lines(path)
    first = next(lines, None)
    if first is None:
        raise RecordError(path, None, "no records")
    task = task or infer_task(first[1], f"{path}:{first[0]}")
    contract = TRAINING_CONTRACTS[task]
    records = []
    for number, record in itertools.chain([first], lines):
        problem = check_record(record, contract)
        if problem:
            raise RecordError(path, number, problem)
        records.append(record)
    return task, records


def load_split(name: str, config: Optional[str] = None, split: str = "train"):
    """One split of a `builders` output folder (its `<config>/<split>-*.parquet` files), or any other `datasets` source.

    A local folder is loaded through its files' absolute paths: `datasets` (5.2) caches a folder by its name, config
    and file patterns, so two folders both called `term_pairs` would share one cache and the second would silently
    return the first one's rows."""
    import datasets

    files = sorted(glob.glob(os.path.join(os.path.abspath(name), config or "", f"{split}-*.parquet")))
    if not (os.path.isdir(name) and files):
        return datasets.load_dataset(name, config, split=split)
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


def read_dataset(name: str, config: Optional[str] = None, split: str = "train", task: Optional[str] = None):
    """A `datasets` source (a builders output folder or a hub id), validated row by row like a JSONL file."""
    ds = load_split(name, config, split)
    label = f"{name}" + (f"[{config}]" if config else "") + f"/{split}"
    records = ds.to_list()
    if not records:
        raise RecordError(label, None, "no records")
    task = task or infer_task(records[0], f"{label} row 0")
    for i, record in enumerate(records):
        problem = check_record(record, TRAINING_CONTRACTS[task])
        if problem:
            raise RecordError(f"{label} row {i}", None, problem)
    return task, records


@dataclass
class SourceSpec:
    """One entry of the config's `sources` list: a JSONL `file`, or a `dataset` (a builders output folder with its
    `config` name, or a hub id); its `task` (None or "auto": inferred from the first record), its relative share
    of batches (`weight`; unset counts 1 when another source sets one), the fraction of each epoch before it
    is sampled (`curriculum_start`), and the rows per device of its batches (`batch_size`; unset: the
    trainer's per_device_train_batch_size). Short-text sources such as term pairs cost a fraction of a document
    batch, so a larger batch there covers more of them without taking optimiser steps from the ranking sources.
    `query_is_document`: the query side is a document (a passage paired with its translation): tokenised at
    max_seq_length and regularised as a document. `loss_overrides`: loss settings (LossArguments fields) that
    differ for this source's batches, as sentence-transformers trains each dataset with its own loss.
    `row_sources`: keep only the rows whose `source` field (the origin builders write into each row, such as
    `msmarco_parallel:ko-en`) is listed: one direction of a two-way builder config, without a second build."""

    file: Optional[str] = None
    dataset: Optional[str] = None
    config: Optional[str] = None
    task: Optional[str] = None
    weight: Optional[float] = None
    curriculum_start: float = 0.0
    batch_size: Optional[int] = None
    query_is_document: bool = False
    loss_overrides: Optional[dict] = None
    row_sources: Optional[list] = None

    @property
    def name(self) -> str:
        if self.file is not None:
            return self.file
        return self.dataset if self.config is None else f"{self.dataset}[{self.config}]"


@dataclass(frozen=True)
class Source:
    """A source read and validated: its config entry, the task its records hold, and the records."""
    spec: SourceSpec
    task: str
    records: list

    @property
    def name(self) -> str:
        return self.spec.name


def load_sources(specs: Sequence[SourceSpec]) -> list[Source]:
    """Read and validate every source, in the config's order."""
    if not specs:
        raise ValueError("no training data: set sources (or train_file)")
    sources = []
    for spec in specs:
        task = spec.task if spec.task != "auto" else None
        task, records = read_jsonl(spec.file, task) if spec.file is not None else \
            read_dataset(spec.dataset, spec.config, task=task)
        if spec.row_sources:
            records = select_rows(spec, records)
        if spec.query_is_document and task != "triplets":
            raise ValueError(f"{spec.name}: query_is_document needs triplets (query, positive); this source holds "
                             f"{task}")
        sources.append(Source(spec, task, records))
    return sources


def select_rows(spec: SourceSpec, records: list) -> list:
    """The records whose `source` field is one of `spec.row_sources`; a listed name no row carries is an error
    naming the ones present, so a typo cannot train on nothing."""
    present = Counter(r.get("source") for r in records)
    missing = [name for name in spec.row_sources if name not in present]
    if missing:
        found = ", ".join(f"{name} ({n})" for name, n in sorted(present.items(), key=lambda kv: str(kv[0])))
        raise ValueError(f"{spec.name}: row_sources {missing} match no row's `source` field; the rows carry {found}")
    wanted = set(spec.row_sources)
    return [r for r in records if r.get("source") in wanted]


class BatchSchedule(Dataset):
    """A deterministic schedule of single-task batches over several sources.

    Item i is rank (i % world_size)'s slice of global batch i // world_size; a source's global batch is its
    batch_size (else the per-device batch size) x world_size. One epoch has sum_s floor(len_s / global_batch_s)
    global batches when no sampling weights are given; with weights the same total is shared out in proportion
    (a source may then be sampled with replacement). A source with curriculum_start s
    only appears in the last (1 - s) of the epoch (e.g. term pairs at 0, hard triplets from 0.3). `set_epoch` reshuffles reproducibly."""

    def __init__(self, sources: list[Source], per_device_batch_size: int, world_size: int = 1, seed: int = 42):
        self.sources = sources
        self.world_size = world_size
        self.rows_per_rank = [s.spec.batch_size or per_device_batch_size for s in sources]
        self.seed = seed
        for s, rows in zip(sources, self.rows_per_rank):
            if len(s.records) < rows * world_size:
                raise ValueError(f"{s.name}: {len(s.records)} records is fewer than one global batch "
                                 f"({rows * world_size} = {rows} per device x {world_size})")
        self.set_epoch(0)

    def _batches_per_source(self) -> list[int]:
        natural = [len(s.records) // (rows * self.world_size) for s, rows in zip(self.sources, self.rows_per_rank)]
        if all(s.spec.weight is None for s in self.sources):
            return natural
        weights = np.array([s.spec.weight if s.spec.weight is not None else 1.0 for s in self.sources], dtype=float)
        return [max(1, int(round(sum(natural) * w / weights.sum()))) for w in weights]

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        counts = self._batches_per_source()
        total = sum(counts)
        slots = np.full(total, -1)
        # Late-starting sources first: each takes random free slots at or after its start.
        starts = [s.spec.curriculum_start for s in self.sources]
        for si in sorted(range(len(self.sources)), key=lambda i: -starts[i]):
            free = np.flatnonzero(slots[int(starts[si] * total):] < 0) + int(starts[si] * total)
            if len(free) < counts[si]:
                raise ValueError(f"{self.sources[si].name}: {counts[si]} batches do not fit after curriculum_start "
                                 f"{starts[si]}; lower its start or its sampling_weight")
            slots[rng.choice(free, counts[si], replace=False)] = si
        plan, used = [], [0] * len(self.sources)
        rows_per_source = []
        for source, n_batches, rows in zip(self.sources, counts, self.rows_per_rank):
            n_rows = n_batches * rows * self.world_size
            reps = math.ceil(n_rows / len(source.records))
            rows_per_source.append(np.concatenate([rng.permutation(len(source.records)) for _ in range(reps)]))
        for si in slots:
            size = self.rows_per_rank[si] * self.world_size
            start = used[si] * size
            plan.append((int(si), rows_per_source[si][start:start + size]))
            used[si] += 1
        self.plan = plan
        self.epoch = epoch

    def __len__(self):
        return len(self.plan) * self.world_size

    def __getitem__(self, i: int) -> dict:
        step, rank = divmod(i, self.world_size)
        si, rows = self.plan[step]
        source, size = self.sources[si], self.rows_per_rank[si]
        mine = rows[rank * size:(rank + 1) * size]
        return {"task": source.task, "records": [source.records[r] for r in mine],
                "progress": step / max(1, len(self.plan)), "seed": (self.seed, self.epoch, step),
                "offset": rank * size, "rows_per_rank": size, "query_is_document": source.spec.query_is_document,
                "loss_overrides": source.spec.loss_overrides}


class SparseCollator:
    """Tokenises one scheduled batch into feature groups for `SparseEncoder.forward`.

    triplets: query + [positive, num_negatives sampled negatives] per query (doc_mask marks padding);
    with `negative_curriculum`, negatives come from the easy band first, then easy+medium, then all.
    distillation: query + num_distill_docs documents with teacher scores. term_pairs: ko + en terms, padded to
    max_term_length so that every rank's id tensors have one shape. A `query_is_document` batch tokenises its
    queries at max_seq_length."""

    def __init__(self, tokenizer, *, max_seq_length: int = 256, max_query_length: int = 64, max_term_length: int = 16,
                 num_negatives: int = 4, num_distill_docs: int = 8, negative_curriculum: bool = False):
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.max_query_length = max_query_length
        self.max_term_length = max_term_length
        self.num_negatives = num_negatives
        self.num_distill_docs = num_distill_docs
        self.negative_curriculum = negative_curriculum

    def _tok(self, group: str, texts: list[str], max_length: int, fixed: bool = False) -> dict:
        enc = self.tokenizer(texts, padding="max_length" if fixed else True, truncation=True,
                             max_length=max_length, return_tensors="pt", return_token_type_ids=False)
        return {f"{group}_input_ids": enc["input_ids"], f"{group}_attention_mask": enc["attention_mask"]}

    def _pick_negatives(self, record: dict, rng, progress: float) -> list[str]:
        negatives = record.get("negatives") or []
        if self.negative_curriculum and record.get("difficulty"):
            allowed = set(DIFFICULTIES[: 1 + min(2, int(progress * 3))])
            band = [n for n, d in zip(negatives, record["difficulty"]) if d in allowed]
            negatives = band or negatives
        if len(negatives) > self.num_negatives:
            negatives = [negatives[j] for j in rng.choice(len(negatives), self.num_negatives, replace=False)]
        return list(negatives)

    def __call__(self, items: list[dict]) -> dict:
        (item,) = items  # the schedule already forms batches
        task, records = item["task"], item["records"]
        query_is_document = bool(item.get("query_is_document"))
        meta = {"task": task, "rows_per_rank": item.get("rows_per_rank", len(records)),
                "query_is_document": query_is_document, "loss_overrides": item.get("loss_overrides")}
        # One generator per record, keyed by its place in the global batch: sampling is the same whatever the
        # number of ranks the batch is split over.
        rngs = [np.random.default_rng([*item["seed"], item["offset"] + b]) for b in range(len(records))]
        if task == "term_pairs":
            return {**meta, **self._tok("ko", [r["ko"] for r in records], self.max_term_length, True),
                    **self._tok("en", [r["en"] for r in records], self.max_term_length, True)}
        if task == "triplets":
            n = 1 + self.num_negatives
            groups = [[r["positive"]] + self._pick_negatives(r, rng, item["progress"]) for r, rng in zip(records, rngs)]
            scores = None
        else:
            n = self.num_distill_docs
            groups, scores = [], torch.zeros(len(records), n)
            for b, r in enumerate(records):
                keep = rngs[b].choice(len(r["docs"]), min(n, len(r["docs"])), replace=False)
                groups.append([r["docs"][j] for j in keep])
                scores[b, : len(keep)] = torch.tensor([float(r["scores"][j]) for j in keep])
        doc_mask = torch.tensor([[j < len(g) for j in range(n)] for g in groups])
        docs = [g[j] if j < len(g) else "" for g in groups for j in range(n)]
        batch = {**meta, "doc_mask": doc_mask,
                 **self._tok("query", [r["query"] for r in records],
                             self.max_seq_length if query_is_document else self.max_query_length),
                 **self._tok("doc", docs, self.max_seq_length)}
        if scores is not None:
            batch["teacher_scores"] = scores
        return batch
