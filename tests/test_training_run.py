"""End-to-end training runs of run_train.py on a tiny model: CLI, kill-and-resume, and 2-process torchrun."""
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import TrainerCallback

from training import SparseEncoder
from training.averaging import AVERAGE_FILE
from tests.tiny import SENTENCES, build_tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    model = build_tiny_model(root / "model", dropout=0.0)
    ko, en = SENTENCES[0::2], SENTENCES[1::2]
    rows = {
        "triplets.jsonl": [{"query": k[:8], "positive": k, "negatives": [x for x in ko if x != k][:3],
                            "difficulty": ["easy", "medium", "hard"]} for k in ko],
        "terms.jsonl": [{"ko": k, "en": e} for k, e in [("머신러닝", "machine learning"), ("추천", "recommend"),
                        ("검색", "search"), ("서울", "seoul"), ("문서", "documents"), ("데이터", "data"),
                        ("신경망", "neural networks"), ("공원", "park")]],
        "distill.jsonl": [{"query": k[:6], "docs": ko[:5], "scores": [1, 2, 3, 4, 5]} for k in ko],
    }
    for name, records in rows.items():
        (root / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    args = ["--model_name_or_path", str(model), "--train_file", *(str(root / n) for n in rows),
            "--logging_steps", "1", "--report_to", "none", "--allowed_scripts", "hangul", "latin",
            "--activation_weight", "1", "--translation_margin_weight", "1", "--alignment_weight", "0.1",
            "--max_seq_length", "32", "--max_query_length", "16", "--num_negatives", "2", "--seed", "7"]
    return root, args


def run(cmd, timeout=600):
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    return proc


def load_weights(result, rank=0, when="rank") -> dict:
    """The weights train_worker.py saved for a rank, final ("rank") or before training ("init"); tensors only,
    loaded without unpickling code."""
    return torch.load(result / f"{when}{rank}.pt", weights_only=True)


def update_gap(one: dict, other: dict, init: dict) -> float:
    """||one - other|| / ||one - init|| over the floating-point weights: how far two runs ended apart, relative to how
    far training moved them. With SGD and no clipping, float rounding keeps it near 1e-6, while a gradient-scale or
    missing-rows bug makes it 0.5-1 (an all-gather whose backward drops the other ranks' share: 0.50). A max-abs
    bound of 1e-5 on single weights flaked (2.5e-5 once, 8e-5 once, on idle machines): one coordinate can take a
    rounding-tipped max-pool or relu tie; the whole update cannot."""
    keys = [k for k in one if one[k].is_floating_point()]
    gap = sum(((one[k] - other[k]).double() ** 2).sum() for k in keys) ** 0.5
    moved = sum(((one[k] - init[k]).double() ** 2).sum() for k in keys) ** 0.5
    assert moved > 0, "training did not move the weights"
    return (gap / moved).item()


def worker(result, args, kill_at=None, nproc=1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)] if nproc > 1 \
        else [sys.executable]
    own = [str(result)] + (["--kill_at_step", str(kill_at)] if kill_at else [])
    return run(launcher + [os.path.join("tests", "train_worker.py"), *own, "--", *args])


def test_cli_trains_logs_parts_and_saves_a_loadable_model(setup, tmp_path):
    root, args = setup
    out = tmp_path / "out"
    proc = run([sys.executable, "run_train.py", *args, "--output_dir", str(out), "--max_steps", "3",
                "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "tensorboard",
                "--freeze_layers", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.rglob("events.out.tfevents*")), "no TensorBoard events written"
    for name in ("sparse_config.json", "model.safetensors", "tokenizer.json", "train_config.yaml"):
        assert (out / name).is_file(), name
    model = SparseEncoder.from_pretrained(out)
    assert model.config.allowed_scripts == ["hangul", "latin"]
    emb = model.encode(["머신러닝 추천"])
    assert emb.matrix.nnz > 0


def test_config_and_data_errors_stop_before_training(setup, tmp_path):
    root, args = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "docs": ["a", "b"], "scores": [1]}\n', encoding="utf-8")
    proc = run([sys.executable, "run_train.py", "--model_name_or_path", args[1], "--train_file", str(bad),
                "--output_dir", str(tmp_path / "o")])
    assert proc.returncode != 0 and "bad.jsonl:1: 'scores' has 1 entries but 'docs' has 2" in proc.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model_name_or_path: {args[1]}\nlearning_rte: 0.1\n")
    proc = run([sys.executable, "run_train.py", str(cfg)])
    assert proc.returncode != 0 and "unknown config key 'learning_rte'" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_kill_and_resume_continues_from_checkpoint(setup, tmp_path):
    root, args = setup
    common = [*args, "--max_steps", "6", "--save_steps", "2", "--per_device_train_batch_size", "2"]
    full = worker(tmp_path / "full", [*common, "--output_dir", str(tmp_path / "full_out")])
    assert full.returncode == 0, full.stderr[-3000:]
    killed = worker(tmp_path / "killed", [*common, "--output_dir", str(tmp_path / "resumed_out")], kill_at=3)
    assert killed.returncode != 0 and not (tmp_path / "killed" / "rank0.pt").exists()  # died before the end
    assert (tmp_path / "resumed_out" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (tmp_path / "resumed_out" / "checkpoint-4").exists()
    resumed = worker(tmp_path / "resumed", [*common, "--output_dir", str(tmp_path / "resumed_out"),
                                            "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-2" in resumed.stderr
    logs = json.load(open(tmp_path / "resumed" / "log0.json"))
    assert [l["step"] for l in logs if "loss" in l] == [1, 2, 3, 4, 5, 6]  # steps 1-2 restored from checkpoint-2
    full_logs = {l["step"]: l["loss"] for l in json.load(open(tmp_path / "full" / "log0.json")) if "loss" in l}
    for l in logs:
        if "loss" in l:
            assert l["loss"] == pytest.approx(full_logs[l["step"]], rel=1e-5)
    a, b = load_weights(tmp_path / "full"), load_weights(tmp_path / "resumed")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


@pytest.mark.slow
def test_a_resumed_run_averages_the_same_weights_as_an_uninterrupted_one(setup, tmp_path):
    """Killed after step 5, resumed from checkpoint-4: the mean of steps 2-4 comes back from the checkpoint, so the
    saved model is the mean of steps 2-6 like the uninterrupted run's (without it: of steps 5-6 only)."""
    root, args = setup
    common = [*args, "--max_steps", "6", "--save_steps", "2", "--per_device_train_batch_size", "2",
              "--average_weights_from", "2", "--average_weights_every", "1"]
    full = worker(tmp_path / "full", [*common, "--output_dir", str(tmp_path / "full_out")])
    assert full.returncode == 0, full.stderr[-3000:]
    killed = worker(tmp_path / "killed", [*common, "--output_dir", str(tmp_path / "resumed_out")], kill_at=5)
    assert killed.returncode != 0 and (tmp_path / "resumed_out" / "checkpoint-4" / AVERAGE_FILE).is_file()
    resumed = worker(tmp_path / "resumed", [*common, "--output_dir", str(tmp_path / "resumed_out"),
                                            "--resume_from_checkpoint", "auto"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_weights(tmp_path / "full"), load_weights(tmp_path / "resumed")
    assert update_gap(a, b, load_weights(tmp_path / "full", when="init")) < 1e-4


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process_over_the_same_global_batch(setup, tmp_path):
    root, args = setup
    common = [*args, "--max_steps", "3", "--save_strategy", "no", "--optim", "sgd", "--learning_rate", "0.05",
              "--max_grad_norm", "0"]  # with clipping, a gradient twice or half as large gives the same weights
    single = worker(tmp_path / "single", [*common, "--output_dir", str(tmp_path / "s"), "--per_device_train_batch_size", "4"])
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = worker(tmp_path / "ddp", [*common, "--output_dir", str(tmp_path / "d"), "--per_device_train_batch_size", "2"],
                 nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    r0, r1 = load_weights(tmp_path / "ddp"), load_weights(tmp_path / "ddp", rank=1)
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    one, init = load_weights(tmp_path / "single"), load_weights(tmp_path / "single", when="init")
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 1e-4  # training moved the weights
    assert update_gap(one, r0, init) < 1e-2
    losses = lambda d, r: [l["loss"] for l in json.load(open(tmp_path / d / f"log{r}.json")) if "loss" in l]
    assert len(losses("single", 0)) == 3
    assert losses("ddp", 0) == pytest.approx(losses("single", 0), rel=1e-5)
    assert losses("ddp", 1) == pytest.approx(losses("single", 0), rel=1e-5)


def write_beir(root, docs, queries, qrels):
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": t}, ensure_ascii=False) + "\n"
                                               for i, t in docs.items()), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n"
                                                for i, t in queries.items()), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, d in qrels.items()), encoding="utf-8")


@pytest.mark.slow
def test_evaluation_during_training_keeps_the_best_checkpoint(setup, tmp_path):
    root, args = setup
    ko = SENTENCES[0::2]
    bench = tmp_path / "bench"
    write_beir(bench, {f"d{i}": t for i, t in enumerate(ko)}, {f"q{i}": t[:8] for i, t in enumerate(ko)},
               {f"q{i}": f"d{i}" for i in range(len(ko))})
    out = tmp_path / "out"
    proc = run([sys.executable, "run_train.py", *args, "--output_dir", str(out), "--max_steps", "4",
                "--per_device_train_batch_size", "2", "--eval_benchmark", str(bench), "--eval_strategy", "steps",
                "--eval_steps", "2", "--save_steps", "2", "--metric_for_best_model", "ndcg@10",
                "--load_best_model_at_end", "true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.load(open(out / "checkpoint-4" / "trainer_state.json"))
    evals = [l for l in state["log_history"] if "eval_ndcg@10" in l]
    assert [l["step"] for l in evals] == [2, 4] and all(0 <= l["eval_ndcg@10"] <= 1 for l in evals)
    best = max(evals, key=lambda l: l["eval_ndcg@10"])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert state["best_metric"] == pytest.approx(best["eval_ndcg@10"])


def _trainer_on_two_sources(setup, tmp_path, options: dict, *args):
    """A trainer on two triplet sources of the same sentence pairs: the first with the source `options`, the second
    plain."""
    import run_train

    root, _ = setup
    pairs = root / "passages.jsonl"
    pairs.write_text("".join(json.dumps({"query": k, "positive": e}, ensure_ascii=False) + "\n"
                             for k, e in zip(SENTENCES[0::2], SENTENCES[1::2])), encoding="utf-8")
    sources = json.dumps([{"file": str(pairs), **options}, {"file": str(pairs)}])
    trainer, _ = run_train.build_trainer([
        "--model_name_or_path", str(root / "model"), "--sources", sources, "--output_dir", str(tmp_path / "out"),
        "--report_to", "none", "--use_cpu", "true", "--per_device_train_batch_size", "4", "--max_seq_length", "32",
        *args])
    return trainer


def test_a_query_is_document_source_is_read_and_regularised_as_documents(setup, tmp_path):
    """The source's flag travels schedule -> collator -> trainer -> loss: its queries are read to max_seq_length and
    get the documents' FLOPS, never the query's L1; a plain source of the same rows keeps the query side."""
    trainer = _trainer_on_two_sources(setup, tmp_path, {"query_is_document": True}, "--max_query_length", "4",
                                      "--l1_query_weight", "0.1", "--flops_doc_weight", "0.1")
    trainer.model.train()
    seen = {}
    for i in range(len(trainer.train_dataset)):
        item = trainer.train_dataset[i]
        if item["query_is_document"] in seen:
            continue
        batch = trainer.data_collator([item])
        width = batch["query_input_ids"].shape[1]
        trainer._parts.clear()
        trainer.compute_loss(trainer.model, batch)
        seen[item["query_is_document"]] = width, set(trainer._parts)
    (doc_width, as_document), (query_width, as_query) = seen[True], seen[False]
    assert doc_width > 4 and query_width == 4
    assert {"active_query_document", "flops_doc"} <= as_document and not {"l1_query", "active_query"} & as_document
    assert {"active_query", "l1_query"} <= as_query


def test_a_source_with_loss_overrides_trains_with_its_own_losses(setup, tmp_path):
    """A source's loss_overrides reach the loss for its batches only, through the Trainer's own loop (data loader,
    accelerate): here its triplets get the coverage loss and no ranking loss, while a plain source of the same rows
    keeps the run's info_nce and no coverage; the run's loss settings are untouched."""
    trainer = _trainer_on_two_sources(setup, tmp_path, {"loss_overrides": {"ranking_weight": 0, "coverage_weight": 1}},
                                      "--max_query_length", "8", "--num_train_epochs", "1", "--logging_steps", "1",
                                      "--save_strategy", "no", "--flops_warmup_steps", "100")
    trainer.train()
    logged = [set(entry) for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == len(trainer.train_dataset) >= 2
    assert any("coverage" in parts and "info_nce" not in parts for parts in logged)
    assert any("info_nce" in parts and "coverage" not in parts for parts in logged)
    assert trainer.loss.w.ranking_weight == 1.0 and trainer.loss.w.coverage_weight == 0.0
    # one warm-up clock: the overridden loss reads the run's regulariser scale, which training moved but not to 1
    assert 0 < trainer.loss.regularizer_scale == trainer.loss.with_weights(coverage_weight=1.0).regularizer_scale < 1


def test_the_fragment_penalty_gets_its_token_bags_from_the_trainer(setup, tmp_path):
    """The penalty exempts a text's own pieces, so the trainer must build query and document bags for it even when
    no other loss reads them (lexical_weight 0)."""
    trainer = _trainer_on_two_sources(setup, tmp_path, {}, "--fragment_weight", "0.1", "--lexical_weight", "0")
    batch = trainer.data_collator([trainer.train_dataset[0]])
    trainer._parts.clear()
    trainer.compute_loss(trainer.model, batch)
    assert {"fragment_query", "fragment_doc"} <= set(trainer._parts)
    assert all(trainer._parts[k] > 0 for k in ("fragment_query", "fragment_doc"))


def test_the_per_document_l1_reads_each_documents_token_count(setup, tmp_path):
    """l1_doc_length_exponent: compute_loss passes each document's token count to the loss, which charges its L1
    times (count / reference) ** exponent; recomputed here from the returned vectors and the attention mask."""
    trainer = _trainer_on_two_sources(setup, tmp_path, {}, "--flops_doc_weight", "0", "--l1_doc_weight", "0.1",
                                      "--l1_doc_length_exponent", "1", "--l1_doc_reference_length", "10")
    trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[0]])
    tokens = batch["doc_attention_mask"].sum(-1).float()
    kept = batch["doc_mask"].reshape(-1)
    assert tokens[kept].unique().numel() > 1  # real sentences of different lengths, so the scale matters
    trainer._parts.clear()
    _, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    norms = outputs["reps"]["doc"].detach()[kept].sum(-1)
    by_hand = (norms * tokens[kept] / 10).mean()
    assert trainer._parts["l1_doc"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert by_hand.item() != pytest.approx(norms.mean().item(), rel=1e-3)


class _Snapshots(TrainerCallback):
    """The trainable weights after each step, copied: the independent record the averaged model is checked against."""

    def __init__(self):
        self.by_step = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()
                                           if p.requires_grad}


def test_weight_averaging_saves_the_mean_of_the_steps_it_names_and_holds_the_learning_rate(setup, tmp_path):
    """average_weights_from 2, every 2, over 6 steps: the model trained is the mean of its weights after steps 2, 4
    and 6 (each recorded by a separate callback), and the linear schedule (no warm-up) stops at its step-2 value."""
    trainer = _trainer_on_two_sources(setup, tmp_path, {}, "--max_steps", "6", "--average_weights_from", "2",
                                      "--average_weights_every", "2", "--learning_rate", "1e-3", "--logging_steps",
                                      "1", "--save_strategy", "no", "--lr_scheduler_type", "linear")
    snapshots = _Snapshots()
    trainer.add_callback(snapshots)
    trainer.train()
    rates = {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}
    # the rate step s trained with: 1e-3 * (1 - (s - 1) / 6) up to step 3 (the schedule's step-2 value), then held
    assert rates == pytest.approx({1: 1e-3, 2: 1e-3 * 5 / 6, 3: 1e-3 * 4 / 6, 4: 1e-3 * 4 / 6, 5: 1e-3 * 4 / 6,
                                   6: 1e-3 * 4 / 6})
    params = dict(trainer.model.named_parameters())
    moved = 0.0
    for name, last in snapshots.by_step[6].items():
        mean = sum(snapshots.by_step[s][name] for s in (2, 4, 6)) / 3
        assert torch.allclose(params[name], mean, atol=1e-6), name
        moved = max(moved, (last - mean).abs().max().item())
    assert moved > 1e-4  # the mean is not the last step's weights


def test_weight_averaging_settings_that_cannot_work_are_config_errors(setup, tmp_path):
    import run_train

    root, _ = setup
    for extra, message in ((["--max_steps", "4", "--average_weights_from", "4"], "must be below max_steps (4)"),
                           (["--average_weights_from", "2", "--average_weights_every", "0"], "average_weights_every"),
                           (["--average_weights_from", "2", "--load_best_model_at_end", "true", "--eval_strategy",
                             "steps", "--save_strategy", "steps"], "load_best_model_at_end")):
        with pytest.raises(SystemExit) as exc:
            run_train.build_trainer(["--model_name_or_path", str(root / "model"), "--train_file",
                                     str(root / "terms.jsonl"), "--output_dir", str(tmp_path / "o"), *extra])
        assert message in str(exc.value) and str(exc.value).startswith("config error:")
    assert not (tmp_path / "o").exists()
