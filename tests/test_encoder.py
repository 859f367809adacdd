import json

import numpy as np
import pytest
import torch

from training import SparseEncoder, prune
from training.pooling import splade_max_pool, splade_max_pool_reference
from training.vocab import piece_script, token_scripts
from tests.tiny import SENTENCES, build_tiny_model


def test_max_first_pooling_equals_textbook_values_and_gradients():
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 50, dtype=torch.float64)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] * 5 + [0] * 2, [1] + [0] * 6])
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    fast, ref = splade_max_pool(a, mask), splade_max_pool_reference(b, mask)
    assert torch.allclose(fast, ref, atol=1e-6)
    upstream = torch.randn_like(fast)
    (fast * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-10)
    # padding positions never receive gradient
    assert a.grad[1, 3:].abs().sum() == 0


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=["hangul", "latin"]).eval()


TEXTS = ["머신러닝 추천 시스템", "Seoul is the capital of South Korea.", "검색 엔진 search engine 東京 123"]


def test_vocabulary_mask_gives_exact_zeros(model):
    scripts = token_scripts(model.tokenizer)
    banned = torch.from_numpy(~np.isin(scripts, ["hangul", "latin"]))
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        out = model.encode_documents(batch["input_ids"], batch["attention_mask"])
    assert banned.any() and (out[:, banned] == 0).all()
    assert (out[:, model.tokenizer.all_special_ids] == 0).all()
    assert (out[:, ~banned] > 0).any()


def test_piece_scripts():
    assert [piece_script(p) for p in ["▁머신", "##ing", "123", "東京", "Ġhello", "."]] == \
        ["hangul", "latin", "common", "other", "latin", "common"]


def test_digits_without_punctuation_masks_punctuation_only_pieces(tmp_path):
    """Real text's ",", "?" and "." pieces come out 0 under [hangul, latin, digits]; its digits stay free, and
    "common" still allows both (saved models name it)."""
    texts = ["2002년 월드컵, 한국은 몇 위였나?", "The iPhone 15 costs $799; is it worth it?", "서울시 인구: 약 940만 명."]
    model_dir = build_tiny_model(tmp_path, texts=texts + list(SENTENCES))
    digits = SparseEncoder.from_pretrained(model_dir, allowed_scripts=["hangul", "latin", "digits"]).eval()
    common = SparseEncoder.from_pretrained(model_dir, allowed_scripts=["hangul", "latin", "common"]).eval()
    ids = {i for text in texts for i in digits.tokenizer(text)["input_ids"]}
    pieces = {digits.tokenizer.convert_ids_to_tokens(i): i for i in ids}
    bare = [(p.lstrip("#"), i) for p, i in pieces.items() if p.lstrip("#")]
    punct = [i for p, i in bare if all(c.isascii() and not c.isalnum() for c in p)]
    numbers = [i for p, i in bare if p.isdigit()]
    assert {",", "?", "."} <= {digits.tokenizer.convert_ids_to_tokens(i) for i in punct} and numbers
    assert (digits.output_mask[punct] == 0).all() and (digits.output_mask[numbers] == 1).all()
    servable = [i for i in punct if "." not in digits.tokenizer.convert_ids_to_tokens(i)]  # OpenSearch rejects '.'
    assert len(servable) >= 2 and (common.output_mask[servable] == 1).all()
    assert (common.output_mask[numbers] == 1).all()
    batch = digits.tokenize(texts)
    with torch.no_grad():
        out = digits.encode_documents(batch["input_ids"], batch["attention_mask"])
    assert (out[:, punct] == 0).all()


def test_encode_matches_forward_and_keeps_order(model):
    emb = model.encode(TEXTS, batch_size=2)
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        dense = model.encode_documents(batch["input_ids"], batch["attention_mask"]).numpy()
    assert emb.matrix.shape == dense.shape and emb.matrix.dtype == np.float32
    assert np.allclose(emb.matrix.toarray(), dense, atol=1e-5)
    dicts = emb.to_dicts()
    vocab = model.tokenizer.get_vocab()
    for row, d in zip(dense, dicts):
        assert len(d) == int((row > 0).sum())
        token, weight = max(d.items(), key=lambda kv: kv[1])
        assert weight == pytest.approx(row.max(), rel=1e-6) and row[vocab[token]] == pytest.approx(weight, rel=1e-6)
    top = emb.decode(3)
    assert len(top[0]) == 3 and top[0][0][1] >= top[0][1][1] >= top[0][2][1]


def test_pruning_top_k_and_threshold():
    w = torch.tensor([[0.125, 0.5, 0.25, 0.0, 0.75]])
    assert prune(w, top_k=2).tolist() == [[0.0, 0.5, 0.0, 0.0, 0.75]]
    assert prune(w, threshold=0.25).tolist() == [[0.0, 0.5, 0.25, 0.0, 0.75]]
    assert prune(w, top_k=1, threshold=0.8).tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0]]


def test_encode_prunes_to_top_k(model):
    emb = model.encode(TEXTS, top_k=5)
    assert (emb.num_active() == 5).all()


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    loaded = SparseEncoder.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    a, b = model.encode(TEXTS).matrix.toarray(), loaded.encode(TEXTS).matrix.toarray()
    assert np.abs(a - b).max() <= 1e-6


def test_doc_only_queries_are_idf_weighted_bags(tiny_model_dir, tmp_path):
    tok_model = SparseEncoder.from_pretrained(tiny_model_dir, mode="doc_only")
    vocab = tok_model.tokenizer.get_vocab()
    (tmp_path / "idf.json").write_text(json.dumps({"추천": 3.5, "머신러닝": 2.0}), encoding="utf-8")
    model = SparseEncoder.from_pretrained(tiny_model_dir, mode="doc_only", idf_file=str(tmp_path / "idf.json"))
    q = model.encode(["추천 추천 머신러닝 seoul"], is_query=True).to_dicts()[0]
    expected = {"추천": 3.5, "머신러닝": 2.0, "seoul": 1.0}  # missing tokens get default_idf, repeats count once
    assert q == pytest.approx(expected) and "seoul" in vocab
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "idf.json").read_text(encoding="utf-8"))
    assert saved["추천"] == 3.5 and saved["seoul"] == 1.0
    reloaded = SparseEncoder.from_pretrained(tmp_path / "saved")
    assert reloaded.config.mode == "doc_only"
    assert reloaded.encode(["추천 머신러닝 seoul"], is_query=True).to_dicts()[0] == pytest.approx(expected)


def test_trainable_idf_gets_gradient(tiny_model_dir):
    model = SparseEncoder.from_pretrained(tiny_model_dir, mode="doc_only", trainable_idf=True)
    batch = model.tokenize(["추천 시스템"], is_query=True)
    out = model(query_input_ids=batch["input_ids"], query_attention_mask=batch["attention_mask"])["query"]
    out.sum().backward()
    assert model.idf.grad is not None and model.idf.grad.sum() == 3  # 추천, 시스, ##템


def test_freeze_bottom_layers_stops_backward_but_not_the_values(tiny_model_dir):
    torch.manual_seed(0)
    model = SparseEncoder.from_pretrained(tiny_model_dir).train()
    batch = model.tokenize(TEXTS)
    features = {"doc_input_ids": batch["input_ids"], "doc_attention_mask": batch["attention_mask"]}
    model.eval()
    before = model(**features)["doc"]
    model.freeze_bottom_layers(1)
    seen = []
    model.mlm.base_model.encoder.layer[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].requires_grad))
    after = model(**features)["doc"]
    assert seen == [False]  # backward ends at the frozen layers' output
    assert torch.equal(before, after)
    after.sum().backward()
    base = model.mlm.base_model
    assert all(p.grad is None for p in base.encoder.layer[0].parameters())
    assert base.embeddings.position_embeddings.weight.grad is None
    assert all(p.grad is not None for p in base.encoder.layer[1].parameters())
    assert base.embeddings.word_embeddings.weight.grad is not None  # tied vocabulary projection still learns
    with pytest.raises(ValueError, match="layers"):
        model.freeze_bottom_layers(len(base.encoder.layer) + 1)


def test_freeze_decoder_fixes_the_rows_and_trains_the_rest(tiny_model_dir):
    torch.manual_seed(0)
    model = SparseEncoder.from_pretrained(tiny_model_dir).train()
    model.freeze_decoder()
    batch = model.tokenize(TEXTS)
    out = model(doc_input_ids=batch["input_ids"], doc_attention_mask=batch["attention_mask"])["doc"]
    out.sum().backward()
    decoder = model.mlm.get_output_embeddings()
    assert decoder.weight.grad is None
    assert decoder.bias.grad is not None and decoder.bias.grad.abs().sum() > 0
    top = model.mlm.base_model.encoder.layer[-1]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in top.parameters())
    # the tiny model's decoder is tied: its rows are the word embeddings, which freeze with it
    assert model.mlm.base_model.embeddings.word_embeddings.weight is decoder.weight


def test_lora_keeps_head_trainable_and_saves_plain_weights(tiny_model_dir, tmp_path):
    model = SparseEncoder.from_pretrained(tiny_model_dir)
    before = model.encode(TEXTS).matrix.toarray()
    model.add_lora(r=4, alpha=8, target_modules=["query", "value"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("cls" in n and "modules_to_save" in n for n in trainable)
    assert np.allclose(model.encode(TEXTS).matrix.toarray(), before, atol=1e-6)  # LoRA B starts at zero
    model.save_pretrained(tmp_path / "lora")
    assert not list((tmp_path / "lora").glob("adapter_*"))
    reloaded = SparseEncoder.from_pretrained(tmp_path / "lora")
    assert np.allclose(reloaded.encode(TEXTS).matrix.toarray(), before, atol=1e-6)


def test_sequence_length_is_capped_at_the_model_positions(tiny_model_dir):
    model = SparseEncoder.from_pretrained(tiny_model_dir, max_seq_length=4096)
    assert model.config.max_seq_length == 128
    emb = model.encode(["서울 " * 400])  # longer than 128 positions: truncated, not a crash
    assert emb.matrix.shape[0] == 1


def test_encode_in_training_mode_runs_in_eval_mode_and_restores_it(tiny_model_dir):
    """encode() switches modes only when the model is training (dropout off while encoding), then switches back."""
    model = SparseEncoder.from_pretrained(tiny_model_dir, max_seq_length=64).eval()
    expected = model.encode(TEXTS).matrix.toarray()
    model.train()
    torch.manual_seed(1)
    np.testing.assert_allclose(model.encode(TEXTS).matrix.toarray(), expected, rtol=1e-6)
    assert model.training and model.mlm.training
    model.eval()
    model.encode(TEXTS)
    assert not model.training and not model.mlm.training
