"""SparseIndex against brute-force dense dot products and FeatureField rounding by hand."""
import struct

import numpy as np
import pytest
import scipy.sparse as sp

from builders.ranking import top_k
from eval.index import SparseIndex, feature_field_round


def _random_sparse(rng, n, vocab, density):
    m = sp.random(n, vocab, density=density, random_state=rng, format="csr", dtype=np.float32)
    m.data = np.ceil(m.data * 16) / 8  # multiples of 1/8: sums are exact, so ties are exact too
    return m


@pytest.mark.parametrize("opensearch", [False, True])
def test_search_equals_brute_force(opensearch):
    rng = np.random.default_rng(0)
    docs = _random_sparse(rng, 300, 500, 0.03)
    docs = sp.vstack([docs, docs[:20]], format="csr")  # duplicates: exact ties, lower index must win
    queries = _random_sparse(rng, 57, 500, 0.05)
    index = SparseIndex(docs, opensearch=opensearch)
    dense_docs = docs.toarray()
    if opensearch:
        dense_docs = feature_field_round(dense_docs)
    brute = queries.toarray().astype(np.float64) @ dense_docs.T.astype(np.float64)
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :25]
    indices, scores = index.search(queries, k=25, batch_size=10)  # several batches
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-6)
    np.testing.assert_allclose(index.scores(queries), brute, rtol=1e-6)


@pytest.mark.parametrize("opensearch", [False, True])
def test_single_query_posting_lists_equal_brute_force(opensearch):
    """One query at a time takes the posting-list path; ties (duplicated documents) still go to the lower index."""
    rng = np.random.default_rng(1)
    docs = _random_sparse(rng, 300, 400, 0.04)
    docs = sp.vstack([docs[:30], docs], format="csr")
    queries = _random_sparse(rng, 40, 400, 0.05)
    index = SparseIndex(docs, opensearch=opensearch)
    dense_docs = feature_field_round(docs.toarray()) if opensearch else docs.toarray()
    brute = queries.toarray().astype(np.float64) @ dense_docs.T.astype(np.float64)
    for i in range(queries.shape[0]):
        indices, scores = index.search(queries[i], k=7)
        expected = np.argsort(-brute[i], kind="stable")[:7]
        np.testing.assert_array_equal(indices[0], expected)
        np.testing.assert_allclose(scores[0], brute[i, expected], rtol=1e-6)


def test_two_phase_search_rescores_the_pruned_query_window():
    """Phase one ranks by the query terms >= ratio x max weight, phase two rescores its top k x rate with all terms."""
    rng = np.random.default_rng(2)
    docs = _random_sparse(rng, 400, 300, 0.05)
    queries = _random_sparse(rng, 30, 300, 0.08)
    ratio, rate, k = 0.5, 3.0, 5
    index = SparseIndex(docs, two_phase_ratio=ratio, expansion_rate=rate)
    dense_docs = docs.toarray().astype(np.float64)
    approximate = 0
    for i in range(queries.shape[0]):
        q = queries[i].toarray().ravel().astype(np.float64)
        first = np.where(q >= q.max() * ratio, q, 0) @ dense_docs.T
        window = np.argsort(-first, kind="stable")[:int(k * rate)]
        full = dense_docs[window] @ q
        expected = window[np.lexsort((window, -full))][:k]
        indices, scores = index.search(queries[i], k=k)
        np.testing.assert_array_equal(indices[0], expected)
        np.testing.assert_allclose(scores[0], dense_docs[expected] @ q, rtol=1e-6)
        approximate += not np.array_equal(expected, np.argsort(-(dense_docs @ q), kind="stable")[:k])
    assert approximate > 0  # the window really cuts: this is not exact search under another name
    exact = SparseIndex(docs).search(queries, k=k)[0]
    np.testing.assert_array_equal(SparseIndex(docs, two_phase_ratio=0.5, expansion_rate=100).search(queries, k=k)[0],
                                  exact)  # a window over the whole corpus is exact
    with pytest.raises(ValueError, match="two_phase_ratio"):
        SparseIndex(docs, two_phase_ratio=1.0)


def test_top_k_ties_and_short_rows():
    block = np.array([[1, 3, 3, 2, 3], [0, 0, 0, 0, 0]], dtype=np.float32)
    cols, vals = top_k(block, 2)
    np.testing.assert_array_equal(cols, [[1, 2], [0, 1]])
    np.testing.assert_array_equal(vals, [[3, 3], [0, 0]])
    rng = np.random.default_rng(4)
    for row in rng.integers(0, 4, size=(200, 30)).astype(np.float32):  # one row, many ties around the k-th score
        for k in (1, 5, 12):
            cols, vals = top_k(row[None, :], k)
            expected = np.lexsort((np.arange(30), -row))[:k]  # score descending, then lower column
            np.testing.assert_array_equal(cols[0], expected)
            np.testing.assert_array_equal(vals[0], row[expected])
    index = SparseIndex(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    cols, _ = index.search(sp.csr_matrix(np.ones((1, 3), dtype=np.float32)), k=10)
    np.testing.assert_array_equal(cols, [[0, 1, 2]])  # k capped at the corpus size
    with pytest.raises(ValueError, match="columns"):
        index.search(sp.csr_matrix(np.ones((1, 4), dtype=np.float32)))


def _java_feature_field(v: float) -> float:
    """Float.intBitsToFloat((Float.floatToIntBits(v) >>> 15) << 15), written with struct."""
    bits = struct.unpack(">I", struct.pack(">f", v))[0]
    return struct.unpack(">f", struct.pack(">I", (bits >> 15) << 15))[0]


def test_feature_field_rounding():
    values = np.array([0.1, 1.0, 3.14159, 2.5e-3, 123.456, 7.0], dtype=np.float32)
    got = feature_field_round(values)
    assert got.dtype == np.float32
    assert got.tolist() == [_java_feature_field(float(v)) for v in values]
    assert got[0] == 0.099853515625 and got[1] == 1.0 and got[5] == 7.0
    assert np.all(got <= values) and np.all(got > values * (1 - 2 ** -8))  # truncation, 9 significant bits


ROW = [0.1, 0.5, 1.0, 0.3, 0.1]  # token ids 0..4 (the pruning rules themselves: tests/test_pruning.py)


def test_index_applies_pruning_before_rounding():
    docs = sp.csr_matrix(np.array([ROW], dtype=np.float32))
    index = SparseIndex(docs, opensearch=True, prune_type="top_k", prune_ratio=2)
    assert index.documents.indices.tolist() == [1, 2]
    assert index.documents.data.tolist() == [_java_feature_field(0.5), 1.0]
