"""OpenSearch's ingest pruning (training/pruning.py): golden values worked by hand from neural-search's PruneUtils
(Java float arithmetic), a line-by-line transcription of the Java loops on random rows, and eval and deploy giving
the same pruned vectors."""
import numpy as np
import pytest
import scipy.sparse as sp

from deploy.features import FeatureVocabulary, prune_features, validate_prune as deploy_validate
from eval.index import check_prune as eval_validate, prune as eval_prune
from training.pruning import PRUNE_TYPES, is_valid_prune_ratio, prune_dict, prune_matrix

f32 = np.float32
# Columns 0..4. As float32: 0.1f = 0.100000001490116, 0.3f = 0.300000011920929; 0.5 and 1.0 exact.
ROW = [0.1, 0.5, 1.0, 0.3, 0.1]
# Sorted for alpha_mass: 1.0 (col 2), 0.5 (col 1), 0.3 (col 3), 0.1 (col 0), 0.1 (col 4); the double sum
# 2.0000000149 rounds to the float 2.0; running float sums 1.0, 1.5, 1.8f (1.5 + 0.3f = 1.80000001192 is halfway
# between floats and rounds to even, 1.79999995), 1.9f, 2.0.
GOLDEN = [
    ("max_ratio", 0.3, {1, 2, 3}),  # 0.3f * 1.0 = 0.3f; 0.3f >= 0.3f is kept
    ("max_ratio", 0.6, {2}),
    ("max_ratio", 0.0, {0, 1, 2, 3, 4}),  # every positive weight >= 0
    ("abs_value", 0.3, {1, 2, 3}),
    ("abs_value", 0.11, {1, 2, 3}),
    ("abs_value", 0.0, {0, 1, 2, 3, 4}),
    ("top_k", 2, {1, 2}),
    ("top_k", 4, {0, 1, 2, 3}),  # 0.1 ties at cols 0 and 4: the lower column is kept
    ("top_k", 10, {0, 1, 2, 3, 4}),
    ("alpha_mass", 0.8, {1, 2}),  # 0.8f * 2 = 1.6000000238: 1.0, 1.5 <= it, 1.8 > it (the crossing 0.3 dropped)
    ("alpha_mass", 0.75, {1, 2}),  # 0.75 * 2 = 1.5 exactly: 1.5 <= 1.5 is kept, 1.8 is not
    ("alpha_mass", 0.5, {2}),  # 1.0 <= 1.0, then 1.5 > 1.0
    ("alpha_mass", 0.4, set()),  # 0.4f * 2 = 0.8000000119 < 1.0: not even the largest weight is kept
    ("alpha_mass", 0.0, set()),
    ("alpha_mass", 0.99, {0, 1, 2, 3}),  # 0.99f * 2 = 1.9800000191: 1.9 kept, 2.0 (the second 0.1) not
    ("none", 0.0, {0, 1, 2, 3, 4}),
]


def _kept(matrix):
    return [set(matrix[i].indices.tolist()) for i in range(matrix.shape[0])]


@pytest.mark.parametrize("prune_type,ratio,kept", GOLDEN)
def test_golden_row_from_the_java_rules(prune_type, ratio, kept):
    pruned = prune_matrix(sp.csr_matrix(np.array([ROW], dtype=np.float32)), prune_type, ratio)
    assert _kept(pruned) == [kept]
    assert pruned.dtype == np.float32 and pruned.data.tolist() == [f32(ROW[c]) for c in sorted(kept)]
    names = dict(zip("abcde", ROW))
    assert prune_dict(names, prune_type, ratio) == {k: v for i, (k, v) in enumerate(names.items()) if i in kept}


def test_alpha_mass_drops_the_weight_that_crosses_the_ratio():
    # total 4 + 2 + 1 + 0.5 = 7.5; 0.7f = 0.699999988 so 0.7f * 7.5 = 5.2499999106, rounded to the float 5.25;
    # running sums 4 <= 5.25 (kept), 6 > 5.25 (dropped with everything after it).
    v = {"a": 4.0, "b": 2.0, "c": 1.0, "d": 0.5}
    assert prune_features(v, "alpha_mass", 0.7) == {"a": 4.0}
    assert prune_features(v, "alpha_mass", 0.8) == {"a": 4.0, "b": 2.0}  # 0.8f * 7.5 rounds to 6.0: 6 kept, 7 not
    assert _kept(eval_prune(sp.csr_matrix([[4.0, 2.0, 1.0, 0.5]]), "alpha_mass", 0.7)) == [{0}]


def test_comparisons_use_the_float_ratio_as_java_does():
    # 0.7 as a float is 0.699999988: a weight of 0.7f passes `w >= 0.7f * 1.0f` and `w >= 0.7f`, while the same
    # comparison against the double 0.7 would drop it.
    v = {"a": 1.0, "b": float(f32(0.7))}
    assert prune_features(v, "max_ratio", 0.7) == v
    assert prune_features(v, "abs_value", 0.7) == v
    # 0.1f * 5 = 0.50000000745 exactly, rounded to the float 0.5: a weight of 0.5 is kept, its float below is not.
    below = float(np.nextafter(f32(0.5), f32(0)))
    assert prune_features({"a": 5.0, "b": 0.5, "c": below}, "max_ratio", 0.1) == {"a": 5.0, "b": 0.5}


def test_alpha_mass_running_sum_is_a_float():
    # sum = 1 + 2^-23 (a float); ratio 1 - 2^-24 (a float): ratio * sum = 1 + 2^-24 - 2^-47, rounded to 1.0.
    # topSum: 1.0 <= 1.0; 1.0 + 2^-24 is halfway between 1 and 1 + 2^-23 and rounds to even, 1.0, so it stays
    # <= 1.0 and every weight is kept. A double running sum (1 + 2^-24 > 1.0) would keep only "a".
    tiny = 2.0 ** -24
    v = {"a": 1.0, "b": tiny, "c": tiny}
    assert prune_features(v, "alpha_mass", 1 - 2.0 ** -24) == v


def test_top_k_ties_keep_the_lower_column_or_earlier_key():
    assert prune_features({"x": 0.5, "y": 0.5, "z": 0.5, "w": 1.0}, "top_k", 2) == {"x": 0.5, "w": 1.0}
    assert _kept(prune_matrix(sp.csr_matrix([[0.5, 0.5, 0.5, 1.0]]), "top_k", 2)) == [{0, 3}]


def test_rows_are_independent():
    rows = sp.csr_matrix(np.array([ROW, [0, 0, 0, 0, 0], [0, 0, 0, 2.0, 0], [0.4, 0.4, 0, 0, 0.2]], dtype=np.float32))
    # row 2: its only weight 2.0 > 0.7f * 2.0, so alpha_mass < 1 keeps nothing of a one-weight row;
    # row 3: sum 1.0, 0.7f * 1 = 0.7f: 0.4 kept, 0.8 > 0.7f dropped
    assert _kept(prune_matrix(rows, "alpha_mass", 0.7)) == [{2}, set(), set(), {0}]
    assert _kept(prune_matrix(rows, "max_ratio", 0.5)) == [{1, 2}, set(), {3}, {0, 1, 4}]
    assert _kept(prune_matrix(rows, "top_k", 1)) == [{2}, set(), {3}, {0}]


VALID = [("top_k", 1), ("top_k", 3.0), ("top_k", 2.0000001),  # 2.0000001 is the float 2.0
         ("max_ratio", 0), ("max_ratio", 0.999), ("alpha_mass", 0), ("abs_value", 0), ("abs_value", 1e6),
         ("none", 5.0)]
INVALID = [("top_k", 0, "positive integer"), ("top_k", -1, "positive integer"), ("top_k", 2.5, "positive integer"),
           ("max_ratio", 1.0, r"\[0, 1\)"), ("max_ratio", -0.01, r"\[0, 1\)"),
           ("max_ratio", 0.99999999, r"\[0, 1\)"),  # the float 1.0
           ("alpha_mass", 1.0, r"\[0, 1\)"), ("alpha_mass", float("nan"), r"\[0, 1\)"),
           ("abs_value", -1e-9, "non-negative"), ("bogus", 1, "prune_type must be one of")]


@pytest.mark.parametrize("prune_type,ratio", VALID)
def test_valid_ratios_as_is_valid_prune_ratio(prune_type, ratio):
    assert is_valid_prune_ratio(prune_type, ratio)
    for validate in (eval_validate, deploy_validate):
        validate(prune_type, ratio)


@pytest.mark.parametrize("prune_type,ratio,message", INVALID)
def test_invalid_ratios_are_rejected_by_eval_and_deploy(prune_type, ratio, message):
    for call in (lambda: eval_validate(prune_type, ratio), lambda: deploy_validate(prune_type, ratio),
                 lambda: prune_matrix(sp.csr_matrix([[1.0]]), prune_type, ratio),
                 lambda: prune_features({"a": 1.0}, prune_type, ratio)):
        with pytest.raises(ValueError, match=message):
            call()


def test_non_positive_weights_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        prune_matrix(sp.csr_matrix(np.array([[-1.0, 2.0]], dtype=np.float32)), "top_k", 1)
    with pytest.raises(ValueError, match="positive"):
        prune_features({"a": 0.0, "b": 1.0}, "max_ratio", 0.1)


def _java(row: dict, prune_type: str, ratio: float) -> set:
    """PruneUtils transcribed loop by loop with float32 scalars (ties: iteration order, i.e. the lower column)."""
    r = f32(ratio)
    entries = sorted(row.items(), key=lambda kv: -kv[1])  # stable, as Java's List.sort
    if prune_type == "top_k":
        return {k for k, _ in entries[:int(r)]}
    if prune_type == "max_ratio":
        limit = f32(r * max(row.values(), default=f32(0)))  # orElse(0f)
        return {k for k, v in row.items() if v >= limit}
    if prune_type == "abs_value":
        return {k for k, v in row.items() if v >= r}
    total = f32(sum(float(v) for v in row.values()))
    top_sum, kept = f32(0), set()
    for k, v in entries:
        top_sum = f32(top_sum + v)
        if top_sum <= f32(r * total):
            kept.add(k)
    return kept


def _random_rows(seed=5, n=300, vocab=400):
    """Varied row lengths (0 to ~200), SPLADE-like weights, and many ties (weights rounded to 1/64)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 200, size=n)
    rows, cols, vals = [], [], []
    for i, length in enumerate(lengths):
        c = rng.choice(vocab, size=length, replace=False)
        v = rng.lognormal(-1.0, 1.0, size=length).astype(np.float32)
        if i % 2:
            v = np.maximum(np.round(v * 64) / 64, 1 / 64).astype(np.float32)
        rows += [i] * length
        cols += c.tolist()
        vals += v.tolist()
    return sp.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(n, vocab))


@pytest.mark.parametrize("prune_type,ratio", [("top_k", 1), ("top_k", 17), ("top_k", 500), ("max_ratio", 0.1),
                                              ("max_ratio", 0.5), ("abs_value", 0.3), ("alpha_mass", 0.3),
                                              ("alpha_mass", 0.8), ("alpha_mass", 0.95)])
def test_matrix_matches_the_java_transcription_on_random_rows(prune_type, ratio):
    m = _random_rows()
    got = _kept(prune_matrix(m, prune_type, ratio))
    for i in range(m.shape[0]):
        row = dict(zip(m[i].indices.tolist(), (f32(v) for v in m[i].data)))
        assert got[i] == _java(row, prune_type, ratio), (i, prune_type, ratio)


@pytest.mark.parametrize("prune_type,ratio", [("none", 0), ("top_k", 5), ("max_ratio", 0.2), ("abs_value", 0.05),
                                              ("alpha_mass", 0.6)])
def test_eval_and_deploy_store_identical_vectors(tiny_model_dir, prune_type, ratio):
    """What run_eval indexes (eval.index.prune on the encoded matrix) and what deploy sends to a cluster
    (FeatureVocabulary.to_features) are the same weights on the same ids, for encoded real text."""
    from tests.tiny import SENTENCES
    from training import SparseEncoder

    encoder = SparseEncoder.from_pretrained(tiny_model_dir)
    matrix = encoder.encode(SENTENCES, top_k=encoder.vocab_size, threshold=0.0).matrix
    local = eval_prune(matrix, prune_type, ratio)
    sent = FeatureVocabulary.from_encoder(encoder).to_features(matrix, "sparse_vector", prune_type, ratio)
    assert local.nnz > 0
    for i, features in enumerate(sent):
        row = local[i]
        assert {int(k): f32(v) for k, v in features.items()} == dict(zip(row.indices.tolist(), row.data))
    if prune_type != "none":
        assert local.nnz < matrix.nnz


def test_types_are_one_list():
    from deploy.features import PRUNE_TYPES as deploy_types
    from eval.index import PRUNE_TYPES as eval_types

    assert deploy_types is eval_types is PRUNE_TYPES
