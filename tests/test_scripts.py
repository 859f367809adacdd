"""One Hangul definition (builders/scripts.py) for builders and training, one special-token notion and one
masked-LM head accessor."""
import pytest
from transformers import AutoModelForMaskedLM, AutoTokenizer

from builders.scripts import HANGUL_CLASS, HANGUL_RANGES, is_hangul
from training.backbones.trim import pieces_matching
from training.fused import mlm_head, mlm_head_name
from training.vocab import piece_script
from tests.tiny import build_tiny_sentencepiece_model


@pytest.mark.parametrize("ch, hangul", [("한", True), ("ᄀ", True), ("ㄱ", True), ("ꥠ", True),
                                        ("\ud7b0", True), ("\ud7fb", True), ("a", False), ("漢", False)])
def test_every_hangul_block_is_hangul_for_the_vocabulary_and_the_trim(ch, hangul):
    """U+D7B0-D7FF (Jamo Extended-B) was Hangul for the trim but "other" for the vocabulary's scripts."""
    import re

    assert is_hangul(ch) == hangul
    assert (piece_script(ch) == "hangul") == hangul
    assert bool(re.fullmatch(f"[{HANGUL_CLASS}]", ch)) == hangul
    assert len(HANGUL_RANGES) == 5


def test_one_head_accessor_for_bert_and_xlm_r(tiny_model_dir, tmp_path):
    bert = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    xlmr = AutoModelForMaskedLM.from_pretrained(build_tiny_sentencepiece_model(tmp_path / "xlmr"))
    assert (mlm_head_name(bert), mlm_head(bert)) == ("cls", bert.cls)
    assert (mlm_head_name(xlmr), mlm_head(xlmr)) == ("lm_head", xlmr.lm_head)
    with pytest.raises(ValueError, match="has no masked-LM head"):
        mlm_head_name(bert.bert)


def test_trim_keeps_hangul_pieces(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = pieces_matching(tokenizer, HANGUL_CLASS)
    assert ids and all(piece_script(tokenizer.convert_ids_to_tokens(i)) == "hangul" for i in ids)


@pytest.mark.parametrize("family", ["wordpiece", "sentencepiece"])
def test_continuation_pieces_follow_the_tokenizers_own_marker(family):
    """WordPiece marks a continuation with "##", SentencePiece marks a word start with "▁"; a SentencePiece
    vocabulary that learned a "##" piece of its own (markdown headings) is still read by its "▁"."""
    from tests.tiny import SENTENCES, build_sentencepiece_tokenizer, build_tokenizer
    from training.vocab import continuation_pieces

    if family == "wordpiece":
        tokenizer = build_tokenizer()
        expected = lambda piece: piece.startswith("##")  # noqa: E731
    else:
        tokenizer = build_sentencepiece_tokenizer(SENTENCES + ["### 제목 ### 소제목 ### 목차"] * 3)
        assert "##" in tokenizer.get_vocab()
        expected = lambda piece: not piece.startswith("\u2581")  # noqa: E731
    mask = continuation_pieces(tokenizer)
    special = set(tokenizer.all_special_ids)
    for piece, i in tokenizer.get_vocab().items():
        assert mask[i] == (expected(piece) and i not in special), piece
    assert 0 < mask.sum() < len(mask)
