"""Query latency (p50 / p95, milliseconds) of the exact sparse index (eval.index.SparseIndex) over learned sparse
document vectors, and of the same index searched in two phases as OpenSearch's neural_sparse_two_phase_processor
does (`--two_phase_ratio`, with its top-k overlap with exact search), vs bm25s over the same corpus (Korean mecab
analysis), at 10k and 100k documents.

    python bench/search_latency.py [--model DIR] [--sizes 10000 100000] [--queries 200] [--unique_docs 2000]

`--model` is a trained model folder (default: the untrained trimmed backbone, whose vectors are far denser than a
trained model's: FLOPS regularisation is what makes learned sparse retrieval fast).

Latency is the index lookup only, one query at a time, top 10: the query is already encoded (sparse model) or
analysed (BM25), as a search server holds it after its query pipeline. Encoding 100k passages with the neural
model takes hours on two CPU cores, so the corpus is `unique_docs` Korean passages repeated to the target size,
for both contenders alike: posting lists grow with corpus size as they would in a real corpus of that make-up."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (TRIMMED_BACKBONE, backbone_dir, load_average, markdown_table, msmarco_pairs,  # noqa: E402
                          set_threads)


def percentiles(times) -> dict:
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def postings(index_t: sp.csr_matrix, term_ids) -> int:
    """Posting-list entries a query walks: the work of an inverted index, whatever its implementation."""
    return int(np.diff(index_t.indptr)[np.asarray(term_ids, dtype=np.int64)].sum())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="trained model folder (default: the untrained trimmed backbone)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--unique_docs", type=int, default=2000)
    p.add_argument("--max_length", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--two_phase_ratio", type=float, default=0.4, help="OpenSearch's two-phase default prune ratio")
    p.add_argument("--query_top_k", type=int, default=40, help="also time queries cut to their N largest weights")
    p.add_argument("--n_postings_ratio", type=float, default=0.02,
                   help="also time an index keeping each term's (ratio x docs) best documents, top-k queries, the "
                        "candidates rescored exactly (as OpenSearch's SEISMIC sparse_vector field searches)")
    a = p.parse_args()
    set_threads(a.threads)
    from builders.bm25 import KoreanBM25
    from eval.index import SparseIndex, prune
    from training import SparseEncoder

    print(json.dumps({"load_average_start": load_average()}), flush=True)
    pairs = msmarco_pairs(a.unique_docs + a.queries)
    unique = [d for _, d in pairs[:a.unique_docs]]
    queries = [q for q, _ in pairs[a.unique_docs:]]
    encoder = SparseEncoder.from_pretrained(a.model or backbone_dir(TRIMMED_BACKBONE), max_seq_length=a.max_length)
    doc_vectors = encoder.encode(unique, batch_size=32).matrix
    query_vectors = encoder.encode(queries, is_query=True).matrix
    stats = {"doc_terms": float(np.diff(doc_vectors.indptr).mean()), "query_terms": float(np.diff(query_vectors.indptr).mean())}
    analyser = KoreanBM25("mecab").analyzer
    analysed_docs, analysed = analyser.batch(unique), analyser.batch(queries)
    results = []
    for size in a.sizes:
        rows = np.arange(size) % a.unique_docs
        index = SparseIndex(doc_vectors[rows])
        for i in range(5):  # warm-up
            index.search(query_vectors[i], k=a.k)
        times = []
        for i in range(a.queries):
            start = time.perf_counter()
            index.search(query_vectors[i], k=a.k)
            times.append(time.perf_counter() - start)
        walked = [postings(index._docs_t, query_vectors[i].indices) for i in range(a.queries)]
        results.append({"contender": "sparse_index", "docs": size, **percentiles(times),
                        "mean_query_terms": round(stats["query_terms"], 1), "mean_doc_terms": round(stats["doc_terms"], 1),
                        "mean_postings": round(float(np.mean(walked)))})
        print(json.dumps(results[-1]), flush=True)
        exact = [index.search(query_vectors[i], k=a.k)[0][0] for i in range(a.queries)]
        cut = prune(query_vectors, "top_k", a.query_top_k)
        times, overlap = [], []
        for i in range(a.queries):
            start = time.perf_counter()
            found = index.search(cut[i], k=a.k)[0][0]
            times.append(time.perf_counter() - start)
            overlap.append(len(set(found) & set(exact[i])) / a.k)
        results.append({"contender": f"sparse_index_query_top{a.query_top_k}", "docs": size, **percentiles(times),
                        "mean_query_terms": round(float(np.diff(cut.indptr).mean()), 1),
                        "mean_postings": round(float(np.mean([postings(index._docs_t, cut[i].indices)
                                                              for i in range(a.queries)]))),
                        "top_k_overlap_with_exact": round(float(np.mean(overlap)), 4)})
        print(json.dumps(results[-1]), flush=True)
        n_postings = max(1, round(a.n_postings_ratio * size))
        bounded = SparseIndex(doc_vectors[rows], n_postings=n_postings, two_phase_ratio=1e-6)  # rescore all terms
        times, overlap = [], []
        for i in range(a.queries):
            start = time.perf_counter()
            found = bounded.search(cut[i], k=a.k)[0][0]
            times.append(time.perf_counter() - start)
            overlap.append(len(set(found) & set(exact[i])) / a.k)
        results.append({"contender": f"sparse_index_n_postings_{n_postings}_query_top{a.query_top_k}_rescored",
                        "docs": size, **percentiles(times), "mean_query_terms": round(float(np.diff(cut.indptr).mean()), 1),
                        "mean_postings": round(float(np.mean([postings(bounded._docs_t, cut[i].indices)
                                                              for i in range(a.queries)]))),
                        "top_k_overlap_with_exact": round(float(np.mean(overlap)), 4)})
        print(json.dumps(results[-1]), flush=True)
        two_phase = SparseIndex(doc_vectors[rows], two_phase_ratio=a.two_phase_ratio)
        times, overlap, walked = [], [], []
        for i in range(a.queries):
            q = query_vectors[i]
            walked.append(postings(index._docs_t, q.indices[q.data >= q.data.max(initial=0) * a.two_phase_ratio]))
            start = time.perf_counter()
            found = two_phase.search(query_vectors[i], k=a.k)[0][0]
            times.append(time.perf_counter() - start)
            overlap.append(len(set(found) & set(exact[i])) / a.k)
        results.append({"contender": f"sparse_index_two_phase_{a.two_phase_ratio}", "docs": size, **percentiles(times),
                        "mean_query_terms": round(float(np.mean([(query_vectors[i].data >= query_vectors[i].data.max(
                            initial=0) * a.two_phase_ratio).sum() for i in range(a.queries)])), 1),
                        "mean_postings": round(float(np.mean(walked))), "top_k_overlap_with_exact": round(float(np.mean(overlap)), 4)})
        print(json.dumps(results[-1]), flush=True)

        bm25 = KoreanBM25("mecab")
        bm25.retriever.index([analysed_docs[r] for r in rows], show_progress=False)  # = bm25.index(corpus)
        for terms in analysed[:5]:  # warm-up
            bm25.retriever.retrieve([terms], k=a.k, show_progress=False, n_threads=1)
        times = []
        for terms in analysed:
            start = time.perf_counter()
            bm25.retriever.retrieve([terms], k=a.k, show_progress=False, n_threads=1)
            times.append(time.perf_counter() - start)
        scores = bm25.retriever.scores  # bm25s's CSC index: one column of scores per term
        term_index = sp.csr_matrix((scores["data"], scores["indices"], scores["indptr"]),
                                   shape=(len(scores["indptr"]) - 1, scores["num_docs"]))
        walked = [postings(term_index, bm25.retriever.get_tokens_ids(t)) for t in analysed]
        results.append({"contender": "bm25s", "docs": size, **percentiles(times),
                        "mean_query_terms": round(float(np.mean([len(t) for t in analysed])), 1),
                        "mean_postings": round(float(np.mean(walked)))})
        print(json.dumps(results[-1]), flush=True)
    print(markdown_table(results, ["contender", "docs", "p50_ms", "p95_ms", "mean_query_terms", "mean_doc_terms",
                                   "mean_postings", "top_k_overlap_with_exact"]))
    summary = {"model": a.model or TRIMMED_BACKBONE, "load_average": load_average()}
    for size in a.sizes:
        s, b = [next(r for r in results if r["docs"] == size and r["contender"] == c) for c in ("sparse_index", "bm25s")]
        two = next(r for r in results if r["docs"] == size and r["contender"].startswith("sparse_index_two_phase"))
        top = next(r for r in results if r["docs"] == size and r["contender"].startswith("sparse_index_query_top"))
        summary[f"p50_ratio_vs_bm25s_{size}"] = round(s["p50_ms"] / b["p50_ms"], 3)
        bounded = next(r for r in results if r["docs"] == size and r["contender"].startswith("sparse_index_n_postings"))
        summary[f"query_top_k_p50_ratio_vs_bm25s_{size}"] = round(top["p50_ms"] / b["p50_ms"], 3)
        summary[f"n_postings_p50_ratio_vs_bm25s_{size}"] = round(bounded["p50_ms"] / b["p50_ms"], 3)
        summary[f"two_phase_p50_ratio_vs_bm25s_{size}"] = round(two["p50_ms"] / b["p50_ms"], 3)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
