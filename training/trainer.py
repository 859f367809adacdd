"""SparseTrainer: a `transformers.Trainer` that overrides only what sparse training needs: the combined loss,
the multi-task batch schedule, logging of loss parts and sparsity, saving the sparse model, and retrieval
evaluation through a plain callable (so `training` never imports `eval`)."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Callable, Optional

import safetensors.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, SequentialSampler
from transformers import AutoModelForMaskedLM, Trainer, TrainerCallback

from .averaging import WeightAveraging, hold_schedule_from
from .data import BatchSchedule
from .encoder import IDF_NAME, SparseEncoder, load_idf
from .losses import SparseLoss

LORA_STATE_NAME = "lora_state.safetensors"


FEATURE_SUFFIXES = ("_input_ids", "_attention_mask")


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])]) if t.shape[0] < rows else t


def gather_global_batch(reps: dict, batch: dict, rows_per_rank: int) -> tuple[dict, dict]:
    """The whole global batch on every rank, in rank order, from tensors whose shapes agree across ranks.

    Everything the loss reads has one row per example (`[examples, ...]`; documents are reshaped to
    `[examples, n * vocab]`), so each rank pads its examples to `rows_per_rank` (a last step may hold fewer),
    and two all-gathers move it: one differentiable for the vectors (its backward returns each rank the gradient
    of its own rows), one for the metadata with a validity column that strips the padding again. Per-rank
    sequence lengths never enter a collective (dynamic padding makes them differ across ranks)."""
    world = _world_size()
    if world == 1:
        return reps, batch
    from torch.distributed.nn.functional import all_gather

    examples = next(iter(batch.values())).shape[0]
    if examples > rows_per_rank:
        raise ValueError(f"a rank holds {examples} examples, more than the per-device batch of {rows_per_rank}")
    rep_keys, meta_keys = sorted(reps), sorted(batch)
    rep_widths = [reps[k].numel() // examples for k in rep_keys]
    meta_dtypes = {k: batch[k].dtype for k in meta_keys}
    meta_widths = [batch[k].numel() // examples for k in meta_keys]
    flat_reps = torch.cat([reps[k].reshape(examples, -1) for k in rep_keys], dim=1)
    flat_meta = torch.cat([torch.ones(examples, 1, device=flat_reps.device)]
                          + [batch[k].reshape(examples, -1).to(torch.float32) for k in meta_keys], dim=1)
    flat_meta = _pad_rows(flat_meta, rows_per_rank).contiguous()
    meta_parts = [torch.empty_like(flat_meta) for _ in range(world)]
    dist.all_gather(meta_parts, flat_meta)
    meta = torch.cat(meta_parts)
    valid = meta[:, 0].bool()
    flat_reps = torch.cat(all_gather(_pad_rows(flat_reps, rows_per_rank).contiguous()))[valid]
    meta = meta[valid, 1:]
    out_reps = dict(zip(rep_keys, flat_reps.split(rep_widths, dim=1)))
    out_batch = dict(zip(meta_keys, meta.split(meta_widths, dim=1)))
    out_reps = {k: v.reshape(-1, *reps[k].shape[1:]) for k, v in out_reps.items()}
    out_batch = {k: v.reshape(-1, *batch[k].shape[1:]).to(meta_dtypes[k]) for k, v in out_batch.items()}
    return out_reps, out_batch


class RegularizerWarmup(TrainerCallback):
    """Quadratic warm-up of the FLOPS / L1 weights (SPLADE): a function of the global step, so resuming restores it."""

    def __init__(self, loss: SparseLoss):
        self.loss = loss

    def on_step_begin(self, args, state, control, **kwargs):
        self.loss.set_step(state.global_step)


class SparseTrainer(Trainer):
    # Our losses are batch means: the Trainer must divide by gradient-accumulation steps itself.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, loss: SparseLoss, evaluator: Optional[Callable[[SparseEncoder], dict]] = None,
                 idf_learning_rate: Optional[float] = None, context_gate_learning_rate: Optional[float] = None,
                 **kwargs):
        if evaluator is not None and kwargs.get("eval_dataset") is None:
            kwargs["eval_dataset"] = evaluator  # what `evaluate` runs on; the Trainer only checks it is set
        super().__init__(*args, **kwargs)
        self.loss = loss
        self.evaluator = evaluator
        self.idf_learning_rate = idf_learning_rate
        self.context_gate_learning_rate = context_gate_learning_rate
        self.model_accepts_loss_kwargs = False
        self._parts: dict[str, torch.Tensor] = {}
        self._parts_count = defaultdict(int)
        self.add_callback(RegularizerWarmup(loss))
        self.weight_averaging = None
        if getattr(self.args, "average_weights_from", 0):
            self.weight_averaging = WeightAveraging(self.args.average_weights_from, self.args.average_weights_every)
            self.add_callback(self.weight_averaging)

    # -------------------------------------------------------------------------------------------------- data
    def get_train_dataloader(self) -> DataLoader:
        """The schedule already forms per-device batches in rank order; accelerate hands item i to rank i % N."""
        schedule = self.train_dataset
        if not isinstance(schedule, BatchSchedule):
            raise TypeError("SparseTrainer trains on a training.data.BatchSchedule")
        loader = DataLoader(schedule, batch_size=1, sampler=SequentialSampler(schedule),
                            collate_fn=self.data_collator, num_workers=self.args.dataloader_num_workers,
                            pin_memory=self.args.dataloader_pin_memory)
        return self.accelerator.prepare(loader)

    # -------------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        task = inputs.pop("task")
        rows_per_rank = inputs.pop("rows_per_rank")  # this batch's source's rows per rank (SparseCollator)
        query_is_document = inputs.pop("query_is_document", False)  # its queries get the documents' regularisers
        overrides = inputs.pop("loss_overrides", None)  # its source's own loss settings
        loss_fn = self.loss.with_weights(**overrides) if overrides else self.loss
        features = {k: v for k, v in inputs.items() if k.endswith(FEATURE_SUFFIXES)}
        reps = model(**features, logits_for=loss_fn.logit_groups(task))
        batch = {k: v for k, v in inputs.items() if torch.is_tensor(v) and k not in features}
        encoder = self.accelerator.unwrap_model(model)
        for group in loss_fn.bag_groups(task):  # targets as [rows, vocab] bags: equal shapes on every rank
            batch[f"{group}_bag"] = encoder.token_bag(features[f"{group}_input_ids"],
                                                      features[f"{group}_attention_mask"])
        if loss_fn.w.l1_doc_length_exponent:  # token counts of the texts the per-document L1 charges
            for group in ("query", "doc") if query_is_document else ("doc",):
                if f"{group}_attention_mask" in features:
                    batch[f"{group}_length"] = features[f"{group}_attention_mask"].sum(-1)
        # Every rank computes the loss of the global batch: identical to one process with the whole batch.
        reps, batch = gather_global_batch(reps, batch, rows_per_rank)
        parts = loss_fn(task, reps, batch, query_is_document=query_is_document)
        if model.training:  # accumulate on the device; converted to numbers only when logged
            for name, value in parts.items():
                if name != "loss":
                    self._accumulate(name, value.detach())
            for group, r in reps.items():
                if not group.endswith("_logits"):
                    name = "active_query_document" if group == "query" and query_is_document else f"active_{group}"
                    self._accumulate(name, (r.detach() > 0).sum(-1).float().mean())
        loss = parts["loss"]
        return (loss, {"reps": reps}) if return_outputs else loss

    def _accumulate(self, name: str, value: torch.Tensor) -> None:
        self._parts[name] = self._parts[name] + value if name in self._parts else value
        self._parts_count[name] += 1

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._parts:
            logs.update({k: round(v.item() / self._parts_count[k], 6) for k, v in self._parts.items()})
            logs["regularizer_scale"] = self.loss.regularizer_scale
            self._parts.clear()
            self._parts_count.clear()
        super().log(logs, *args, **kwargs)

    def create_optimizer(self, model=None):
        """Separate learning rates for the trainable IDF of doc-only models and for the context gate (its output
        layer starts at zero and has a short budget to leave it)."""
        model = model if model is not None else self.model
        encoder = self.accelerator.unwrap_model(model)
        idf, gate = getattr(encoder, "idf", None), getattr(encoder, "context_gate", None)
        groups = []
        if isinstance(idf, torch.nn.Parameter) and self.idf_learning_rate is not None:
            groups.append({"params": [idf], "lr": self.idf_learning_rate, "weight_decay": 0.0})
        if gate is not None and self.context_gate_learning_rate is not None:
            groups.append({"params": list(gate.parameters()), "lr": self.context_gate_learning_rate,
                           "weight_decay": self.args.weight_decay})
        if self.optimizer is None and groups:
            own = {id(p) for g in groups for p in g["params"]}
            others = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
            optim_cls, optim_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optim_cls([{"params": others, "weight_decay": self.args.weight_decay}, *groups],
                                       **optim_kwargs)
            return self.optimizer
        return super().create_optimizer(model)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.weight_averaging is not None:
            hold_schedule_from(scheduler, self.weight_averaging.start)
        return scheduler

    # ------------------------------------------------------------------------------------------------ evaluate
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Retrieval metrics from the evaluator callable (e.g. nDCG@10 on a small benchmark), logged with the
        `eval_` prefix so `metric_for_best_model: ndcg@10` keeps the best checkpoint."""
        if self.evaluator is None:
            raise ValueError("evaluation needs a retrieval benchmark: set eval_benchmark in the config")
        model = self.accelerator.unwrap_model(self.model)
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in self.evaluator(model).items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ------------------------------------------------------------------------------------------------ saving
    def _save(self, output_dir: Optional[str] = None, state_dict=None) -> None:
        """A checkpoint is a loadable sparse model dir (HF MLM + tokenizer + sparse config + idf)."""
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(output_dir)
        if hasattr(model.mlm, "merge_and_unload"):
            # LoRA: the adapter state too, to resume exactly; safetensors holds tensors only (nothing to unpickle)
            safetensors.torch.save_model(model, os.path.join(output_dir, LORA_STATE_NAME))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        if self.weight_averaging is not None:
            self.weight_averaging.load(resume_from_checkpoint, device=model.device)
        lora_state = os.path.join(resume_from_checkpoint, LORA_STATE_NAME)
        if os.path.isfile(lora_state):
            safetensors.torch.load_model(model, lora_state, device=str(model.device))
            return
        saved = AutoModelForMaskedLM.from_pretrained(resume_from_checkpoint)
        model.mlm.load_state_dict(saved.state_dict())
        if model.context_gate is not None:
            model.context_gate.load(resume_from_checkpoint)
        idf_file = os.path.join(resume_from_checkpoint, IDF_NAME)
        if model.idf is not None and os.path.isfile(idf_file):
            with torch.no_grad():
                model.idf.copy_(load_idf(idf_file, model.tokenizer, model.vocab_size, model.config.default_idf))

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)
