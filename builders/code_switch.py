"""Code-switched queries: Korean terms found in the term-pair lexicon replaced by their English translation
("검색 모델" -> "search 모델", "검색 model", "search model"), as Korean users type them.

The lexicon is the *training* side of term_pairs (never its test split), limited to nouns (every morpheme a
noun, noun affix or foreign word under mecab) of at least two syllables, first translation by source priority: curated IT terms and
glossaries before dictionaries; a dictionary word only when it has a single translation there."""
from __future__ import annotations

from collections import Counter

from builders.contracts import BadRecords
from builders.scripts import is_syllable
from builders.term_pairs import collect_term_pairs

LEXICON_SOURCES = ("it_ml_terms", "k8s_glossary", "react_glossary", "cldr", "nikl_transliteration", "muse",
                   "wiktionary")
DICTIONARIES = ("nikl_transliteration", "muse", "wiktionary")
# "모델을" -> "model을": a term may end its word with one of these particles (and nothing else: "윌리엄" is not
# "윌리" + particle).
PARTICLES = frozenset("은 는 이 가 을 를 의 에 로 으로 와 과 도 만 에서 에게 부터 까지 처럼 보다 이나 나 랑 이랑 인 이다 "
                      "들 들이 들은 들을 들의 들에".split())
MAX_PARTICLE_CHARS = 2
MAX_TERM_WORDS = 3


class CodeSwitcher:
    def __init__(self, lexicon: dict[str, str], max_variants: int = 3):
        self.lexicon = lexicon
        self.max_variants = max_variants

    @classmethod
    def from_sources(cls, data_dir: str | None, exclude_noncommercial: bool = False, max_variants: int = 3):
        from builders.sources import allowed

        train, _, _ = collect_term_pairs(data_dir, allowed(LEXICON_SOURCES, exclude_noncommercial), BadRecords())
        return cls(noun_lexicon(train), max_variants)

    def matches(self, query: str) -> list[tuple[int, int, str]]:
        """(start word, end word, English) for lexicon terms at word starts, longest first, left to right."""
        words = query.split(" ")
        out, i = [], 0
        while i < len(words):
            for n in range(min(MAX_TERM_WORDS, len(words) - i), 0, -1):
                span = " ".join(words[i : i + n])
                for cut in range(len(span), max(len(span) - MAX_PARTICLE_CHARS, 1) - 1, -1):
                    english = self.lexicon.get(span[:cut])
                    if english and _is_particle(span[cut:]):
                        out.append((i, i + n, english, span[cut:]))
                        break
                else:
                    continue
                i += n
                break
            else:
                i += 1
        return [(s, e, en + rest) for s, e, en, rest in out]

    def variants(self, query: str) -> list[str]:
        """The query, then one copy per switched term and one with every term switched (up to max_variants)."""
        found = self.matches(query)
        if not found:
            return [query]
        words = query.split(" ")

        def switch(chosen):
            out, i = [], 0
            for s, e, english in chosen:
                out += words[i:s] + [english]
                i = e
            return " ".join(out + words[i:])

        copies = [switch([m]) for m in found]
        if len(found) > 1:
            copies.append(switch(found))
        return [query] + list(dict.fromkeys(copies))[: self.max_variants]


def _is_particle(rest: str) -> bool:
    return not rest or rest in PARTICLES


def noun_lexicon(pairs: list[dict]) -> dict[str, str]:
    """Korean noun (phrase) -> English: curated sources' first translation; a dictionary word only when it has
    exactly one translation (krdict lists senses alphabetically: 시위 -> "bowstring; demonstration")."""
    import mecab

    tagger = mecab.MeCab()
    senses = Counter(row["ko"] for row in pairs)
    lexicon = {}
    for row in pairs:
        ko = row["ko"]
        if ko in lexicon or sum(map(is_syllable, ko)) < 2:
            continue
        if row["source"] in DICTIONARIES and senses[ko] > 1:
            continue
        if all(tag.startswith(("N", "XPN", "XSN", "SL", "SN")) for _, tag in tagger.pos(ko)):
            lexicon[ko] = row["en"]
    return lexicon
