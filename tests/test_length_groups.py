"""Length-grouped encoding: a batch split into sub-batches of similar length, each cut to its own width, gives
the same vectors and parameter gradients as one padded call, and the split is the cheapest one."""
import itertools
import json
from pathlib import Path

import pytest
import torch

from tests.test_fused import assert_same_outputs_and_grads, outputs_and_grads
from training import SparseEncoder
from training.encoder import length_groups


def _brute_force_cost(widths: list[int], overhead: int) -> int:
    """Cheapest split of the rows into groups by trying every set partition (any rows together, not only
    neighbours in width order): each group pays its rows x its widest row, plus the overhead."""
    best = None
    n = len(widths)
    for labels in itertools.product(range(n), repeat=n):
        if list(labels[: 1]) != [0] or any(labels[i] > max(labels[:i]) + 1 for i in range(1, n)):
            continue  # canonical labellings only (each partition once)
        groups = {}
        for row, g in enumerate(labels):
            groups.setdefault(g, []).append(widths[row])
        cost = sum(len(ws) * max(ws) + overhead for ws in groups.values())
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_split_is_the_cheapest_partition(seed):
    g = torch.Generator().manual_seed(seed)
    n, seq = 6, 40
    widths = torch.randint(1, seq + 1, (n,), generator=g)
    mask = (torch.arange(seq) < widths.unsqueeze(1)).long()
    overhead = [0, 8, 30, 200][seed % 4]
    groups = length_groups(mask, overhead)
    rows = torch.cat([r for r, _ in groups]).sort().values
    assert rows.tolist() == list(range(n))  # every row exactly once
    for r, width in groups:
        assert width == int(widths[r].max())
    cost = sum(len(r) * width + overhead for r, width in groups)
    assert cost == _brute_force_cost(widths.tolist(), overhead)


def test_width_is_the_last_real_position_whatever_the_padding_side():
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert [w for _, w in length_groups(left, overhead=0)] == [4]  # left padding: every row needs all columns
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert sorted(w for _, w in length_groups(right, overhead=0)) == [1, 2, 4]
    assert [w for _, w in length_groups(right, overhead=10)] == [4]  # one more call would save 2 + 3 tokens


def _korquad_texts(shared_data, count=12):
    """Questions (a dozen pieces) and paragraphs (hundreds) of real KorQuAD articles, interleaved."""
    articles = json.loads((Path(shared_data) / "korquad_v1" / "KorQuAD_v1.0_dev.json").read_text(
        encoding="utf-8"))["data"]
    texts = []
    for paragraph in (p for a in articles[:5] for p in a["paragraphs"]):
        texts += [paragraph["qas"][0]["question"], paragraph["context"][: 40 + 25 * len(texts)]]
    return texts[:count]


@pytest.mark.parametrize("fused", [True, False])
def test_grouped_encoding_equals_one_padded_call(tiny_model_dir, shared_data, fused, monkeypatch):
    encoder = SparseEncoder.from_pretrained(tiny_model_dir).double().eval()
    encoder.fused_pooling = fused
    texts = _korquad_texts(shared_data)
    batch = encoder.tokenize(texts, max_length=128)
    groups = length_groups(batch["attention_mask"], encoder.length_group_overhead)
    assert len(groups) >= 3  # the texts really are split
    upstream = torch.rand(len(texts), encoder.vocab_size, dtype=torch.float64)
    calls = []
    original = SparseEncoder._max_logits
    monkeypatch.setattr(SparseEncoder, "_max_logits", lambda self, ids, *a: calls.append(ids.shape) or original(
        self, ids, *a))
    grouped = outputs_and_grads(encoder, batch, upstream)
    assert len(calls) == len(groups) and sum(s[0] * s[1] for s in calls) < batch["input_ids"].numel()
    encoder.length_group_overhead = None
    assert_same_outputs_and_grads(grouped, outputs_and_grads(encoder, batch, upstream))


@pytest.mark.parametrize("setting, expected", [("length_group_overhead: 300\n", 300),
                                               ("length_group_overhead: null\n", None), ("", 64)])
def test_the_config_sets_the_trainers_grouping(tiny_model_dir, tmp_path, setting, expected):
    from run_train import build_trainer

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": q, "positive": q + " 문서"}, ensure_ascii=False) + "\n"
                            for q in ["머신러닝", "검색 엔진", "추천 시스템", "서울"]), encoding="utf-8")
    config = tmp_path / "train.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\noutput_dir: {tmp_path / 'out'}\nreport_to: none\n"
                      f"train_file: {data}\nper_device_train_batch_size: 2\nmax_steps: 1\n{setting}", encoding="utf-8")
    trainer, _ = build_trainer([str(config)])
    assert trainer.model.length_group_overhead == expected
