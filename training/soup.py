"""Model soups: the weighted element-wise mean of sparse models fine-tuned from one backbone.

Runs that start from the same weights and differ in seed or settings stay in one basin of the loss, and the mean of
their weights keeps what they learned in common: it usually beats each of them, out of domain most ("Model soups",
Wortsman et al. 2022). On the ko-en recipe the mean of two seeds gained on all six benchmarks over each (cross-lingual
+0.04) and made texts denser (docs/results/experiments.md, "A soup of two seeds of one configuration").

    python -m training.soup --output outputs/soup outputs/run-a outputs/run-b [...] [--weights 2 1 ...]

Only models that share the tokenizer, the sparse settings and every tensor's shape can be mixed; anything else is
refused with the folder and what differs, and nothing is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from .backbones import build_once
from .encoder import SparseEncoder

SOUP_FILE = "soup.json"


class SoupError(ValueError):
    """The models cannot be averaged (or the output cannot be written); the message names the folder."""


def _same_model_family(first: SparseEncoder, other: SparseEncoder, first_path: str, path: str) -> None:
    if first.tokenizer.get_vocab() != other.tokenizer.get_vocab():
        raise SoupError(f"{path}: its tokenizer's vocabulary differs from {first_path}'s")
    a, b = asdict(first.config), asdict(other.config)
    for key in a:
        if a[key] != b[key]:
            raise SoupError(f"{path}: sparse_config.json {key} is {b[key]!r}, {first_path} has {a[key]!r}")
    if not torch.equal(first.output_mask, other.output_mask):
        raise SoupError(f"{path}: its output mask (allowed and served ids) differs from {first_path}'s")


def soup(models: Sequence[str | Path], output_dir: str | Path, weights: Optional[Sequence[float]] = None) -> Path:
    """Save the weighted mean (weights normalised to sum 1; default uniform) of `models` to `output_dir`, a full
    model folder (toolkit, sentence-transformers and OpenSearch layouts) plus soup.json naming the ingredients."""
    models = [str(m) for m in models]
    if len(models) < 2:
        raise SoupError("a soup needs at least two models")
    if weights is None:
        weights = [1.0] * len(models)
    if len(weights) != len(models):
        raise SoupError(f"--weights: {len(weights)} weights for {len(models)} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise SoupError(f"--weights must be non-negative with a positive sum, got {list(weights)}")
    weights = [w / sum(weights) for w in weights]
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise SoupError(f"{output_dir}: exists and is not empty")
    for path in models:
        if not Path(path).is_dir():
            raise SoupError(f"{path}: not a model folder")

    first = SparseEncoder.from_pretrained(models[0])
    state = first.state_dict()
    total = {k: v.double() * weights[0] for k, v in state.items() if v.is_floating_point()}
    for path, weight in tqdm(list(zip(models[1:], weights[1:])), desc="souping", unit="model"):
        other = SparseEncoder.from_pretrained(path)
        _same_model_family(first, other, models[0], path)
        other_state = other.state_dict()
        if other_state.keys() != state.keys():
            missing = sorted(state.keys() ^ other_state.keys())
            raise SoupError(f"{path}: its tensors differ from {models[0]}'s ({', '.join(missing[:3])})")
        for key, value in other_state.items():
            if value.shape != state[key].shape:
                raise SoupError(f"{path}: {key} has shape {tuple(value.shape)}, {models[0]} has "
                                f"{tuple(state[key].shape)}")
            if key in total:
                total[key] += value.double() * weight
            elif not torch.equal(value, state[key]):  # integer buffers (position ids) must agree, not be averaged
                raise SoupError(f"{path}: {key} differs from {models[0]}'s and cannot be averaged")
        del other, other_state
    first.load_state_dict({k: v.to(state[k].dtype) for k, v in total.items()}, strict=False)

    def write(folder: Path) -> None:
        first.save_pretrained(folder)
        (folder / SOUP_FILE).write_text(json.dumps(
            {"models": models, "weights": weights}, indent=2, ensure_ascii=False) + "\n")

    return build_once(output_dir, write)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders fine-tuned from one backbone")
    parser.add_argument("--output", required=True, help="the new model folder (must not exist or be empty)")
    parser.add_argument("--weights", nargs="+", type=float, help="one per model (normalised); default uniform")
    args = parser.parse_args(argv)
    try:
        out = soup(args.models, args.output, args.weights)
    except SoupError as e:
        print(f"soup: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: the mean of {len(args.models)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
