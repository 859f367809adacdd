"""Multi-process training on real, varied-length text: every rank pads its slice of the batch to its own longest
text, so nothing of per-rank sequence shape may enter a collective. Two gloo ranks must end bit-identical and
equal to one process over the same global batch, for triplets, distillation lists and term pairs mixed."""
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_training_run import load_weights, update_gap, worker
from tests.tiny import build_tiny_model


def _read_real_text(shared):
    with open(os.path.join(shared, "msmarco_ko", "msmarco_kor.json"), encoding="utf-8") as fh:
        msmarco = [r for r in json.load(fh) if r["positive"]][:16]
    with open(os.path.join(shared, "klue_dev_sts_nli", "klue-sts-v1.1_dev.json"), encoding="utf-8") as fh:
        sts = json.load(fh)[:40]
    with open(os.path.join(shared, "muse_dict_ko_en", "ko-en.0-5000.txt"), encoding="utf-8") as fh:
        pairs = [line.split() for line in fh if len(line.split()) == 2][:400:50]
    return msmarco, sts, pairs


@pytest.fixture(scope="module")
def real_setup(tmp_path_factory, shared_data):
    msmarco, sts, pairs = _read_real_text(shared_data)
    root = tmp_path_factory.mktemp("ddp_real")
    passages = [r["positive"][0] for r in msmarco]
    rows = {
        "triplets.jsonl": [{"query": r["query"], "positive": p, "negatives": [passages[(i + 3) % 16], passages[(i + 7) % 16]]}
                           for i, (r, p) in enumerate(zip(msmarco, passages))][:8],
        "distill.jsonl": [{"query": sts[i]["sentence1"], "docs": [s["sentence2"] for s in sts[i:i + 5]],
                           "scores": [s["labels"]["label"] for s in sts[i:i + 5]]} for i in range(0, 40, 5)],
        "terms.jsonl": [{"ko": ko, "en": en} for ko, en in pairs],
    }
    texts = [t for recs in rows.values() for r in recs for v in r.values() for t in (v if isinstance(v, list) else [v])
             if isinstance(t, str)]
    model = build_tiny_model(root / "model", dropout=0.0, texts=texts, vocab_size=1500, fixed_vocab=True)  # reproducible
    for name, records in rows.items():
        (root / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    args = ["--model_name_or_path", str(model), "--train_file", *(str(root / n) for n in rows),
            "--logging_steps", "1", "--report_to", "none", "--allowed_scripts", "hangul", "latin", "common",
            "--activation_weight", "1", "--preservation_weight", "0.5", "--translation_margin_weight", "1",
            "--alignment_weight", "0.1", "--max_seq_length", "96", "--max_query_length", "24", "--num_negatives", "2",
            "--num_distill_docs", "4", "--seed", "11", "--max_steps", "6", "--save_strategy", "no", "--optim", "sgd",
            "--learning_rate", "0.05", "--max_grad_norm", "0"]  # clipping (norms 3-43 here) hides gradient-scale bugs
    return root, args


def train_one_process_and_two_ranks(args, tmp_path, single_args=(), ddp_args=()):
    """The same global batch of 4 as one process and as 2 gloo ranks of 2: (one, rank0, rank1) final weights and
    the weights before training (init)."""
    single = worker(tmp_path / "single", [*args, *single_args, "--output_dir", str(tmp_path / "s"),
                                          "--per_device_train_batch_size", "4"])
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = worker(tmp_path / "ddp", [*args, *ddp_args, "--output_dir", str(tmp_path / "d"),
                                    "--per_device_train_batch_size", "2"], nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    for rank in (0, 1):  # gloo threads alive at interpreter exit abort the rank now and then (exit -6)
        threads = json.load(open(tmp_path / "ddp" / f"threads{rank}.json"))
        assert not [t for t in threads if "gloo" in t], threads
    return (load_weights(tmp_path / "single"), load_weights(tmp_path / "ddp"), load_weights(tmp_path / "ddp", 1),
            load_weights(tmp_path / "single", when="init"))


@pytest.mark.slow
def test_two_ranks_on_real_text_match_one_process(real_setup, tmp_path):
    root, args = real_setup
    one, r0, r1, init = train_one_process_and_two_ranks(args, tmp_path)
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    assert update_gap(one, r0, init) < 1e-2
    logs = {d: [l for l in json.load(open(tmp_path / d / "log0.json")) if "loss" in l] for d in ("single", "ddp")}
    parts = {k for l in logs["single"] for k in l}
    assert {"info_nce", "kl", "en_activation", "translation_margin", "dead_en_targets"} <= parts  # all three tasks ran
    assert [l["loss"] for l in logs["ddp"]] == pytest.approx([l["loss"] for l in logs["single"]], rel=1e-5)
    for key in ("en_activation", "kl", "info_nce", "active_doc"):
        values = lambda d: [l[key] for l in logs[d] if key in l]  # noqa: E731
        assert values("single") and values("ddp") == pytest.approx(values("single"), rel=1e-5), key


@pytest.mark.slow
def test_a_source_with_its_own_batch_size_trains_on_two_ranks_as_on_one(real_setup, tmp_path):
    """Term pairs at 8 a step (4 per rank) beside triplets and lists at 4 (2 per rank): every rank's gather must
    use the batch's own rows per rank, not the trainer's per-device batch size."""
    root, args = real_setup
    files = [a for a in args if a.endswith(".jsonl")]
    rest = [a for a in args if a not in files and a != "--train_file"]

    def sources(term_rows):
        return ["--sources", "[" + ", ".join(f"{{file: {f}" + (f", batch_size: {term_rows}}}" if "terms" in f else "}")
                                            for f in files) + "]"]

    one, r0, r1, init = train_one_process_and_two_ranks(rest, tmp_path, single_args=sources(8), ddp_args=sources(4))
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    assert update_gap(one, r0, init) < 1e-2
    logs = {d: [l for l in json.load(open(tmp_path / d / "log0.json")) if "loss" in l] for d in ("single", "ddp")}
    assert any("en_activation" in l for l in logs["single"])  # a term-pair batch ran
    assert [l["loss"] for l in logs["ddp"]] == pytest.approx([l["loss"] for l in logs["single"]], rel=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uneven_rank(rank, world, port, out):
    from training.trainer import gather_global_batch

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        rows = 3 if rank == 0 else 1  # a last step where ranks hold different numbers of examples
        torch.manual_seed(rank)
        query = torch.rand(rows, 5, requires_grad=True)
        doc = torch.rand(rows * 2, 5, requires_grad=True)
        batch = {"doc_mask": torch.tensor([[True, rank == 0]] * rows), "teacher_scores": torch.rand(rows, 2)}
        calls = []
        real_all_gather = dist.all_gather
        dist.all_gather = lambda *a, **k: (calls.append(1), real_all_gather(*a, **k))[1]
        try:
            reps, gathered = gather_global_batch({"query": query, "doc": doc}, batch, rows_per_rank=3)
        finally:
            dist.all_gather = real_all_gather
        (reps["query"].sum() * 2 + reps["doc"].pow(2).sum()).backward()
        torch.save({"query": reps["query"].detach(), "doc": reps["doc"].detach(), **gathered,
                    "local_query": query.detach(), "local_doc": doc.detach(), "grad_query": query.grad,
                    "grad_doc": doc.grad, "local_batch": batch,
                    "all_gathers": torch.tensor(len(calls))}, os.path.join(out, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gather_global_batch_handles_uneven_ranks_and_returns_own_gradients(tmp_path):
    mp.spawn(_uneven_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r = [torch.load(tmp_path / f"{i}.pt", weights_only=True) for i in range(2)]
    for key in ("query", "doc", "doc_mask", "teacher_scores"):
        assert torch.equal(r[0][key], r[1][key]), key
    assert torch.equal(r[0]["query"], torch.cat([r[0]["local_query"], r[1]["local_query"]]))
    assert torch.equal(r[0]["doc"], torch.cat([r[0]["local_doc"], r[1]["local_doc"]]))
    assert r[0]["all_gathers"].item() == 2  # metadata (with the validity column) + vectors, whatever the task
    assert r[0]["doc_mask"].dtype == torch.bool and r[0]["doc_mask"].shape == (4, 2)
    assert torch.equal(r[0]["doc_mask"], torch.cat([r[0]["local_batch"]["doc_mask"], r[1]["local_batch"]["doc_mask"]]))
    assert torch.equal(r[1]["teacher_scores"],
                       torch.cat([r[0]["local_batch"]["teacher_scores"], r[1]["local_batch"]["teacher_scores"]]))
    # each rank's loss is the global one, so its rows get world_size x the gradient (DDP then averages)
    for i in range(2):
        torch.testing.assert_close(r[i]["grad_query"], torch.full_like(r[i]["local_query"], 2.0 * 2))
        torch.testing.assert_close(r[i]["grad_doc"], 2 * 2 * r[i]["local_doc"])
