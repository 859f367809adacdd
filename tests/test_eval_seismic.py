"""SEISMIC backend (eval/seismic_index.py) against brute-force dense dot products on real MS MARCO-ko passages."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from eval.seismic_index import MAX_COMPONENTS, SeismicIndex, SeismicOptions
from tests.tiny import build_tokenizer

pytest.importorskip("seismic")
K = 10


@pytest.fixture(scope="module")
def corpus(shared_data):
    """tf-idf vectors of 400 real passages and 60 real queries over a WordPiece vocabulary trained on them
    (skewed term statistics, lengths 10-150 terms), and the brute-force scores."""
    records = json.loads((Path(shared_data) / "msmarco_ko" / "msmarco_kor.json").read_text(encoding="utf-8"))
    passages = [r["positive"][0] for r in records[:400] if r.get("positive")]
    queries = [r["query"] for r in records[400:460]]
    tokenizer = build_tokenizer(3000, passages)
    vocab = len(tokenizer)

    def vectors(texts):
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        rows = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
        m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.concatenate(ids))), shape=(len(texts), vocab))
        m.sum_duplicates()
        m.data = np.log1p(m.data).astype(np.float32)
        return m

    docs, qs = vectors(passages), vectors(queries)
    df = np.bincount(docs.indices, minlength=vocab)
    docs = (docs @ sp.diags(np.log((len(passages) + 1) / (df + 0.5)).astype(np.float32))).tocsr().astype(np.float32)
    brute = qs.toarray().astype(np.float64) @ docs.toarray().T.astype(np.float64)
    return docs, qs, brute


def generous(num_docs: int) -> SeismicOptions:
    """Every posting kept, summaries with all their mass, every query term walked, blocks scanned generously."""
    return SeismicOptions(n_postings=num_docs, summary_energy=1.0, query_cut=1000, heap_factor=0.5)


def recall(found: np.ndarray, brute: np.ndarray) -> float:
    exact = np.argsort(-brute, axis=1, kind="stable")[:, :K]
    return float(np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact)]))


def assert_exact_top_k(found: np.ndarray, brute: np.ndarray):
    """The found documents carry the brute-force top-K scores (to the forward index's half precision): a swap at
    rank K between documents tied within that precision is not a miss."""
    got = np.sort(np.take_along_axis(brute, found, axis=1), axis=1)[:, ::-1]
    np.testing.assert_allclose(got, -np.sort(-brute, axis=1)[:, :K], rtol=2e-3)


def test_generous_parameters_equal_exact_search(corpus):
    docs, queries, brute = corpus
    index = SeismicIndex(docs, generous(docs.shape[0]))
    indices, scores = index.search(queries, k=K)  # batched
    assert recall(indices, brute) >= 0.99
    assert_exact_top_k(indices, brute)
    # the forward index stores weights in half precision: scores agree to ~1e-3
    np.testing.assert_allclose(scores, np.take_along_axis(brute, indices, axis=1), rtol=2e-3)
    for i in range(0, queries.shape[0], 7):  # one query at a time takes the single-search call
        one, _ = index.search(queries[i], k=K)
        np.testing.assert_array_equal(one[0], indices[i])


def test_tight_parameters_are_approximate(corpus):
    """The query and build parameters reach the library: a tight setting loses recall (not exact search renamed)."""
    docs, queries, brute = corpus
    tight = SeismicIndex(docs, SeismicOptions(n_postings=20, query_cut=3, heap_factor=1.0))
    assert recall(tight.search(queries, k=K)[0], brute) < 0.9


def test_vocabulary_over_16_bits_is_remapped(corpus):
    """The same corpus spread over a 250,002-id vocabulary (ids up to ~250k): the ids that occur are renumbered
    densely, so the index builds and finds the same documents; query terms no document has are dropped."""
    docs, queries, brute = corpus
    rng = np.random.default_rng(0)
    big_vocab = 250_002
    new_id = rng.choice(np.arange(70_000, big_vocab), size=docs.shape[1], replace=False)
    spread = sp.csr_matrix(docs.toarray()[:, np.argsort(new_id)], dtype=np.float32)  # column c -> sorted new id
    cols = np.sort(new_id)

    def widen(m):
        m = sp.csr_matrix(m)
        return sp.csr_matrix((m.data, cols[m.indices], m.indptr), shape=(m.shape[0], big_vocab))

    wide_docs = widen(spread)
    wide_queries = widen(sp.csr_matrix(queries.toarray()[:, np.argsort(new_id)]))
    assert wide_docs.indices.max() > MAX_COMPONENTS
    unused = np.setdiff1d(np.arange(big_vocab), wide_docs.indices)[:5]
    extra = sp.csr_matrix((np.full(5, 9.0, np.float32), (np.zeros(5, int), unused)), shape=(1, big_vocab))
    wide_queries = sp.vstack([wide_queries, extra], format="csr")  # last query: only terms no document has
    index = SeismicIndex(wide_docs, generous(docs.shape[0]))
    indices, scores = index.search(wide_queries, k=K)
    assert_exact_top_k(indices[:-1], brute)
    np.testing.assert_array_equal(indices[-1], -1)
    np.testing.assert_array_equal(scores[-1], 0)


def test_more_than_65536_distinct_ids_is_a_clear_error():
    n = MAX_COMPONENTS + 1
    docs = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n) % 50, np.arange(n))), shape=(50, 250_002))
    with pytest.raises(ValueError, match="65,537 distinct token ids.*16-bit"):
        SeismicIndex(docs)


def test_short_results_are_padded_and_columns_checked(corpus):
    docs, queries, _ = corpus
    index = SeismicIndex(docs[:5], generous(5))
    indices, scores = index.search(queries[:3], k=50)
    assert indices.shape == (3, 5)  # k capped at the corpus size
    found = indices >= 0
    assert np.all(scores[~found] == 0) and np.all(scores[found] > 0)
    with pytest.raises(ValueError, match="columns"):
        index.search(sp.csr_matrix((1, docs.shape[1] + 1), dtype=np.float32))


def test_knn_graph_recovers_near_duplicates_the_pruned_lists_drop(corpus):
    """Documents made of two passages (as bench/search_latency.py composes them) share a passage with many others:
    tight posting lists lose some of a query's best pairs, and scanning the stored neighbours of what was found
    brings them back. n_knn=0 on an index with a graph searches as the index without one."""
    docs, queries, _ = corpus
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, docs.shape[0], size=(3000, 2))
    composed = docs[pairs[:, 0]].maximum(docs[pairs[:, 1]]).tocsr()
    brute = queries.toarray().astype(np.float64) @ composed.toarray().T.astype(np.float64)
    tight = dict(n_postings=40, query_cut=5, heap_factor=0.9)
    plain = SeismicIndex(composed, SeismicOptions(**tight))
    graph = SeismicIndex(composed, SeismicOptions(**tight, nknn=10))
    without = recall(plain.search(queries, k=K)[0], brute)
    graph.options = SeismicOptions(**tight, nknn=10, n_knn=10)
    with_knn = recall(graph.search(queries, k=K)[0], brute)
    assert with_knn > without + 0.05, (without, with_knn)
    graph.options = SeismicOptions(**tight, nknn=10, n_knn=0)
    np.testing.assert_array_equal(graph.search(queries, k=K)[0], plain.search(queries, k=K)[0])


@pytest.mark.parametrize("field,value", [("n_postings", 0), ("query_cut", 0), ("query_cut", 2.5),
                                         ("heap_factor", 0.0), ("summary_energy", 1.5),
                                         ("centroid_fraction", 0.0), ("max_fraction", 0.5), ("num_threads", -1),
                                         ("nknn", -1), ("n_knn", 1)])
def test_options_are_validated(field, value):
    with pytest.raises(ValueError, match=f"seismic {field}"):
        SeismicOptions(**{field: value})


def test_run_eval_seismic_index(tmp_path, tiny_model_dir, capsys):
    """--index seismic with generous flags ranks as the exact index does; the flags reach the options and bad ones
    stop with the flag's name."""
    import run_eval
    from tests.test_eval_beir import write_beir

    bench = write_beir(tmp_path / "tiny-ret")
    base = ["--model", str(tiny_model_dir), "--benchmark", f"beir:{bench}", "--latency-queries", "2"]
    assert run_eval.main(base + ["--output", str(tmp_path / "exact")]) == 0
    assert run_eval.main(base + ["--output", str(tmp_path / "ann"), "--index", "seismic", "--seismic-n-postings",
                                 "1000", "--seismic-summary-energy", "1.0", "--seismic-query-cut", "1000",
                                 "--seismic-heap-factor", "0.5"]) == 0
    exact, ann = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("exact", "ann"))
    got, want = ann["tiny-ret"][tiny_model_dir.name], exact["tiny-ret"][tiny_model_dir.name]
    for key in ("ndcg@10", "recall@100", "avg_doc_terms"):
        assert got[key] == pytest.approx(want[key], abs=1e-6)
    assert got["search_ms"] > 0 and got["encode_ms"] > 0
    assert "'query_cut': 1000" in (tmp_path / "ann" / "report.md").read_text()
    capsys.readouterr()
    for bad, message in ((["--seismic-query-cut", "0"], "--seismic-query-cut must be"),
                         (["--opensearch"], "--opensearch: exact-index option")):
        with pytest.raises(SystemExit):
            run_eval.main(base + ["--output", str(tmp_path / "bad"), "--index", "seismic", *bad])
        assert message in capsys.readouterr().err
