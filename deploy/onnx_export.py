"""ONNX export: the same computation as the OpenSearch TorchScript model (deploy.ml_commons.SparseEncodingModule),
with named inputs input_ids / attention_mask, output "output", and dynamic batch and sequence axes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .ml_commons import TOKENIZER_FILE, example_features, tokenizer_json

ONNX_FILE = "model.onnx"
INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "output"


class _PositionalSparseModule(nn.Module):
    """ONNX graphs take positional tensors, not a dict."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_documents(input_ids, attention_mask)


def export_onnx(encoder, output_dir, opset: int = 18) -> Path:
    """Write model.onnx (+ tokenizer.json and sparse_config.json so the folder is self-contained), then check it
    with onnxruntime against the eager model on a batch of a different size and length than the export one."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    encoder = encoder.to("cpu").eval()
    module = _PositionalSparseModule(encoder).eval()
    example = example_features(encoder)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path = output_dir / ONNX_FILE
    with torch.no_grad():
        torch.onnx.export(
            module, (example["input_ids"], example["attention_mask"]), str(path),
            input_names=INPUT_NAMES, output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            external_data=False,
        )
    (output_dir / TOKENIZER_FILE).write_text(tokenizer_json(encoder, encoder.config.max_seq_length),
                                             encoding="utf-8")
    (output_dir / "sparse_config.json").write_text(json.dumps(vars(encoder.config), indent=2) + "\n")
    check_onnx(path, module, encoder)
    return path


def run_onnx(path, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {"input_ids": input_ids.astype(np.int64),
                                       "attention_mask": attention_mask.astype(np.int64)})[0]


def check_onnx(path, module, encoder, atol: float = 1e-5) -> None:
    """Raise if onnxruntime disagrees with eager PyTorch on inputs shaped unlike the export example."""
    batch = encoder.tokenize(["희소 벡터", "OpenSearch uses an inverted index for sparse vectors.",
                              "검색 엔진은 문서를 색인하고 질의에 답한다."])
    with torch.no_grad():
        expected = module(batch["input_ids"], batch["attention_mask"]).numpy()
    got = run_onnx(path, batch["input_ids"].numpy(), batch["attention_mask"].numpy())
    if got.shape != expected.shape or not np.allclose(got, expected, atol=atol, rtol=0):
        raise RuntimeError(f"ONNX output differs from PyTorch (max abs diff "
                           f"{np.abs(got - expected).max() if got.shape == expected.shape else 'shape'})")
