"""Training throughput (pairs/second) and peak resident memory: this project's SparseTrainer vs sentence-
transformers' SparseEncoderTrainer vs a textbook PyTorch loop, on the trimmed and the full-vocabulary backbone.

    python bench/train_throughput.py [--threads 1 2] [--backbones trimmed full] [--steps 15] [--warmup 3]

Every configuration runs in its own process on the same (query, positive) pairs, batch size and maximum length;
tokenisation and collation happen inside the timed steps for every contender; a step's time is the wall time
between consecutive optimizer steps, and each row reports the median over the timed steps. Loss for all three:
in-batch-negative cross-entropy on dot products plus FLOPS regularisation of queries and documents. Prints one
JSON line per configuration, a Markdown table, and a final summary JSON line.
`--profile` instead prints a torch.profiler table of one SparseTrainer step. `--config configs/ko-en-base.yaml`
instead times that config's own steps per task (its data, batches and losses), fp32 against bf16 autocast, each
with and without length-grouped encoding (`SparseEncoder.length_group_overhead`)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.encoder import SparseEncoder  # noqa: E402
from bench.common import (FULL_BACKBONE, TRIMMED_BACKBONE, backbone_dir, load_average, markdown_table, median,  # noqa: E402
                          msmarco_pairs, peak_rss_mb, run_configs, set_threads)

BACKBONES = {"trimmed": TRIMMED_BACKBONE, "full": FULL_BACKBONE}
QUERY_FLOPS, DOC_FLOPS, LR = 5e-4, 3e-4, 2e-5


class StepTimes:
    """A TrainerCallback recording the wall time of each optimizer step (data loading included)."""

    def __init__(self):
        self.times, self.last = [], None

    def __getattr__(self, name):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_train_begin(self, *a, **k):
        self.last = time.perf_counter()

    def on_step_end(self, *a, **k):
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def run_sparse_trainer(model_dir, pairs, a, tmp):
    from run_train import build_trainer

    data = Path(tmp) / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": q, "positive": p}, ensure_ascii=False) + "\n" for q, p in pairs),
                    encoding="utf-8")
    argv = ["--model_name_or_path", model_dir, "--train_file", str(data), "--output_dir", str(Path(tmp) / "out"),
            "--per_device_train_batch_size", str(a.batch), "--max_steps", str(a.warmup + a.steps),
            "--max_seq_length", str(a.max_length), "--max_query_length", str(a.max_length), "--num_negatives", "0",
            "--flops_query_weight", str(QUERY_FLOPS), "--flops_doc_weight", str(DOC_FLOPS), "--learning_rate", str(LR),
            "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1000", "--disable_tqdm", "true",
            "--optim", a.optim, "--dataloader_num_workers", str(a.workers), "--bf16", str(a.precision == "bf16")]
    trainer, _ = build_trainer(argv)
    trainer.model.fused_pooling = a.pooling == "fused"
    timer = StepTimes()
    trainer.add_callback(timer)
    if a.profile:
        trainer.add_callback(ProfileOneStep(a.warmup))
    trainer.train()
    return timer.times


class ProfileOneStep(StepTimes):
    """Profiles the step after the warm-up and prints the ops that dominate it."""

    def __init__(self, step):
        super().__init__()
        self.step, self.prof = step, None

    def on_step_end(self, args, state, *a, **k):
        from torch.profiler import ProfilerActivity, profile

        if state.global_step == self.step:
            self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self.prof.__enter__()
        elif self.prof is not None:
            self.prof.__exit__(None, None, None)
            print(self.prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), file=sys.stderr)
            print(self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)
            total = sum(e.self_cpu_time_total for e in self.prof.key_averages())
            for e in self.prof.key_averages():  # the pieces this project changed
                if any(s in e.key for s in ("FusedProjectionMax", "Optimizer.step", "index_add", "embedding_dense")):
                    print(f"{e.key}: {e.cpu_time_total / 1e3:.1f} ms total "
                          f"({100 * e.cpu_time_total / total:.1f}% of the step's CPU time)", file=sys.stderr)
            self.prof = None


def run_sentence_transformers(model_dir, pairs, a, tmp):
    from datasets import Dataset
    from sentence_transformers.sparse_encoder import (SparseEncoder, SparseEncoderTrainer,
                                                      SparseEncoderTrainingArguments)
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    mlm = MLMTransformer(model_dir, max_seq_length=a.max_length)
    model = SparseEncoder(modules=[mlm, SpladePooling("max", activation_function="relu")])
    loss = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), query_regularizer_weight=QUERY_FLOPS,
                      document_regularizer_weight=DOC_FLOPS)
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    args = SparseEncoderTrainingArguments(
        output_dir=str(Path(tmp) / "out"), per_device_train_batch_size=a.batch, max_steps=a.warmup + a.steps,
        learning_rate=LR, save_strategy="no", report_to="none", logging_steps=1000, disable_tqdm=True, use_cpu=True,
        bf16=a.precision == "bf16")
    timer = StepTimes()
    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[timer])
    trainer.train()
    return timer.times


def run_textbook(model_dir, pairs, a, tmp):
    """What a user writes from the SPLADE paper: full logits, log1p∘relu, mask, max; one AdamW step."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)

    def encode(texts):
        f = tok(texts, padding=True, truncation=True, max_length=a.max_length, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits.float()
        return (torch.log1p(torch.relu(logits)) * f["attention_mask"].unsqueeze(-1)).amax(dim=1)

    times = []
    for step in range(a.warmup + a.steps):
        start = time.perf_counter()
        batch = pairs[step * a.batch:(step + 1) * a.batch]
        q, d = encode([x for x, _ in batch]), encode([y for _, y in batch])
        scores = q @ d.T
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
        loss = loss + QUERY_FLOPS * (q.mean(0) ** 2).sum() + DOC_FLOPS * (d.mean(0) ** 2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


CONTENDERS = {"sparse_trainer": run_sparse_trainer, "sentence_transformers": run_sentence_transformers,
              "textbook": run_textbook}


def run_config(a) -> dict:
    """Step times of a shipped config (its data, backbone, losses and per-source batches) at a.precision, per task:
    what a real run's steps cost, where the pairs benchmark above only compares contenders on one task."""
    from run_train import build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trainer([a.config, "--max_steps", str(a.warmup + a.steps), "--output_dir", tmp,
                                    "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1000",
                                    "--disable_tqdm", "true", "--bf16", str(a.precision == "bf16")])
        trainer.model.length_group_overhead = a.length_group_overhead
        timer = StepTimes()
        trainer.add_callback(timer)
        trainer.train()
    schedule = trainer.train_dataset
    per_task = {}
    for step, t in list(enumerate(timer.times))[a.warmup:]:  # times[i] is plan item i (one process, epoch 0)
        per_task.setdefault(schedule.sources[schedule.plan[step][0]].task, []).append(t)
    timed = timer.times[a.warmup:]
    return {"config": a.config, "precision": a.precision, "length_group_overhead": a.length_group_overhead,
            "threads": a.threads, "timed_steps": len(timed),
            "mean_step_s": round(sum(timed) / len(timed), 3),
            "train_loss": round(trainer.state.log_history[-1]["train_loss"], 4),
            **{f"{task}_step_s": round(median(ts), 3) for task, ts in sorted(per_task.items())},
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def worker(a) -> dict:
    set_threads(a.threads)
    if a.config:
        return run_config(a)
    model_dir = backbone_dir(BACKBONES[a.backbone])
    pairs = msmarco_pairs(a.batch * (a.warmup + a.steps))
    with tempfile.TemporaryDirectory() as tmp:
        times = CONTENDERS[a.contender](model_dir, pairs, a, tmp)
    timed = times[a.warmup:]
    step = median(timed)
    from transformers import AutoConfig

    result = {"contender": a.contender, "backbone": a.backbone, "vocab": AutoConfig.from_pretrained(model_dir).vocab_size,
              "threads": a.threads, "precision": a.precision, "batch_pairs": a.batch, "max_length": a.max_length,
              "timed_steps": len(timed), "step_s": round(step, 4), "pairs_per_s": round(a.batch / step, 3),
              "peak_rss_mb": round(peak_rss_mb(), 1)}
    if a.contender == "sparse_trainer":
        result.update(pooling=a.pooling, optim=a.optim, workers=a.workers)
    return result


def summary(results: list[dict], threads: int) -> dict:
    def get(contender, backbone, **kw):
        for r in results:
            if (r.get("contender"), r.get("backbone"), r.get("threads")) == (contender, backbone, threads) \
                    and "error" not in r and all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    out = {"threads": threads, "load_average": load_average()}
    ours = get("sparse_trainer", "trimmed", pooling="fused", optim="adamw_torch_fused", workers=0, precision="fp32")
    st_trim, st_full = get("sentence_transformers", "trimmed"), get("sentence_transformers", "full")
    if ours and st_trim:
        out["speedup_vs_st"] = round(st_trim["step_s"] / ours["step_s"], 3)
    if ours and st_full:
        out["default_speedup_vs_st"] = round(st_full["step_s"] / ours["step_s"], 3)
        out["default_memory_ratio_vs_st"] = round(ours["peak_rss_mb"] / st_full["peak_rss_mb"], 3)
    ours_full = get("sparse_trainer", "full", pooling="fused", optim="adamw_torch_fused", workers=0, precision="fp32")
    if ours_full and st_full:
        out["full_vocab_speedup_vs_st"] = round(st_full["step_s"] / ours_full["step_s"], 3)
        out["full_vocab_memory_ratio_vs_st"] = round(ours_full["peak_rss_mb"] / st_full["peak_rss_mb"], 3)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--contender", choices=list(CONTENDERS), default="sparse_trainer")
    p.add_argument("--backbone", choices=list(BACKBONES), default="trimmed")
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--backbones", nargs="+", default=["trimmed", "full"])
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    p.add_argument("--ablations", action="store_true",
                   help="also run SparseTrainer with max-first pooling (no fusion), non-fused AdamW, a loader worker, "
                        "bf16 autocast")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--pooling", choices=["fused", "max_first"], default="fused")
    p.add_argument("--optim", default="adamw_torch_fused")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast matrix products to bfloat16 (fp32 master weights); needs AVX512-BF16 or AMX")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--length-group-overhead", "--length_group_overhead", type=lambda v: None if v == "none" else int(v),
                   default=SparseEncoder.length_group_overhead,
                   help="--config runs: padding tokens a sub-batch must save (none: one call per batch)")
    p.add_argument("--config", help="instead: a shipped config's step times per task, fp32 against bf16 (needs its "
                                    "data built: e.g. BUILD_ONLY=1 bash ko-en-base.sh)")
    a = p.parse_args()
    if a.worker or a.profile:
        a.threads = a.threads[0]
        print(json.dumps(worker(a)), flush=True)
        return
    if a.config:
        from run_train import cpu_supports_bf16

        # Without bf16 instructions run_train.py trains a bf16 config in fp32: a bf16 row would time fp32 again.
        precisions = ("fp32",) if cpu_supports_bf16() is False else ("fp32", "bf16")
        groupings = ("none", str(a.length_group_overhead))
        configs = [{"threads": t, "precision": precision, "length_group_overhead": g}
                   for t in a.threads for precision in precisions for g in groupings]
        print(json.dumps({"load_average_start": load_average(), "precisions": precisions}), flush=True)
        results = run_configs(__file__, configs, [f"--config={a.config}", f"--steps={a.steps}", f"--warmup={a.warmup}"])
        per_task = sorted({k for r in results for k in r if k.endswith("_step_s") and k != "mean_step_s"})
        columns = ["precision", "length_group_overhead", "threads", "timed_steps", "mean_step_s", *per_task,
                   "train_loss", "peak_rss_mb"]
        print(markdown_table(results, columns))
        ok = {(r["precision"], r["length_group_overhead"]): r["mean_step_s"] for r in results
              if "error" not in r and r["threads"] == max(a.threads)}
        speedups = {f"{p}_length_grouping_speedup": round(ok[(p, None)] / ok[(p, a.length_group_overhead)], 3)
                    for p in precisions if (p, None) in ok and (p, a.length_group_overhead) in ok}
        if ("fp32", None) in ok and ("bf16", None) in ok:
            speedups["bf16_speedup"] = round(ok[("fp32", None)] / ok[("bf16", None)], 3)
        print(json.dumps({**speedups, "load_average": load_average()}), flush=True)
        return
    configs = []
    for threads in a.threads:
        for backbone in a.backbones:
            for contender in a.contenders:
                configs.append({"contender": contender, "backbone": backbone, "threads": threads,
                                "precision": a.precision})
            if a.ablations and backbone == "trimmed" and "sparse_trainer" in a.contenders:
                for ablation in ({"pooling": "max_first"}, {"optim": "adamw_torch"}, {"workers": 1},
                                 {"precision": "bf16"}):
                    configs.append({"contender": "sparse_trainer", "backbone": backbone, "threads": threads,
                                    "precision": a.precision, **ablation})
    extra = [f"--batch={a.batch}", f"--max_length={a.max_length}", f"--steps={a.steps}", f"--warmup={a.warmup}"]
    print(json.dumps({"load_average_start": load_average()}), flush=True)
    results = run_configs(__file__, configs, extra)
    print(markdown_table(results, ["contender", "backbone", "vocab", "threads", "precision", "pooling", "optim",
                                   "workers", "step_s", "pairs_per_s", "peak_rss_mb"]))
    print(json.dumps(summary(results, max(a.threads))), flush=True)


if __name__ == "__main__":
    main()
