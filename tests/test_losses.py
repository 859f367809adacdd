"""Losses against golden values computed independently (plain Python / numpy loops over tiny tensors)."""
import math

import numpy as np
import pytest
import torch

from training import losses as L

Q = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
# two queries x (positive, negative): 4 docs
D = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.5]])
MASK = torch.tensor([[True, True], [True, True]])


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_info_nce_hand_computed():
    q, d = Q.tolist(), D.tolist()
    expected = 0.0
    for i in range(2):
        scores = [dot(q[i], dj) for dj in d]
        expected += -(scores[2 * i] - math.log(sum(math.exp(s) for s in scores)))
    assert L.info_nce(Q, D, MASK).item() == pytest.approx(expected / 2, abs=1e-6)
    # A padded document drops out of every softmax.
    mask = torch.tensor([[True, False], [True, True]])
    expected = 0.0
    for i in range(2):
        scores = [dot(q[i], dj) for j, dj in enumerate(d) if j != 1]
        pos = dot(q[i], d[2 * i])
        expected += -(pos - math.log(sum(math.exp(s) for s in scores)))
    assert L.info_nce(Q, D, mask).item() == pytest.approx(expected / 2, abs=1e-6)


def test_info_nce_temperature_scales_scores():
    assert L.info_nce(Q, D, MASK, temperature=2.0).item() == pytest.approx(L.info_nce(Q / 2, D, MASK).item(), abs=1e-6)


def test_margin_ranking_hand_computed():
    scores = torch.tensor([[3.0, 2.5, 1.0], [1.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # hinges: q0: max(0,1-3+2.5)=0.5, max(0,1-3+1)=0 ; q1: max(0,1-1+2)=2 (third padded)
    assert L.margin_ranking(scores, mask, 1.0).item() == pytest.approx((0.5 + 0 + 2) / 3)


def test_group_scores():
    s = L.group_scores(Q, D, 2)
    assert s.tolist() == [[3.0, 0.0], [1.0, 0.5]]


def test_kl_distillation_hand_computed():
    student = torch.tensor([[1.0, 2.0, 0.5]])
    teacher = torch.tensor([[2.0, 0.0, 1.0]])
    T = 2.0

    def softmax(v):
        e = [math.exp(x / T) for x in v]
        return [x / sum(e) for x in e]

    p, q = softmax(teacher[0].tolist()), softmax(student[0].tolist())
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert L.kl_distillation(student, teacher, mask, T).item() == pytest.approx(expected, abs=1e-6)
    # masked third document: distributions over the first two only
    p2, q2 = softmax(teacher[0, :2].tolist()), softmax(student[0, :2].tolist())
    expected2 = sum(pi * math.log(pi / qi) for pi, qi in zip(p2, q2))
    assert L.kl_distillation(student, teacher, torch.tensor([[True, True, False]]), T).item() == pytest.approx(expected2, abs=1e-6)


def test_margin_mse_hand_computed():
    student = torch.tensor([[1.0, 3.0, 0.0]])
    teacher = torch.tensor([[0.5, 2.0, 1.0]])  # teacher's best = doc 1
    # student margins vs doc1: 3-1=2, 3-0=3 ; teacher: 2-0.5=1.5, 2-1=1 ; mse = ((0.5)^2 + 2^2)/2
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert L.margin_mse(student, teacher, mask).item() == pytest.approx((0.25 + 4) / 2)


def test_flops_and_l1_hand_computed():
    reps = np.array([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0]])
    mean = reps.mean(0)
    assert L.flops(torch.tensor(reps)).item() == pytest.approx(float((mean ** 2).sum()))
    w = np.array([1.0, 2.0, 0.5])
    assert L.flops(torch.tensor(reps), torch.tensor(w)).item() == pytest.approx(float((w * mean ** 2).sum()))
    assert L.l1(torch.tensor(reps)).item() == pytest.approx(3.5)


def test_term_level_losses_hand_computed():
    reps = torch.tensor([[0.5, 2.0, 0.0, 1.0], [0.0, 0.2, 3.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    # hinge max(0, 1 - w) on targets: row0: 0.5, 0 ; row1: 0, 1 -> mean 1.5/4
    assert L.target_activation(reps, targets, 1.0).item() == pytest.approx(1.5 / 4)
    # scores[i][j] = mean weight of row i on pair j's targets
    s = [[(0.5 + 2.0) / 2, (0 + 1.0) / 2], [(0 + 0.2) / 2, (3.0 + 0) / 2]]
    hinges = [max(0, 1 - s[0][0] + s[0][1]), max(0, 1 - s[1][1] + s[1][0])]
    assert L.translation_margin(reps, targets, 1.0).item() == pytest.approx(sum(hinges) / 2)
    ko, en = reps, torch.tensor([[0.5, 2.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    cos1 = 0.0  # row1: orthogonal
    assert L.cross_lingual_alignment(ko, en).item() == pytest.approx(((1 - 1.0) + (1 - cos1)) / 2, abs=1e-6)


def test_triplet_margin_and_masked_mass():
    a, p, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    expected = max(0.0, 0.2 - 1 / math.sqrt(2) + 1.0)
    assert L.triplet_margin(a, p, n, 0.2).item() == pytest.approx(expected, abs=1e-6)
    reps = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]])
    assert L.masked_mass(reps, torch.tensor([0.0, 1.0, 1.0])).item() == pytest.approx((5 + 2) / 2)


def test_bag_of_ids_ignores_padding_and_dropped_ids():
    ids = torch.tensor([[2, 3, 3, 0], [1, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    keep = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    bag = L.bag_of_ids(ids, mask, 5, keep)
    assert bag.tolist() == [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]


def test_flops_warmup_is_quadratic():
    assert L.flops_warmup_scale(0, 100) == 0.0
    assert L.flops_warmup_scale(50, 100) == pytest.approx(0.25)
    assert L.flops_warmup_scale(500, 100) == 1.0
    assert L.flops_warmup_scale(3, 0) == 1.0


def test_sparse_loss_combines_named_parts():
    weights = L.LossWeights(flops_query_weight=0.1, flops_doc_weight=0.2)
    loss = L.SparseLoss(weights, 3, torch.ones(3))
    parts = loss("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    expected = parts["info_nce"] + 0.1 * parts["flops_query"] + 0.2 * parts["flops_doc"]
    assert parts["loss"].item() == pytest.approx(expected.item())
    loss.regularizer_scale = 0.5
    parts = loss("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    assert parts["loss"].item() == pytest.approx((parts["info_nce"] + 0.5 * (0.1 * parts["flops_query"] + 0.2 * parts["flops_doc"])).item())
    with pytest.raises(ValueError, match="no loss is switched on"):
        L.SparseLoss(L.LossWeights(ranking_loss="none", flops_query_weight=0, flops_doc_weight=0), 3, torch.ones(3))(
            "triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
