"""Ingest pruning throughput (rows per second) of training.pruning.prune_matrix, vectorised over a CSR matrix, vs
the same PruneUtils rules applied one {feature: weight} dict at a time as a per-document loop (the Java loops
transcribed to Python with float32 scalars, which is what an ingest pipeline does per document), side by side
on the same rows. Both keep exactly the same entries (checked).

    python bench/pruning.py [--rows 20000] [--nnz 200] [--vocab 30000]

Rows are SPLADE-document-like: about `nnz` active ids out of `vocab`, lognormal weights."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load_average, markdown_table  # noqa: E402
from training.pruning import prune_matrix  # noqa: E402

CASES = [("top_k", 64), ("max_ratio", 0.1), ("alpha_mass", 0.8), ("abs_value", 0.3)]


def loop_prune(row: dict, prune_type: str, ratio: float) -> dict:
    """PruneUtils for one document, loop by loop, float32 scalars (ties: the earlier key)."""
    r = np.float32(ratio)
    if prune_type == "max_ratio":
        limit = np.float32(r * max(row.values()))
        return {k: v for k, v in row.items() if v >= limit}
    if prune_type == "abs_value":
        return {k: v for k, v in row.items() if v >= r}
    entries = sorted(row.items(), key=lambda kv: -kv[1])
    if prune_type == "top_k":
        return dict(entries[:int(r)])
    total = np.float32(sum(float(v) for v in row.values()))
    top_sum, kept = np.float32(0), {}
    for k, v in entries:
        top_sum = np.float32(top_sum + v)
        if top_sum <= np.float32(r * total):
            kept[k] = v
    return kept


def random_rows(rows: int, nnz: int, vocab: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    matrix = sp.random(rows, vocab, density=nnz / vocab, format="csr", dtype=np.float32, random_state=rng)
    matrix.data = rng.lognormal(-1.0, 1.0, size=matrix.nnz).astype(np.float32)
    return matrix


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--nnz", type=int, default=200)
    p.add_argument("--vocab", type=int, default=30000)
    p.add_argument("--loop_rows", type=int, default=2000, help="rows timed for the per-document loop")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "pruning.txt"))
    a = p.parse_args()
    print(f"load average at start: {load_average()}")
    matrix = random_rows(a.rows, a.nnz, a.vocab)
    dicts = [dict(zip(matrix.indices[matrix.indptr[i]:matrix.indptr[i + 1]].tolist(),
                      matrix.data[matrix.indptr[i]:matrix.indptr[i + 1]])) for i in range(a.loop_rows)]
    results = []
    for prune_type, ratio in CASES:
        start = time.perf_counter()
        pruned = prune_matrix(matrix, prune_type, ratio)
        vectorised = a.rows / (time.perf_counter() - start)
        start = time.perf_counter()
        looped = [loop_prune(d, prune_type, ratio) for d in dicts]
        loop = a.loop_rows / (time.perf_counter() - start)
        same = all(set(pruned[i].indices.tolist()) == set(looped[i]) for i in range(a.loop_rows))
        results.append({"prune": f"{prune_type}:{ratio}", "prune_matrix rows/s": round(vectorised),
                        "per-document loop rows/s": round(loop), "speed-up": round(vectorised / loop, 1),
                        "kept per row": round(pruned.nnz / a.rows, 1), "same entries": same})
    table = markdown_table(results, list(results[0]))
    text = (f"rows={a.rows} nnz={a.nnz} vocab={a.vocab} (loop timed on {a.loop_rows} rows)\n{table}\n"
            f"load average at end: {load_average()}\n")
    print(text)
    Path(a.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
