"""The retrieval sources that training sets and benchmarks share, with the one train/eval split they all obey:
KorQuAD dev by article (first 100 train, last 40 eval) and the MS MARCO Korean subset by position (last 1,000
queries eval). Triplets, distillation and benchmarks all call these, so no eval query or article can leak."""
from __future__ import annotations

from builders.base import normalize
from builders.contracts import BadRecords, RecordError, check_record
from builders.records import read_json
from builders.sources import locate

KORQUAD_TRAIN_ARTICLES = 100
MSMARCO_EVAL_QUERIES = 1000
SPLITS = ("train", "eval")

_MSMARCO = {"id": int, "query": str, "positive": list[str]}


def korquad_articles(data_dir: str | None, split: str) -> list[dict]:
    """KorQuAD 1.0 dev articles of one split: [{"title", "paragraphs": [{"context", "qas": [...]}]}]."""
    path = locate(data_dir, "korquad", "korquad_v1/KorQuAD_v1.0_dev.json")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RecordError(path, 1, "expected SQuAD-style JSON with a 'data' list of articles")
    articles = data["data"]
    return articles[:KORQUAD_TRAIN_ARTICLES] if split == "train" else articles[KORQUAD_TRAIN_ARTICLES:]


def korquad_questions(articles: list[dict]):
    """(question id, question, paragraph text, answer texts, article title) for every question."""
    for article in articles:
        for paragraph in article["paragraphs"]:
            context = normalize(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = [normalize(a["text"]) for a in qa.get("answers", [])]
                yield qa["id"], normalize(qa["question"]), context, answers, article.get("title", "")


def msmarco(data_dir: str | None, lang: str, split: str | None, bad: BadRecords | None = None) -> list[dict]:
    """MS MARCO Korean subset records {"id","query","positive":[...]} (lang "kor" or "eng", aligned by id);
    split "train" / "eval" / None (all)."""
    bad = bad or BadRecords()
    path = locate(data_dir, "msmarco_ko", f"msmarco_ko/msmarco_{lang}.json")
    records = read_json(path)
    if not isinstance(records, list):
        raise RecordError(path, 1, "expected a JSON list of {id, query, positive} records")
    good = []
    for i, rec in enumerate(records):
        problem = check_record(rec, _MSMARCO)
        if problem:
            bad(path, 1, f"record {i}: {problem}")
            continue
        good.append({"id": rec["id"], "query": normalize(_unmangle(rec["query"])),
                     "positive": [normalize(_unmangle(p)) for p in rec["positive"]]})
    cut = len(good) - MSMARCO_EVAL_QUERIES
    return good if split is None else good[:cut] if split == "train" else good[cut:]


def _unmangle(text: str) -> str:
    """Repair UTF-8 read as Latin-1 ("c.1590 â\x80\x93 1657" -> "c.1590 – 1657"), as in the English MS MARCO."""
    if "\u00c2" not in text and "\u00c3" not in text and "\u00e2" not in text:
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text
