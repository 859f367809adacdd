"""Query latency (p50 / p95 ms, one query at a time, top 10), build time, index memory and recall@10 against exact
search, at 100k and 1M documents: the exact `SparseIndex`, SEISMIC (pyseismic-lsr, `eval.seismic_index`; one row
per query setting) and bm25s over the same composed texts (Korean mecab analysis).

    python bench/search_latency.py --model DIR --benchmark outputs/benchmarks/msmarco-ko \\
        [--cache-dir outputs/eval/cache] [--sizes 100000 1000000] [--queries 200] [--seismic-n-postings 4000 ...]

Corpus: encoding a million passages with the neural model takes days on two CPU cores, so documents are composed
from the benchmark's real passages (MS MARCO-ko: 5,006), encoded once by the model (cached, shared with run_eval):
document i is passages (a_i, b_i), a distinct random pair; its vector is the element-wise max of the two passage
vectors, i.e. SPLADE's max pooling over the two passages' tokens without attention across them, and bm25s indexes
the two passages' morphemes concatenated. Queries are the benchmark's real held-out queries, encoded by the model.
What this keeps: real term weights, real vocabulary statistics, every document distinct, posting lists that grow
with the corpus. What it does not: a real million-passage vocabulary (only the 5,006 passages' terms occur, so
posting lists are longer and denser than a real corpus's of that size), and the composed documents are about
twice a passage's length.

Latency is the index lookup only: the query is already encoded (sparse) or analysed (BM25), as a search server
holds it after its query pipeline. Memory is the index's own structures: SparseIndex's CSR arrays (documents and
postings), SEISMIC's accounting (`print_space_usage_byte`: forward index, posting lists, summaries), bm25s's score
matrix and vocabulary."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load_average, markdown_table, set_threads  # noqa: E402


def percentiles(times) -> dict:
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def composed_pairs(n_passages: int, size: int, seed: int = 0) -> np.ndarray:
    """[size, 2] distinct unordered passage pairs (a < b), in a fixed random order: smaller corpora are prefixes."""
    rng = np.random.default_rng(seed)
    total = n_passages * (n_passages - 1) // 2
    if size > total:
        raise ValueError(f"{n_passages} passages make only {total} distinct pairs, fewer than {size}")
    codes = np.unique(rng.integers(0, total, size=int(size * 1.2) + 1000))
    while len(codes) < size:
        codes = np.unique(np.concatenate([codes, rng.integers(0, total, size=size)]))
    codes = rng.permutation(codes)[:size]
    # pair code c -> (a, b) with a < b: row a holds the pairs (a, a+1 .. n-1), starting at a*n - a*(a+1)/2
    starts = np.arange(n_passages) * n_passages - np.arange(n_passages) * (np.arange(n_passages) + 1) // 2
    a = np.searchsorted(starts, codes, side="right") - 1
    b = codes - starts[a] + a + 1
    return np.stack([a, b], axis=1)


def compose(passages: sp.csr_matrix, pairs: np.ndarray, chunk: int = 50_000) -> sp.csr_matrix:
    """Row i = element-wise max of passage rows pairs[i], built chunk by chunk so memory peaks near the result."""
    data, indices, lengths = [], [], []
    for start in range(0, len(pairs), chunk):
        part = passages[pairs[start:start + chunk, 0]].maximum(passages[pairs[start:start + chunk, 1]]).tocsr()
        part.sort_indices()
        data.append(part.data.astype(np.float32, copy=False))
        indices.append(part.indices.astype(np.int32, copy=False))
        lengths.append(np.diff(part.indptr))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    out = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=(len(pairs), passages.shape[1]))
    out.has_sorted_indices = True
    return out


def time_search(search, queries, k: int):
    """(p50/p95 after a warm-up, the documents found per query)."""
    for q in queries[:5]:
        search(q, k)
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q, k))
        times.append(time.perf_counter() - start)
    return percentiles(times), found


def recall_vs(found, exact, k: int) -> float:
    return round(float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact)])), 4)


def csr_nbytes(*matrices) -> int:
    return sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in matrices)


def main():
    from eval.seismic_index import SeismicOptions

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="trained SparseEncoder folder")
    p.add_argument("--benchmark", required=True, help="BEIR folder whose passages and queries are used")
    p.add_argument("--cache-dir", default="outputs/eval/cache", help="encoding cache (run_eval's --cache-dir)")
    p.add_argument("--max-seq-length", type=int, default=None,
                   help="passage token limit (default: the model's); run_eval's value reuses its cached encodings")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--build-threads", type=int, default=1,
                   help="threads of the SEISMIC build (queries are timed one at a time on one thread)")
    p.add_argument("--seismic-n-postings", type=int, nargs="+", default=None,
                   help="SEISMIC n_postings per size (default: the library's 3500 at every size)")
    p.add_argument("--seismic-query", nargs="+", default=["5:0.9", "10:0.7", "20:0.7"],
                   help="SEISMIC query settings QUERY_CUT:HEAP_FACTOR[:N_KNN], one row each "
                        "(N_KNN needs --seismic-nknn)")
    swept = ("n_postings", "query_cut", "heap_factor", "n_knn", "num_threads")  # per size / per row / --threads
    for f in dataclasses.fields(SeismicOptions):
        if f.name not in swept:
            p.add_argument(f"--seismic-{f.name.replace('_', '-')}", dest=f"seismic_{f.name}", type=type(f.default),
                           default=f.default)
    p.add_argument("--skip", nargs="*", default=[], choices=["exact", "seismic", "bm25s"],
                   help="contenders left out (the exact index still runs with SEISMIC: its top 10 is the recall reference)")
    a = p.parse_args()
    set_threads(a.threads)
    from builders.bm25 import KoreanBM25
    from eval.beir import load_beir
    from eval.index import SparseIndex
    from eval.retrieval import encode_cached
    from eval.seismic_index import SeismicIndex
    from training import SparseEncoder

    print(json.dumps({"load_average_start": load_average()}), flush=True)
    bench = load_beir(a.benchmark)
    overrides = {"max_seq_length": a.max_seq_length} if a.max_seq_length else {}
    encoder = SparseEncoder.from_pretrained(a.model, **overrides).eval()
    cache = Path(a.cache_dir)
    passages = encode_cached(encoder, bench.corpus_texts, cache, model_dir=Path(a.model))
    queries = encode_cached(encoder, bench.query_texts, cache, is_query=True, model_dir=Path(a.model))
    queries = queries[:a.queries]
    query_rows = [queries[i] for i in range(queries.shape[0])]
    bm25 = KoreanBM25("mecab")
    analyse = bm25.analyzer.batch
    passage_terms, query_terms = analyse(bench.corpus_texts), analyse(bench.query_texts[:a.queries])
    vocab = {t: i for i, t in enumerate(sorted({t for terms in passage_terms for t in terms}))}
    passage_ids = [[vocab[t] for t in terms] for terms in passage_terms]
    seismic_settings = []
    for setting in a.seismic_query:
        cut, heap, *knn = setting.split(":")
        seismic_settings.append({"query_cut": int(cut), "heap_factor": float(heap), "n_knn": int(knn[0]) if knn else 0})
    n_postings = a.seismic_n_postings or [3500]
    pairs_all = composed_pairs(passages.shape[0], max(a.sizes))
    results = []

    def report(row):
        results.append(row)
        print(json.dumps(row), flush=True)

    for si, size in enumerate(a.sizes):
        pairs = pairs_all[:size]
        start = time.perf_counter()
        docs = compose(passages, pairs)
        base = {"docs": size, "mean_doc_terms": round(float(np.diff(docs.indptr).mean()), 1)}
        print(json.dumps({"composed_docs": size, "seconds": round(time.perf_counter() - start, 1), **base}), flush=True)
        exact_found = None
        if "exact" not in a.skip or "seismic" not in a.skip:
            start = time.perf_counter()
            index = SparseIndex(docs)
            build = time.perf_counter() - start
            timing, exact_found = time_search(lambda q, k: index.search(q, k=k)[0][0], query_rows, a.k)
            report({"contender": "sparse_index_exact", **base, **timing, "build_s": round(build, 1),
                    "index_mb": round(csr_nbytes(index.documents, index._docs_t) / 2**20, 1), "recall@10": 1.0,
                    "mean_query_terms": round(float(np.mean([q.nnz for q in query_rows])), 1)})
            docs = index.documents  # the same vectors (sorted float32): one copy less in memory from here on
            del index
        if "seismic" not in a.skip:
            extra = {f.name: getattr(a, f"seismic_{f.name}") for f in dataclasses.fields(SeismicOptions)
                     if f.name not in swept}
            options = SeismicOptions(n_postings=n_postings[min(si, len(n_postings) - 1)], num_threads=a.build_threads,
                                     **extra)
            start = time.perf_counter()
            index = SeismicIndex(docs, options)
            build = time.perf_counter() - start
            index_mb = round(index.nbytes / 2**20, 1)
            for setting in seismic_settings:
                index.options = dataclasses.replace(options, **setting)
                timing, found = time_search(lambda q, k: index.search(q, k=k)[0][0], query_rows, a.k)
                name = f"seismic_n_postings_{options.n_postings}_cut{setting['query_cut']}_heap{setting['heap_factor']}"
                if setting["n_knn"]:
                    name += f"_knn{setting['n_knn']}"
                report({"contender": name, **base, **timing, "build_s": round(build, 1), "index_mb": index_mb,
                        "recall@10": recall_vs(found, exact_found, a.k), "mean_query_terms": round(float(
                            np.mean([min(q.nnz, setting["query_cut"]) for q in query_rows])), 1)})
            del index
        if "bm25s" not in a.skip:
            start = time.perf_counter()
            bm25.retriever.index(([passage_ids[x] + passage_ids[y] for x, y in pairs], vocab), show_progress=False)
            build = time.perf_counter() - start
            scores = bm25.retriever.scores
            nbytes = sum(scores[key].nbytes for key in ("data", "indices", "indptr"))

            def search_bm25(terms, k):
                return bm25.retriever.retrieve([terms], k=k, show_progress=False, n_threads=1)[0][0]
            timing, _ = time_search(search_bm25, query_terms, a.k)
            report({"contender": "bm25s", **base, **timing, "build_s": round(build, 1),
                    "index_mb": round(nbytes / 2**20, 1), "recall@10": "exhaustive",
                    "mean_query_terms": round(float(np.mean([len(t) for t in query_terms])), 1)})
        del docs
    print(markdown_table(results, ["contender", "docs", "p50_ms", "p95_ms", "recall@10", "build_s", "index_mb",
                                   "mean_query_terms", "mean_doc_terms"]))
    summary = {"model": a.model, "benchmark": a.benchmark, "threads": a.threads, "queries": len(query_rows),
               "load_average": load_average()}
    for size in a.sizes:
        bm = next((r for r in results if r["docs"] == size and r["contender"] == "bm25s"), None)
        good = [r for r in results if r["docs"] == size and r["contender"].startswith("seismic")
                and r["recall@10"] >= 0.95]
        if bm and good:
            best = min(good, key=lambda r: r["p50_ms"])
            summary[f"seismic_best_at_recall_0.95_{size}"] = best["contender"]
            summary[f"seismic_p50_vs_bm25s_{size}"] = round(best["p50_ms"] / bm["p50_ms"], 3)
            summary[f"seismic_p95_vs_bm25s_{size}"] = round(best["p95_ms"] / bm["p95_ms"], 3)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
