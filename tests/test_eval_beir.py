"""BEIR loading errors, run evaluation through the index, the BM25 baseline and the training-time evaluator."""
import json

import numpy as np
import pytest

from eval.baselines import BM25Baseline
from eval.beir import BenchmarkError, load_beir, resolve_benchmark
from eval.index import SparseIndex
from eval.retrieval import RetrievalEvaluator, encode_cached, evaluate_run
from eval.sparse_retrieval import compute_from_dicts

CORPUS = [
    {"_id": "d1", "title": "서울", "text": "서울은 대한민국의 수도이다."},
    {"_id": "d2", "title": "", "text": "머신러닝 모델은 데이터에서 패턴을 학습한다."},
    {"_id": "d3", "title": "검색", "text": "검색 엔진은 문서를 색인하고 질의에 답한다."},
    {"_id": "d4", "title": "", "text": "추천 시스템은 사용자에게 상품을 추천한다."},
    {"_id": "d5", "title": "", "text": "OpenSearch uses an inverted index."},
]
QUERIES = [
    {"_id": "q1", "text": "대한민국의 수도는?"},
    {"_id": "q2", "text": "머신러닝 모델"},
    {"_id": "q3", "text": "검색 엔진 색인"},
    {"_id": "q4", "text": "inverted index"},
    {"_id": "q5", "text": "이 질문은 test 분할에 없다"},
]
QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d4", 1), ("q3", "d3", 1), ("q4", "d5", 1), ("q4", "d3", 0)]


def write_beir(root, corpus=CORPUS, queries=QUERIES, qrels_lines=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in queries))
    lines = qrels_lines or ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in QRELS]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def beir_dir(tmp_path):
    return write_beir(tmp_path / "tiny-ret")


def test_load_beir(beir_dir):
    b = load_beir(beir_dir)
    assert b.name == "tiny-ret" and b.corpus_ids == ["d1", "d2", "d3", "d4", "d5"]
    assert b.corpus_texts[0] == "서울 서울은 대한민국의 수도이다." and b.corpus_texts[1].startswith("머신러닝")
    assert b.query_ids == ["q1", "q2", "q3", "q4"]  # q5 has no judgement in this split
    assert b.qrels[1] == {"d2": 2, "d4": 1} and b.qrels[3] == {"d5": 1, "d3": 0}
    assert b.qrels_matrix().toarray()[1].tolist() == [0, 2, 0, 1, 0]
    assert b.subset(2).query_ids == ["q1", "q2"]
    assert resolve_benchmark("tiny-ret", beir_dir.parent) == beir_dir
    assert str(resolve_benchmark(f"beir:{beir_dir}")) == str(beir_dir)
    with pytest.raises(FileNotFoundError, match="available: \\['tiny-ret'\\]"):
        resolve_benchmark("nope", beir_dir.parent)


def test_qrels_corpus_id_absent_from_corpus(tmp_path):
    root = write_beir(tmp_path / "b", qrels_lines=["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td9\t1"])
    with pytest.raises(BenchmarkError, match=r"test\.tsv:3: corpus-id 'd9' is not in corpus.jsonl"):
        load_beir(root)


def test_qrels_query_id_absent(tmp_path):
    root = write_beir(tmp_path / "b", qrels_lines=["q1\td1\t1", "q77\td1\t1"])  # no header is fine too
    with pytest.raises(BenchmarkError, match=r"test\.tsv:2: query-id 'q77'"):
        load_beir(root)


def test_empty_query(tmp_path):
    queries = QUERIES[:1] + [{"_id": "q2", "text": "   "}] + QUERIES[2:]
    root = write_beir(tmp_path / "b", queries=queries)
    with pytest.raises(BenchmarkError, match=r"queries\.jsonl:2: query 'q2' is empty"):
        load_beir(root)


@pytest.mark.parametrize("bad_line, message", [
    ("q1\td1", "test\\.tsv:3: expected 3 tab-separated fields"),
    ("q1 d1 1", "test\\.tsv:3: expected 3 tab-separated fields"),
    ("q1\td1\thigh", "test\\.tsv:3: score 'high' is not an integer"),
])
def test_malformed_qrels_line(tmp_path, bad_line, message):
    root = write_beir(tmp_path / "b", qrels_lines=["query-id\tcorpus-id\tscore", "q1\td1\t1", bad_line])
    with pytest.raises(BenchmarkError, match=message):
        load_beir(root)


def test_malformed_jsonl_and_missing_files(tmp_path, beir_dir):
    with (beir_dir / "corpus.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(BenchmarkError, match=r"corpus\.jsonl:6: malformed JSON"):
        load_beir(beir_dir)
    root = write_beir(tmp_path / "dup", corpus=CORPUS + [CORPUS[0]])
    with pytest.raises(BenchmarkError, match=r"corpus\.jsonl:6: duplicate _id 'd1'"):
        load_beir(root)
    with pytest.raises(FileNotFoundError, match="qrels splits found: \\['test'\\]"):
        load_beir(write_beir(tmp_path / "ok"), split="dev")


def test_evaluate_run_matches_dict_metric(beir_dir):
    b = load_beir(beir_dir)
    rng = np.random.default_rng(0)
    scores = rng.random((b.num_queries, len(b.corpus_ids)))
    indices = np.argsort(-scores, axis=1)[:, :4]
    got = evaluate_run(b, indices, [1, 3, 10])
    predictions = [{b.corpus_ids[j]: scores[i, j] for j in indices[i]} for i in range(b.num_queries)]
    assert got == pytest.approx(compute_from_dicts(predictions, b.qrels, [1, 3, 10]), abs=1e-12)


def test_bm25_baseline_equals_bm25s_scores(beir_dir):
    b = load_beir(beir_dir)
    for analyzer in ("mecab", "bigram"):
        baseline = BM25Baseline(analyzer)
        docs = baseline.index(b.corpus_texts)
        queries = baseline.encode_queries(b.query_texts + ["검색 검색 엔진", "없는낱말"])
        expected = baseline.bm25.score_matrix(b.query_texts + ["검색 검색 엔진", "없는낱말"])
        np.testing.assert_allclose(SparseIndex(docs).scores(queries), expected, rtol=1e-5, atol=1e-6)
        indices, _ = SparseIndex(docs).search(queries[: b.num_queries], k=3)
        metrics = evaluate_run(b, indices, [1, 3])
        assert metrics["recall@3"] >= 0.75, (analyzer, metrics)


def test_retrieval_evaluator_and_cache(beir_dir, tiny_model_dir, tmp_path):
    from training import SparseEncoder

    model = SparseEncoder.from_pretrained(tiny_model_dir)
    metrics = RetrievalEvaluator(beir_dir, k_values=(1, 10), max_queries=3)(model)
    assert {"ndcg@10", "mrr@10", "recall@1", "avg_query_terms", "avg_doc_terms", "flops"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("ndcg@10", "mrr@10", "recall@10"))
    texts = load_beir(beir_dir).corpus_texts
    first = encode_cached(model, texts, tmp_path / "cache", model_dir=tiny_model_dir, show_progress_bar=False)
    assert len(list((tmp_path / "cache").glob("corpus-*.npz"))) == 1
    again = encode_cached(model, texts, tmp_path / "cache", model_dir=tiny_model_dir, show_progress_bar=False)
    assert (first != again).nnz == 0 and first.shape == again.shape


def test_run_model_reports_and_warns_about_cut_documents(tmp_path, tiny_model_dir, caplog):
    """Documents of 1-5 copies of a sentence, a model whose limit holds two copies: three of five are cut."""
    from eval.runner import run_model
    from training import SparseEncoder

    sentence = CORPUS[1]["text"]
    model = SparseEncoder.from_pretrained(tiny_model_dir).eval()
    pieces = len(model.tokenizer(sentence, add_special_tokens=False)["input_ids"])
    model.config.max_seq_length = 2 + 2 * pieces  # [CLS] two copies [SEP]
    corpus = [{"_id": f"d{k}", "title": "", "text": " ".join([sentence] * k)} for k in range(1, 6)]
    queries = [{"_id": "q1", "text": "머신러닝 모델"}]
    root = write_beir(tmp_path / "long-docs", corpus=corpus, queries=queries,
                      qrels_lines=["query-id\tcorpus-id\tscore", "q1\td1\t1"])
    with caplog.at_level("WARNING", logger="eval.runner"):
        metrics, _, _ = run_model(model, load_beir(root), k_values=(1,), latency_queries=1)
    assert metrics["truncated_docs"] == pytest.approx(3 / 5)
    assert metrics["truncated_queries"] == 0.0
    assert [r.getMessage() for r in caplog.records] == [
        f"long-docs: 60.0% of the docs are longer than the model's {2 + 2 * pieces} pieces and are cut there "
        "(--max-seq-length)"]
