"""Training cost of the context gate: the same recipe and budget with and without `context_gate: true`.

    python bench/context_gate.py [--config configs/quickstart.yaml] [--data data/quickstart] [--steps 60]
                                 [--threads 1] [--output outputs/context-gate] [--gate-lr 1e-3]

Each contender trains in its own process (clean peak RSS) with run_train's recipe, only `--context_gate` differing,
and keeps its model under <output>/<contender> for run_eval.py. A step's time is the wall time between consecutive
optimizer steps (data loading included); rows report the median after 3 warm-up steps, the peak resident memory,
the trainable parameters and the final logged loss."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load_average, markdown_table, median, peak_rss_mb, run_configs, set_threads  # noqa: E402

CONTENDERS = {"plain": [], "gated": ["--context_gate", "true"]}
WARMUP = 3


def worker(a) -> dict:
    set_threads(a.threads)
    from bench.train_throughput import StepTimes
    from run_train import build_trainer, train

    data = Path(a.data)
    argv = [a.config, "--sources", f"[{{dataset: {data / 'triplets'}, config: triplets, weight: 3}}, "
            f"{{dataset: {data / 'term_pairs'}, config: term_pairs, weight: 1}}]", "--max_steps", str(a.steps),
            "--output_dir", str(Path(a.output) / a.contender), "--save_strategy", "no", "--report_to", "none",
            "--disable_tqdm", "true", *CONTENDERS[a.contender]]
    if a.contender == "gated" and a.gate_lr is not None:
        argv += ["--context_gate_learning_rate", str(a.gate_lr)]
    trainer, _ = build_trainer(argv)
    timer = StepTimes()
    trainer.add_callback(timer)
    train(trainer)
    losses = [l["loss"] for l in trainer.state.log_history if "loss" in l]
    return {"contender": a.contender, "steps": a.steps, "threads": a.threads, "gate_lr": a.gate_lr if a.contender == "gated" else None,
            "step_s": round(median(timer.times[WARMUP:]), 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "trainable_params_m": round(sum(p.numel() for p in trainer.model.parameters() if p.requires_grad) / 1e6, 2),
            "final_loss": losses[-1] if losses else None}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--contender", choices=list(CONTENDERS), default="plain")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    p.add_argument("--config", default="configs/quickstart.yaml")
    p.add_argument("--data", default="data/quickstart", help="quickstart.sh's data folder (triplets, term_pairs)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default="outputs/context-gate")
    p.add_argument("--gate-lr", type=float, default=None, help="the gated run's context_gate_learning_rate")
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a)), flush=True)
        return
    extra = [f"--config={a.config}", f"--data={Path(a.data).resolve()}", f"--steps={a.steps}",
             f"--threads={a.threads}", f"--output={Path(a.output).resolve()}"]
    extra += [f"--gate-lr={a.gate_lr}"] if a.gate_lr is not None else []
    print(json.dumps({"load_average_start": load_average()}), flush=True)
    results = run_configs(__file__, [{"contender": c} for c in a.contenders], extra)
    print(markdown_table(results, ["contender", "gate_lr", "steps", "threads", "step_s", "peak_rss_mb", "trainable_params_m",
                                   "final_loss"]))
    ok = {r["contender"]: r for r in results if "error" not in r}
    if {"plain", "gated"} <= set(ok):
        print(json.dumps({"step_time_ratio_gated_vs_plain": round(ok["gated"]["step_s"] / ok["plain"]["step_s"], 3),
                          "memory_ratio_gated_vs_plain": round(ok["gated"]["peak_rss_mb"] / ok["plain"]["peak_rss_mb"], 3),
                          "load_average_end": load_average()}), flush=True)


if __name__ == "__main__":
    main()
