"""Context-discrimination pairs from KorQuAD (the 40 eval articles, never trained on): one noun that occurs in
sentences of two unrelated articles, each sentence with a reference text for its context (the article title and
the rest of its paragraph). Built at run time from the raw file (KorQuAD is CC BY-ND: no derived file is
redistributed). The metric is `eval.context.context_discrimination`."""
from __future__ import annotations

import random
import re
from collections import defaultdict

from builders.base import normalize
from builders.corpora import korquad_articles

NOUN_TAGS = ("NNG", "NNP")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(paragraph: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(paragraph) if s.strip()]


def korquad_context_pairs(data_dir, max_pairs: int = 200, max_articles_per_noun: int = 8,
                          max_paragraph_overlap: float = 0.05, min_chars: int = 20, max_chars: int = 200,
                          seed: int = 13) -> list[dict]:
    """Pairs {"phrase", "text_a", "span_a", "reference_a", "text_b", "span_b", "reference_b", "source"}.

    A phrase is a mecab noun (NNG/NNP, 2+ characters, starting a word) found in 2 to `max_articles_per_noun`
    articles: shared across topics, yet not a word every article uses. Its two sentences come from different
    articles whose paragraphs share at most `max_paragraph_overlap` of their nouns (Jaccard, the phrase left out):
    clearly different contexts. Per noun the least-overlapping pair is kept; `max_pairs` nouns are drawn with `seed`."""
    import mecab

    tagger = mecab.MeCab()
    occurrences = defaultdict(list)  # noun -> [(article, paragraph key, sentence, span)]
    paragraph_nouns, references = {}, {}
    for a, article in enumerate(korquad_articles(data_dir, "eval")):
        title = normalize(article.get("title", "")).replace("_", " ")
        for p, paragraph in enumerate(article["paragraphs"]):
            sentences = _sentences(normalize(paragraph["context"]))
            key = (a, p)
            paragraph_nouns[key] = set()
            for s, sentence in enumerate(sentences):
                nouns = [m for m in tagger.parse(sentence) if m.feature.pos in NOUN_TAGS and len(m.surface) >= 2]
                paragraph_nouns[key].update(m.surface for m in nouns)
                if not min_chars <= len(sentence) <= max_chars or len(sentences) < 2:
                    continue
                references[(a, p, s)] = " ".join([title, *sentences[:s], *sentences[s + 1:]])
                for m in nouns:
                    start = m.span.start
                    if start == 0 or not sentence[start - 1].isalnum():
                        occurrences[m.surface].append((a, key, s, sentence, (start, m.span.end)))
    pairs = []
    for noun in sorted(occurrences):
        occ = occurrences[noun]
        if not 2 <= len({o[0] for o in occ}) <= max_articles_per_noun:
            continue
        best = None
        for i, x in enumerate(occ):
            for y in occ[i + 1:]:
                if x[0] == y[0]:
                    continue
                nx, ny = paragraph_nouns[x[1]] - {noun}, paragraph_nouns[y[1]] - {noun}
                overlap = len(nx & ny) / max(len(nx | ny), 1)
                if overlap <= max_paragraph_overlap and (best is None or overlap < best[0]):
                    best = (overlap, x, y)
        if best is None:
            continue
        _, x, y = best
        pairs.append({"phrase": noun, "text_a": x[3], "span_a": list(x[4]),
                      "reference_a": references[(x[1][0], x[1][1], x[2])],
                      "text_b": y[3], "span_b": list(y[4]), "reference_b": references[(y[1][0], y[1][1], y[2])],
                      "source": "korquad"})
    if len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    return pairs
