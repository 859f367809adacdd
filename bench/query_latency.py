"""Single-query encoding latency (p50 / p95, milliseconds): what a search server pays per incoming query before the
index lookup. Side by side, in one process, on one thread, over the same held-out MS MARCO-ko queries:

- `mlm_forward`: the masked-LM forward pass alone (the query already tokenised): the floor every contender pays;
- `encode`: `SparseEncoder.encode([query], is_query=True)`, text to CSR row (tokenisation, fused pooling, mask,
  pruning, CSR): the toolkit's eager path, whose p50 the issue bounds at 1.25x `mlm_forward`;
- `torchscript`: tokenisation + the OpenSearch TorchScript model (what ML Commons runs), dense [1, vocab] out;
- `onnx`: tokenisation + one held ONNX Runtime session (1 intra-op thread), dense [1, vocab] out;
- `sentence_transformers`: sentence-transformers' `SparseEncoder.encode_query` (MLMTransformer + SpladePooling
  over the same model folder), its sparse tensor out.

    python bench/query_latency.py --model DIR [--queries 200] [--threads 1]

Contenders take turns query by query (round robin), so load changes on a shared machine hit them alike."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load_average, markdown_table, msmarco_pairs, set_threads  # noqa: E402

CONTENDERS = ("mlm_forward", "encode", "torchscript", "onnx", "sentence_transformers")


def query_encoders(model_dir: str, tmp: Path, threads: int, contenders) -> dict:
    """{contender: function(query text) -> its output}."""
    import torch

    from training import SparseEncoder

    encoder = SparseEncoder.from_pretrained(model_dir).eval()
    max_length = encoder.config.max_query_length
    fns = {}
    tokenized = {}

    def forward(text):  # tokenised beforehand: the forward pass only
        with torch.inference_mode():
            return encoder.mlm(**tokenized[text]).logits

    fns["mlm_forward"] = forward
    fns["encode"] = lambda text: encoder.encode([text], is_query=True).matrix
    if "torchscript" in contenders:
        from deploy.ml_commons import trace_torchscript

        traced = trace_torchscript(encoder, tmp / "model.pt")

        def run_traced(text):
            f = encoder.tokenize([text], is_query=True)
            with torch.inference_mode():
                return traced({"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]})["output"]
        fns["torchscript"] = run_traced
    if "onnx" in contenders:
        import onnxruntime as ort

        from deploy.onnx_export import ONNX_FILE, OUTPUT_NAME, export_onnx

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            export_onnx(encoder, tmp / "onnx")
        except RuntimeError as e:  # export_onnx's own check against eager; the file is written before it
            print(json.dumps({"onnx_check": str(e)}), flush=True)
        session = ort.InferenceSession(str(tmp / "onnx" / ONNX_FILE), options, providers=["CPUExecutionProvider"])

        def run_onnx(text):
            f = encoder.tokenize([text], is_query=True)
            return session.run([OUTPUT_NAME], {"input_ids": f["input_ids"].numpy(),
                                               "attention_mask": f["attention_mask"].numpy()})[0]
        fns["onnx"] = run_onnx
    if "sentence_transformers" in contenders:
        from sentence_transformers.sparse_encoder import SparseEncoder as STSparseEncoder
        from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

        st = STSparseEncoder(modules=[MLMTransformer(model_dir, max_seq_length=max_length),
                                      SpladePooling("max", activation_function="relu")], device="cpu")
        fns["sentence_transformers"] = lambda text: st.encode_query([text])
    return {c: fns[c] for c in contenders}, encoder, tokenized


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a saved SparseEncoder folder (e.g. outputs/quickstart)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    a = p.parse_args()
    set_threads(a.threads)
    import torch

    print(json.dumps({"load_average_start": load_average()}), flush=True)
    # Held-out queries: msmarco_pairs' tail, which the latency and search benches never index.
    queries = [q for q, _ in msmarco_pairs(4000 + a.warmup + a.queries)[4000:]]
    with tempfile.TemporaryDirectory() as tmp:
        fns, encoder, tokenized = query_encoders(a.model, Path(tmp), a.threads,
                                                 ["mlm_forward", "encode", *[c for c in a.contenders
                                                                             if c not in ("mlm_forward", "encode")]])
        for text in queries:
            tokenized[text] = encoder.tokenize([text], is_query=True)
        # the eager path must return what the forward pass implies (else the race is against a different job)
        with torch.inference_mode():
            check = encoder.encode_queries(**tokenized[queries[0]]).numpy()
        np.testing.assert_allclose(encoder.encode([queries[0]], is_query=True).matrix.toarray(), check, atol=1e-5)
        times = {c: [] for c in fns}
        for i, text in enumerate(queries):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(text)
                if i >= a.warmup:
                    times[name].append(time.perf_counter() - start)
    ms = {c: np.asarray(t) * 1000 for c, t in times.items()}
    forward_p50 = float(np.percentile(ms["mlm_forward"], 50))
    rows = [{"contender": c, "p50_ms": round(float(np.percentile(t, 50)), 2),
             "p95_ms": round(float(np.percentile(t, 95)), 2),
             "p50_vs_mlm_forward": round(float(np.percentile(t, 50)) / forward_p50, 3)} for c, t in ms.items()]
    for r in rows:
        print(json.dumps(r), flush=True)
    print(markdown_table(rows, ["contender", "p50_ms", "p95_ms", "p50_vs_mlm_forward"]))
    tokens = [int(tokenized[q]["attention_mask"].sum()) for q in queries[a.warmup:]]
    summary = {"model": a.model, "threads": a.threads, "timed_queries": len(queries) - a.warmup,
               "mean_query_tokens": round(float(np.mean(tokens)), 1), "vocab": encoder.vocab_size,
               "encode_p50_vs_mlm_forward": next(r for r in rows if r["contender"] == "encode")["p50_vs_mlm_forward"],
               "load_average": load_average()}
    if "sentence_transformers" in ms:
        summary["encode_p50_vs_sentence_transformers"] = round(
            float(np.percentile(ms["encode"], 50) / np.percentile(ms["sentence_transformers"], 50)), 3)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
