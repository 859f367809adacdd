"""Context-gated expansion: a fresh gate is the plain model, the gate commutes with the fused projection-max,
gradients reach it, it saves / loads / resumes, trains under run_train (one process and two ranks), and the
TorchScript and ONNX exports equal the eager gated model."""
import json

import numpy as np
import pytest
import torch

from deploy.hub import model_card
from deploy.ml_commons import SparseEncodingModule, trace_torchscript
from deploy.onnx_export import export_onnx, run_onnx
from tests.test_distributed import real_setup, train_one_process_and_two_ranks  # noqa: F401  (real_setup: fixture)
from tests.test_training_run import update_gap
from training import SparseEncoder
from training.context_gate import GATE_FILE, require_ungated
from training.st_layout import write_layout

# varied lengths, Korean and English, so padding differs across rows
TEXTS = ["머신러닝 모델은 데이터에서 패턴을 학습한다.", "추천 시스템", "A search engine indexes documents and answers queries.",
         "서울은 대한민국의 수도이다. Seoul is the capital of South Korea. 희소 벡터는 어휘 공간에서 가중치를 가진다."]


def _randomise_gate(model, seed=0, scale=0.5):
    """A trained-looking gate: its output layer away from the zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.context_gate.out.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def _encode(model, texts=TEXTS):
    batch = model.tokenize(texts)
    with torch.no_grad():
        return batch, model.encode_documents(batch["input_ids"], batch["attention_mask"])


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    return SparseEncoder.from_pretrained(tiny_model_dir).eval()


@pytest.fixture()
def gated(tiny_model_dir):
    return _randomise_gate(SparseEncoder.from_pretrained(tiny_model_dir, context_gate=True)).eval()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "full_logits"])
def test_fresh_gate_is_the_plain_model(tiny_model_dir, plain, fused):
    model = SparseEncoder.from_pretrained(tiny_model_dir, context_gate=True).eval()
    model.fused_pooling = plain.fused_pooling = fused
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        gate = model.context_gate(model.mlm.base_model(**batch)[0], batch["attention_mask"])
        assert torch.equal(gate, torch.ones_like(gate))
        for group in ("doc", "query"):
            got = model(**{f"{group}_input_ids": batch["input_ids"], f"{group}_attention_mask": batch["attention_mask"]},
                        logits_for=("doc",))
            want = plain(**{f"{group}_input_ids": batch["input_ids"], f"{group}_attention_mask": batch["attention_mask"]},
                         logits_for=("doc",))
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    plain.fused_pooling = True


def test_gate_changes_outputs_and_commutes_with_the_fused_max(gated, plain):
    """g > 0 is constant over positions: gating the fused max equals gating every position's logits, then the max
    (the full-logits path), in values and in the gradients of backbone and gate."""
    batch = gated.tokenize(TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        assert (gated.encode_documents(ids, mask) - plain.encode_documents(ids, mask)).abs().max() > 1e-2
    results = []
    for fused in (True, False):
        gated.zero_grad()
        gated.fused_pooling = fused
        weights = gated.encode_documents(ids, mask)
        (weights * torch.linspace(0.5, 1.5, weights.shape[-1])).sum().backward()
        results.append((weights.detach(), {n: p.grad.clone() for n, p in gated.named_parameters()
                                           if p.grad is not None}))
    (w_fused, g_fused), (w_full, g_full) = results
    torch.testing.assert_close(w_fused, w_full, atol=1e-5, rtol=1e-5)
    assert g_fused.keys() == g_full.keys() and any(n.startswith("context_gate.") for n in g_fused)
    for name in g_fused:
        torch.testing.assert_close(g_fused[name], g_full[name], atol=1e-4, rtol=1e-4, msg=name)


def test_gradients_reach_the_gate(tiny_model_dir, gated):
    fresh = SparseEncoder.from_pretrained(tiny_model_dir, context_gate=True).train()
    for model, expect_all in ((fresh, False), (gated.train(), True)):
        batch = model.tokenize(TEXTS)
        model.encode_documents(batch["input_ids"], batch["attention_mask"]).sum().backward()
        grads = {n: p.grad for n, p in model.context_gate.named_parameters()}
        # at init only the zero output layer gets a gradient (its input is non-zero); once it has moved, all do
        assert grads["out.weight"] is not None and grads["out.weight"].abs().sum() > 0
        nonzero = {n for n, g in grads.items() if g is not None and g.abs().sum() > 0}
        assert nonzero == set(grads) if expect_all else {"out.weight", "out.bias"} <= nonzero


def test_save_and_load_keep_the_gate(gated, tiny_model_dir, tmp_path):
    gated.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / GATE_FILE).is_file()
    assert json.loads((tmp_path / "m" / "sparse_config.json").read_text())["context_gate"] is True
    loaded = SparseEncoder.from_pretrained(tmp_path / "m").eval()
    assert loaded.context_gate is not None
    torch.testing.assert_close(_encode(loaded)[1], _encode(gated)[1], atol=0, rtol=0)
    (tmp_path / "m" / GATE_FILE).unlink()
    with pytest.raises(ValueError, match="context_gate: true but context_gate.safetensors is missing"):
        SparseEncoder.from_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "modules.json").exists()  # no sentence-transformers layout: it would drop the gate
    with pytest.raises(ValueError, match="sentence-transformers layout"):
        write_layout(loaded, tmp_path / "m")
    require_ungated(SparseEncoder.from_pretrained(tiny_model_dir).config)  # a plain model passes
    assert "would silently drop the gate" in model_card(loaded, "gated")
    assert "context gate" not in model_card(SparseEncoder.from_pretrained(tiny_model_dir), "plain")


def test_gate_heads_must_divide_the_hidden_size(tiny_model_dir):
    with pytest.raises(ValueError, match="context_gate_heads=3 must divide"):
        SparseEncoder.from_pretrained(tiny_model_dir, context_gate=True, context_gate_heads=3)


def test_torchscript_and_onnx_equal_the_eager_gated_model(gated, tmp_path):
    traced = trace_torchscript(gated, tmp_path / "model.pt")
    reloaded = torch.jit.load(str(tmp_path / "model.pt"))
    path = export_onnx(gated, tmp_path / "onnx")
    for texts in (TEXTS, TEXTS[1:2], TEXTS[2:]):  # shapes unlike the trace example's
        batch, expected = _encode(gated, texts)
        with torch.no_grad():
            eager = SparseEncodingModule(gated)({"input_ids": batch["input_ids"],
                                                 "attention_mask": batch["attention_mask"]})["output"]
            script = reloaded({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})["output"]
        torch.testing.assert_close(eager, expected, atol=0, rtol=0)
        torch.testing.assert_close(script, expected, atol=1e-5, rtol=0)
        onnx = run_onnx(path, batch["input_ids"].numpy(), batch["attention_mask"].numpy())
        np.testing.assert_allclose(onnx, expected.numpy(), atol=1e-5, rtol=0)
    assert traced is not None


# ------------------------------------------------------------------------------------------------ training runs
def test_run_train_trains_saves_and_resumes_the_gate(tmp_path):
    """Every task (triplets, distillation, term pairs) through run_train with --context_gate true: the gate leaves
    its init, the final model and the checkpoint carry it, and resuming a checkpoint restores it."""
    import run_train
    from tests.tiny import SENTENCES, build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", dropout=0.0)
    ko = SENTENCES[0::2]
    rows = {"triplets.jsonl": [{"query": k[:8], "positive": k, "negatives": [x for x in ko if x != k][:2]} for k in ko],
            "terms.jsonl": [{"ko": k, "en": e} for k, e in [("머신러닝", "machine learning"), ("검색", "search"),
                                                           ("서울", "seoul"), ("데이터", "data")]],
            "distill.jsonl": [{"query": k[:6], "docs": ko[:4], "scores": [1, 2, 3, 4]} for k in ko]}
    for name, records in rows.items():
        (tmp_path / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                     encoding="utf-8")
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(model_dir), "--train_file", *(str(tmp_path / n) for n in rows),
            "--context_gate", "true", "--context_gate_hidden", "16", "--output_dir", str(out), "--max_steps", "6",
            "--per_device_train_batch_size", "4", "--save_steps", "6", "--report_to", "none", "--logging_steps", "1",
            "--learning_rate", "0.01", "--context_gate_learning_rate", "0.05", "--activation_weight", "1",
            "--max_seq_length", "32", "--seed", "3"]
    trainer, _ = run_train.build_trainer(args)
    metrics = run_train.train(trainer)
    assert {"info_nce", "kl", "en_activation"} <= {k for l in trainer.state.log_history for k in l}, metrics
    gate_ids = {id(p) for p in trainer.model.context_gate.parameters()}
    groups = {g["initial_lr"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    assert groups[0.05] == gate_ids and not groups[0.01] & gate_ids  # the gate trains at its own rate
    trained = SparseEncoder.from_pretrained(out)
    assert trained.config.context_gate_hidden == 16 and trained.context_gate.out.weight.abs().sum() > 0
    # resume: a fresh trainer's model (gate at init) takes the checkpoint's gate
    fresh, _ = run_train.build_trainer([*args[:-2], "--seed", "4"])
    fresh._load_from_checkpoint(str(out / "checkpoint-6"))
    for (name, a), b in zip(fresh.model.context_gate.state_dict().items(), trained.context_gate.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


@pytest.mark.slow
def test_two_ranks_with_the_gate_match_one_process(real_setup, tmp_path):
    """The gate under torchrun (gloo, uneven per-rank padding, all three tasks): ranks stay identical and equal
    one process over the same global batch."""
    root, args = real_setup
    args = [*args, "--context_gate", "true", "--context_gate_hidden", "16"]
    one, r0, r1, init = train_one_process_and_two_ranks(args, tmp_path)
    assert any(k.startswith("context_gate.") for k in one) and one["context_gate.out.weight"].abs().sum() > 0
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    assert update_gap(one, r0, init) < 1e-2
