"""One contracts module (builders/contracts.py) behind every JSONL reader: the same record breaks every reader with
the same `file:line: field` message, and a corpus record becomes the same text wherever it is read."""
import json

import pytest

from builders.contracts import RecordError, check_record, TRIPLET, read_corpus
from tests.tiny import SENTENCES

KO, EN = SENTENCES[0::2], SENTENCES[1::2]


def _write(path, lines):
    path.write_text("".join((json.dumps(x, ensure_ascii=False) if isinstance(x, dict) else x) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def test_every_reader_names_file_line_and_field(tmp_path):
    from deploy.opensearch.__main__ import _read_corpus
    from eval.beir import BenchmarkError, load_beir
    from eval.terms import load_term_pairs
    from training.data import read_jsonl

    pairs = _write(tmp_path / "pairs.jsonl", [{"ko": "서울", "en": "seoul"}, {"ko": "부산", "en": 7}])
    expected = f"{pairs}:2: field 'en' must be a string, got 7"
    with pytest.raises(RecordError) as training:
        read_jsonl(pairs)
    with pytest.raises(RecordError) as terms:
        load_term_pairs(pairs)
    assert str(training.value) == str(terms.value) == expected

    bench = tmp_path / "bench"
    (bench / "qrels").mkdir(parents=True)
    corpus = _write(bench / "corpus.jsonl", [{"_id": "d1", "text": KO[0]}, {"_id": "d2", "title": 3, "text": KO[1]}])
    _write(bench / "queries.jsonl", [{"_id": "q1", "text": KO[0][:6]}])
    (bench / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    expected = f"{corpus}:2: field 'title' must be a string, got 3"
    with pytest.raises(BenchmarkError) as beir:
        load_beir(bench)
    with pytest.raises(SystemExit) as deploy:
        _read_corpus(str(corpus))
    assert str(beir.value) == str(deploy.value) == expected


def test_a_corpus_record_is_one_text_for_evaluation_and_indexing(tmp_path):
    from deploy.opensearch.__main__ import _read_corpus
    from eval.beir import load_beir

    bench = tmp_path / "bench"
    (bench / "qrels").mkdir(parents=True)
    records = [{"_id": 1, "title": "  서울 ", "text": f" {KO[6]}\n"}, {"_id": "d2", "title": "", "text": EN[3]},
               {"_id": "d3", "text": KO[2]}]
    corpus = _write(bench / "corpus.jsonl", records)
    _write(bench / "queries.jsonl", [{"_id": "q1", "text": "서울"}])
    (bench / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n", encoding="utf-8")
    expected = [f"서울 {KO[6]}", EN[3], KO[2]]
    benchmark = load_beir(bench)
    assert benchmark.corpus_ids == ["1", "d2", "d3"] and benchmark.corpus_texts == expected
    assert _read_corpus(str(corpus)) == (["1", "d2", "d3"], expected)


def test_triplet_value_rules(tmp_path):
    good = {"query": KO[0][:6], "positive": KO[0], "negatives": [KO[1], KO[2]], "difficulty": ["easy", "hard"]}
    assert check_record(good, TRIPLET) is None
    assert check_record({**good, "difficulty": ["easy", "tough"]}, TRIPLET) == \
        "field 'difficulty[1]' must be one of ('easy', 'medium', 'hard'), got 'tough'"
    assert check_record({**good, "difficulty": ["easy"]}, TRIPLET) == "'difficulty' has 1 entries but 'negatives' has 2"
    assert check_record({**good, "negatives": None, "difficulty": None}, TRIPLET) is None  # None: absent
    assert check_record({**good, "positive": None}, TRIPLET) == "missing field 'positive' required for triplets"
    with pytest.raises(RecordError, match=r"c.jsonl:3: duplicate _id 'a' \(first on line 1\)"):
        read_corpus(_write(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}, "", {"_id": "a", "text": "y"}]))
