"""training.soup: the weighted mean of models fine-tuned from one backbone, and the mixes it refuses."""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tests.tiny import SENTENCES, build_tiny_model
from training.encoder import SparseEncoder
from training.soup import SoupError, main, soup


def _finetuned(base_dir, out_dir, seed, **config):
    """The base model with every float weight moved by seeded noise: a stand-in for one fine-tuning run."""
    model = SparseEncoder.from_pretrained(base_dir, allowed_scripts=["hangul", "latin"], **config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [_finetuned(tiny_model_dir, root / f"run{i}", seed=i) for i in range(3)]


@pytest.mark.parametrize("weights", [None, [3.0, 1.0, 0.0]])
def test_the_soup_holds_the_weighted_mean_of_every_saved_tensor(runs, tmp_path, weights):
    out = soup(runs, tmp_path / "soup", weights)
    files = [load_file(str(r / "model.safetensors")) for r in runs]
    souped = load_file(str(out / "model.safetensors"))
    w = np.asarray(weights or [1.0, 1.0, 1.0]) / sum(weights or [1.0, 1.0, 1.0])
    assert souped.keys() == files[0].keys()
    for key, value in souped.items():
        expected = sum(wi * f[key].astype(np.float64) for wi, f in zip(w, files))
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=key)
    assert json.loads((out / "soup.json").read_text())["weights"] == pytest.approx(list(w))


def test_the_soup_is_a_model_that_encodes_between_its_ingredients(runs, tmp_path):
    """Loaded like any saved model; masked ids stay exactly 0 and its vectors are new (neither ingredient's)."""
    out = soup(runs[:2], tmp_path / "soup")
    models = [SparseEncoder.from_pretrained(p).eval() for p in (*runs[:2], out)]
    vectors = [m.encode(SENTENCES, is_query=False).matrix.toarray() for m in models]
    mask = models[2].output_mask.numpy() == 0
    assert not vectors[2][:, mask].any()
    assert vectors[2].any(axis=1).all()
    assert not np.allclose(vectors[2], vectors[0]) and not np.allclose(vectors[2], vectors[1])


def test_models_of_other_vocabularies_or_settings_are_refused_and_nothing_is_written(runs, tmp_path):
    other_vocab = build_tiny_model(tmp_path / "other", texts=SENTENCES[:6], vocab_size=200)
    with pytest.raises(SoupError, match="other: its tokenizer's vocabulary differs"):
        soup([runs[0], other_vocab], tmp_path / "out")
    longer = _finetuned(runs[0], tmp_path / "longer", seed=7, max_query_length=64)
    with pytest.raises(SoupError, match="longer: sparse_config.json max_query_length is 64"):
        soup([runs[0], longer], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_the_command_line_names_the_problem_in_one_line_and_exits_2(runs, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.safetensors").write_text("")
    assert main([str(runs[0]), str(runs[1]), "--output", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.strip() == f"soup: {tmp_path / 'taken'}: exists and is not empty"
    assert main([str(runs[0]), str(runs[1]), "--weights", "1", "--output", str(tmp_path / "x")]) == 2
    assert "2 models" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main([str(runs[0]), str(runs[1]), "--output", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "soup.json").exists()
