"""Corpus encoding throughput (documents/second): SparseEncoder eager (fused pooling, inference_mode), the same
with full logits, the OpenSearch TorchScript model, ONNX Runtime, and sentence-transformers' `encode_document`.

    python bench/encode_throughput.py [--threads 2] [--batches 15] [--batch 32] [--max_length 256]

Each configuration runs in its own process on the same Korean passages; every timed batch includes tokenisation;
rows report the median batch time over the timed batches (after one warm-up batch)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (FULL_BACKBONE, TRIMMED_BACKBONE, backbone_dir, load_average, markdown_table, median,  # noqa: E402
                          msmarco_pairs, peak_rss_mb, run_configs, set_threads)

BACKBONES = {"trimmed": TRIMMED_BACKBONE, "full": FULL_BACKBONE}
CONTENDERS = ("eager", "eager_full_logits", "torchscript", "onnx", "sentence_transformers")


def batch_encoder(contender, model_dir, a, tmp):
    """A function texts -> sparse weights for one batch, tokenisation included."""
    import torch

    if contender == "sentence_transformers":
        from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder
        from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

        model = STSparseEncoder(modules=[MLMTransformer(model_dir, max_seq_length=a.max_length),
                                         SpladePooling("max", activation_function="relu")], device="cpu")
        return lambda texts: model.encode_document(texts, batch_size=a.batch)
    from training import SparseEncoder

    encoder = SparseEncoder.from_pretrained(model_dir, max_seq_length=a.max_length).eval()
    if contender in ("eager", "eager_full_logits"):
        encoder.fused_pooling = contender == "eager"
        return lambda texts: encoder.encode(texts, batch_size=a.batch)
    if contender == "torchscript":
        from deploy.ml_commons import trace_torchscript

        traced = trace_torchscript(encoder, Path(tmp) / "model.pt")

        def run(texts):
            f = encoder.tokenize(texts)
            with torch.inference_mode():
                return traced({"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]})["output"]
        return run
    if contender == "onnx":
        import onnxruntime as ort

        from deploy.onnx_export import OUTPUT_NAME, export_onnx

        path = export_onnx(encoder, Path(tmp) / "onnx")
        options = ort.SessionOptions()  # one session, as a server holds it
        options.intra_op_num_threads = a.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(texts):
            f = encoder.tokenize(texts, max_length=a.max_length)
            return session.run([OUTPUT_NAME], {"input_ids": f["input_ids"].numpy(),
                                               "attention_mask": f["attention_mask"].numpy()})[0]
        return run
    raise ValueError(contender)


def worker(a) -> dict:
    set_threads(a.threads)
    model_dir = backbone_dir(BACKBONES[a.backbone])
    docs = [p for _, p in msmarco_pairs(a.batch * (a.batches + 1))]
    with tempfile.TemporaryDirectory() as tmp:
        encode = batch_encoder(a.contender, model_dir, a, tmp)
        times = []
        for i in range(a.batches + 1):
            start = time.perf_counter()
            encode(docs[i * a.batch:(i + 1) * a.batch])
            times.append(time.perf_counter() - start)
    step = median(times[1:])
    return {"contender": a.contender, "backbone": a.backbone, "threads": a.threads, "batch": a.batch,
            "max_length": a.max_length, "timed_batches": a.batches, "batch_s": round(step, 4),
            "docs_per_s": round(a.batch / step, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--contender", choices=CONTENDERS, default="eager")
    p.add_argument("--backbone", choices=list(BACKBONES), default="trimmed")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--max_length", type=int, default=256)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a)), flush=True)
        return
    configs = [{"contender": c, "backbone": "trimmed"} for c in a.contenders]
    if "sentence_transformers" in a.contenders:
        configs.append({"contender": "sentence_transformers", "backbone": "full"})
    extra = [f"--threads={a.threads}", f"--batch={a.batch}", f"--batches={a.batches}", f"--max_length={a.max_length}"]
    print(json.dumps({"load_average_start": load_average()}), flush=True)
    results = run_configs(__file__, configs, extra)
    print(markdown_table(results, ["contender", "backbone", "threads", "batch", "max_length", "batch_s", "docs_per_s",
                                   "peak_rss_mb"]))
    ok = {(r["contender"], r["backbone"]): r for r in results if "error" not in r}
    out = {"threads": a.threads, "load_average": load_average()}
    best = max((r for r in results if "error" not in r and r["contender"] != "sentence_transformers"),
               key=lambda r: r["docs_per_s"], default=None)
    for backbone in ("trimmed", "full"):
        st = ok.get(("sentence_transformers", backbone))
        if st and ("eager", "trimmed") in ok:
            out[f"eager_speedup_vs_st_{backbone}"] = round(ok[("eager", "trimmed")]["docs_per_s"] / st["docs_per_s"], 3)
        if st and best:
            out[f"best_speedup_vs_st_{backbone}"] = round(best["docs_per_s"] / st["docs_per_s"], 3)
    if best:
        out["best"] = best["contender"]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
