"""sentence-transformers interop: toolkit folders load in `sentence_transformers.SparseEncoder` with the same vectors,
and layouts built by sentence-transformers load in the toolkit (folder or hub id), or stop with a clear message."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

pytest.importorskip("sentence_transformers")
import sentence_transformers as st  # noqa: E402
from sentence_transformers.sparse_encoder import modules as st_models  # noqa: E402

from tests.conftest import SHARED_DATA  # noqa: E402
from tests.tiny import SENTENCES, build_tiny_sentencepiece_model, build_tokenizer  # noqa: E402
from training import SparseEncoder  # noqa: E402
from training.st_layout import LayoutError  # noqa: E402

SCRIPTS = ["hangul", "latin"]  # digits and punctuation ("common") are masked: '.' must come out 0 everywhere


def real_texts(n=4):
    """Korean and English texts of varied length (MS MARCO-ko passages, when the shared data is there, run past
    max_seq_length), with special tokens written into them."""
    texts = list(SENTENCES[:6])
    if os.path.isdir(SHARED_DATA):
        for name in ("msmarco_kor.json", "msmarco_eng.json"):
            with open(os.path.join(SHARED_DATA, "msmarco_ko", name), encoding="utf-8") as f:
                rows = json.load(f)[:n]
            texts += [r["query"] for r in rows] + [r["positive"][0] for r in rows]
    texts += ["서울은 [SEP] 대한민국의 수도이다. [CLS]", "[MASK] search engine [PAD] indexes documents.", "희소"]
    return texts


@pytest.fixture(scope="module")
def texts():
    return real_texts()


def toolkit_vectors(encoder, texts, is_query):
    return torch.from_numpy(encoder.encode(texts, is_query=is_query, batch_size=4).matrix.toarray())


def st_vectors(model, texts, is_query):
    encode = model.encode_query if is_query else model.encode_document
    return encode(texts, convert_to_tensor=True, batch_size=4).to_dense().float()


def assert_same(st_model, encoder, texts, query_texts):
    for is_query, batch in ((False, texts), (True, query_texts)):
        ours, theirs = toolkit_vectors(encoder, batch, is_query), st_vectors(st_model, batch, is_query)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
        assert (ours > 0).sum() > 0


def short(texts, encoder):
    """Queries within max_query_length: the SPLADE layout has one max_seq_length for both sides."""
    return [t for t in texts if len(encoder.tokenizer(t)["input_ids"]) <= encoder.config.max_query_length]


@pytest.fixture(scope="module")
def tiny_sentencepiece_dir(tmp_path_factory):
    return build_tiny_sentencepiece_model(tmp_path_factory.mktemp("tiny_sp"))


def toolkit_encoder(model_dir, mode):
    """A toolkit encoder with an allowed-scripts mask; doc-only with a non-uniform IDF."""
    encoder = SparseEncoder.from_pretrained(model_dir, allowed_scripts=SCRIPTS, mode=mode,
                                            max_query_length=24).eval()
    if mode == "doc_only":
        with torch.no_grad():
            encoder.idf.copy_(torch.linspace(0.5, 4.0, encoder.vocab_size))
    return encoder


# ------------------------------------------------------------------------------------ toolkit -> sentence-transformers
@pytest.mark.parametrize("mode, backbone", [("splade", "wordpiece"), ("doc_only", "wordpiece"),
                                            ("splade", "sentencepiece")])
def test_toolkit_export_loads_in_sentence_transformers(mode, backbone, tiny_model_dir, tiny_sentencepiece_dir,
                                                       texts, tmp_path):
    from run_export import main

    encoder = toolkit_encoder(tiny_model_dir if backbone == "wordpiece" else tiny_sentencepiece_dir, mode)
    src = tmp_path / "model"
    encoder.save_pretrained(src)
    assert main(["--model", str(src), "--target", "hf", "--output", str(tmp_path / "hf")]) == 0
    model = st.SparseEncoder(str(tmp_path / "hf"), device="cpu")
    if mode == "splade":
        assert [type(m).__name__ for m in model] == ["MLMTransformer", "SpladePooling"]
        assert model[1].pooling_strategy == "max" and model[1].activation_function == "relu"
        queries = short(texts, encoder)
    else:
        router = model[0]
        assert type(router).__name__ == "Router"
        assert [type(m).__name__ for m in router.sub_modules["query"]] == ["SparseStaticEmbedding"]
        assert [type(m).__name__ for m in router.sub_modules["document"]] == ["MLMTransformer", "SpladePooling"]
        queries = texts  # long passages as queries: both sides truncate at max_query_length
    assert_same(model, encoder, texts, queries)
    # The mask lives in the weights: ids it zeroes (special tokens, digits, punctuation, for SentencePiece also
    # ids whose name a lower id has) are exactly 0 in sentence-transformers, which knows nothing of it.
    masked = encoder.output_mask == 0
    special = encoder.tokenizer.all_special_ids + [encoder.tokenizer.get_vocab()[p] for p in (".", "\u2581.")
                                                   if p in encoder.tokenizer.get_vocab()]
    assert masked[special].all()
    for is_query in (False, True):
        assert (st_vectors(model, texts, is_query)[:, masked] == 0).all()


def test_doc_only_sentencepiece_warns_that_queries_differ(tiny_sentencepiece_dir, texts, tmp_path, caplog):
    """The toolkit moves a query token to the id carrying its name ("서울" for "\u2581서울"); SparseStaticEmbedding
    weighs the token's own id and cannot: saving says so, and documents still agree."""
    encoder = toolkit_encoder(tiny_sentencepiece_dir, "doc_only")
    with caplog.at_level("WARNING", logger="training.st_layout"):
        encoder.save_pretrained(tmp_path / "m")
    assert "SparseStaticEmbedding" in caplog.text and "share their name" in caplog.text
    model = st.SparseEncoder(str(tmp_path / "m"), device="cpu")
    torch.testing.assert_close(st_vectors(model, texts, False), toolkit_vectors(encoder, texts, False),
                               atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ sentence-transformers -> toolkit
@pytest.fixture(scope="module")
def tiny_modernbert_dir(tmp_path_factory):
    """A random ModernBertForMaskedLM (the architecture of splade-ko-v1 and PIXIE-Splade) whose vocabulary is
    padded to a multiple of 64, as theirs is: the MLM head has more rows than the tokenizer has ids."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    out = tmp_path_factory.mktemp("tiny_modernbert")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=(len(tokenizer) + 63) // 64 * 64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, global_attn_every_n_layers=1, local_attention=16,
        pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id)
    ModernBertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_st_layout(kind, model_dir, out):
    """A sparse model saved by sentence-transformers itself."""
    if kind == "mlm_transformer":
        modules = [st_models.MLMTransformer(str(model_dir)), st_models.SpladePooling("max")]
    elif kind == "transformer_fill_mask":
        modules = [st_models.Transformer(str(model_dir), transformer_task="fill-mask"),
                   st_models.SpladePooling("max")]
    else:  # OpenSearch's inference-free layout: IDF query side, MLM document side (saved in a subfolder)
        doc = st_models.MLMTransformer(str(model_dir))
        idf = torch.linspace(4.0, 0.5, len(doc.tokenizer.get_vocab()))
        modules = [st_models.Router.for_query_document(
            query_modules=[st_models.SparseStaticEmbedding(tokenizer=doc.tokenizer, weight=idf, frozen=False)],
            document_modules=[doc, st_models.SpladePooling("max")])]
    model = st.SparseEncoder(modules=modules, similarity_fn_name="dot", device="cpu")
    model.save(str(out))
    return model


@pytest.mark.parametrize("kind, backbone", [("mlm_transformer", "bert"), ("transformer_fill_mask", "bert"),
                                            ("router_static_query", "bert"), ("mlm_transformer", "modernbert")])
def test_sentence_transformers_layouts_load_in_toolkit_and_back(kind, backbone, tiny_model_dir,
                                                                tiny_modernbert_dir, texts, tmp_path):
    model_dir = tiny_model_dir if backbone == "bert" else tiny_modernbert_dir
    built = build_st_layout(kind, model_dir, tmp_path / "st")
    encoder = SparseEncoder.from_pretrained(tmp_path / "st", allowed_scripts=SCRIPTS).eval()
    assert encoder.config.mode == ("doc_only" if kind == "router_static_query" else "splade")
    queries = texts if encoder.config.mode == "doc_only" else short(texts, encoder)
    mask = encoder.output_mask
    # The toolkit = sentence-transformers' vectors with its output mask applied (special tokens, other scripts).
    for is_query, batch in ((False, texts), (True, queries)):
        expected = st_vectors(built, batch, is_query) * mask
        torch.testing.assert_close(toolkit_vectors(encoder, batch, is_query), expected, atol=1e-5, rtol=0)
    # ... and saved again by the toolkit, sentence-transformers gives exactly the toolkit's vectors.
    encoder.save_pretrained(tmp_path / "toolkit")
    assert_same(st.SparseEncoder(str(tmp_path / "toolkit"), device="cpu"), encoder, texts, queries)


def test_hub_id_of_a_sentence_transformers_router_loads(tiny_model_dir, tmp_path, monkeypatch):
    """A hub id resolves through the HF cache like a download (offline here: a cache holding the repo)."""
    import huggingface_hub.constants

    built = build_st_layout("router_static_query", tiny_model_dir, tmp_path / "st")
    commit = "1" * 40
    repo = tmp_path / "hub" / "models--ko-sparse--tiny-router"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tmp_path / "st", repo / "snapshots" / commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    encoder = SparseEncoder.from_pretrained("ko-sparse/tiny-router").eval()
    assert encoder.config.mode == "doc_only"
    for is_query in (False, True):
        expected = st_vectors(built, SENTENCES, is_query) * encoder.output_mask
        torch.testing.assert_close(toolkit_vectors(encoder, SENTENCES, is_query), expected, atol=1e-5, rtol=0)


def test_run_eval_takes_a_sentence_transformers_model(tiny_model_dir, tmp_path):
    import run_eval
    from tests.test_eval_beir import write_beir

    build_st_layout("router_static_query", tiny_model_dir, tmp_path / "st")
    bench = write_beir(tmp_path / "bench")
    assert run_eval.main(["--model", str(tmp_path / "st"), "--benchmark", f"beir:{bench}", "--output",
                          str(tmp_path / "eval"), "--latency-queries", "0", "--no-cache"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    metrics = next(iter(results.values()))["st"]
    assert metrics["avg_query_terms"] > 0 and 0 <= metrics["ndcg@10"] <= 1


def test_run_train_fine_tunes_a_sentence_transformers_model_and_its_checkpoints_load_back(tiny_model_dir,
                                                                                         tmp_path):
    """model_name_or_path = a Router layout: training starts from its IDF, and every checkpoint and the final
    model (SparseTrainer._save) load in sentence-transformers with the toolkit's vectors."""
    built = build_st_layout("router_static_query", tiny_model_dir, tmp_path / "st")
    ko = SENTENCES[0::2]
    data = tmp_path / "triplets.jsonl"
    data.write_text("".join(json.dumps({"query": k[:8], "positive": k, "negatives": [x for x in ko if x != k][:2]},
                                       ensure_ascii=False) + "\n" for k in ko), encoding="utf-8")
    out = tmp_path / "out"
    cmd = [sys.executable, "run_train.py", "--model_name_or_path", str(tmp_path / "st"),
           "--train_file", str(data), "--allowed_scripts", *SCRIPTS, "--max_steps", "2", "--save_steps", "1",
           "--save_strategy", "steps", "--per_device_train_batch_size", "2", "--num_negatives", "1",
           "--report_to", "none", "--max_seq_length", "32", "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    start_idf = built[0].sub_modules["query"][0].weight.detach()
    for folder in (out / "checkpoint-1", out):
        encoder = SparseEncoder.from_pretrained(folder).eval()
        assert encoder.config.mode == "doc_only"
        torch.testing.assert_close(encoder.idf, start_idf)  # the IDF is not trained by default
        assert_same(st.SparseEncoder(str(folder), device="cpu"), encoder, SENTENCES[:6], SENTENCES[6:])


@pytest.mark.parametrize("pooling, option", [
    ({"pooling_strategy": "sum"}, "pooling_strategy='sum'"),
    ({"activation_function": "log1p_relu"}, "activation_function='log1p_relu'"),
])
def test_unsupported_pooling_stops_with_module_and_option(pooling, option, tiny_model_dir, tmp_path):
    st.SparseEncoder(modules=[st_models.MLMTransformer(str(tiny_model_dir)), st_models.SpladePooling(**pooling)],
                     device="cpu").save(str(tmp_path / "st"))
    with pytest.raises(LayoutError, match=rf"module '1' \(SpladePooling\) has {option}"):
        SparseEncoder.from_pretrained(tmp_path / "st")
    import run_train

    data = tmp_path / "terms.jsonl"
    data.write_text(json.dumps({"ko": "서울", "en": "seoul"}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"^config error: model_name_or_path: .*SpladePooling\) has {option}"):
        run_train.build_trainer(["--model_name_or_path", str(tmp_path / "st"), "--train_file", str(data),
                                 "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert not (tmp_path / "out").exists()


def test_csr_head_stops_with_module_name(tiny_model_dir, tmp_path):
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = st_models.Transformer(str(tiny_model_dir))
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    csr = st_models.SparseAutoEncoder(input_dim=transformer.get_embedding_dimension(), hidden_dim=64, k=8)
    st.SparseEncoder(modules=[transformer, pooling, csr], device="cpu").save(str(tmp_path / "csr"))
    with pytest.raises(LayoutError, match=r"modules \['Transformer', 'Pooling', 'SparseAutoEncoder'\]"):
        SparseEncoder.from_pretrained(tmp_path / "csr")
    import run_eval
    from tests.test_eval_beir import write_beir

    with pytest.raises(SystemExit, match="SparseAutoEncoder"):
        run_eval.main(["--model", str(tmp_path / "csr"), "--benchmark", f"beir:{write_beir(tmp_path / 'b')}",
                       "--output", str(tmp_path / "eval")])


def test_output_mask_is_in_the_weights_of_the_live_and_the_saved_model(tiny_model_dir, tmp_path):
    """from_pretrained bakes the live model (so every rank and a resumed run hold what was saved); a model built
    directly is baked in the saved copy only."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from training.encoder import SparseConfig

    def bias(mlm):
        return mlm.get_output_embeddings().bias.detach().clone()

    plain = bias(AutoModelForMaskedLM.from_pretrained(tiny_model_dir))
    encoder = SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=SCRIPTS)
    masked = encoder.output_mask == 0
    live = bias(encoder.mlm)
    assert (live[masked] == -1e4).all() and torch.equal(live[~masked], plain[~masked])
    encoder.save_pretrained(tmp_path / "loaded")
    assert torch.equal(bias(AutoModelForMaskedLM.from_pretrained(tmp_path / "loaded")), live)

    direct = SparseEncoder(AutoModelForMaskedLM.from_pretrained(tiny_model_dir),
                           AutoTokenizer.from_pretrained(tiny_model_dir), SparseConfig(allowed_scripts=SCRIPTS))
    direct.save_pretrained(tmp_path / "direct")
    assert torch.equal(bias(direct.mlm), plain)
    assert torch.equal(bias(AutoModelForMaskedLM.from_pretrained(tmp_path / "direct")), live)
