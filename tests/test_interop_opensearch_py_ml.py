"""opensearch-py-ml parity: for the same HF model folder, `run_export.py --target opensearch` and opensearch-py-ml 1.3
(`SparseEncodingModel`, `SparseTokenizeModel`) write zips with the layout ML Commons reads, the same register-config
fields, and TorchScript models that give identical outputs on the same inputs."""
import hashlib
import json
import os
import shutil
import sys
import types
import zipfile

import pytest
import torch
from tokenizers import Tokenizer

from tests.test_interop_st import SCRIPTS, real_texts
from tests.tiny import build_tiny_sentencepiece_model
from training import SparseEncoder

NAME, VERSION = "tiny-ko-sparse", "1.0.0"


def opensearch_py_ml_models():
    """opensearch_py_ml.ml_models' sparse classes. The package __init__ also imports its dense-model exporter,
    which needs `transformers.convert_graph_to_onnx` (removed in transformers 5) and mdutils; the sparse modules
    import neither, so the package is registered bare and only they are imported."""
    opensearch_py_ml = pytest.importorskip("opensearch_py_ml")
    if "opensearch_py_ml.ml_models" not in sys.modules:
        package = types.ModuleType("opensearch_py_ml.ml_models")
        package.__path__ = [os.path.join(os.path.dirname(opensearch_py_ml.__file__), "ml_models")]
        sys.modules["opensearch_py_ml.ml_models"] = package
    from opensearch_py_ml.ml_models.sparse_encoding_model import SparseEncodingModel
    from opensearch_py_ml.ml_models.sparse_tokenize_model import SparseTokenizeModel

    return SparseEncodingModel, SparseTokenizeModel


@pytest.fixture(scope="module")
def texts():
    return real_texts()


def hf_export(encoder, tmp_path):
    from run_export import main

    encoder.save_pretrained(tmp_path / "trained")
    assert main(["--model", str(tmp_path / "trained"), "--target", "hf", "--output", str(tmp_path / "hf")]) == 0
    return tmp_path / "hf"


def our_export(hf_dir, tmp_path):
    from run_export import main

    out = tmp_path / "ours"
    assert main(["--model", str(hf_dir), "--target", "opensearch", "--output", str(out), "--name", NAME,
                 "--version", VERSION]) == 0
    return out


def read_zip(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def torchscript(members, tmp_path, tag):
    """The zip's one TorchScript file, loaded (ML Commons takes the single *.pt whatever its name)."""
    pt = [n for n in members if n.endswith(".pt")]
    assert len(pt) == 1
    path = tmp_path / f"{tag}.pt"
    path.write_bytes(members[pt[0]])
    return torch.jit.load(str(path))


def tokenize(members, texts):
    """Tokenize as DJL does inside OpenSearch: the zip's tokenizer.json, its truncation, one text at a time."""
    tokenizer = Tokenizer.from_str(members["tokenizer.json"].decode("utf-8"))
    return [tokenizer.encode(t).ids for t in texts]


def assert_config_pair(ours: dict, theirs: dict, ours_zip, theirs_zip, function_name):
    assert set(ours) == set(theirs)
    for key in ("name", "version", "model_format", "function_name", "description"):
        assert ours[key] == theirs[key], key
    assert ours["function_name"] == function_name and ours["model_format"] == "TORCH_SCRIPT"
    for config, path in ((ours, ours_zip), (theirs, theirs_zip)):  # size and sha256 of its own zip
        data = path.read_bytes()
        assert config["model_content_size_in_bytes"] == len(data)
        assert config["model_content_hash_value"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("backbone", ["wordpiece", "sentencepiece"])
def test_sparse_encoding_zip_matches_opensearch_py_ml(backbone, tiny_model_dir, texts, tmp_path):
    """opensearch-py-ml zeroes only special tokens; the toolkit's mask (scripts, and for SentencePiece the ids
    whose name a lower id has) reaches its TorchScript through the saved decoder bias."""
    SparseEncodingModel, _ = opensearch_py_ml_models()
    model_dir = tiny_model_dir if backbone == "wordpiece" else build_tiny_sentencepiece_model(tmp_path / "sp")
    encoder = SparseEncoder.from_pretrained(model_dir, allowed_scripts=SCRIPTS).eval()
    hf_dir = hf_export(encoder, tmp_path)
    ours_dir = our_export(hf_dir, tmp_path)
    ours_zip = ours_dir / f"{NAME}-sparse-encoding.zip"
    ours_config = json.loads((ours_dir / f"{NAME}-sparse-encoding.config.json").read_text())

    reference = SparseEncodingModel(model_id=str(hf_dir), folder_path=str(tmp_path / "osml"), overwrite=True)
    theirs_zip = reference.save_as_pt(texts[:2], model_id=str(hf_dir), model_name="model.pt",
                                      zip_file_name=f"{NAME}.zip", add_apache_license=False)
    theirs_config = json.loads(open(reference.make_model_config_json(
        model_name=NAME, version_number=VERSION, description=ours_config["description"])).read())
    assert_config_pair(ours_config, theirs_config, ours_zip, tmp_path / "osml" / f"{NAME}.zip", "SPARSE_ENCODING")

    ours, theirs = read_zip(ours_zip), read_zip(theirs_zip)
    assert sorted(ours) == sorted(theirs) == ["model.pt", "tokenizer.json"]
    assert tokenize(ours, texts) == tokenize(theirs, texts)
    ours_model, theirs_model = torchscript(ours, tmp_path, "ours"), torchscript(theirs, tmp_path, "theirs")
    masked = encoder.output_mask == 0
    # one text at a time as ML Commons runs them, then a padded batch of a size and length unlike the trace's
    batches = [[t] for t in texts] + [texts]
    for batch in batches:
        features = encoder.tokenize(batch)
        inputs = {"input_ids": features["input_ids"], "attention_mask": features["attention_mask"]}
        with torch.no_grad():
            got, expected = ours_model(inputs)["output"], theirs_model(inputs)["output"]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert (expected[:, masked] == 0).all() and (expected > 0).any()


def test_sparse_tokenize_zip_matches_opensearch_py_ml(tiny_model_dir, texts, tmp_path, monkeypatch):
    """SparseTokenizeModel downloads idf.json from the hub: the export is served from an offline HF cache."""
    import huggingface_hub.constants

    _, SparseTokenizeModel = opensearch_py_ml_models()
    encoder = SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=SCRIPTS, mode="doc_only").eval()
    with torch.no_grad():
        encoder.idf.copy_(torch.linspace(0.5, 4.0, encoder.vocab_size))
    hf_dir = hf_export(encoder, tmp_path)
    ours_dir = our_export(hf_dir, tmp_path)
    ours_zip = ours_dir / f"{NAME}-sparse-tokenize.zip"
    ours_config = json.loads((ours_dir / f"{NAME}-sparse-tokenize.config.json").read_text())

    commit = "2" * 40
    repo = tmp_path / "hub" / "models--ko-sparse--tiny-doc-only"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(hf_dir, repo / "snapshots" / commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    reference = SparseTokenizeModel(model_id="ko-sparse/tiny-doc-only", folder_path=str(tmp_path / "osml"),
                                    overwrite=True)
    theirs_zip = reference.save_as_pt(texts[:2], model_id="ko-sparse/tiny-doc-only",
                                      zip_file_name=f"{NAME}-tokenizer.zip", add_apache_license=False)
    theirs_config = json.loads(open(reference.make_model_config_json(
        model_name=ours_config["name"], version_number=VERSION, description=ours_config["description"])).read())
    assert_config_pair(ours_config, theirs_config, ours_zip, tmp_path / "osml" / f"{NAME}-tokenizer.zip",
                       "SPARSE_TOKENIZE")

    ours, theirs = read_zip(ours_zip), read_zip(theirs_zip)
    assert sorted(ours) == sorted(theirs) == ["idf.json", "tokenizer.json"]
    queries = [t for t in texts if len(encoder.tokenizer(t)["input_ids"]) <= encoder.config.max_query_length]
    assert tokenize(ours, queries) == tokenize(theirs, queries)
    # Every id the model can activate weighs the same in both: theirs is keyed by vocabulary piece, ours by the
    # name OpenSearch decodes (the same for WordPiece pieces).
    ours_idf, theirs_idf = json.loads(ours["idf.json"]), json.loads(theirs["idf.json"])
    active = (encoder.output_mask > 0).nonzero().flatten().tolist()
    pieces = encoder.id_to_token
    assert [ours_idf[pieces[i]] for i in active] == pytest.approx([theirs_idf[pieces[i]] for i in active])
