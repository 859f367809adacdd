"""The context-discrimination metric: the rule on hand-computed sets, noise that differs everywhere yet scores at
chance, the phrase-only pooling with the text's own tokens removed, the data files, and run_eval's report."""
import json

import numpy as np
import pytest
import torch

from eval.context import (HANDWRITTEN, ContextPair, context_discrimination, context_pair_set, discriminated,
                          load_context_pairs, phrase_expansions)
from eval.terms import text_bags
from training import SparseEncoder
from tests.tiny import build_tiny_model


def _sets(vocab, *rows):
    out = np.zeros((len(rows), vocab), dtype=bool)
    for i, ids in enumerate(rows):
        out[i, list(ids)] = True
    return out


def test_rule_on_hand_computed_sets():
    #            E_a            E_b            R_a           R_b        discriminated?
    cases = [({0, 1, 2}, {0, 3, 4}, {1, 5}, {3, 6}, True),    # each changed term hits its own context only
             ({0, 1, 2}, {0, 1, 2}, {1, 5}, {3, 6}, False),   # identical expansions: nothing changed
             ({1}, {7}, {1, 5}, {3, 6}, False),               # b changed, but not toward its context
             ({2, 5}, {1, 3}, {1, 2}, {1, 3}, True),          # 1 is in both references: only 2 and 3 count
             ({2, 5}, {1}, {1, 2}, {1, 3}, False),            # b's only change is a shared reference word
             ({3, 0}, {1, 0}, {1, 5}, {3, 6}, False),         # each leans to the other context
             ({1, 3, 5}, {6, 7}, {1, 5}, {3, 6}, True)]       # a: 2 own vs 1 other hit; b: 1 vs 0
    ea, eb, ra, rb = (_sets(8, *[c[i] for c in cases]) for i in range(4))
    assert discriminated(ea, eb, ra, rb).tolist() == [c[4] for c in cases]
    # exchanging the references (the chance floor): only the pair leaning to the other context counts
    assert discriminated(ea, eb, rb, ra).tolist() == [False, False, False, False, False, True, False]


@pytest.fixture(scope="module")
def korquad_pairs(shared_data):
    return context_pair_set("korquad", shared_data)


@pytest.fixture(scope="module")
def korquad_model(korquad_pairs, tmp_path_factory):
    """A tiny model whose tokenizer knows the KorQuAD pairs' words (so references become real, varied bags)."""
    texts = [t for p in korquad_pairs for t in (*p.texts, *p.references)]
    path = build_tiny_model(tmp_path_factory.mktemp("ctx"), texts=texts, vocab_size=3000, dropout=0.0)
    return SparseEncoder.from_pretrained(path).eval()


def test_korquad_pairs_are_real_and_across_articles(korquad_pairs):
    assert len(korquad_pairs) == 200 and len({p.phrase for p in korquad_pairs}) == 200
    for p in korquad_pairs:
        for text, (start, end), ref in zip(p.texts, p.spans, p.references):
            assert text[start:end] == p.phrase and text not in ref
        assert p.texts[0] != p.texts[1] and p.references[0] != p.references[1]


def test_noise_differs_everywhere_but_does_not_discriminate(korquad_pairs, korquad_model):
    """Random top-20 expansions (Gaussian noise vectors over the vocabulary): every pair "differs", so a metric
    that only counted differences would give 100%; this one scores chance hits only, exactly as often as with the
    references exchanged (rate_above_chance about 0), and chance is small (3,000 pieces here: about 10%)."""
    refs = [text_bags(korquad_model, [p.references[i] for p in korquad_pairs]) for i in (0, 1)]
    assert refs[0].sum(-1).mean() > 30  # real paragraphs: many reference pieces a random term could hit
    rng = np.random.default_rng(0)
    rates, swapped = [], []
    for _ in range(20):
        noise = [rng.standard_normal(refs[0].shape) for _ in (0, 1)]
        ea, eb = (n >= np.sort(n, axis=-1)[:, -20:-19] for n in noise)  # each row's top 20
        assert (ea != eb).any(-1).all()
        rates.append(discriminated(ea, eb, *refs).mean())
        swapped.append(discriminated(ea, eb, refs[1], refs[0]).mean())
    assert np.mean(rates) < 0.15 and abs(np.mean(rates) - np.mean(swapped)) < 0.02


# ------------------------------------------------------------------------------------- phrase pooling, stubs
PAIRS = [
    {"phrase": "점심 메뉴", "text_a": "출근 오늘 점심 메뉴 뭐지", "reference_a": "회사 직장인 동료",
     "text_b": "학교 오늘 점심 메뉴 뭐지", "reference_b": "학생 급식 도시락"},
    {"phrase": "사과", "text_a": "과수원 에서 사과 땄다", "reference_a": "과일 나무 수확",
     "text_b": "친구 에게 사과 했다", "reference_b": "용서 미안 반성"},
]


@pytest.fixture(scope="module")
def stub_base(tmp_path_factory):
    texts = [v for r in PAIRS for v in r.values()] * 3
    path = build_tiny_model(tmp_path_factory.mktemp("stub"), texts=texts, vocab_size=200)
    return SparseEncoder.from_pretrained(path).eval()


def _pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PAIRS), encoding="utf-8")
    return load_context_pairs(path)


def _ids(model, text):
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _install(model, row_logits):
    """Replace max_logits by max over pooled positions of row_logits(token id, whole row ids) [vocab]."""
    def max_logits(input_ids, attention_mask, pool_mask=None):
        pool_mask = attention_mask if pool_mask is None else pool_mask
        out = torch.full((input_ids.shape[0], model.vocab_size), -1.0)
        for b in range(input_ids.shape[0]):
            row = input_ids[b][attention_mask[b].bool()].tolist()
            for s in pool_mask[b].nonzero().flatten().tolist():
                out[b] = torch.maximum(out[b], row_logits(int(input_ids[b, s]), row))
        return out
    model.max_logits = max_logits
    return model


def _neighbours(t, vocab):
    return [(t * 7 + 1) % vocab, (t * 7 + 2) % vocab]


def test_expansions_pool_the_phrase_only_and_drop_the_texts_tokens(stub_base, tmp_path):
    vocab = stub_base.vocab_size

    def row_logits(t, row):
        v = torch.full((vocab,), -1.0)
        v[row] = 4.0  # copying every text token (removed: not expansion)
        v[_neighbours(t, vocab)] = torch.tensor([3.0, 2.0])
        return v
    model = _install(stub_base, row_logits)
    pairs = _pairs(tmp_path)
    texts, spans = [p.texts[0] for p in pairs], [p.spans[0] for p in pairs]
    got = phrase_expansions(model, texts, spans, top_n=20)
    served = model.output_mask.bool().numpy()
    for row, p in zip(got, pairs):
        text_ids = set(_ids(model, p.texts[0]))
        want = {n for t in _ids(model, p.phrase) for n in _neighbours(t, vocab) if n not in text_ids and served[n]}
        assert want and set(np.flatnonzero(row)) == want
    top1 = phrase_expansions(model, texts, spans, top_n=1)
    assert all(row.sum() == 1 for row in top1)


def test_the_whole_text_is_read_past_the_training_max_seq_length(stub_base, tmp_path):
    """Phrases late in a long sentence: the metric reads up to the model's positions, not max_seq_length."""
    pairs = _pairs(tmp_path)
    texts, spans = [p.texts[0] for p in pairs], [p.spans[0] for p in pairs]
    _install(stub_base, lambda t, row: torch.where(torch.arange(stub_base.vocab_size) == (t * 7 + 1) % 200, 1.0, -1.0))
    full = phrase_expansions(stub_base, texts, spans)
    saved, stub_base.config.max_seq_length = stub_base.config.max_seq_length, 3
    try:
        np.testing.assert_array_equal(phrase_expansions(stub_base, texts, spans), full)
    finally:
        stub_base.config.max_seq_length = saved


def test_rate_of_blind_copying_and_oracle_models(stub_base, tmp_path):
    pairs = _pairs(tmp_path)
    vocab = stub_base.vocab_size
    blind = lambda t, row: torch.where(torch.isin(torch.arange(vocab), torch.tensor(_neighbours(t, vocab))),  # noqa: E731
                                       2.0, -1.0)
    got = context_discrimination(_install(stub_base, blind), pairs, top_n=20)
    assert (got["rate"], got["swapped_rate"], got["changed"], got["num_pairs"]) == (0.0, 0.0, 0.0, 2.0)
    assert 0 < got["overlap@20"] <= 0.2  # identical sets of at most 2 neighbours per phrase token

    def copying(t, row):  # the context's words at the phrase: differs, yet is no expansion
        v = blind(t, row).clone()
        v[row] = 3.0
        return v
    got = context_discrimination(_install(stub_base, copying), pairs, top_n=20)
    assert got["rate"] == 0.0 and got["changed"] == 0.0

    references = {tuple(_ids(stub_base, p.texts[i])): _ids(stub_base, p.references[i]) for p in pairs for i in (0, 1)}

    def oracle(t, row):  # the phrase leans to its own context's reference words
        v = torch.full((vocab,), -1.0)
        v[references[tuple(row[1:-1])]] = 2.0
        return v
    got = context_discrimination(_install(stub_base, oracle), pairs, top_n=20)
    assert got["rate"] == 1.0 and got["swapped_rate"] == 0.0 and got["changed"] == 1.0


# ------------------------------------------------------------------------------------------------- data files
def test_handwritten_set_loads():
    pairs = load_context_pairs(HANDWRITTEN)
    assert len(pairs) == 20 and all(isinstance(p, ContextPair) for p in pairs)
    assert {p.phrase for p in pairs} >= {"점심 메뉴", "사과", "배"}
    for p in pairs:
        assert all(t[s:e] == p.phrase for t, (s, e) in zip(p.texts, p.spans))


@pytest.mark.parametrize("line,message", [
    ('{"phrase": "사과", "text_a": "사과", "reference_a": "과일", "text_b": "배", "reference_b": "용서"}',
     "pairs.jsonl:2: field 'text_b' does not contain the phrase '사과'"),
    ('{"phrase": "사과", "text_a": "사과", "reference_a": "", "text_b": "사과", "reference_b": "용서"}',
     "pairs.jsonl:2: field 'reference_a' is an empty text"),
    ('{"phrase": "사과", "text_a": "사과", "span_a": [0, 9], "reference_a": "a", "text_b": "사과", "reference_b": "b"}',
     "pairs.jsonl:2: field 'span_a' must be"),
    ("not json", "pairs.jsonl:2: malformed JSON"),
])
def test_bad_pair_lines_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0], ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        load_context_pairs(path)


def test_run_eval_reports_it_next_to_the_term_metrics(tiny_model_dir, tmp_path):
    import run_eval
    from builders.benchmarks import write_beir

    bench = tmp_path / "benchmarks" / "tiny-ret"
    write_beir(str(bench), [{"_id": "d1", "title": "", "text": "서울은 대한민국의 수도이다."},
                            {"_id": "d2", "title": "", "text": "추천 시스템은 상품을 추천한다."}],
               [{"_id": "q1", "text": "한국의 수도"}], [("q1", "d1", 1)])
    pairs = tmp_path / "mine.jsonl"
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PAIRS), encoding="utf-8")
    out = tmp_path / "out"
    assert run_eval.main(["--model", str(tiny_model_dir), "--benchmark", f"beir:{bench}", "--output", str(out),
                          "--latency-queries", "0", "--context-discrimination", "handwritten", str(pairs)]) == 0
    results = json.loads((out / "results.json").read_text())
    got = results["context_discrimination"][tiny_model_dir.name]
    assert got["handwritten/num_pairs"] == 20 and got["mine/num_pairs"] == 2
    assert {"handwritten/rate", "handwritten/swapped_rate", "handwritten/changed", "handwritten/overlap@20"} <= set(got)
    assert "## Context discrimination" in (out / "report.md").read_text()
