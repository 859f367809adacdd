"""Retrieval benchmarks as BEIR folders (corpus.jsonl, queries.jsonl, qrels/test.tsv), the format
`run_eval.py --benchmark beir:PATH` reads.

Offline: `korquad-dev-ret` (questions of the 40 KorQuAD eval articles over their paragraphs), `msmarco-ko`
(the 1,000 eval queries over all 5,006 Korean passages), `msmarco-koen` (Korean queries, English passages) and
`msmarco-enko` (English queries, Korean passages), and `korsts-ret` (KorSTS test: a sentence -> its paraphrase,
scored >= 4 of 5, among the 1,327 distinct second sentences; a domain ko-en-base holds out of training: image captions,
news headlines, forum posts), and `xnli-ret` (XNLI-ko test: an entailed hypothesis -> its premise among the 1,670
premises; MultiNLI's genres, which no training source covers). With the public files downloaded: `ko-strategyqa` (the
taeminlee/Ko-StrategyQA BEIR layout, dev qrels) and `miracl-ko` (MIRACL topics / TREC qrels / corpus jsonl)."""
from __future__ import annotations

import glob
import json
import os

from builders.base import normalize
from builders.corpora import korquad_articles, korquad_questions, msmarco
from builders.export import card_section
from builders.contracts import BENCHMARK, BadRecords, read_jsonl, read_lines
from builders.records import read_tsv
from builders.sources import SOURCES, locate


def korquad_dev_ret(data_dir):
    corpus, by_text, queries, qrels = [], {}, [], []
    for qid, question, context, _, title in korquad_questions(korquad_articles(data_dir, "eval")):
        if context not in by_text:
            by_text[context] = qid.rsplit("-", 1)[0]  # KorQuAD question ids are <paragraph id>-<n>
            corpus.append({"_id": by_text[context], "title": normalize(title), "text": context})
        queries.append({"_id": qid, "text": question})
        qrels.append((qid, by_text[context], 1))
    return corpus, queries, qrels


def _msmarco(data_dir, query_lang: str, doc_lang: str):
    docs_all = msmarco(data_dir, doc_lang, None)
    eval_ids = {r["id"] for r in msmarco(data_dir, query_lang, "eval")}
    queries_by_id = {r["id"]: r["query"] for r in msmarco(data_dir, query_lang, None)}
    corpus, seen, queries, qrels = [], {}, [], []
    for rec in docs_all:
        ids = []
        for k, text in enumerate(rec["positive"]):
            if text not in seen:
                seen[text] = f"{rec['id']}-{k}"
                corpus.append({"_id": seen[text], "title": "", "text": text})
            ids.append(seen[text])
        if rec["id"] in eval_ids:
            queries.append({"_id": str(rec["id"]), "text": queries_by_id[rec["id"]]})
            qrels += [(str(rec["id"]), doc_id, 1) for doc_id in dict.fromkeys(ids)]
    return corpus, queries, qrels


def korsts_ret(data_dir, bad=None, min_score: float = 4.0):
    """KorSTS test as paraphrase retrieval: sentence1 -> sentence2 for pairs scored >= `min_score`; the corpus is
    every distinct sentence2, so a query never finds itself (as BEIR's Quora does by skipping the query's id)."""
    bad = bad or BadRecords()
    path = locate(data_dir, "korsts", "kor_nlu_kakaobrain/sts-test.tsv")
    rows = []
    for number, row in read_tsv(path, 7, bad, header=True):
        try:
            rows.append((float(row[4]), normalize(row[5]), normalize(row[6])))
        except ValueError:
            bad(path, number, f"field 'score': not a number: {row[4]!r}")
    return _pair_benchmark([second for _, _, second in rows],
                           [(first, second) for score, first, second in rows if score >= min_score], "q", "s")


def xnli_ret(data_dir, bad=None):
    """XNLI-ko test as entailment retrieval: a hypothesis the premise entails -> that premise, among every distinct
    premise. MultiNLI's genres (government reports, letters, telephone speech, fiction, travel guides) are a domain
    no training source covers."""
    bad = bad or BadRecords()
    path = locate(data_dir, "xnli_ko", "kor_nlu_kakaobrain/xnli.test.ko.tsv")
    rows = [(normalize(premise), normalize(hypothesis), label.strip())
            for _, (premise, hypothesis, label) in read_tsv(path, 3, bad, header=True)]
    return _pair_benchmark([premise for premise, _, _ in rows],
                           [(hypothesis, premise) for premise, hypothesis, label in rows if label == "entailment"],
                           "h", "p")


def _pair_benchmark(documents, pairs, query_prefix: str, doc_prefix: str):
    """(corpus, queries, qrels) from every document text and the relevant (query, document) text pairs: the corpus
    is each distinct document, and a query that is itself a document is left out, so it never finds itself (as
    BEIR's Quora does by skipping the query's id)."""
    doc_id = {}
    for text in documents:
        doc_id.setdefault(text, f"{doc_prefix}{len(doc_id)}")
    corpus = [{"_id": i, "title": "", "text": t} for t, i in doc_id.items()]
    queries, qrels, query_id = [], [], {}
    for query, document in pairs:
        if query in doc_id:
            continue
        if query not in query_id:
            query_id[query] = f"{query_prefix}{len(query_id)}"
            queries.append({"_id": query_id[query], "text": query})
        qrels.append((query_id[query], doc_id[document], 1))
    return corpus, queries, list(dict.fromkeys(qrels))


def ko_strategyqa(data_dir, bad=None):
    """taeminlee/Ko-StrategyQA: corpus.jsonl, queries.jsonl, qrels/dev.jsonl ({query-id, corpus-id, score})."""
    bad = bad or BadRecords()
    corpus = [{"_id": str(r["_id"]), "title": r.get("title") or "", "text": r["text"]}
              for r in read_jsonl(locate(data_dir, "ko_strategyqa", "ko_strategyqa/corpus.jsonl"),
                                  {"_id": str, "text": str}, bad)]
    qrel_rows = read_jsonl(locate(data_dir, "ko_strategyqa", "ko_strategyqa/qrels/dev.jsonl"),
                           {"query-id": str, "corpus-id": str, "score": float}, bad)
    qrels = [(r["query-id"], r["corpus-id"], int(r["score"])) for r in qrel_rows]
    wanted = {q for q, _, _ in qrels}
    queries = [{"_id": r["_id"], "text": r["text"]}
               for r in read_jsonl(locate(data_dir, "ko_strategyqa", "ko_strategyqa/queries.jsonl"),
                                   BENCHMARK["queries"], bad) if r["_id"] in wanted]
    return corpus, queries, qrels


def miracl_ko(data_dir, bad=None):
    """miracl/miracl (ko dev topics + TREC qrels) with miracl/miracl-corpus (docs-*.jsonl[.gz]: docid/title/text)."""
    bad = bad or BadRecords()
    topics = locate(data_dir, "miracl_ko", "miracl_ko/topics.miracl-v1.0-ko-dev.tsv")
    queries = []
    for number, text in read_lines(topics, bad):
        if not text.strip():
            continue
        qid, _, query = text.partition("\t")
        if not query:
            bad(topics, number, "expected 'query-id<TAB>query'")
            continue
        queries.append({"_id": qid, "text": query})
    qrels_path = locate(data_dir, "miracl_ko", "miracl_ko/qrels.miracl-v1.0-ko-dev.tsv")
    qrels = []
    for number, text in read_lines(qrels_path, bad):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 4 or not fields[3].lstrip("-").isdigit():
            bad(qrels_path, number, "expected TREC qrels 'query-id Q0 doc-id relevance'")
            continue
        qrels.append((fields[0], fields[2], int(fields[3])))
    folder = locate(data_dir, "miracl_ko", "miracl_ko/corpus")
    corpus = []
    for path in sorted(glob.glob(os.path.join(folder, "docs-*.jsonl*"))):
        for r in read_jsonl(path, {"docid": str, "title": str, "text": str}, bad):
            corpus.append({"_id": r["docid"], "title": r["title"], "text": r["text"]})
    if not corpus:
        url = SOURCES["miracl_ko"].files["miracl_ko/corpus"]
        raise FileNotFoundError(f"{folder} holds no docs-*.jsonl[.gz]; download them from {url}")
    return corpus, queries, qrels


# name -> (reader, sources it reads, description)
BENCHMARKS = {
    "korquad-dev-ret": (korquad_dev_ret, ("korquad",), "KorQuAD 1.0 dev, 40 eval articles: question -> paragraph"),
    "msmarco-ko": (lambda d: _msmarco(d, "kor", "kor"), ("msmarco_ko",), "MS MARCO Korean: ko query -> ko passage"),
    "msmarco-koen": (lambda d: _msmarco(d, "kor", "eng"), ("msmarco_ko",), "ko query -> en passage"),
    "msmarco-enko": (lambda d: _msmarco(d, "eng", "kor"), ("msmarco_ko",), "en query -> ko passage"),
    "korsts-ret": (korsts_ret, ("korsts",), "KorSTS test: sentence -> paraphrase (score >= 4)"),
    "xnli-ret": (xnli_ret, ("xnli_ko",), "XNLI-ko test: hypothesis -> the premise that entails it"),
}
HUB_BENCHMARKS = {
    "ko-strategyqa": (ko_strategyqa, ("ko_strategyqa",), "Ko-StrategyQA dev (BEIR layout from the hub)"),
    "miracl-ko": (miracl_ko, ("miracl_ko",), "MIRACL Korean dev"),
}


def write_beir(folder: str, corpus: list[dict], queries: list[dict], qrels: list[tuple]) -> dict:
    """Write a BEIR folder; every qrel must point at a known query and document."""
    doc_ids, query_ids = {d["_id"] for d in corpus}, {q["_id"] for q in queries}
    missing = [(q, d) for q, d, _ in qrels if q not in query_ids or d not in doc_ids]
    if missing:
        raise ValueError(f"{len(missing)} qrels point at unknown queries/documents, e.g. {missing[:3]}")
    os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(os.path.join(folder, "qrels", "test.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    return {"corpus": len(corpus), "queries": len(queries), "qrels": len(qrels)}


def export_benchmark(name: str, data_dir: str, output_dir: str, exclude_noncommercial: bool = False,
                     command: str = "") -> dict:
    """Build one benchmark into `<output_dir>/<name>/` with a README card; returns its counts."""
    table = {**BENCHMARKS, **HUB_BENCHMARKS}
    if name not in table:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(table)}")
    reader, source_names, description = table[name]
    sources = [SOURCES[s] for s in source_names]
    if exclude_noncommercial and not all(s.commercial for s in sources):
        raise ValueError(f"{name} reads non-commercial sources ({', '.join(s.name for s in sources)})")
    corpus, queries, qrels = reader(data_dir)
    folder = os.path.join(output_dir, name)
    counts = write_beir(folder, corpus, queries, qrels)
    card = card_section(name, description, sources, counts, {}, None, command)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"# {name} (BEIR format)\n\nEvaluate with `python run_eval.py --benchmark beir:{folder}`.\n\n{card}")
    return counts
