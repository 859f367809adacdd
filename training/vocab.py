"""Which script each vocabulary piece is written in, and the allowed-vocabulary mask built from it.

The mask is the structural form of "suppress non-target languages": a disallowed id is exactly 0 in every output.
"""
from __future__ import annotations

import unicodedata

import numpy as np
import torch

SCRIPTS = ("special", "hangul", "latin", "common", "other")
DEFAULT_ALLOWED_SCRIPTS = ("hangul", "latin", "common")
_PIECE_MARKERS = ("##", "\u2581", "\u0120")  # WordPiece continuation, SentencePiece word start, byte-BPE space


def _is_hangul(ch: str) -> bool:
    cp = ord(ch)
    return 0xAC00 <= cp <= 0xD7A3 or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F or 0xA960 <= cp <= 0xA97F


def _is_latin(ch: str) -> bool:
    return ch.isalpha() and "LATIN" in unicodedata.name(ch, "")


def piece_script(piece: str) -> str:
    """Script of one vocabulary piece: hangul, latin, common (digits, ASCII punctuation) or other."""
    for marker in _PIECE_MARKERS:
        if piece.startswith(marker):
            piece = piece[len(marker):]
    if any(_is_hangul(ch) for ch in piece):
        return "hangul"
    if any(_is_latin(ch) for ch in piece):
        return "latin"
    if all(ch.isascii() for ch in piece):
        return "common"
    return "other"


def token_scripts(tokenizer) -> np.ndarray:
    """Array [vocab_size] of script names for every id of `tokenizer`; special tokens are 'special'."""
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    scripts = np.full(size, "other", dtype=object)
    for piece, idx in vocab.items():
        scripts[idx] = piece_script(piece)
    scripts[list(special_token_ids(tokenizer))] = "special"
    return scripts


def special_token_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False))
    return ids


def allowed_vocab_mask(tokenizer, scripts=DEFAULT_ALLOWED_SCRIPTS) -> torch.Tensor:
    """Bool [vocab_size]: True where the piece's script is in `scripts` (special tokens are never allowed)."""
    unknown = set(scripts) - set(SCRIPTS)
    if unknown:
        raise ValueError(f"unknown scripts {sorted(unknown)}; choose from {SCRIPTS}")
    names = token_scripts(tokenizer)
    return torch.from_numpy(np.isin(names, list(scripts)) & (names != "special"))
