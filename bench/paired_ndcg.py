"""Paired per-query nDCG@10 of models against the first one, with a 95% bootstrap interval over queries: whether
a difference between two models on a few hundred queries is more than noise.

    python bench/paired_ndcg.py --model BASE OTHER [...] --benchmark beir:PATH [...] [--max-queries 300]
                                [--cache outputs/eval/cache] [--max-seq-length 512]

Reads (and fills) run_eval.py's encoding cache, so after a run_eval over the same models (and the same
--max-seq-length) nothing is re-encoded."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_query_ndcg(gains: np.ndarray, ideal: np.ndarray, k: int = 10) -> np.ndarray:
    discount = 1 / np.log2(np.arange(2, k + 2))
    best = (ideal[:, :k] * discount[:ideal[:, :k].shape[1]]).sum(1)
    got = (gains[:, :k] * discount[:gains[:, :k].shape[1]]).sum(1)
    return np.divide(got, best, out=np.zeros_like(got, dtype=float), where=best > 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", required=True, help="the first is the base every other is compared to")
    p.add_argument("--benchmark", nargs="+", required=True, help="beir:PATH")
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--cache", default="eval_results/cache")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--max-seq-length", type=int, default=None, help="document token limit, as in run_eval.py")
    a = p.parse_args(argv)
    from eval.beir import load_beir, resolve_benchmark
    from eval.retrieval import run_gains
    from eval.runner import run_model
    from training import SparseEncoder

    overrides = {"max_seq_length": a.max_seq_length} if a.max_seq_length else {}
    models = [(m, SparseEncoder.from_pretrained(m, **overrides).eval()) for m in a.model]
    rng = np.random.default_rng(0)
    for spec in a.benchmark:
        bench = load_beir(resolve_benchmark(spec, "benchmarks")).subset(a.max_queries)
        scores = {}
        for path, model in models:
            _, _, (indices, _) = run_model(model, bench, [10], cache_dir=Path(a.cache), model_dir=Path(path),
                                           latency_queries=0)
            gains, ideal, _ = run_gains(bench, np.asarray(indices, dtype=np.int64))
            scores[path] = per_query_ndcg(gains, ideal)
        base = scores[a.model[0]]
        print(f"{bench.name}: {a.model[0]} nDCG@10 {base.mean():.4f} ({len(base)} queries)")
        for path in a.model[1:]:
            d = scores[path] - base
            boot = d[rng.integers(0, len(d), (a.samples, len(d)))].mean(1)
            print(f"  {path}: {scores[path].mean():.4f}, difference {d.mean():+.4f} "
                  f"[{np.percentile(boot, 2.5):+.4f}, {np.percentile(boot, 97.5):+.4f}], {np.mean(d != 0):.0%} of queries changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
