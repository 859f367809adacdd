"""Term-pair metrics on a model whose expansions are known, and run_eval.py end to end on a tiny benchmark."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

import run_eval
from eval.terms import load_term_pairs, term_metrics, text_bags
from tests.test_eval_beir import write_beir
from tests.tiny import build_sentencepiece_tokenizer, build_tokenizer

PAIRS = [{"ko": "머신러닝", "en": "machine learning"}, {"ko": "서울", "en": "seoul"}, {"ko": "서울", "en": "capital"}]


class ExpandingModel:
    """Each text activates its own pieces (weight 1); a Korean term also its listed English expansion (0.5)."""

    def __init__(self, expansions, tokenizer=None):
        import torch

        self.tokenizer = tokenizer or build_tokenizer()
        self.expansions = expansions
        self.canonical_ids = torch.arange(len(self.tokenizer))  # every id serves its own name
        self.output_mask = torch.ones(len(self.tokenizer))

    def token_bag(self, input_ids, attention_mask):
        from training.vocab import token_bag

        return token_bag(input_ids, attention_mask, len(self.tokenizer), self.canonical_ids) * self.output_mask

    def encode(self, texts, batch_size=32, is_query=False):
        vocab = len(self.tokenizer)
        m = sp.lil_matrix((len(texts), vocab), dtype=np.float32)
        for i, text in enumerate(texts):
            for j in self.tokenizer(text, add_special_tokens=False)["input_ids"]:
                m[i, j] = 1.0
            expansion = self.expansions.get(text, "")  # a text, or a list of piece names
            ids = (self.tokenizer.convert_tokens_to_ids(expansion) if isinstance(expansion, list)
                   else self.tokenizer(expansion, add_special_tokens=False)["input_ids"])
            for j in ids:
                m[i, j] = max(m[i, j], 0.5)
        return SimpleNamespace(matrix=m.tocsr())


def test_term_metrics_hand_computed():
    model = ExpandingModel({"머신러닝": "machine learning", "서울": "seoul"})
    got = term_metrics(model, PAIRS, top_n=50, k_values=(1, 10))
    assert got["ko_preservation"] == 1.0
    assert got["en_activation"] == pytest.approx(2 / 3)  # "capital" is never activated
    assert got["non_target_top50"] == 0.0
    pieces = lambda t: len(set(model.tokenizer(t, add_special_tokens=False)["input_ids"]))  # noqa: E731
    # only "capital"'s pieces are missing from 서울's vector
    assert got["dead_en_targets"] == pytest.approx(pieces("capital") / (pieces("machine learning") + pieces("seoul")
                                                                          + pieces("capital")))
    # 서울 ranks seoul first, capital (score 0) later: recall@1 = 1/2 for it, 1 for 머신러닝
    assert got["synonym_recall@1"] == pytest.approx(0.75)
    assert got["synonym_recall@10"] == 1.0
    assert got["synonym_mrr"] == 1.0
    assert got["ko_activation"] == 0.0  # English terms expand to nothing Korean
    # 머신러닝's pieces plus machine learning's, 서울's plus seoul's (the model's own vectors, counted by hand)
    assert got["avg_ko_vector_terms"] == pytest.approx(
        (len(set(model.tokenizer("머신러닝 machine learning", add_special_tokens=False)["input_ids"]))
         + len(set(model.tokenizer("서울 seoul", add_special_tokens=False)["input_ids"]))) / 2)
    english = pieces("machine learning") + pieces("seoul") + pieces("capital")
    assert got["avg_en_vector_terms"] == pytest.approx(english / 3)
    back = term_metrics(ExpandingModel({"seoul": "서울"}), PAIRS, top_n=50)
    assert back["ko_activation"] == pytest.approx(1 / 3)  # seoul -> 서울 of the three pairs
    none = term_metrics(ExpandingModel({}), PAIRS, top_n=50)
    assert none["en_activation"] == 0.0 and none["ko_preservation"] == 1.0 and none["dead_en_targets"] == 1.0


def test_word_activation_counts_each_words_first_piece_only():
    """A suffix ("##s") is not a translation; a word's first piece is. 검색 엔진 activates only the last piece of
    "search engines", 추천 시스템 only the first piece of each word of "recommendation systems"."""
    pairs = [{"ko": "검색 엔진", "en": "search engines"}, {"ko": "추천 시스템", "en": "recommendation systems"}]
    model = ExpandingModel({})  # its vocabulary is trained anew each time: read the pieces from this one
    tokenize = model.tokenizer.tokenize
    search, recommend = tokenize("search engines"), tokenize("recommendation systems")
    assert search[-1].startswith("##") and len(search) == 3  # search engine ##s
    heads = [tokenize(word)[0] for word in ("recommendation", "systems")]
    model.expansions = {"검색 엔진": [search[-1]], "추천 시스템": heads}
    got = term_metrics(model, pairs, top_n=50)
    assert got["en_activation"] == pytest.approx((1 / 3 + 2 / len(set(recommend))) / 2)
    assert got["en_word_activation"] == pytest.approx((0 / 2 + 2 / 2) / 2)


def test_a_bare_word_marker_is_no_word_head():
    """XLM-R-style vocabularies split a word they lack with "▁" first ("qq" -> ▁ q q): the head is the next piece."""
    model = ExpandingModel({}, tokenizer=build_sentencepiece_tokenizer())
    tok = model.tokenizer
    assert tok.tokenize("qq data") == ["▁", "q", "q", "▁d", "at", "a"]
    heads = np.flatnonzero(text_bags(model, ["qq data"], word_heads=True)[0])
    assert sorted(heads.tolist()) == sorted(tok.convert_tokens_to_ids(["q", "▁d"]))


def test_load_term_pairs_errors(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0], ensure_ascii=False) + "\n" + json.dumps({"ko": "서울", "en": ""}) + "\n")
    with pytest.raises(ValueError, match="pairs.jsonl:2"):
        load_term_pairs(path)


def test_run_eval_end_to_end(tmp_path, tiny_model_dir, capsys):
    bench = write_beir(tmp_path / "benchmarks" / "tiny-ret")
    out = tmp_path / "out"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS))
    argv = ["--model", str(tiny_model_dir), "--benchmark", "tiny-ret", f"beir:{bench}", "--benchmark-dir",
            str(tmp_path / "benchmarks"), "--baseline", "bm25", "--output", str(out), "--term-pairs", str(pairs),
            "--latency-queries", "2", "--opensearch", "--prune-type", "max_ratio", "--prune-ratio", "0.1"]
    assert run_eval.main(argv) == 0
    table = capsys.readouterr().out
    assert "nDCG@10" in table and "bm25" in table and tiny_model_dir.name in table
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"tiny-ret", "term_pairs"}
    for system in ("bm25", tiny_model_dir.name):
        metrics = results["tiny-ret"][system]
        assert {"ndcg@10", "mrr@10", "recall@10", "recall@100", "avg_query_terms", "avg_doc_terms", "flops",
                "latency_ms"} <= set(metrics)
    assert "doc_hangul_share" in results["tiny-ret"][tiny_model_dir.name]
    assert "synonym_mrr" in results["term_pairs"][tiny_model_dir.name]
    assert (out / "report.md").read_text().startswith("# Retrieval evaluation")
    for png in ("metrics_tiny-ret.png", "activations_tiny-ret.png", "languages_tiny-ret.png"):
        assert (out / png).stat().st_size > 1000
    cached = sorted((out / "cache").glob("*.npz"))
    assert [p.name.split("-")[0] for p in cached] == ["corpus", "queries"]
    mtimes = [p.stat().st_mtime_ns for p in cached]
    assert run_eval.main(argv[:7] + ["--output", str(out), "--latency-queries", "0"]) == 0
    assert [p.stat().st_mtime_ns for p in sorted((out / "cache").glob("*.npz"))] == mtimes


def test_run_eval_baseline_only_and_usage_errors(tmp_path, capsys):
    bench = write_beir(tmp_path / "b")
    assert run_eval.main(["--baseline", "bm25", "bm25-bigram", "--benchmark", f"beir:{bench}", "--output",
                          str(tmp_path / "out"), "--latency-queries", "0"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["b"]) == {"bm25", "bm25-bigram"}
    with pytest.raises(SystemExit):
        run_eval.main(["--benchmark", f"beir:{bench}"])


def test_run_eval_doc_only_idf_queries(tmp_path, tiny_model_dir):
    """The -idf-queries row ranks by the model's document vectors against bag-of-tokens x IDF queries (computed
    here from the tokenizer and the file), and reuses the splade row's cached document encodings."""
    from eval.beir import load_beir
    from eval.retrieval import evaluate_run
    from training import SparseEncoder

    bench = write_beir(tmp_path / "tiny-ret")
    model = SparseEncoder.from_pretrained(tiny_model_dir)
    vocab = model.tokenizer.get_vocab()
    idf = {tok: 1.0 + (i % 5) / 2 for i, tok in enumerate(sorted(vocab)) if i % 3}  # the rest default to 1.0
    (tmp_path / "idf.json").write_text(json.dumps(idf, ensure_ascii=False))
    out, pairs = tmp_path / "out", tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS))
    assert run_eval.main(["--model", str(tiny_model_dir), "--benchmark", f"beir:{bench}", "--doc-only-idf",
                          str(tmp_path / "idf.json"), "--output", str(out), "--cache-dir", str(tmp_path / "c"),
                          "--latency-queries", "0", "--term-pairs", str(pairs)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["term_pairs"]) == [tiny_model_dir.name]  # one document encoder, one set of term metrics
    got = results["tiny-ret"][f"{tiny_model_dir.name}-idf-queries"]

    benchmark = load_beir(bench)
    docs = model.encode(benchmark.corpus_texts).matrix.toarray()
    specials = set(model.tokenizer.all_special_ids)
    id_to_token = {i: t for t, i in vocab.items()}
    queries = np.zeros((len(benchmark.query_texts), docs.shape[1]))
    for row, text in enumerate(benchmark.query_texts):
        for i in set(model.tokenizer(text)["input_ids"]) - specials:
            queries[row, i] = idf.get(id_to_token[i], 1.0)
    scores = queries @ docs.T
    order = np.lexsort((np.broadcast_to(np.arange(docs.shape[0]), scores.shape), -scores), axis=1)
    expected = evaluate_run(benchmark, order, [1, 10, 100])
    for key in ("ndcg@10", "mrr@10", "recall@1"):
        assert got[key] == pytest.approx(expected[key])
    assert len(list((tmp_path / "c").glob("corpus-*.npz"))) == 1
    assert len(list((tmp_path / "c").glob("queries-*.npz"))) == 2


def test_run_eval_query_top_k(tmp_path, tiny_model_dir):
    """--query-top-k 2 ranks with each query's two largest weights only (kept here with numpy)."""
    from eval.beir import load_beir
    from eval.retrieval import evaluate_run
    from training import SparseEncoder

    bench = write_beir(tmp_path / "tiny-ret")
    out = tmp_path / "out"
    assert run_eval.main(["--model", str(tiny_model_dir), "--benchmark", f"beir:{bench}", "--query-top-k", "2",
                          "--output", str(out), "--latency-queries", "0"]) == 0
    got = json.loads((out / "results.json").read_text())["tiny-ret"][tiny_model_dir.name]

    model, benchmark = SparseEncoder.from_pretrained(tiny_model_dir), load_beir(bench)
    docs = model.encode(benchmark.corpus_texts).matrix.toarray()
    queries = model.encode(benchmark.query_texts, is_query=True).matrix.toarray()
    cut = np.zeros_like(queries)
    for row, top in enumerate(np.argsort(-queries, axis=1, kind="stable")[:, :2]):
        cut[row, top] = queries[row, top]
    scores = cut.astype(np.float64) @ docs.T
    order = np.lexsort((np.broadcast_to(np.arange(docs.shape[0]), scores.shape), -scores), axis=1)
    expected = evaluate_run(benchmark, order, [1, 10, 100])
    assert got["avg_query_terms"] == pytest.approx(2.0)
    for key in ("ndcg@10", "mrr@10", "recall@1"):
        assert got[key] == pytest.approx(expected[key])


def test_run_eval_accepts_run_train_flag_spelling():
    args = run_eval.parse_args(["--baseline", "bm25", "--benchmark", "beir:a_b", "--max_queries", "3",
                                "--max_seq_length=64"])
    assert (args.max_queries, args.max_seq_length, args.benchmark) == (3, 64, ["beir:a_b"])
