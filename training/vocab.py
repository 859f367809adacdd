"""Which script each vocabulary piece is written in, and the allowed-vocabulary mask built from it.

The mask is the structural form of "suppress non-target languages": a disallowed id is exactly 0 in every output.
"""
from __future__ import annotations

import unicodedata

import numpy as np
import torch

from builders.scripts import is_hangul

SCRIPTS = ("special", "hangul", "latin", "common", "other")
# "common" is digits and punctuation; an allowed-scripts list may name either part alone (punctuation-only pieces
# such as "," or "?" are expansion noise no keyword analyser indexes, digits carry years, sizes and model numbers).
COMMON_PARTS = ("digits", "punctuation")
MASK_SCRIPTS = SCRIPTS + COMMON_PARTS
DEFAULT_ALLOWED_SCRIPTS = ("hangul", "latin", "common")
_WORD_STARTS = ("\u2581", "\u0120")  # SentencePiece word start, byte-BPE space
_PIECE_MARKERS = ("##", *_WORD_STARTS)  # and WordPiece's continuation


def _is_latin(ch: str) -> bool:
    return ch.isalpha() and "LATIN" in unicodedata.name(ch, "")


def piece_script(piece: str) -> str:
    """Script of one vocabulary piece: hangul, latin, common (digits, ASCII punctuation) or other."""
    for marker in _PIECE_MARKERS:
        if piece.startswith(marker):
            piece = piece[len(marker):]
    if any(is_hangul(ch) for ch in piece):
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


def continuation_pieces(tokenizer) -> np.ndarray:
    """Bool array [vocab_size]: pieces that continue a word ("ed" of "▁walk" "ed", WordPiece's "##ed") rather than
    start one. Special tokens are not continuations."""
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        wordpiece = type(backend.model).__name__ == "WordPiece"
    else:  # a slow tokenizer: by its pieces (a SentencePiece vocabulary may hold a "###" piece of its own)
        wordpiece = sum(p.startswith("##") for p in vocab) > sum(p.startswith(_WORD_STARTS) for p in vocab)
    mask = np.zeros(size, dtype=bool)
    for piece, idx in vocab.items():
        mask[idx] = piece.startswith("##") if wordpiece else not piece.startswith(_WORD_STARTS)
    mask[list(special_token_ids(tokenizer))] = False
    return mask


def special_token_ids(tokenizer) -> set[int]:
    """The toolkit's one notion of a special token: the tokenizer's special ids and every added token marked
    special (zero in every output, excluded from scripts, pushed down by a warmed-up head's bias)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False))
    return ids


def common_part(piece: str) -> str:
    """Which part of "common" a common piece is: digits when it holds one, else punctuation."""
    return "digits" if any(ch.isdigit() for ch in piece) else "punctuation"


def allowed_vocab_mask(tokenizer, scripts=DEFAULT_ALLOWED_SCRIPTS) -> torch.Tensor:
    """Bool [vocab_size]: True where the piece's script (or its part of "common") is in `scripts`; special tokens
    are never allowed."""
    unknown = set(scripts) - set(MASK_SCRIPTS)
    if unknown:
        raise ValueError(f"unknown scripts {sorted(unknown)}; choose from {MASK_SCRIPTS}")
    wanted = set(scripts) | (set(COMMON_PARTS) if "common" in scripts else set())
    names = token_scripts(tokenizer)
    for piece, idx in tokenizer.get_vocab().items():
        if names[idx] == "common":
            names[idx] = common_part(piece)
    return torch.from_numpy(np.isin(names, list(wanted)) & (names != "special"))


def feature_names(tokenizer, vocab_size: int) -> list[str]:
    """What OpenSearch calls each output id: ML Commons names an id by decoding it alone with special tokens
    skipped (SparseEncodingTranslator, SparseTokenizerModel), so SentencePiece's "▁word" and "word" share a name."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    known = len(tokenizer)
    if backend is not None:
        names = backend.decode_batch([[i] for i in range(min(known, vocab_size))], skip_special_tokens=True)
    else:
        names = [tokenizer.decode([i], skip_special_tokens=True) for i in range(min(known, vocab_size))]
    return names + [""] * (vocab_size - len(names))


def is_valid_feature_name(name: str) -> bool:
    """Whether OpenSearch and Elasticsearch both accept `name` as a rank feature (non-empty, no '.')."""
    return bool(name) and "." not in name


def served_ids(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(served [vocab] bool, canonical [vocab] int64) for the feature names of every id.

    An id is served when its name is valid and no lower id has the same name; `canonical[i]` is the served id that
    carries id i's name (i itself for unnamed ids, which are never served). Making the encoder's output space the
    served ids means a cluster stores exactly the vector computed here, whatever rule it uses on name collisions."""
    first: dict[str, int] = {}
    canonical = np.arange(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        if is_valid_feature_name(name):
            canonical[i] = first.setdefault(name, i)
    served = np.zeros(len(names), dtype=bool)
    served[list(first.values())] = True
    return torch.from_numpy(served), torch.from_numpy(canonical)


def token_bag(input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab_size: int,
              canonical: torch.Tensor | None = None) -> torch.Tensor:
    """[batch, vocab] 0/1 indicator of the ids each text contains (padding excluded), each id moved to the
    served id of its name when `canonical` is given."""
    if canonical is not None:
        input_ids = canonical.to(input_ids.device)[input_ids]
    bag = torch.zeros(input_ids.shape[0], vocab_size, device=input_ids.device)
    bag.scatter_add_(1, input_ids, attention_mask.to(bag.dtype))
    return bag.clamp_(max=1.0)
