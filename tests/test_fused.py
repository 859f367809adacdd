"""The fused vocabulary-projection-and-max pooling equals the textbook computation (full logits, log1p∘relu, mask,
max) in values and gradients, and the encoder gives the same outputs and parameter gradients through it."""
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, XLMRobertaConfig, XLMRobertaForMaskedLM

from training import SparseEncoder
from training import fused
from training.fused import fused_splade_pool, mlm_head_parts, mlm_splade_pool
from training.pooling import splade_max_pool_reference

MASK = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2, [1] + [0] * 6, [0] * 7])


def random_inputs(vocab=700, hidden=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(MASK.shape[0], MASK.shape[1], hidden, dtype=torch.float64, generator=g)
    w = torch.randn(vocab, hidden, dtype=torch.float64, generator=g) / hidden ** 0.5
    b = torch.randn(vocab, dtype=torch.float64, generator=g) - 0.5  # many inactive terms, as in SPLADE
    return h, w, b


def textbook(h, w, b, mask):
    return splade_max_pool_reference(h @ w.T + b, mask)


def grads(fn, inputs, upstream):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    (out * upstream).sum().backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("chunk_elements, backward_block", [(fused.DEFAULT_CHUNK_ELEMENTS, fused.BACKWARD_BLOCK),
                                                            (35 * 256, 7)])  # several vocabulary / pair blocks
def test_fused_equals_textbook_values_and_gradients(monkeypatch, chunk_elements, backward_block):
    monkeypatch.setattr(fused, "BACKWARD_BLOCK", backward_block)
    h, w, b = random_inputs()
    upstream = torch.randn(MASK.shape[0], w.shape[0], dtype=torch.float64)
    upstream[:, ::3] = 0  # an output mask
    out, (gh, gw, gb) = grads(lambda h, w, b: fused_splade_pool(h, w, b, MASK, chunk_elements), (h, w, b), upstream)
    ref, (rh, rw, rb) = grads(lambda h, w, b: textbook(h, w, b, MASK), (h, w, b), upstream)
    assert 0 < (out > 0).float().mean() < 1
    torch.testing.assert_close(out, ref, atol=1e-8, rtol=1e-8)
    for got, want in ((gh, rh), (gw, rw), (gb, rb)):
        torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-8)
    assert gh[1, 3:].abs().sum() == 0 and gh[4].abs().sum() == 0  # padding never receives gradient
    assert (out[4] == 0).all()  # an all-padding row is all zeros, not NaN


def test_fused_gradcheck_and_no_bias():
    h, w, b = random_inputs(vocab=40, hidden=5, seed=1)
    fn = lambda h, w, b: fused_splade_pool(h, w, b, MASK)  # noqa: E731
    assert torch.autograd.gradcheck(fn, [t.clone().requires_grad_(True) for t in (h, w, b)])
    upstream = torch.randn(MASK.shape[0], 40, dtype=torch.float64)
    out, (gh, gw) = grads(lambda h, w: fused_splade_pool(h, w, None, MASK), (h, w), upstream)
    ref, (rh, rw) = grads(lambda h, w: splade_max_pool_reference(h @ w.T, MASK), (h, w), upstream)
    torch.testing.assert_close(out, ref, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(gh, rh, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(gw, rw, atol=1e-8, rtol=1e-8)


def test_inference_path_equals_training_path():
    h, w, b = random_inputs()
    with torch.inference_mode():
        inference = fused_splade_pool(h, w, b, MASK, chunk_elements=35 * 256)
    training = fused_splade_pool(h, w.clone().requires_grad_(True), b, MASK, chunk_elements=35 * 256)
    assert torch.equal(inference, training.detach())


def outputs_and_grads(encoder, batch, upstream):
    """The document vectors and every parameter's gradient of sum(vectors * upstream)."""
    encoder.zero_grad()
    out = encoder.encode_documents(batch["input_ids"], batch["attention_mask"])
    (out * upstream).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}


def assert_same_outputs_and_grads(first, second):
    """Two outputs_and_grads results agree to 1e-8 (float64), and neither is trivially zero."""
    (first_out, first_grads), (second_out, second_grads) = first, second
    assert (second_out > 0).any()
    torch.testing.assert_close(first_out, second_out, atol=1e-8, rtol=1e-8)
    assert first_grads.keys() == second_grads.keys() and len(second_grads) > 0
    for name in second_grads:
        torch.testing.assert_close(first_grads[name], second_grads[name], atol=1e-8, rtol=1e-8, msg=name)


def assert_encoder_paths_equal(encoder):
    texts = ["머신러닝 추천 시스템", "Seoul is the capital of South Korea.", "검색 엔진 search engine 東京 123"]
    batch = encoder.tokenize(texts)
    upstream = torch.rand(len(texts), encoder.vocab_size, dtype=torch.float64)
    encoder.fused_pooling = True
    fused = outputs_and_grads(encoder, batch, upstream)
    encoder.fused_pooling = False
    assert_same_outputs_and_grads(fused, outputs_and_grads(encoder, batch, upstream))


def test_encoder_fused_equals_plain_bert(tiny_model_dir):
    encoder = SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=["hangul", "latin"]).double().eval()
    assert mlm_head_parts(encoder.mlm) is not None
    assert_encoder_paths_equal(encoder)


def test_encoder_fused_equals_plain_xlm_roberta(tiny_model_dir):
    base = SparseEncoder.from_pretrained(tiny_model_dir)
    config = XLMRobertaConfig(vocab_size=base.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=80, pad_token_id=base.tokenizer.pad_token_id)
    torch.manual_seed(0)
    encoder = SparseEncoder(XLMRobertaForMaskedLM(config), base.tokenizer).double().eval()
    assert mlm_head_parts(encoder.mlm) is not None
    assert_encoder_paths_equal(encoder)


def test_other_heads_fall_back_to_full_logits(tiny_model_dir):
    class Wrapped(torch.nn.Module):  # e.g. a PEFT wrapper: not a known head layout
        def __init__(self, mlm):
            super().__init__()
            self.inner = mlm

        def forward(self, **kw):
            return self.inner(**kw)

    class Pool(torch.nn.Module):
        def __init__(self, mlm):
            super().__init__()
            self.mlm = mlm

        def forward(self, input_ids, attention_mask):
            return mlm_splade_pool(self.mlm, input_ids, attention_mask)

    mlm = BertForMaskedLM(BertConfig(vocab_size=60, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16)).eval()
    assert mlm_head_parts(Wrapped(mlm)) is None
    ids = torch.randint(0, 60, (2, 5))
    mask = torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(mlm_splade_pool(Wrapped(mlm), ids, mask), mlm_splade_pool(mlm, ids, mask))
        # tracing (TorchScript export) records the plain graph
        traced = torch.jit.trace(Pool(mlm), (ids, mask), check_trace=False)
        assert "PythonOp" not in str(traced.graph)
        torch.testing.assert_close(traced(ids, mask), mlm_splade_pool(mlm, ids, mask))


def test_logit_space_term_loss_fused_equals_plain_and_reaches_inactive_targets(tiny_model_dir):
    from training.losses import target_logit_activation

    encoder = SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=["hangul", "latin"]).double().eval()
    batch = encoder.tokenize(["머신러닝", "추천 시스템", "검색 엔진"])
    targets = encoder.token_bag(*encoder.tokenize(["machine learning", "recommender system", "search engine"])
                                .values())
    with torch.no_grad():
        logits = encoder.max_logits(batch["input_ids"], batch["attention_mask"])
    # plus, per row, the served id with the lowest logit: a target that starts inactive whatever the random weights
    lowest = logits.masked_fill(encoder.output_mask == 0, float("inf")).argmin(-1)
    targets = targets.scatter(1, lowest[:, None], 1.0)
    assert ((logits <= 0) & (targets > 0)).any()

    def grads(fused):
        encoder.fused_pooling = fused
        encoder.zero_grad()
        out = encoder.max_logits(batch["input_ids"], batch["attention_mask"])
        target_logit_activation(out, targets, 1.0).backward()
        return out.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}

    fused_out, fused_grads = grads(True)
    plain_out, plain_grads = grads(False)
    torch.testing.assert_close(fused_out, plain_out, atol=1e-8, rtol=1e-8)
    assert fused_grads.keys() == plain_grads.keys() and len(fused_grads) > 0
    for name in plain_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], atol=1e-8, rtol=1e-8, msg=name)
    inactive = ((logits <= 0) & (targets > 0)).any(0)
    assert (fused_grads["mlm.cls.predictions.bias"][inactive] != 0).all()  # the bias of dead targets moves
