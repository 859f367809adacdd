"""Sparsity, FLOPS and language shares on hand-computed cases."""
import numpy as np
import pytest
import scipy.sparse as sp

from eval.stats import flops, language_shares, sparsity_stats
from tests.tiny import build_tokenizer
from training.vocab import token_scripts


def test_flops_and_active_terms():
    queries = sp.csr_matrix(np.array([[1, 1, 0], [2, 0, 0]], dtype=np.float32))
    docs = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float32))
    assert flops(queries, docs) == pytest.approx(1 * 0.5 + 0.5 * 0.5 + 0 * 1)
    stats = sparsity_stats(queries, docs)
    assert stats["avg_query_terms"] == 1.5 and stats["avg_doc_terms"] == 2.0


def test_query_term_tail():
    """Row i of a lower-triangular matrix has i + 1 terms: 1..100. The 99th percentile, interpolated between the
    99th and 100th of the sorted counts (99 and 100) at 0.99 * 99 = 98.01, is 99.01; the mean 50.5."""
    queries = sp.csr_matrix(np.tril(np.ones((100, 100), dtype=np.float32)))
    stats = sparsity_stats(queries, queries[:3])
    assert stats["p99_query_terms"] == pytest.approx(99.01) and stats["max_query_terms"] == 100
    assert stats["avg_query_terms"] == 50.5
    assert stats["max_doc_terms"] == 3 and stats["p99_doc_terms"] == pytest.approx(2.98)  # 2 + 0.98 * (3 - 2)


def test_language_shares_use_training_script_rules():
    tok = build_tokenizer()
    vocab = tok.get_vocab()
    ko, en, dot = vocab["서울은"], vocab["seoul"], vocab["."]
    m = sp.lil_matrix((2, len(tok)), dtype=np.float32)
    m[0, ko], m[0, en], m[1, dot], m[1, tok.cls_token_id] = 3.0, 1.0, 1.0, 5.0
    shares = language_shares(m.tocsr(), token_scripts(tok))
    assert shares == pytest.approx({"hangul": 0.3, "latin": 0.1, "common": 0.1, "other": 0.0})  # special: none
    stats = sparsity_stats(m.tocsr()[:1], m.tocsr(), tok)
    assert stats["query_hangul_share"] == pytest.approx(0.75) and stats["doc_latin_share"] == pytest.approx(0.1)
