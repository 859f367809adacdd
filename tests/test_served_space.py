"""The encoder's output space is the feature space OpenSearch serves: ids ML Commons cannot name on their own, or
names a lower id already has, are exactly 0 everywhere, so local retrieval scores equal the scores a cluster
computes from the exported TorchScript / ONNX outputs named the way ML Commons names them."""
import zipfile
from collections import defaultdict

import numpy as np
import pytest
import torch

from deploy.features import FeatureVocabulary
from deploy.ml_commons import export_opensearch
from training import SparseEncoder
from tests.tiny import build_tiny_sentencepiece_model

DOCS = ["서울은 대한민국의 수도이다.", "Seoul is the capital of South Korea.", "추천 시스템은 사용자에게 상품을 추천한다.",
        "A search engine indexes documents and answers queries.", "딥러닝은 신경망을 여러 층으로 쌓는다. Deep learning."]
QUERIES = ["서울 수도", "recommender system 추천", "search engine 검색 엔진"]


@pytest.fixture(scope="module")
def sp_encoder(tmp_path_factory):
    path = build_tiny_sentencepiece_model(tmp_path_factory.mktemp("sp_mlm"))
    return SparseEncoder.from_pretrained(path, allowed_scripts=["hangul", "latin", "common"]).eval()


def ml_commons_names(tokenizer, vocab_size):
    """How ML Commons names ids: decode each one alone, skipping special tokens (one Python call per id)."""
    return [tokenizer.decode([i], skip_special_tokens=True) for i in range(vocab_size)]


def named(vector, names):
    """A [vocab] output row as ML Commons' translator stores it: {name: value} for non-zero entries, later ids
    overwriting earlier ones on a name collision; empty or dotted names are dropped."""
    out = {}
    for i in np.flatnonzero(vector):
        if names[i] and "." not in names[i]:
            out[names[i]] = float(vector[i])
    return out


def dot(a, b):
    return sum(v * b.get(k, 0.0) for k, v in a.items())


def test_served_ids_are_one_per_valid_name(sp_encoder):
    names = ml_commons_names(sp_encoder.tokenizer, sp_encoder.vocab_size)
    by_name = defaultdict(list)
    for i, n in enumerate(names):
        by_name[n].append(i)
    assert sum(len(v) > 1 for n, v in by_name.items() if n) > 5  # the tokenizer really has collisions
    mask = sp_encoder.output_mask.numpy() > 0
    for name, ids in by_name.items():
        if not name or "." in name:
            assert not mask[ids].any(), name
        else:
            assert not mask[ids[1:]].any(), name  # only the lowest id of a name may be active
    emb = sp_encoder.encode(DOCS)
    active = emb.matrix.indices
    assert len(active) and mask[active].all()
    # every name in a local vector is what ML Commons calls that id
    m = emb.matrix
    for r, d in enumerate(emb.to_dicts()):
        cols = m.indices[m.indptr[r]:m.indptr[r + 1]]
        assert sorted(d) == sorted(names[c] for c in cols)


def test_doc_only_query_bag_lands_on_the_served_id(tmp_path_factory):
    path = build_tiny_sentencepiece_model(tmp_path_factory.mktemp("sp_doc_only"))
    enc = SparseEncoder.from_pretrained(path, mode="doc_only").eval()
    names = ml_commons_names(enc.tokenizer, enc.vocab_size)
    q = enc.encode(QUERIES, is_query=True)
    batch = enc.tokenize(QUERIES, is_query=True)
    for r, ids in enumerate(batch["input_ids"].tolist()):
        expected = {names[i] for i, m in zip(ids, batch["attention_mask"][r].tolist())
                    if m and names[i] and "." not in names[i]}
        assert set(q.to_dicts()[r]) == expected


def test_local_scores_equal_scores_from_exported_outputs(sp_encoder, tmp_path):
    names = ml_commons_names(sp_encoder.tokenizer, sp_encoder.vocab_size)
    local_docs = sp_encoder.encode(DOCS).to_dicts()
    local_queries = sp_encoder.encode(QUERIES, is_query=True).to_dicts()
    local = np.array([[dot(q, d) for d in local_docs] for q in local_queries])

    paths = export_opensearch(sp_encoder, tmp_path, name="sp")
    with zipfile.ZipFile(paths["encoding_zip"]) as zf:
        zf.extract("model.pt", tmp_path)
    traced = torch.jit.load(str(tmp_path / "model.pt"))

    def torchscript(texts, is_query):
        out = []
        for t in texts:  # DJL feeds one text at a time
            b = sp_encoder.tokenize([t], is_query=is_query)
            with torch.no_grad():
                out.append(named(traced({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
                                 ["output"][0].numpy(), names))
        return out

    ts_docs, ts_queries = torchscript(DOCS, False), torchscript(QUERIES, True)
    cluster = np.array([[dot(q, d) for d in ts_docs] for q in ts_queries])
    np.testing.assert_allclose(cluster, local, rtol=1e-5, atol=1e-5)
    for a, b in zip(ts_docs, local_docs):
        assert set(a) == set(b)

    pytest.importorskip("onnxruntime")
    from deploy.onnx_export import export_onnx, run_onnx

    onnx_path = export_onnx(sp_encoder, tmp_path / "onnx")
    b = sp_encoder.tokenize(DOCS)
    onnx_docs = [named(row, names) for row in run_onnx(onnx_path, b["input_ids"].numpy(), b["attention_mask"].numpy())]
    onnx_scores = np.array([[dot(q, d) for d in onnx_docs] for q in ts_queries])
    np.testing.assert_allclose(onnx_scores, local, rtol=1e-5, atol=1e-5)


def test_feature_vocabulary_refuses_vectors_outside_the_served_space(sp_encoder):
    import scipy.sparse as sp

    features = FeatureVocabulary.from_encoder(sp_encoder)
    bad = int(np.flatnonzero(~features.served)[-1])
    matrix = sp.csr_matrix(([1.0], ([0], [bad])), shape=(1, sp_encoder.vocab_size))
    with pytest.raises(ValueError, match="not a served feature"):
        features.to_features(matrix)
