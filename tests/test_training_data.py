import json

import pytest

from training.arguments import ConfigError, parse_config
from builders.contracts import RecordError
from training.data import BatchSchedule, Source, SourceSpec, SparseCollator, load_sources, read_jsonl
from tests.tiny import build_tokenizer


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


TRIPLET = {"query": "서울", "positive": "서울은 수도이다", "negatives": ["부산", "대구"], "difficulty": ["easy", "hard"]}


def test_task_is_inferred_from_fields(tmp_path):
    assert read_jsonl(write_jsonl(tmp_path / "t.jsonl", [TRIPLET]))[0] == "triplets"
    assert read_jsonl(write_jsonl(tmp_path / "d.jsonl", [{"query": "q", "docs": ["a"], "scores": [1]}]))[0] == "distillation"
    assert read_jsonl(write_jsonl(tmp_path / "p.jsonl", [{"ko": "검색", "en": "search"}]))[0] == "term_pairs"
    with pytest.raises(RecordError, match=r"u.jsonl:1: cannot infer the task"):
        read_jsonl(write_jsonl(tmp_path / "u.jsonl", [{"text": "x"}]))


@pytest.mark.parametrize("bad, message", [
    ({"query": "q"}, r"bad.jsonl:2: missing field 'positive' required for triplets"),
    ({"query": "  ", "positive": "p"}, r"bad.jsonl:2: field 'query' is an empty text"),
    ({"query": "q", "positive": "p", "negatives": ["n", ""]}, r"bad.jsonl:2: field 'negatives\[1\]' is an empty text"),
    ({"query": "q", "positive": 3}, r"bad.jsonl:2: field 'positive' must be a string"),
    ({"query": "q", "positive": "p", "negatives": ["n"], "difficulty": []}, r"bad.jsonl:2: 'difficulty' has 0 entries"),
])
def test_bad_triplet_records_name_file_line_field(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [TRIPLET, bad])
    with pytest.raises(RecordError, match=message):
        read_jsonl(path)


def test_distillation_length_mismatch_and_bad_scores(tmp_path):
    path = write_jsonl(tmp_path / "kd.jsonl", [{"query": "q", "docs": ["a", "b"], "scores": [1.0]}])
    with pytest.raises(RecordError, match=r"kd.jsonl:1: 'scores' has 1 entries but 'docs' has 2"):
        read_jsonl(path)
    path = write_jsonl(tmp_path / "kd.jsonl", [{"query": "q", "docs": ["a"], "scores": ["x"]}])
    with pytest.raises(RecordError, match=r"kd.jsonl:1: field 'scores\[0\]' must be a finite number"):
        read_jsonl(path)


def test_malformed_json_and_non_utf8(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(TRIPLET) + "\n{\"query\": \n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"broken.jsonl:2: malformed JSON"):
        read_jsonl(path)
    path.write_bytes(json.dumps(TRIPLET).encode() + b"\n" + "{\"query\": \"서울\"}".encode("cp949") + b"\n")
    with pytest.raises(RecordError, match=r"broken.jsonl:2: not valid UTF-8"):
        read_jsonl(path)


def test_given_task_is_enforced(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"ko": "검색", "en": "search"}])
    with pytest.raises(RecordError, match=r"pairs.jsonl:1: missing field 'query' required for triplets"):
        load_sources([SourceSpec(file=str(path), task="triplets")])


def test_unknown_config_key_is_named_with_a_hint(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model_name_or_path: x\nper_device_train_batchsize: 4\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: unknown config key 'per_device_train_batchsize' "
                                          r"\(did you mean 'per_device_train_batch_size'\?\)"):
        parse_config([str(cfg)])
    with pytest.raises(ConfigError, match=r"unknown argument '--flops_wieght'"):
        parse_config([str(cfg).replace("cfg", "cfg"), "--flops_wieght", "1"][1:] + ["--model_name_or_path", "x"])


def test_yaml_with_cli_overrides(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model_name_or_path: x\noutput_dir: out\ntrain_file: [a.jsonl, b.jsonl]\nflops_doc_weight: 0.1\n"
                   "max_steps: 5\n")
    model, data, loss, train, resolved = parse_config([str(cfg), "--flops_doc_weight", "0.5", "--max_steps", "7"])
    assert model.model_name_or_path == "x" and data.train_file == ["a.jsonl", "b.jsonl"]
    assert loss.flops_doc_weight == 0.5 and train.max_steps == 7
    assert resolved["flops_doc_weight"] == 0.5 and resolved["train_file"] == ["a.jsonl", "b.jsonl"]


def make_sources(n_a=10, n_b=6):
    a = Source(SourceSpec(file="a"), "triplets", [dict(TRIPLET, query=f"q{i}") for i in range(n_a)])
    b = Source(SourceSpec(file="b"), "term_pairs", [{"ko": f"ko{i}", "en": f"en{i}"} for i in range(n_b)])
    return [a, b]


def test_schedule_is_deterministic_single_task_and_rank_sliced():
    one = BatchSchedule(make_sources(), per_device_batch_size=2, world_size=1, seed=3)
    two = BatchSchedule(make_sources(), per_device_batch_size=1, world_size=2, seed=3)
    assert len(one) == 5 + 3 and len(two) == 2 * 8
    for step in range(len(one)):
        whole = one[step]
        parts = [two[2 * step], two[2 * step + 1]]
        assert {p["task"] for p in parts} == {whole["task"]}
        assert parts[0]["records"] + parts[1]["records"] == whole["records"]
    again = BatchSchedule(make_sources(), 2, 1, seed=3)
    assert [again[i]["records"] for i in range(len(again))] == [one[i]["records"] for i in range(len(one))]
    one.set_epoch(1)
    assert [one[i]["records"] for i in range(len(one))] != [again[i]["records"] for i in range(len(again))]


def test_schedule_weights_and_curriculum_start():
    sources = make_sources(40, 40)
    sources[0].spec.weight, sources[1].spec.weight = 3.0, 1.0
    sources[1].spec.curriculum_start = 0.5
    schedule = BatchSchedule(sources, 2, 1, seed=0)
    tasks = [schedule[i]["task"] for i in range(len(schedule))]
    assert tasks.count("triplets") == 30 and tasks.count("term_pairs") == 10
    assert "term_pairs" not in tasks[: len(tasks) // 2]


def test_schedule_source_batch_size_sets_its_rows_and_rank_slices():
    def sources(term_rows):
        a, b = make_sources(12, 20)
        b.spec.batch_size = term_rows  # per device; the triplets keep the trainer's batch size
        return [a, b]

    one = BatchSchedule(sources(5), per_device_batch_size=2, world_size=1, seed=4)
    sizes = {(one[i]["task"], len(one[i]["records"]), one[i]["rows_per_rank"]) for i in range(len(one))}
    assert sizes == {("triplets", 2, 2), ("term_pairs", 5, 5)}
    assert len(one) == 12 // 2 + 20 // 5  # each source's natural count uses its own batch
    assert len({r["ko"] for i in range(len(one)) if one[i]["task"] == "term_pairs" for r in one[i]["records"]}) == 20
    with pytest.raises(ValueError, match=r"b: 20 records is fewer than one global batch \(30 = 15 per device x 2\)"):
        BatchSchedule(sources(15), per_device_batch_size=1, world_size=2)
    # the same global batches (triplets 2, term pairs 10) as one process or split over 2 ranks
    whole = BatchSchedule(sources(10), per_device_batch_size=2, world_size=1, seed=4)
    split = BatchSchedule(sources(5), per_device_batch_size=1, world_size=2, seed=4)
    assert len(split) == 2 * len(whole) == 2 * (12 // 2 + 20 // 10)
    for step in range(len(whole)):
        parts = [split[2 * step], split[2 * step + 1]]
        assert parts[0]["records"] + parts[1]["records"] == whole[step]["records"]
        assert parts[1]["offset"] == len(parts[0]["records"]) == parts[0]["rows_per_rank"]


def test_schedule_rejects_sources_smaller_than_a_global_batch():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchSchedule(make_sources(3, 3), per_device_batch_size=2, world_size=2)


def test_collator_shapes_masks_and_negative_curriculum():
    tok = build_tokenizer()
    collate = SparseCollator(tok, max_seq_length=16, max_query_length=8, num_negatives=2, negative_curriculum=True)
    records = [TRIPLET, {"query": "q", "positive": "p"}]
    batch = collate([{"task": "triplets", "records": records, "progress": 0.0, "seed": (0, 0, 0), "offset": 0}])
    assert batch["query_input_ids"].shape[0] == 2 and batch["doc_input_ids"].shape[0] == 6
    assert batch["doc_mask"].tolist() == [[True, True, False], [True, False, False]]  # early: only the easy negative
    late = collate([{"task": "triplets", "records": records, "progress": 0.9, "seed": (0, 0, 0), "offset": 0}])
    assert late["doc_mask"].tolist() == [[True, True, True], [True, False, False]]
    kd = collate([{"task": "distillation", "records": [{"query": "q", "docs": ["a", "b"], "scores": [0.5, 2.0]}],
                   "progress": 0.0, "seed": (0, 0, 0), "offset": 0}])
    assert kd["teacher_scores"].shape == (1, 8) and sorted(kd["teacher_scores"][0, :2].tolist()) == [0.5, 2.0]
    terms = collate([{"task": "term_pairs", "records": [{"ko": "검색", "en": "search"}], "progress": 0.0,
                      "seed": (0, 0, 0), "offset": 0}])
    assert terms["ko_input_ids"].shape == (1, 16) and terms["en_input_ids"].shape == (1, 16)


@pytest.mark.parametrize("name", ["quickstart", "klue-roberta-base", "multilingual-doc-only"])
def test_shipped_configs_parse(name):
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.yaml")
    model, data, loss, train, _ = parse_config([path], {"use_cpu": True})
    assert model.model_name_or_path and data.sources and train.output_dir


def _export(folder, rows):
    import pandas as pd

    (folder / "term_pairs").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "term_pairs" / "train-00000-of-00001.parquet")


def test_builder_folders_with_the_same_name_never_share_a_cache(tmp_path):
    """`datasets` caches a folder by name and file patterns: two exports both called term_pairs collided."""
    from training.data import load_split

    first, second = tmp_path / "a" / "term_pairs", tmp_path / "b" / "term_pairs"
    _export(first, [{"ko": "검색", "en": "search"}])
    _export(second, [{"ko": "추천", "en": "recommend"}, {"ko": "서울", "en": "seoul"}])
    assert load_split(str(first), "term_pairs")["ko"] == ["검색"]
    assert load_split(str(second), "term_pairs")["ko"] == ["추천", "서울"]
    _export(first, [{"ko": "데이터", "en": "data"}])  # rebuilt in place
    assert load_split(str(first), "term_pairs")["ko"] == ["데이터"]


def test_sources_list_and_the_older_parallel_lists_give_the_same_sources(tmp_path, caplog):
    new = tmp_path / "new.yaml"
    new.write_text("model_name_or_path: x\nsources:\n  - {file: a.jsonl, task: triplets, weight: 2}\n"
                   "  - {dataset: data, config: term_pairs, curriculum_start: 0.3}\n", encoding="utf-8")
    old = tmp_path / "old.yaml"
    old.write_text("model_name_or_path: x\ntrain_file: a.jsonl\ndataset_name: [data]\ndataset_config_name: "
                   "[term_pairs]\ntrain_task: [triplets, auto]\nsampling_weight: [2, 1]\ncurriculum_start: [0, 0.3]\n",
                   encoding="utf-8")
    with caplog.at_level("WARNING"):
        _, from_new, _, _, resolved = parse_config([str(new)])
    assert not caplog.records
    with caplog.at_level("WARNING"):
        _, from_old, _, _, _ = parse_config([str(old)])
    (warning,) = caplog.records
    assert "deprecated" in warning.getMessage() and "\n" not in warning.getMessage()
    assert from_new.sources == [SourceSpec(file="a.jsonl", task="triplets", weight=2),
                                SourceSpec(dataset="data", config="term_pairs", curriculum_start=0.3)]
    assert [(s.name, s.task in (None, "auto"), s.weight or 1, s.curriculum_start) for s in from_old.sources] == \
        [(s.name, s.task in (None, "auto"), s.weight or 1, s.curriculum_start) for s in from_new.sources]
    assert resolved["sources"][1] == {"dataset": "data", "config": "term_pairs", "curriculum_start": 0.3}


def test_command_line_sources_replace_the_config_files(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model_name_or_path: x\nsources: [{dataset: data, config: triplets}]\n", encoding="utf-8")
    _, data, _, _, _ = parse_config([str(cfg), "--train_file", "mine.jsonl"])
    assert data.sources == [SourceSpec(file="mine.jsonl")]
    _, data, _, _, resolved = parse_config([str(cfg), "--sources", "{file: b.jsonl, weight: 3}"])
    assert data.sources == [SourceSpec(file="b.jsonl", weight=3)]
    assert resolved["sources"] == [{"file": "b.jsonl", "weight": 3}]


def test_cpu_bf16_support_is_read_from_the_cpu_flags():
    from run_train import cpu_supports_bf16

    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512f\n"
    assert cpu_supports_bf16(x86) is False
    assert cpu_supports_bf16(x86.replace("avx512_vnni", "avx512_vnni avx512_bf16")) is True
    assert cpu_supports_bf16("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n") is True  # Arm
    assert cpu_supports_bf16("model name\t: some cpu with avx512_bf16 in its name\n") is False  # flags lines only


@pytest.mark.parametrize("native, expected", [(False, "no"), (True, "bf16")])
def test_bf16_falls_back_to_fp32_where_the_cpu_would_emulate_it(tiny_model_dir, tmp_path, monkeypatch, native,
                                                                expected):
    import run_train

    monkeypatch.setattr(run_train, "cpu_supports_bf16", lambda: native)
    data = tmp_path / "triplets.jsonl"
    data.write_text(json.dumps({"query": "검색", "positive": "검색 엔진"}, ensure_ascii=False) + "\n", encoding="utf-8")
    trainer, _ = run_train.build_trainer(["--model_name_or_path", str(tiny_model_dir), "--train_file", str(data),
                                          "--output_dir", str(tmp_path / "out"), "--report_to", "none",
                                          "--use_cpu", "true", "--bf16", "true", "--max_steps", "1",
                                          "--per_device_train_batch_size", "1"])
    assert trainer.args.bf16 is native
    assert trainer.accelerator.mixed_precision == expected


def test_query_is_document_batches_tokenise_queries_at_document_length(shared_data):
    """Real passages of varied length: on the query side they keep up to max_seq_length tokens, not the query's 8."""
    from builders.corpora import msmarco

    tok = build_tokenizer()
    ko = [p for r in msmarco(shared_data, "kor", "train")[:40] for p in r["positive"]][:6]
    en = [p for r in msmarco(shared_data, "eng", "train")[:40] for p in r["positive"]][:6]
    collate = SparseCollator(tok, max_seq_length=48, max_query_length=8, num_negatives=1)
    item = {"task": "triplets", "records": [{"query": k, "positive": e} for k, e in zip(ko, en)], "progress": 0.0,
            "seed": (0, 0, 0), "offset": 0}
    as_query, as_document = collate([item]), collate([{**item, "query_is_document": True}])
    lengths = [min(48, len(tok(k)["input_ids"])) for k in ko]  # the tokenizer's own count, cut at 48
    assert len(set(lengths)) > 1 and max(lengths) == 48
    assert as_document["query_attention_mask"].sum(1).tolist() == lengths
    assert as_query["query_input_ids"].shape[1] == 8
    assert as_document["query_is_document"] and not as_query["query_is_document"]


def test_query_is_document_travels_with_its_source_and_is_checked(tmp_path):
    triplets = write_jsonl(tmp_path / "t.jsonl", [TRIPLET] * 2)
    terms = write_jsonl(tmp_path / "p.jsonl", [{"ko": "검색", "en": "search"}] * 2)
    sources = load_sources([SourceSpec(file=str(triplets)), SourceSpec(file=str(triplets), query_is_document=True)])
    schedule = BatchSchedule(sources, per_device_batch_size=2, seed=0)
    flags = {schedule[i]["query_is_document"] for i in range(len(schedule))}
    assert flags == {True, False}
    with pytest.raises(ValueError, match=r"p\.jsonl: query_is_document needs triplets .*holds term_pairs"):
        load_sources([SourceSpec(file=str(terms), query_is_document=True)])
    with pytest.raises(ConfigError, match=r"sources\[0\]\.query_is_document must be true or false"):
        parse_config(["--model_name_or_path", "x", "--sources", "{file: t.jsonl, query_is_document: yes please}"])


def test_row_sources_keep_one_origin_of_a_mixed_source(tmp_path):
    rows = [{**TRIPLET, "query": f"질의 {i}", "source": "msmarco_parallel:ko-en" if i % 3 else "msmarco_parallel:en-ko"}
            for i in range(9)]
    path = write_jsonl(tmp_path / "pp.jsonl", rows)
    (kept,) = load_sources([SourceSpec(file=str(path), row_sources=["msmarco_parallel:ko-en"])])
    assert [r["query"] for r in kept.records] == [f"질의 {i}" for i in range(9) if i % 3]
    (whole,) = load_sources([SourceSpec(file=str(path))])
    assert len(whole.records) == 9
    with pytest.raises(ValueError, match=r"pp\.jsonl: row_sources \['msmarco_parallel:ko_en'\] match no row's "
                                         r"`source` field; the rows carry msmarco_parallel:en-ko \(3\), "
                                         r"msmarco_parallel:ko-en \(6\)"):
        load_sources([SourceSpec(file=str(path), row_sources=["msmarco_parallel:ko_en"])])
    with pytest.raises(ConfigError, match=r"sources\[0\]\.row_sources must be a list of `source` names"):
        parse_config(["--model_name_or_path", "x", "--sources", "{file: t.jsonl, row_sources: msmarco_parallel:ko-en}"])
