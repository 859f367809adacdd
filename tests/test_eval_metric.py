"""The retrieval metric against pytrec_eval (trec_eval) on tie-free runs, and hand-computed tie cases."""
import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval

from eval.sparse_retrieval import SparseRetrieval, compute_from_dicts

METRIC_DIR = Path(__file__).resolve().parents[1] / "eval" / "sparse_retrieval"
K_VALUES = [1, 3, 5, 10, 20]


def _random_case(seed, n_queries=40, n_docs=60):
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for _ in range(n_queries):
        depth = int(rng.integers(1, 30))
        docs = rng.choice(n_docs, size=depth, replace=False)
        scores = rng.permutation(depth) + rng.random()  # distinct scores: no ties
        predictions.append({f"d{d}": float(s) for d, s in zip(docs, scores)})
        judged = rng.choice(n_docs, size=int(rng.integers(1, 12)), replace=False)
        rels = rng.integers(0, 4, size=len(judged))
        rels[0] = max(rels[0], 1)  # every query has a relevant document
        references.append({f"d{d}": int(r) for d, r in zip(judged, rels)})
    return predictions, references


def _trec(predictions, references, k_values):
    qrels = {f"q{i}": ref for i, ref in enumerate(references)}
    cuts = ",".join(map(str, k_values))
    measures = {f"ndcg_cut.{cuts}", f"P.{cuts}", f"recall.{cuts}", f"map_cut.{cuts}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(
        {f"q{i}": run for i, run in enumerate(predictions)})
    out = {}
    for k in k_values:
        for ours, theirs in (("ndcg", "ndcg_cut"), ("precision", "P"), ("recall", "recall"), ("map", "map_cut")):
            out[f"{ours}@{k}"] = np.mean([per_query[f"q{i}"][f"{theirs}_{k}"] for i in range(len(references))])
        # trec_eval's recip_rank has no cut-off: give it each run's top k.
        top_k = {f"q{i}": dict(sorted(run.items(), key=lambda kv: -kv[1])[:k]) for i, run in enumerate(predictions)}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top_k)
        out[f"mrr@{k}"] = np.mean([rr[f"q{i}"]["recip_rank"] if f"q{i}" in rr else 0.0
                                   for i in range(len(references))])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pytrec_eval(seed):
    predictions, references = _random_case(seed)
    ours = compute_from_dicts(predictions, references, K_VALUES)
    theirs = _trec(predictions, references, K_VALUES)
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name


def test_evaluate_load_offline_matches_class():
    import evaluate

    predictions, references = _random_case(7, n_queries=10)
    loaded = evaluate.load(str(METRIC_DIR))
    via_load = loaded.compute(predictions=predictions, references=references, k_values=[1, 10, 100])
    via_class = SparseRetrieval().compute(predictions=predictions, references=references, k_values=[1, 10, 100])
    direct = compute_from_dicts(predictions, references, [1, 10, 100])
    assert via_load == pytest.approx(direct, abs=1e-12)
    assert via_class == pytest.approx(direct, abs=1e-12)
    assert {"ndcg@10", "mrr@10", "recall@100", "precision@1", "map@10"} <= set(via_load)


def test_ties_broken_by_doc_id_hand_computed():
    # b and c tie at 1.0: b ranks before c whatever the dict order; a (0.5) is last.
    predictions = [{"c": 1.0, "a": 0.5, "b": 1.0}]
    references = [{"c": 2, "a": 1}]
    got = compute_from_dicts(predictions, references, [1, 2, 3])
    # ranking b, c, a -> gains 0, 2, 1
    dcg3 = 2 / math.log2(3) + 1 / math.log2(4)
    idcg3 = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@3"] == pytest.approx(dcg3 / idcg3, abs=1e-12)
    assert got["ndcg@1"] == 0.0
    assert got["mrr@3"] == pytest.approx(0.5)
    assert got["recall@2"] == pytest.approx(0.5)
    assert got["precision@3"] == pytest.approx(2 / 3)
    assert got["map@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert compute_from_dicts([{"b": 1.0, "a": 0.5, "c": 1.0}], references, [3]) == \
        compute_from_dicts(predictions, references, [3])


def test_short_runs_and_unjudged_documents():
    # Fewer retrieved than k: missing ranks are misses; precision still divides by k (trec_eval).
    got = compute_from_dicts([{"x": 3.0, "a": 2.0}], [{"a": 1, "b": 1}], [10])
    assert got["recall@10"] == 0.5
    assert got["precision@10"] == pytest.approx(0.1)
    assert got["mrr@10"] == 0.5
    assert got["map@10"] == pytest.approx(0.25)


def test_errors_instead_of_wrong_numbers():
    with pytest.raises(ValueError, match="no document with relevance > 0"):
        compute_from_dicts([{"a": 1.0}], [{"a": 0}], [1])
    with pytest.raises(ValueError, match="one dict per query"):
        compute_from_dicts([{"a": 1.0}], [], [1])
    with pytest.raises(ValueError, match="k_values"):
        compute_from_dicts([{"a": 1.0}], [{"a": 1}], [0])
    with pytest.raises(ValueError, match="not finite"):
        compute_from_dicts([{"a": float("nan")}], [{"a": 1}], [1])
