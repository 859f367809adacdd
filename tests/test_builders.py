"""Builders on small slices of the real data: contracts, splits that never leak, mining rules, bad input."""
import json
import os

import datasets
import numpy as np
import pytest

from builders.base import features
from builders.corpora import KORQUAD_TRAIN_ARTICLES, korquad_articles, korquad_questions, msmarco
from builders.export import build_and_export
from builders.mining import Bands, Pool, mine
from builders.contracts import TERM_PAIR, TRIPLET, BadRecords, RecordError, check_record, read_jsonl
from builders.term_pairs import TermPairs, clean_pair, krdict_glosses, romanize
from builders.triplets import Triplets

SMALL_TRIPLETS = ("korquad", "msmarco_ko", "korsts", "parallel_jhe")


@pytest.fixture(scope="module")
def term_pairs_dir(shared_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("term_pairs"))
    build_and_export(TermPairs, "term_pairs", out, data_dir=shared_data, teacher_filter=False,
                     sources=("it_ml_terms", "k8s_glossary", "cldr", "muse", "wiktionary"))
    return out


@pytest.fixture(scope="module")
def triplets_dir(shared_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("triplets"))
    build_and_export(Triplets, "triplets", out, data_dir=shared_data, sources=SMALL_TRIPLETS, max_per_source=40)
    return out


# --- contracts and bad input -------------------------------------------------------------------------------

def test_features_follow_the_contract():
    f = features(TRIPLET)
    assert list(f) == ["query", "positive", "negatives", "difficulty", "source"]
    assert f["negatives"] == datasets.List(datasets.Value("string"))
    assert features(TERM_PAIR)["ko"] == datasets.Value("string")


def test_check_record_names_the_field():
    assert check_record({"query": "q", "docs": ["a"], "scores": [1, 0.5]},
                        {"query": str, "docs": list[str], "scores": list[float]}) is None
    assert "missing field 'docs'" in check_record({"query": "q"}, {"query": str, "docs": list[str]})
    assert check_record({"scores": ["x"]}, {"scores": list[float]}) == "field 'scores[0]' must be a finite number, got 'x'"
    assert "field 'query' must be a string, got 3" == check_record({"query": 3}, {"query": str})


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "user.jsonl"
    path.write_bytes(b'{"query": "a", "positive": "b"}\n\n{"query": "a"\n{"query": "c"}\n'
                     b'{"query": "\xff\xfe", "positive": "d"}\n{"query": "e", "positive": "f"}\n')
    schema = {"query": str, "positive": str}
    with pytest.raises(RecordError, match=r"user.jsonl:3: malformed JSON"):
        list(read_jsonl(str(path), schema))
    bad = BadRecords(skip=True)
    good = list(read_jsonl(str(path), schema, bad))
    assert [r["query"] for r in good] == ["a", "e"]
    assert bad.total == 3
    assert any(":4: missing field 'positive'" in e for e in bad.examples)
    assert any(":5: not valid UTF-8" in e for e in bad.examples)


def test_missing_source_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"KorQuAD_v1.0_dev.json.*https://korquad.github.io"):
        korquad_articles(str(tmp_path), "train")


def test_user_jsonl_in_a_build_fails_loudly_or_is_counted(shared_data, tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"query": f"질문 {i} 검색", "positive": f"검색 문서 {i} 내용"} for i in range(12)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"mine.jsonl:13"):
        build_and_export(Triplets, "triplets", str(tmp_path / "out"), data_dir=shared_data, sources=(),
                         extra_jsonl=(str(path),), analyzer="bigram", hard_ranks=2, medium_ranks=4)
    counts = build_and_export(Triplets, "triplets", str(tmp_path / "out"), data_dir=shared_data, sources=(),
                              extra_jsonl=(str(path),), analyzer="bigram", hard_ranks=2, medium_ranks=4,
                              skip_bad_records=True)
    assert counts == {"train": 12}


# --- term pairs ----------------------------------------------------------------------------------------------

def test_krdict_glosses_keep_translations_only():
    assert romanize("다음에") == ("daeume", "daeume")
    assert romanize("김에") == ("gime", "gime")
    assert krdict_glosses("족족", "jokjok") == []  # a romanisation, not a translation
    assert krdict_glosses("-다오", "-dao") == []
    assert krdict_glosses("궁극적", "being final; being ultimate; final; ultimate") == ["final", "ultimate"]
    assert krdict_glosses("요러다", "do something this way; say something this way") == []
    assert krdict_glosses("집권당", "governing party; ruling party") == ["governing party", "ruling party"]


def test_clean_pair_normalises():
    assert clean_pair(" 머신\u3000러닝 ", "Machine  Learning") == ("머신 러닝", "machine learning")
    assert clean_pair("殷", "great") is None  # Hanja only
    assert clean_pair("Active", "Active") is None


def test_term_pairs_split_and_contract(term_pairs_dir, shared_data):
    ds = datasets.load_dataset(term_pairs_dir, "term_pairs")
    assert set(ds) == {"train", "test"}
    assert ds["train"].column_names == list(TERM_PAIR.fields)
    train, test = ds["train"].to_pandas(), ds["test"].to_pandas()
    assert not set(train.ko) & set(test.ko), "a test Korean term leaked into training"
    assert not train.duplicated(["ko", "en"]).any()
    assert (train.en == train.en.str.lower()).all()
    assert {"it_ml_terms", "k8s_glossary", "cldr", "muse", "wiktionary"} == set(train.source)
    assert set(test.source) == {"muse", "wiktionary"}
    # MUSE's own test file: 2,218 lines; ours keeps every well-formed one.
    with open(os.path.join(shared_data, "muse_dict_ko_en/ko-en.5000-6500.txt"), encoding="utf-8") as f:
        muse_test = {tuple(line.rstrip("\n").split("\t")) for line in f}
    assert len(test[test.source == "muse"]) == len({p for p in muse_test if clean_pair(*p)})
    assert ("머신러닝", "machine learning") in set(zip(train.ko, train.en))
    assert ("대한민국", "south korea") in set(zip(train.ko, train.en))  # CLDR territory KR
    card = open(os.path.join(term_pairs_dir, "README.md"), encoding="utf-8").read()
    assert "CC BY-NC 4.0" in card and "config_name: term_pairs" in card


def test_exclude_noncommercial_drops_muse(shared_data, tmp_path):
    build_and_export(TermPairs, "term_pairs", str(tmp_path), data_dir=shared_data, teacher_filter=False,
                     sources=("k8s_glossary", "muse", "wiktionary"), exclude_noncommercial=True)
    ds = datasets.load_dataset(str(tmp_path), "term_pairs")
    assert "muse" not in set(ds["train"]["source"]) | set(ds["test"]["source"])


# --- mining ---------------------------------------------------------------------------------------------------

def test_mining_bands_and_false_negatives():
    # Bigram BM25 ranks doc 1 = doc 3 (ties: lower index first) > doc 0 (longer) > doc 2; docs 4-9 share nothing.
    corpus = ["서울 날씨 오늘 맑음", "서울 날씨 흐림", "서울 여행", "답은 서울 날씨", "부산 바다", "대구 사과",
              "광주 음식", "제주 감귤", "강릉 커피", "전주 비빔밥"]
    pool = Pool("toy", ["서울 날씨"], ["서울 날씨 오늘 맑음"], corpus, relevant=[{0}], answers=[["답은"]])
    stats = {}
    out = list(mine(pool, Bands(hard=1, medium=1, easy=2, hard_ranks=1, medium_ranks=4),
                    np.random.default_rng(0), analyzer="bigram", stats=stats))
    (qi, negatives, difficulty), = out
    assert difficulty == ["hard", "medium", "easy", "easy"]
    assert negatives[0] == "서울 날씨 흐림"  # rank 1 after the positive (rank 0) is excluded
    assert negatives[1] == "서울 여행"
    assert "답은 서울 날씨" not in negatives and stats["answer_false_negatives"] >= 1
    assert set(negatives[2:]) <= set(corpus[4:])


def test_mining_counts_queries_without_enough_negatives():
    pool = Pool("toy", ["a b"], ["a b"], ["a b", "a c"])
    stats = {}
    assert list(mine(pool, Bands(1, 1, 1), np.random.default_rng(0), analyzer="bigram", stats=stats)) == []
    assert stats["too_few_negatives"] == 1


# --- triplets -------------------------------------------------------------------------------------------------

def test_triplets_contract_and_negatives(triplets_dir):
    ds = datasets.load_dataset(triplets_dir, "triplets")
    assert set(ds) == {"train", "validation"}
    train = ds["train"]
    assert train.column_names == list(TRIPLET.fields)
    assert set(train["source"]) == {"korquad", "msmarco_ko", "korsts", "parallel_jhe:ko-en", "parallel_jhe:en-ko"}
    assert len(train) == 40 * 5
    for row in train:
        assert len(row["negatives"]) == 4 == len(set(row["negatives"]))
        assert row["positive"] not in row["negatives"]
        assert row["difficulty"] == sorted(row["difficulty"], key=["hard", "medium", "easy"].index)
        assert set(row["difficulty"]) <= {"hard", "medium", "easy"}
    assert set(ds["validation"]["source"]) == {"korquad", "msmarco_ko"}


def test_no_eval_article_or_query_in_training(triplets_dir, shared_data):
    eval_paragraphs = {q[2] for q in korquad_questions(korquad_articles(shared_data, "eval"))}
    eval_questions = {q[1] for q in korquad_questions(korquad_articles(shared_data, "eval"))}
    assert len(korquad_articles(shared_data, "train")) == KORQUAD_TRAIN_ARTICLES
    assert len(korquad_articles(shared_data, "eval")) == 40
    train = datasets.load_dataset(triplets_dir, "triplets", split="train").to_pandas()
    kq = train[train.source == "korquad"]
    texts = set(kq.positive) | {n for negs in kq.negatives for n in negs}
    assert not texts & eval_paragraphs
    assert not set(kq["query"]) & eval_questions
    eval_ms = {r["query"] for r in msmarco(shared_data, "kor", "eval")}
    assert not set(train[train.source == "msmarco_ko"]["query"]) & eval_ms


def test_korquad_negatives_never_contain_the_answer(triplets_dir, shared_data):
    answers = {q[1]: q[3] for q in korquad_questions(korquad_articles(shared_data, "train"))}
    train = datasets.load_dataset(triplets_dir, "triplets", split="train").to_pandas()
    for _, row in train[train.source == "korquad"].iterrows():
        assert not any(a in n for a in answers[row["query"]] for n in row["negatives"])


def test_triplets_deterministic_for_a_seed(shared_data, tmp_path):
    def build(name, num_proc=None, seed=13):
        build_and_export(Triplets, "triplets", str(tmp_path / name), num_proc=num_proc, data_dir=shared_data,
                         sources=("korsts", "parallel_jhe"), max_per_source=15, analyzer="bigram", seed=seed)
        return datasets.load_dataset(str(tmp_path / name), "triplets", split="train").to_list()

    first = build("a")
    assert build("b") == first
    assert build("c", seed=14) != first


class FakeTeacher:
    """Embeds each term as a fixed unit vector, so the margins are known exactly."""

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, is_query=False, show_progress=False):
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def test_teacher_filter_drops_pairs_no_closer_than_chance():
    from collections import Counter, defaultdict

    from builders.term_pairs import filter_with_teacher, teacher_margins

    e = np.eye(4)
    vectors = {"사과": e[0], "apple": e[0], "개": e[1], "dog": e[1], "책": e[2], "noise": e[3]}
    rows = [{"ko": "사과", "en": "apple", "source": "s"}, {"ko": "개", "en": "dog", "source": "s"},
            {"ko": "책", "en": "noise", "source": "t"}]
    teacher = FakeTeacher(vectors)
    margins = teacher_margins(teacher, [r["ko"] for r in rows], [r["en"] for r in rows], seed=0, background=3)
    # cos 1 minus mean similarity to the 3 background terms (1/3 each side) for true pairs; 0 - 0 for the noise.
    np.testing.assert_allclose(margins, [1 - 1 / 3, 1 - 1 / 3, 0.0], atol=1e-6)
    stats = defaultdict(Counter)
    kept = filter_with_teacher(rows, teacher, min_margin=0.1, seed=0, stats=stats)
    assert [r["en"] for r in kept] == ["apple", "dog"]
    assert stats["t"]["teacher_dropped"] == 1


def test_dense_mining_uses_the_teacher():
    from builders.teacher import DenseTeacher

    corpus = ["고양이는 귀여운 동물이다", "주식 시장이 폭락했다", "강아지는 충성스러운 동물이다", "금리가 올랐다",
              "축구 경기 결과", "비가 온다"]
    pool = Pool("toy", ["귀여운 반려동물"], [corpus[0]], corpus, relevant=[{0}])
    (qi, negatives, difficulty), = mine(pool, Bands(hard=1, medium=0, easy=1, hard_ranks=2, medium_ranks=2),
                                       np.random.default_rng(0), miner="dense", teacher=DenseTeacher())
    assert negatives[0] == "강아지는 충성스러운 동물이다" and difficulty == ["hard", "easy"]


def test_card_lists_each_licence_once():
    """The cross-lingual MS MARCO sources are msmarco_ko's licence under other names: one table row, one warning."""
    from builders.export import card_section
    from builders.sources import SOURCES

    names = ["korquad", "msmarco_ko", "msmarco_koen", "msmarco_enko"]
    card = card_section("distillation", "", [SOURCES[n] for n in names], {"train": 4}, {}, None, "")
    rows = [line for line in card.splitlines() if line.startswith("| msmarco_ko |")]
    warnings = next(line for line in card.splitlines() if line.startswith("**Licence warnings:**"))
    assert len(rows) == 1
    assert warnings.count("msmarco_ko: non-commercial use only") == 1
    assert warnings.count("korquad: no derivatives") == 1
