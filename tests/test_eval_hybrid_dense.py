"""OpenSearch-style hybrid fusion (min_max, arithmetic_mean) on hand-computed runs, the dense baseline's exact
search against a brute-force sort, and run_eval.py --baseline dense --hybrid end to end."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

import run_eval
from eval.baselines import dense_search
from eval.beir import load_beir
from eval.hybrid import fuse_min_max, min_max_normalize
from eval.runner import evaluate_sparse
from tests.test_eval_beir import write_beir

# Query 0: BM25 returned docs 0, 2, 4; the model 2, 3, 0. Query 1: BM25 returned two docs with the same score
# (and nothing else), the model docs 4 and 1.
BM25_RUN = (np.array([[0, 2, 4], [5, 1, -1]]), np.array([[9.0, 5.0, 1.0], [2.0, 2.0, 0.0]]))
MODEL_RUN = (np.array([[2, 3, 0], [4, 1, -1]]), np.array([[0.8, 0.6, 0.4], [0.9, 0.3, 0.0]]))


def test_min_max_normalize_hand_computed():
    # (9-1)/8, (5-1)/8, and the minimum raised from 0 to 0.001; a constant list is all 1.0; not returned is 0
    np.testing.assert_allclose(min_max_normalize(*BM25_RUN), [[1.0, 0.5, 0.001], [1.0, 1.0, 0.0]], rtol=1e-6)
    # (0.8-0.4)/0.4, (0.6-0.4)/0.4, minimum; (0.9-0.3)/0.6, minimum
    np.testing.assert_allclose(min_max_normalize(*MODEL_RUN), [[1.0, 0.5, 0.001], [1.0, 0.001, 0.0]], rtol=1e-5)
    single = min_max_normalize(np.array([[7, -1]]), np.array([[3.5, 0.0]]))
    np.testing.assert_array_equal(single, [[1.0, 0.0]])


def test_fuse_min_max_hand_computed():
    indices, scores = fuse_min_max([BM25_RUN, MODEL_RUN], [0.3, 0.7], num_docs=6, depth=4)
    # query 0: doc 2 = .3*.5 + .7*1 = .85; doc 3 only in the model's list = .7*.5 + .3*0 = .35 (its missing BM25
    # score counts as 0 with its weight, not left out of the mean, which would give .5); doc 0 = .3*1 + .7*.001;
    # doc 4 = .3*.001. Query 1: doc 4 = .7*1; doc 1 = .3*1 + .7*.001; doc 5 = .3*1; then the first document no
    # sub-query returned (doc 0, score 0), as unmatched documents follow in index order.
    np.testing.assert_array_equal(indices, [[2, 3, 0, 4], [4, 1, 5, 0]])
    np.testing.assert_allclose(scores, [[0.85, 0.35, 0.3007, 0.0003], [0.7, 0.3007, 0.3, 0.0]], rtol=1e-5)

    # equal weights swap docs 0 (.5*1 + .5*.001 = .5005) and 3 (.5*.5 = .25)
    indices, scores = fuse_min_max([BM25_RUN, MODEL_RUN], [0.5, 0.5], num_docs=6, depth=6)
    np.testing.assert_array_equal(indices[0], [2, 0, 3, 4, 1, 5])
    np.testing.assert_allclose(scores[0], [0.75, 0.5005, 0.25, 0.0005, 0.0, 0.0], rtol=1e-5)
    # weights are divided by their sum, as OpenSearch's arithmetic_mean does
    np.testing.assert_allclose(fuse_min_max([BM25_RUN, MODEL_RUN], [1.0, 1.0], 6, 6)[1], scores, rtol=1e-6)


def test_dense_search_matches_brute_force():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(9, 16)).astype(np.float32)
    docs = rng.normal(size=(40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    expected_scores = queries.astype(np.float64) @ docs.T.astype(np.float64)
    expected = np.argsort(-expected_scores, axis=1, kind="stable")[:, :10]
    indices, scores = dense_search(queries, docs, k=10, batch_size=4)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(expected_scores, expected, axis=1), atol=1e-6)

    # small integer vectors: exact scores with many ties, which go to the lower document index
    queries = rng.integers(-2, 3, size=(7, 4)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(30, 4)).astype(np.float32)
    exact = queries.astype(np.int64) @ docs.T.astype(np.int64)
    expected = np.argsort(-exact, axis=1, kind="stable")[:, :12]
    indices, scores = dense_search(queries, docs, k=12, batch_size=3)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(scores, np.take_along_axis(exact, expected, axis=1))
    assert dense_search(queries, docs, k=100)[0].shape == (7, 30)


def test_sparse_run_marks_documents_sharing_no_term(tmp_path):
    """A sparse sub-query returns only documents it matches: the rest of its run is index -1 for fusion."""
    bench = load_beir(write_beir(tmp_path / "b"))
    docs = sp.csr_matrix(np.eye(5, dtype=np.float32))
    queries = sp.csr_matrix(np.array([[0, 2, 0, 0, 0], [0, 0, 0, 1, 3], [1, 0, 0, 0, 0], [0, 0, 1, 0, 0]],
                                     dtype=np.float32))
    _, _, (indices, scores) = evaluate_sparse(bench, queries, docs, [3], lambda text: None, latency_queries=0)
    np.testing.assert_array_equal(indices, [[1, -1, -1], [4, 3, -1], [0, -1, -1], [2, -1, -1]])
    np.testing.assert_array_equal(scores, [[2, 0, 0], [3, 1, 0], [1, 0, 0], [1, 0, 0]])


RANKING = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def test_run_eval_dense_and_hybrid(tmp_path, tiny_model_dir, capsys):
    bench = write_beir(tmp_path / "b")
    model = tiny_model_dir.name
    dense = "dense:multilingual-e5-small"

    def evaluate(out, weights):
        assert run_eval.main(["--model", str(tiny_model_dir), "--baseline", "dense", "--hybrid", "--hybrid-weights",
                              *weights, "--benchmark", f"beir:{bench}", "--output", str(tmp_path / out),
                              "--latency-queries", "1"]) == 0
        return json.loads((tmp_path / out / "results.json").read_text())["b"]

    results = evaluate("out", ["0.3", "0.7"])
    assert list(results) == ["bm25", dense, model, f"bm25+{dense}", f"bm25+{model}"]  # --hybrid runs bm25 too
    for system, metrics in results.items():
        assert set(RANKING) <= set(metrics) and metrics["num_docs"] == 5.0, system
    assert "latency_ms" in results[dense] and "avg_doc_terms" not in results[dense]
    table = capsys.readouterr().out
    assert f"bm25+{model}" in table and dense in table
    assert "hybrid_weights" in (tmp_path / "out" / "report.md").read_text()
    cached = sorted(p.name.split("-")[1] for p in (tmp_path / "out" / "cache").glob("dense-*.npy"))
    assert cached == ["corpus", "queries"]

    # A weight of 0 leaves the other sub-query's order (min_max is monotone), then unmatched docs by index: the
    # same run as that system alone.
    only_bm25 = evaluate("bm25-only", ["1", "0"])
    only_model = evaluate("model-only", ["0", "1"])
    for system in (dense, model):
        assert {m: only_bm25[f"bm25+{system}"][m] for m in RANKING} == {m: only_bm25["bm25"][m] for m in RANKING}
        assert {m: only_model[f"bm25+{system}"][m] for m in RANKING} == {m: only_model[system][m] for m in RANKING}


def test_hybrid_usage_errors(tmp_path):
    bench = write_beir(tmp_path / "b")
    with pytest.raises(SystemExit):  # nothing to fuse BM25 with
        run_eval.main(["--baseline", "bm25", "--hybrid", "--benchmark", f"beir:{bench}"])
    with pytest.raises(SystemExit):  # OpenSearch rejects weights that do not sum to 1
        run_eval.main(["--baseline", "dense", "--hybrid", "--hybrid-weights", "0.5", "0.7", "--benchmark",
                       f"beir:{bench}"])
