"""The model artifacts OpenSearch ML Commons registers: a SPARSE_ENCODING zip (TorchScript + tokenizer.json), a
SPARSE_TOKENIZE zip for doc-only query encoding (tokenizer.json + idf.json), and their register configs.

Formats follow ML Commons' SparseEncodingTranslator and opensearch-py-ml's sparse model export: DJL feeds the
TorchScript module one dict argument {input_ids, attention_mask} (tensor names "input1.input_ids", ...) for a batch
of one text, reads the dict it returns, and names every non-zero entry of "output" by decoding its id with
tokenizer.json, which DJL also uses to tokenize (with the truncation written into that file)."""
from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

MODEL_FILE = "model.pt"
TOKENIZER_FILE = "tokenizer.json"
IDF_FILE = "idf.json"
SPARSE_ENCODING = "SPARSE_ENCODING"
SPARSE_TOKENIZE = "SPARSE_TOKENIZE"
TRACE_TEXTS = ["머신러닝 모델은 데이터에서 패턴을 학습한다.", "Sparse retrieval for OpenSearch."]


class SparseEncodingModule(nn.Module):
    """What runs inside OpenSearch: `encode_documents` (pooling and the served-vocabulary mask), so the cluster
    emits exactly the features computed locally."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"output": self.encoder.encode_documents(features["input_ids"], features["attention_mask"])}


def example_features(encoder, texts=TRACE_TEXTS) -> dict[str, torch.Tensor]:
    batch = encoder.tokenize(texts)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def trace_torchscript(encoder, path) -> torch.jit.ScriptModule:
    """Trace `SparseEncodingModule` on CPU in eval mode and save it; returns the traced module."""
    encoder = encoder.to("cpu").eval()
    module = SparseEncodingModule(encoder).eval()
    # The tracer warns about Python bools taken from shapes inside transformers' mask code; they are constant for
    # any (batch, sequence) shape, which the parity tests check on shapes unlike the trace example's.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example_features(encoder), strict=False, check_trace=False)
    torch.jit.save(traced, str(path))
    return traced


def tokenizer_json(encoder, max_length: int) -> str:
    """The fast tokenizer's tokenizer.json with truncation set to `max_length`: DJL truncates as that file says,
    so OpenSearch sees the same tokens as `SparseEncoder.tokenize`."""
    data = json.loads(encoder.tokenizer.backend_tokenizer.to_str())
    data["truncation"] = {"direction": "Right", "max_length": int(max_length), "strategy": "LongestFirst",
                          "stride": 0}
    return json.dumps(data, ensure_ascii=False)


def opensearch_idf(encoder) -> dict[str, float]:
    """idf.json keyed by the names SparseTokenizerModel looks up (decoded tokens; missing names weigh 1.0): the
    IDF of each served id under its name, which is what `SparseEncoder.encode_queries` gives every id of that name."""
    idf = encoder.idf.detach().cpu().tolist()
    served = (encoder.output_mask > 0).tolist()
    return {name: float(idf[i]) for i, name in enumerate(encoder.feature_names) if served[i]}


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register_config(zip_path, name: str, function_name: str, version: str = "1.0.0",
                    description: str = "") -> dict:
    """The body of ML Commons' register call for a local zip (sha256 and size of the zip itself)."""
    zip_path = Path(zip_path)
    return {
        "name": name,
        "version": version,
        "model_format": "TORCH_SCRIPT",
        "function_name": function_name,
        "model_content_size_in_bytes": zip_path.stat().st_size,
        "model_content_hash_value": sha256(zip_path),
        "description": description,
    }


def _write_zip(zip_path: Path, members: dict[str, bytes | Path]) -> None:
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, content in members.items():
            if isinstance(content, Path):
                zf.write(content, arcname=arcname)
            else:
                zf.writestr(arcname, content)


def export_opensearch(encoder, output_dir, name: str, version: str = "1.0.0",
                      description: Optional[str] = None) -> dict[str, Path]:
    """Write the SPARSE_ENCODING zip + config (and, for doc-only models, the SPARSE_TOKENIZE zip + config).
    Returns {artifact: path}."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = encoder.config
    mode = "doc-only (inference-free queries)" if cfg.mode == "doc_only" else "bi-encoder"
    description = description or f"Korean/English SPLADE sparse encoder, {mode}"
    out: dict[str, Path] = {}

    model_pt = output_dir / MODEL_FILE
    trace_torchscript(encoder, model_pt)
    enc_zip = output_dir / f"{name}-sparse-encoding.zip"
    _write_zip(enc_zip, {MODEL_FILE: model_pt,
                         TOKENIZER_FILE: tokenizer_json(encoder, cfg.max_seq_length).encode("utf-8")})
    model_pt.unlink()
    out["encoding_zip"] = enc_zip
    out["encoding_config"] = _write_json(
        output_dir / f"{name}-sparse-encoding.config.json",
        register_config(enc_zip, name, SPARSE_ENCODING, version, description))

    if cfg.mode == "doc_only":
        tok_zip = output_dir / f"{name}-sparse-tokenize.zip"
        idf = json.dumps(opensearch_idf(encoder), ensure_ascii=False).encode("utf-8")
        _write_zip(tok_zip, {TOKENIZER_FILE: tokenizer_json(encoder, cfg.max_query_length).encode("utf-8"),
                             IDF_FILE: idf})
        out["tokenize_zip"] = tok_zip
        out["tokenize_config"] = _write_json(
            output_dir / f"{name}-sparse-tokenize.config.json",
            register_config(tok_zip, f"{name}-tokenizer", SPARSE_TOKENIZE, version,
                            f"IDF-weighted query tokenizer paired with {name}"))
    return out


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
