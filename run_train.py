"""Train a sparse encoder.

    python run_train.py configs/quickstart.yaml [--key value ...]
    torchrun --nproc_per_node N run_train.py CONFIG.yaml [--key value ...]
"""
from __future__ import annotations

import logging
import os
import re
import sys

import torch
import torch.distributed as dist
import yaml
from transformers import set_seed

from training.arguments import MODEL_SOURCES, ConfigError, check_paths, parse_config
from builders.contracts import RecordError
from training.data import BatchSchedule, SparseCollator, load_sources
from training.encoder import SparseEncoder
from training.losses import SparseLoss
from training.st_layout import LayoutError
from training.trainer import SparseTrainer

logger = logging.getLogger("run_train")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class MissingData(ValueError):
    """A training file or dataset folder that is not there."""


def last_complete_checkpoint(output_dir: str):
    """The newest checkpoint whose save finished (trainer_state.json is written last): a run killed mid-save
    resumes from the one before."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(m.group(1)), d) for d in os.listdir(output_dir) if (m := _CHECKPOINT.fullmatch(d)))
    for _, d in reversed(steps):
        if os.path.isfile(os.path.join(output_dir, d, "trainer_state.json")):
            return os.path.join(output_dir, d)
    return None


def build_trainer(argv=None) -> tuple[SparseTrainer, dict]:
    """Parse the config, load and validate the data, build model, loss and trainer (no training yet). Bad input
    stops here with one line ("config error: ..." / "data error: ...") before anything is written."""
    try:
        return _build_trainer(argv)
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    except (RecordError, MissingData) as e:
        sys.exit(f"data error: {e}")


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has native bfloat16 matrix instructions (x86 AVX512-BF16 / AMX, Arm BF16), from
    /proc/cpuinfo's flags; None where that cannot be read. Without them bf16 autocast is emulated and slower."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                cpuinfo = fh.read()
        except OSError:
            return None
    flags = {f for line in cpuinfo.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for f in line.split(":", 1)[-1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _build_trainer(argv) -> tuple[SparseTrainer, dict]:
    defaults = {} if torch.cuda.is_available() else {"use_cpu": True}  # without it the Trainer never wraps CPU ranks in DDP
    model_args, data_args, loss_args, training_args, resolved = parse_config(argv, defaults)
    check_paths(model_args, data_args, loss_args)
    if training_args.ddp_find_unused_parameters is None:
        # Only a trainable IDF can sit out a step (term-pair batches have no queries).
        training_args.ddp_find_unused_parameters = model_args.trainable_idf
    logging.basicConfig(level=logging.INFO if training_args.process_index == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if training_args.bf16 and training_args.use_cpu and cpu_supports_bf16() is False:
        # bf16 is asked for speed; emulated, a ko-en-base term-pair step took 32 s instead of fp32's 1.9 (AVX2 EPYC).
        logger.warning("bf16: this CPU has no AVX512-BF16, AMX or Arm BF16 instructions, so bf16 would be emulated "
                       "(17x slower than fp32 on a ko-en-base term-pair step): training in fp32; --bf16 false "
                       "silences this")
        training_args.bf16, training_args.mixed_precision = False, "no"

    set_seed(training_args.seed)  # fresh weights (a context gate's) start alike on every rank and run
    with training_args.main_process_first(desc="load and validate training data"):
        sources = load_training_sources(data_args)
        model = load_model(model_args, resolved)
    for s in sources:
        logger.info("source %s: %d %s records", s.name, len(s.records), s.task)
    if model.config.mode != "splade" and any(s.spec.query_is_document for s in sources):
        raise ConfigError("sources: query_is_document needs a SPLADE model; an inference-free model never encodes "
                          "its queries, so a passage on the query side would become a bag of its tokens")
    model.length_group_overhead = model_args.length_group_overhead
    if model_args.freeze_layers:
        as_config_error(model.freeze_bottom_layers, model_args.freeze_layers)
    if model_args.freeze_decoder:
        model.freeze_decoder()
    if model_args.use_lora:
        model.add_lora(model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout)

    schedule = as_config_error(BatchSchedule, sources, training_args.per_device_train_batch_size,
                               training_args.world_size, seed=training_args.data_seed or training_args.seed)
    # Training texts stop at max_seq_length / max_query_length (for speed), never beyond what the model encodes.
    collator = SparseCollator(model.tokenizer, max_seq_length=min(data_args.max_seq_length, model.config.max_seq_length),
                              max_query_length=min(data_args.max_query_length, model.config.max_query_length),
                              max_term_length=data_args.max_term_length,
                              num_negatives=data_args.num_negatives, num_distill_docs=data_args.num_distill_docs,
                              negative_curriculum=data_args.negative_curriculum)
    evaluator = None
    if data_args.eval_benchmark:
        from eval.retrieval import RetrievalEvaluator

        evaluator = RetrievalEvaluator(data_args.eval_benchmark, max_queries=data_args.eval_max_queries)
    loss = as_config_error(SparseLoss.from_args, loss_args, model, model_args.idf_file)
    for s in sources:  # under its own loss settings (loss_overrides), as its batches will train
        try:
            loss.with_weights(**(s.spec.loss_overrides or {})).check_tasks([s.task])
        except ValueError as e:
            raise ConfigError(f"source {s.name}: {e}") from None
    trainer = SparseTrainer(model=model, args=training_args, train_dataset=schedule, data_collator=collator,
                            loss=loss, evaluator=evaluator,
                            idf_learning_rate=model_args.idf_learning_rate,
                            context_gate_learning_rate=model_args.context_gate_learning_rate)

    if training_args.should_save:
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "train_config.yaml"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(resolved, fh, allow_unicode=True, sort_keys=False)
    return trainer, resolved


# Config keys named apart from the SparseConfig field they set: training's max_*_length only truncate batches.
SPARSE_CONFIG_KEYS = {"inference_max_seq_length": "max_seq_length", "inference_max_query_length": "max_query_length"}


def load_model(model_args, resolved: dict) -> SparseEncoder:
    """The backbone or saved model. The sparse settings a saved model carries (sparse_config.json) are passed on
    only when the config or command line sets them: fine-tuning a saved doc-only or script-masked model keeps them."""
    settings = {"mode": model_args.mode, "allowed_scripts": model_args.allowed_scripts,
                "inference_max_seq_length": model_args.inference_max_seq_length,
                "inference_max_query_length": model_args.inference_max_query_length,
                "context_gate": model_args.context_gate, "context_gate_hidden": model_args.context_gate_hidden,
                "context_gate_heads": model_args.context_gate_heads}
    overrides = {SPARSE_CONFIG_KEYS.get(key, key): value for key, value in settings.items() if key in resolved}
    path = model_args.model_name_or_path
    try:
        return SparseEncoder.from_pretrained(path, idf_file=model_args.idf_file,
                                             trainable_idf=model_args.trainable_idf, **overrides)
    except LayoutError as e:  # a sentence-transformers layout the toolkit cannot represent
        raise ConfigError(f"model_name_or_path: {e}") from None
    except OSError as e:  # a well-formed hub id that cannot be fetched (offline, or no such repository)
        if os.path.exists(path) or ":" in path:
            raise
        raise ConfigError(f"model_name_or_path {path}: no such folder, and no hub model of that id is available"
                          f"{' offline (HF_HUB_OFFLINE=1)' if os.environ.get('HF_HUB_OFFLINE') == '1' else ''}; "
                          f"{MODEL_SOURCES}") from e


def load_training_sources(data_args):
    try:
        return as_config_error(load_sources, data_args.sources)
    except FileNotFoundError as e:  # a training file or dataset folder
        raise MissingData(str(e)) from None


def as_config_error(build, *args, **kwargs):
    """`build(...)`, its ValueError (settings that do not fit the data: source counts, batch size, layers) as a
    ConfigError; a record that breaks its contract (RecordError) passes through as a data error."""
    try:
        return build(*args, **kwargs)
    except RecordError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


def shut_down_process_group(trainer: SparseTrainer) -> None:
    """Destroy the process group and join its backend threads while the interpreter is still alive.
    destroy_process_group only forgets the group; the trainer's DDP wrapper still holds it, so gloo's worker threads
    outlive it and can free a tensor that has a Python object during interpreter shutdown: the rank then aborts
    ("terminate called without an active exception", exit -6) after a finished run. With the wrapper dropped, the
    group's destructor (which releases the GIL) joins them here."""
    dist.barrier()
    trainer.model_wrapped = trainer.model
    dist.destroy_process_group()


def train(trainer: SparseTrainer) -> dict:
    """Train (resuming when asked: `--resume_from_checkpoint auto` picks the last complete checkpoint), save the
    final model, evaluate if a benchmark is set, and shut the process group down cleanly."""
    args = trainer.args
    resume = args.resume_from_checkpoint
    if resume in ("auto", "last", "true", "True"):
        resume = last_complete_checkpoint(args.output_dir)
        logger.info("resuming from %s", resume or "scratch (no checkpoint found)")
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    metrics = dict(result.metrics)
    if trainer.evaluator is not None:
        metrics.update(trainer.evaluate())
    if dist.is_available() and dist.is_initialized():
        shut_down_process_group(trainer)
    if args.process_index == 0:
        logger.info("final metrics: %s", metrics)
    return metrics


def main(argv=None) -> dict:
    trainer, _ = build_trainer(argv)
    return train(trainer)


if __name__ == "__main__":
    main()
