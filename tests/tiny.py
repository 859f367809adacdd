"""A tiny Korean+English masked-LM built at test time: a WordPiece tokenizer trained on the sentences below
(NFC, lowercase, no accent stripping, so Hangul stays whole syllables) and a random BertForMaskedLM."""
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

SENTENCES = [
    "머신러닝 모델은 데이터에서 패턴을 학습한다.",
    "Machine learning models learn patterns from data.",
    "추천 시스템은 사용자에게 상품을 추천한다.",
    "A recommender system suggests products to users.",
    "검색 엔진은 문서를 색인하고 질의에 답한다.",
    "A search engine indexes documents and answers queries.",
    "서울은 대한민국의 수도이다.",
    "Seoul is the capital of South Korea.",
    "희소 벡터는 어휘 공간에서 가중치를 가진다.",
    "Sparse vectors have weights over the vocabulary.",
    "오픈서치는 역색인을 사용한다.",
    "OpenSearch uses an inverted index.",
    "자연어 처리는 인공지능의 한 분야이다.",
    "Natural language processing is a field of artificial intelligence.",
    "딥러닝은 신경망을 여러 층으로 쌓는다.",
    "Deep learning stacks neural networks in many layers.",
    "한국어 문장과 영어 문장을 함께 학습한다.",
    "We train on Korean and English sentences together.",
    "날씨가 좋아서 공원에 갔다.",
    "The weather was nice so we went to the park.",
    "질문에 대한 답을 문단에서 찾는다.",
    "Find the answer to the question in the paragraph.",
]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tokenizer(vocab_size: int = 600, texts=SENTENCES, fixed: bool = False) -> PreTrainedTokenizerFast:
    """`fixed`: a vocabulary chosen without the WordPiece trainer, whose ties between equally frequent pieces fall
    differently from run to run: the special tokens, every character (also as a `##` continuation), then the most
    frequent words (ties alphabetical) up to vocab_size. The same texts always give the same ids."""
    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    if fixed:
        tok = Tokenizer(models.WordPiece(vocab=_fixed_vocab(vocab_size, texts, normalizer), unk_token="[UNK]"))
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    if not fixed:
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1)
        tok.train_from_iterator(list(texts), trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )


def _fixed_vocab(vocab_size: int, texts, normalizer) -> dict[str, int]:
    from collections import Counter

    splitter = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for t in texts for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    tokens = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    tokens += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if w not in set(tokens)]
    return {t: i for i, t in enumerate(tokens[:max(vocab_size, len(SPECIAL_TOKENS) + 2 * len(chars))])}


def build_tiny_model(out_dir, seed: int = 0, hidden: int = 32, layers: int = 2, dropout: float = 0.1,
                     texts=SENTENCES, vocab_size: int = 600, fixed_vocab: bool = False) -> Path:
    """Write a tokenizer (trained on `texts`; `fixed_vocab`: see `build_tokenizer`) + random BertForMaskedLM to
    out_dir and return it."""
    import torch

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(vocab_size, texts, fixed_vocab)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    model = BertForMaskedLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


SP_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def build_sentencepiece_tokenizer(texts=SENTENCES, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """An XLM-R-style Unigram tokenizer: "▁word" and "word" pieces both exist, so ids collide by decoded name."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SP_SPECIAL_TOKENS, unk_token="<unk>")
    tok.train_from_iterator(list(texts), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_max_length=128)


def build_tiny_sentencepiece_model(out_dir, seed: int = 0, hidden: int = 32) -> Path:
    """Write an XLM-R-style tokenizer + random XLMRobertaForMaskedLM to out_dir and return it."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    out_dir = Path(out_dir)
    tokenizer = build_sentencepiece_tokenizer()
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    XLMRobertaForMaskedLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
