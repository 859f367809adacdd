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


def time_sparse(index, queries, walked_terms, k: int, exact=None):
    """Search one query at a time after a warm-up: (p50/p95, mean query terms, posting entries walked, top-k overlap
    with `exact` when given), and the documents found."""
    for q in queries[:5]:
        index.search(q, k=k)
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(index.search(q, k=k)[0][0])
        times.append(time.perf_counter() - start)
    row = {**percentiles(times), "mean_query_terms": round(float(np.mean([len(t) for t in walked_terms])), 1),
           "mean_postings": round(float(np.mean([postings(index._docs_t, t) for t in walked_terms])))}
    if exact is not None:
        row["top_k_overlap_with_exact"] = round(float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)])), 4)
    return row, found


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
    analyser = KoreanBM25("mecab").analyzer
    analysed_docs, analysed = analyser.batch(unique), analyser.batch(queries)
    query_rows = [query_vectors[i] for i in range(a.queries)]
    top_rows = list(prune(query_vectors, "top_k", a.query_top_k)[:a.queries])
    # The terms whose posting lists the first (or only) phase walks.
    high_terms = [q.indices[q.data >= q.data.max(initial=0) * a.two_phase_ratio] for q in query_rows]
    results = []
    for size in a.sizes:
        rows = np.arange(size) % a.unique_docs
        n_postings = max(1, round(a.n_postings_ratio * size))
        exact = None
        for name, index, searched, walked in [
            ("sparse_index", SparseIndex(doc_vectors[rows]), query_rows, None),
            (f"sparse_index_query_top{a.query_top_k}", SparseIndex(doc_vectors[rows]), top_rows, None),
            (f"sparse_index_n_postings_{n_postings}_query_top{a.query_top_k}_rescored",  # two phases over all terms
             SparseIndex(doc_vectors[rows], n_postings=n_postings, two_phase_ratio=1e-6), top_rows, None),
            (f"sparse_index_two_phase_{a.two_phase_ratio}",
             SparseIndex(doc_vectors[rows], two_phase_ratio=a.two_phase_ratio), query_rows, high_terms),
        ]:
            row, found = time_sparse(index, searched, walked or [q.indices for q in searched], a.k, exact)
            exact = exact or found
            results.append({"contender": name, "docs": size, **row})
            if name == "sparse_index":
                results[-1]["mean_doc_terms"] = round(float(np.diff(doc_vectors.indptr).mean()), 1)
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
        summary[f"p50_ratio_vs_bm25s_{size}"] = round(s["p50_ms"] / b["p50_ms"], 3)
        for label, prefix in (("query_top_k", "sparse_index_query_top"), ("n_postings", "sparse_index_n_postings"),
                              ("two_phase", "sparse_index_two_phase")):
            r = next(r for r in results if r["docs"] == size and r["contender"].startswith(prefix))
            summary[f"{label}_p50_ratio_vs_bm25s_{size}"] = round(r["p50_ms"] / b["p50_ms"], 3)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
