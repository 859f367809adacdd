"""Export artifacts: the OpenSearch zips and configs, TorchScript / ONNX parity with the eager model, and the
feature naming shared by every OpenSearch path."""
import hashlib
import json
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from deploy.features import FeatureVocabulary
from deploy.ml_commons import SparseEncodingModule, export_opensearch, opensearch_idf
from training import SparseEncoder

TEXTS = ["머신러닝 모델은 데이터에서 패턴을 학습한다.", "추천 시스템", "A search engine indexes documents.",
         "Seoul is the capital of South Korea. 서울은 대한민국의 수도이다."]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=["hangul", "latin"]).eval()


@pytest.fixture(scope="module")
def doc_only(tiny_model_dir):
    return SparseEncoder.from_pretrained(tiny_model_dir, mode="doc_only").eval()


@pytest.fixture(scope="module")
def exported(encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("os_export")
    return out, export_opensearch(encoder, out, name="tiny-ko-sparse")


def _eager(encoder, texts):
    batch = encoder.tokenize(texts)
    with torch.no_grad():
        return batch, encoder.encode_documents(batch["input_ids"], batch["attention_mask"])


def _load_zip_model(zip_path, tmp_path):
    with zipfile.ZipFile(zip_path) as zf:
        zf.extract("model.pt", tmp_path)
    return torch.jit.load(str(tmp_path / "model.pt"))


def test_opensearch_zip_holds_what_ml_commons_reads(exported):
    out, paths = exported
    with zipfile.ZipFile(paths["encoding_zip"]) as zf:
        assert sorted(zf.namelist()) == ["model.pt", "tokenizer.json"]
        tok = json.loads(zf.read("tokenizer.json"))
    # the document limit defaults to the backbone's positions: the tiny model's 128
    assert tok["truncation"]["max_length"] == 128 and tok["model"]["type"] == "WordPiece"
    assert "tokenize_zip" not in paths  # bi-encoder models ship no query tokenizer


def test_config_hash_is_sha256_of_the_zip(exported):
    _, paths = exported
    config = json.loads(paths["encoding_config"].read_text())
    data = paths["encoding_zip"].read_bytes()
    assert config["model_content_hash_value"] == hashlib.sha256(data).hexdigest()
    assert config["model_content_size_in_bytes"] == len(data)
    assert config["model_format"] == "TORCH_SCRIPT" and config["function_name"] == "SPARSE_ENCODING"
    assert set(config) == {"name", "version", "model_format", "function_name", "model_content_size_in_bytes",
                           "model_content_hash_value", "description"}


@pytest.mark.parametrize("texts", [TEXTS, TEXTS[:1], TEXTS[2:3]], ids=["batch", "korean", "english"])
def test_torchscript_equals_eager(encoder, exported, tmp_path, texts):
    traced = _load_zip_model(exported[1]["encoding_zip"], tmp_path)
    batch, expected = _eager(encoder, texts)
    with torch.no_grad():
        got = traced({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    assert set(got) == {"output"} and got["output"].shape == expected.shape
    torch.testing.assert_close(got["output"], expected, atol=1e-5, rtol=0)
    assert (got["output"][:, encoder.tokenizer.all_special_ids] == 0).all()


def test_doc_only_exports_the_query_tokenizer(doc_only, tmp_path):
    paths = export_opensearch(doc_only, tmp_path, name="tiny-doc-only")
    with zipfile.ZipFile(paths["tokenize_zip"]) as zf:
        assert sorted(zf.namelist()) == ["idf.json", "tokenizer.json"]
        idf = json.loads(zf.read("idf.json"))
        assert json.loads(zf.read("tokenizer.json"))["truncation"]["max_length"] == doc_only.config.max_query_length
    config = json.loads(paths["tokenize_config"].read_text())
    assert config["function_name"] == "SPARSE_TOKENIZE"
    assert config["model_content_hash_value"] == hashlib.sha256(paths["tokenize_zip"].read_bytes()).hexdigest()
    assert idf == opensearch_idf(doc_only) and "[CLS]" not in idf and "." not in idf and "서울은" in idf


def test_feature_names_follow_ml_commons_decoding(encoder):
    features = FeatureVocabulary.from_encoder(encoder)
    vocab = encoder.tokenizer.get_vocab()
    assert features.names[vocab["[CLS]"]] == "" and not features.served[[vocab["[CLS]"], vocab["."]]].any()
    cont = next(t for t in vocab if t.startswith("##"))
    assert features.names[vocab[cont]] == cont  # a lone WordPiece continuation decodes with its '##'
    _, weights = _eager(encoder, TEXTS)
    dicts = features.to_features(sp.csr_matrix(weights.numpy()))
    assert all(k and "." not in k for d in dicts for k in d)
    ids = features.to_features(sp.csr_matrix(weights.numpy()), field_type="sparse_vector")
    assert [sorted(map(int, d)) for d in ids] == [sorted(vocab[k] for k in d) for d in dicts]


def test_onnx_equals_eager_with_dynamic_axes(encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    from deploy.onnx_export import export_onnx, run_onnx

    path = export_onnx(encoder, tmp_path)
    for texts in (TEXTS, TEXTS[:1], TEXTS[2:3]):  # batch 4 / 1, Korean / English, lengths unlike the export's
        batch, expected = _eager(encoder, texts)
        got = run_onnx(path, batch["input_ids"].numpy(), batch["attention_mask"].numpy())
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)


def test_run_export_opensearch_writes_zip_config_pipeline_and_index(tiny_model_dir, tmp_path):
    from run_export import main

    assert main(["--model", str(tiny_model_dir), "--target", "opensearch", "--output", str(tmp_path),
                 "--name", "tiny", "--prune", "top_k:64"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.json", "ingest_pipeline.json", "tiny-sparse-encoding.config.json", "tiny-sparse-encoding.zip"]
    processor = json.loads((tmp_path / "ingest_pipeline.json").read_text())["processors"][0]["sparse_encoding"]
    assert (processor["prune_type"], processor["prune_ratio"]) == ("top_k", 64.0)
    with pytest.raises(SystemExit):
        main(["--model", str(tiny_model_dir), "--target", "opensearch", "--output", str(tmp_path),
              "--prune", "max_ratio:2"])
