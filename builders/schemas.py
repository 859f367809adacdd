"""The data contracts, one place: field -> Python type. Builders, the JSONL validator and the training collators all
read these, so a user's own JSONL and our built datasets agree on names and types."""

TERM_PAIR = {"ko": str, "en": str, "source": str, "category": str}
TRIPLET = {"query": str, "positive": str, "negatives": list[str], "difficulty": list[str], "source": str}
DISTILLATION = {"query": str, "docs": list[str], "scores": list[float]}
# A benchmark is a BEIR folder: corpus.jsonl, queries.jsonl and qrels/test.tsv (tab-separated, with a header).
BENCHMARK = {
    "corpus": {"_id": str, "title": str, "text": str},
    "queries": {"_id": str, "text": str},
    "qrels": {"query-id": str, "corpus-id": str, "score": int},
}

SCHEMAS = {
    "term_pairs": TERM_PAIR,
    "triplets": TRIPLET,
    "distillation": DISTILLATION,
    "corpus": BENCHMARK["corpus"],
    "queries": BENCHMARK["queries"],
    "qrels": BENCHMARK["qrels"],
}
DIFFICULTIES = ("hard", "medium", "easy")
