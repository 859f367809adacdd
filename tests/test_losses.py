"""Losses against golden values computed independently (plain Python / numpy loops over tiny tensors)."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training import losses as L
from training.arguments import LossArguments

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


def test_distillation_in_batch_ranks_the_teachers_best_against_the_whole_batch():
    """Its positive is the teacher's best of each list (not the first document), its negatives every other
    unpadded document of the batch, and it adds to the KL at its weight."""
    q, d = Q.tolist(), D.tolist()
    teacher = torch.tensor([[0.2, 0.9], [0.7, 0.1]])  # query 0's best is its second document, query 1's its first
    mask = torch.tensor([[True, True], [True, False]])  # query 1's second document is padding
    expected = 0.0
    for i, best in enumerate([1, 0]):
        scores = [dot(q[i], dj) for j, dj in enumerate(d) if j != 3]
        expected += -(dot(q[i], d[2 * i + best]) - math.log(sum(math.exp(s) for s in scores)))
    parts = L.SparseLoss(LossArguments(distillation_in_batch_weight=0.5, flops_query_weight=0, flops_doc_weight=0))(
        "distillation", {"query": Q, "doc": D}, {"doc_mask": mask, "teacher_scores": teacher})
    assert parts["distillation_in_batch"].item() == pytest.approx(expected / 2, abs=1e-6)
    assert parts["loss"].item() == pytest.approx(parts["kl"].item() + 0.5 * expected / 2, abs=1e-6)
    off = L.SparseLoss(LossArguments(flops_query_weight=0, flops_doc_weight=0))(
        "distillation", {"query": Q, "doc": D}, {"doc_mask": mask, "teacher_scores": teacher})
    assert "distillation_in_batch" not in off


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


def test_token_bag_ignores_padding_and_moves_ids_to_their_served_id():
    from training.vocab import token_bag

    ids = torch.tensor([[2, 3, 3, 0], [1, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert token_bag(ids, mask, 5).tolist() == [[0, 0, 1, 1, 0], [0, 1, 0, 0, 1]]
    canonical = torch.tensor([0, 1, 2, 2, 4])  # id 3 shares id 2's name
    assert token_bag(ids, mask, 5, canonical).tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 1]]


def test_logit_space_term_losses_hand_computed_and_reach_inactive_targets():
    logits = torch.tensor([[-2.0, 0.5, 4.0], [1.0, -0.5, -3.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    # target weight 1 <=> logit e - 1 = 1.71828; hinges on targets: row0 3.71828, 1.21828; row1 2.21828, 4.71828
    e1 = math.e - 1
    expected = ((e1 + 2) + (e1 - 0.5) + (e1 + 0.5) + (e1 + 3)) / 4
    loss = L.target_logit_activation(logits, targets, 1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # every target below the threshold gets -1/4, including the three with negative logits; non-targets get 0
    assert logits.grad.tolist() == [[-0.25, -0.25, 0.0], [0.0, -0.25, -0.25]]
    # the weight-space form passes nothing to the same inactive targets
    logits.grad = None
    weights = torch.log1p(torch.relu(logits))
    L.target_activation(weights, targets, 1.0).backward()
    assert logits.grad[0, 0] == 0 and logits.grad[1, 1] == 0 and logits.grad[1, 2] == 0
    assert L.dead_targets(weights, targets).item() == pytest.approx(3 / 4)


def test_sparse_loss_term_pairs_in_logit_and_weight_space():
    logits = torch.tensor([[-1.0, 2.0, 0.0, 0.5], [0.3, -4.0, 1.5, -0.2]])
    ko = torch.log1p(torch.relu(logits))
    en = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    batch = {"ko_bag": torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]), "en_bag": torch.tensor([[0, 0, 0, 1.0], [1.0, 0, 0, 0]])}
    w = dict(activation_weight=1.0, preservation_weight=0.5, translation_margin_weight=0.0, flops_doc_weight=0.0)
    logit = L.SparseLoss(LossArguments(**w))("term_pairs", {"ko": ko, "en": en, "ko_logits": logits}, batch)
    e1 = math.e - 1
    assert logit["preservation"].item() == pytest.approx(((e1 + 1) + (e1 + 4)) / 2)
    assert logit["en_activation"].item() == pytest.approx(((e1 - 0.5) + (e1 - 0.3)) / 2)
    assert logit["dead_en_targets"].item() == 0.0
    weight = L.SparseLoss(LossArguments(**w, term_loss_space="weight"))("term_pairs", {"ko": ko, "en": en}, batch)
    assert weight["preservation"].item() == pytest.approx(1.0)
    assert weight["en_activation"].item() == pytest.approx(((1 - math.log1p(0.5)) + (1 - math.log1p(0.3))) / 2)
    assert L.SparseLoss(LossArguments(**w)).logit_groups("term_pairs") == ("ko",)
    assert L.SparseLoss(LossArguments(**w, term_loss_space="weight")).logit_groups("term_pairs") == ()


def test_ko_activation_pushes_an_english_terms_inactive_korean_pieces_up():
    ko_logits = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    en_logits = torch.tensor([[-2.0, 0.5, 0.0, 3.0], [1.0, 0.8, -0.5, 0.0]], requires_grad=True)
    ko_bag = torch.tensor([[1.0, 0, 1.0, 0], [0, 1.0, 0, 0]])  # row 0: two Korean pieces, both inactive in en
    en_bag = torch.tensor([[0, 0, 0, 1.0], [1.0, 0, 0, 0]])
    reps = {"ko": torch.log1p(torch.relu(ko_logits)), "en": torch.log1p(torch.relu(en_logits)),
            "ko_logits": ko_logits, "en_logits": en_logits}
    args = dict(activation_target=1.0, flops_doc_weight=0.0)
    parts = L.SparseLoss(LossArguments(ko_activation_weight=2.0, **args))(
        "term_pairs", reps, {"ko_bag": ko_bag, "en_bag": en_bag})
    # hinge e - 1 - logit on the en vector's Korean targets: (e1 + 2), (e1 - 0), (e1 - 0.8), by hand
    e1 = math.e - 1
    assert parts["ko_activation"].item() == pytest.approx(((e1 + 2) + e1 + (e1 - 0.8)) / 3)
    assert parts["loss"].item() == pytest.approx(2.0 * parts["ko_activation"].item())
    assert parts["dead_ko_targets"].item() == pytest.approx(2 / 3)  # weights 0 at (0, 0) and (0, 2)
    parts["loss"].backward()
    torch.testing.assert_close(en_logits.grad, torch.tensor([[-2 / 3, 0.0, -2 / 3, 0.0], [0.0, -2 / 3, 0.0, 0.0]]))
    assert L.SparseLoss(LossArguments(ko_activation_weight=2.0, **args)).logit_groups("term_pairs") == ("en",)
    assert L.SparseLoss(LossArguments(activation_weight=1.0, ko_activation_weight=2.0)).logit_groups(
        "term_pairs") == ("ko", "en")
    off = L.SparseLoss(LossArguments(activation_weight=1.0, **args))("term_pairs", reps,
                                                                     {"ko_bag": ko_bag, "en_bag": en_bag})
    assert "ko_activation" not in off and "dead_ko_targets" not in off


def test_term_regularisation_query_puts_the_query_sparsity_weights_on_term_vectors():
    ko = torch.tensor([[0.5, 0.0, 2.0], [1.0, 1.0, 0.0]])
    en = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 0.25]])
    batch = {"ko_bag": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), "en_bag": torch.tensor([[0, 1.0, 0], [0, 0, 1.0]])}
    weights = dict(flops_query_weight=0.5, l1_query_weight=0.25, flops_doc_weight=0.125, alignment_weight=1.0)
    # by hand over the 4 term vectors: FLOPS = sum_j (mean_i w_ij)^2, L1 = mean_i sum_j w_ij
    column_means = [(0.5 + 1.0) / 4, (1.0 + 3.0) / 4, (2.0 + 0.25) / 4]
    flops = sum(m * m for m in column_means)
    l1 = (2.5 + 2.0 + 3.0 + 0.25) / 4
    reps = {"ko": ko, "en": en}  # alignment reads weights only: the encoder computes no max logits for it
    assert L.SparseLoss(LossArguments(**weights)).logit_groups("term_pairs") == ()
    as_docs = L.SparseLoss(LossArguments(**weights))("term_pairs", reps, batch)
    as_queries = L.SparseLoss(LossArguments(**weights, term_regularisation="query"))("term_pairs", reps, batch)
    assert as_docs["flops_doc"].item() == pytest.approx(flops) and "flops_query" not in as_docs
    assert as_queries["flops_query"].item() == pytest.approx(flops)
    assert as_queries["l1_query"].item() == pytest.approx(l1) and "flops_doc" not in as_queries
    alignment = as_docs["alignment"].item()
    assert as_docs["loss"].item() == pytest.approx(alignment + 0.125 * flops)
    assert as_queries["loss"].item() == pytest.approx(alignment + 0.5 * flops + 0.25 * l1)
    # a doc-only model has no query encoder: its term vectors stay documents
    doc_only = L.SparseLoss(LossArguments(**weights, term_regularisation="query"), regularise_queries=False)(
        "term_pairs", reps, batch)
    assert doc_only["loss"].item() == pytest.approx(alignment + 0.125 * flops)
    with pytest.raises(ValueError, match="no loss is switched on for task 'term_pairs'"):  # regularisers only
        L.SparseLoss(LossArguments(**{**weights, "alignment_weight": 0.0}))("term_pairs", reps, batch)


def test_rank_activation_pushes_english_targets_above_the_kth_other_weight():
    e = math.expm1
    logits = torch.tensor([[e(0.5), -1.0, e(2.0), e(1.0)], [e(1.0), e(1.0), -0.5, e(3.0)]], requires_grad=True)
    ko = torch.log1p(torch.relu(logits))  # weights [0.5, 0, 2, 1] and [1, 1, 0, 3]
    batch = {"ko_bag": torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]),
             "en_bag": torch.tensor([[0, 1.0, 0, 0], [0, 0, 1.0, 1.0]])}
    # k = 2, margin 0.1: the 2nd largest non-target weight is 1.0 in both rows, so each target needs weight 1.1,
    # i.e. logit expm1(1.1); the target of weight 3 clears it, the two dead ones (logits -1, -0.5) do not.
    bar = math.expm1(1.1)
    expected = ((bar + 1.0) + (bar + 0.5) + 0.0) / 3
    weights = LossArguments(rank_activation_weight=2.0, rank_activation_k=2, rank_activation_margin=0.1,
                            flops_doc_weight=0.0)
    assert L.SparseLoss(weights).logit_groups("term_pairs") == ("ko",)  # the encoder must return ko_logits
    parts = L.SparseLoss(weights)("term_pairs", {"ko": ko, "en": ko.detach().flip(0), "ko_logits": logits}, batch)
    assert parts["en_rank_activation"].item() == pytest.approx(expected, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(2.0 * expected, rel=1e-6)
    parts["loss"].backward()
    # the two dead targets are pushed up; the bar (non-target weights) and the target above it get nothing
    assert torch.allclose(logits.grad, torch.tensor([[0, -2 / 3, 0, 0], [0, 0, -2 / 3, 0]]))


def test_lexical_prior_keeps_own_tokens_of_queries_and_documents():
    q_logits = torch.tensor([[2.0, -1.0, 0.0]])
    d_logits = torch.tensor([[0.5, 3.0, -2.0], [1.0, 1.0, 1.0]])
    reps = {"query": torch.log1p(torch.relu(q_logits)), "doc": torch.log1p(torch.relu(d_logits)),
            "query_logits": q_logits, "doc_logits": d_logits}
    batch = {"doc_mask": torch.tensor([[True, True]]), "query_bag": torch.tensor([[1.0, 1.0, 0.0]]),
             "doc_bag": torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])}
    weights = LossArguments(lexical_weight=0.5, preservation_target=1.0, flops_query_weight=0, flops_doc_weight=0)
    loss = L.SparseLoss(weights)
    assert loss.logit_groups("triplets") == ("query", "doc") and loss.bag_groups("triplets") == ("query", "doc")
    parts = loss("triplets", reps, batch)
    e1 = math.e - 1  # logit of weight 1
    assert parts["lexical_query"].item() == pytest.approx((0 + (e1 + 1)) / 2)
    assert parts["lexical_doc"].item() == pytest.approx((0 + (e1 + 2)) / 2)  # the empty second bag adds nothing
    assert parts["loss"].item() == pytest.approx((parts["info_nce"] + 0.5 * (parts["lexical_query"] + parts["lexical_doc"])).item())
    assert L.SparseLoss(weights, regularise_queries=False).logit_groups("triplets") == ("doc",)


def test_coverage_pushes_the_positive_to_its_querys_tokens_even_when_inactive():
    # two queries, each with [positive, negative]; vocabulary of 4
    d_logits = torch.tensor([[-2.0, 3.0, 0.5, -1.0],   # positive of query 0: token 0 dead, token 1 above target
                             [-5.0, -5.0, -5.0, -5.0],  # its negative: never a coverage target
                             [0.5, -0.5, -3.0, 9.0],    # positive of query 1
                             [-5.0, -5.0, -5.0, -5.0]], requires_grad=True)
    reps = {"query": torch.rand(2, 4), "doc": torch.log1p(torch.relu(d_logits)), "doc_logits": d_logits}
    batch = {"doc_mask": torch.ones(2, 2, dtype=torch.bool),
             "query_bag": torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])}
    weights = LossArguments(coverage_weight=0.5, coverage_target=1.0, flops_query_weight=0, flops_doc_weight=0)
    loss = L.SparseLoss(weights)
    assert loss.bag_groups("triplets") == ("query",) and loss.logit_groups("triplets") == ("doc",)
    assert loss.bag_groups("distillation") == () and loss.logit_groups("distillation") == ()
    parts = loss("triplets", reps, batch)
    e1 = math.e - 1  # the logit of weight 1
    hinges = [e1 + 2.0, 0.0, e1 + 0.5, e1 + 3.0]  # targets (0,0), (0,1), (1,1), (1,2)
    assert parts["coverage"].item() == pytest.approx(sum(hinges) / 4)
    parts["loss"].backward()
    without = d_logits.detach().clone().requires_grad_()
    no_coverage = L.SparseLoss(LossArguments(flops_query_weight=0, flops_doc_weight=0))
    no_coverage("triplets", {**reps, "doc": torch.log1p(torch.relu(without)), "doc_logits": without},
                batch)["loss"].backward()
    expected = torch.zeros(4, 4)
    expected[0, 0] = expected[2, 1] = expected[2, 2] = -0.5 / 4  # every target under the bar, dead ones too
    assert torch.allclose(d_logits.grad - without.grad, expected)
    # on the weights (the old blind spot) the dead targets get nothing
    logits = d_logits.detach().clone().requires_grad_()
    weight_space = L.SparseLoss(LossArguments(coverage_weight=0.5, term_loss_space="weight", ranking_weight=0,
                                              flops_query_weight=0, flops_doc_weight=0))
    weight_space("triplets", {"query": reps["query"], "doc": torch.log1p(torch.relu(logits))}, batch)[
        "loss"].backward()
    assert logits.grad[0, 0] == 0 and logits.grad[2, 1] == 0 and logits.grad[2, 2] == 0 and logits.grad[0, 1] == 0
    assert logits.grad[2, 0] == 0 and logits.grad.sum() == 0  # token (2, 0) is not a target


def test_doc_only_loss_skips_query_regularisers():
    weights = LossArguments(flops_query_weight=0.1, l1_query_weight=0.1, flops_doc_weight=0.2)
    parts = L.SparseLoss(weights, regularise_queries=False)("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    assert "flops_query" not in parts and "l1_query" not in parts and "flops_doc" in parts
    parts = L.SparseLoss(weights)("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    assert "flops_query" in parts and "l1_query" in parts


def test_flops_warmup_is_quadratic():
    assert L.flops_warmup_scale(0, 100) == 0.0
    assert L.flops_warmup_scale(50, 100) == pytest.approx(0.25)
    assert L.flops_warmup_scale(500, 100) == 1.0
    assert L.flops_warmup_scale(3, 0) == 1.0


def test_sparse_loss_combines_named_parts():
    weights = LossArguments(flops_query_weight=0.1, flops_doc_weight=0.2)
    loss = L.SparseLoss(weights)
    parts = loss("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    expected = parts["info_nce"] + 0.1 * parts["flops_query"] + 0.2 * parts["flops_doc"]
    assert parts["loss"].item() == pytest.approx(expected.item())
    loss.regularizer_scale = 0.5
    parts = loss("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    assert parts["loss"].item() == pytest.approx((parts["info_nce"] + 0.5 * (0.1 * parts["flops_query"] + 0.2 * parts["flops_doc"])).item())
    with pytest.raises(ValueError, match="no loss is switched on"):
        L.SparseLoss(LossArguments(ranking_loss="none", flops_query_weight=0, flops_doc_weight=0))(
            "triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})


def test_ranking_query_top_k_scores_with_the_top_k_and_regularises_every_term():
    """Ranking sees each query's k largest weights only; the FLOPS term still reaches the rest."""
    gen = torch.Generator().manual_seed(0)
    query = torch.relu(torch.randn(3, 40, generator=gen)).requires_grad_()
    docs = torch.relu(torch.randn(6, 40, generator=gen))
    doc_mask = torch.ones(3, 2, dtype=torch.bool)
    args = LossArguments(ranking_query_top_k=5, flops_query_weight=0.0, flops_doc_weight=0.0)
    parts = L.SparseLoss(args)("triplets", {"query": query, "doc": docs}, {"doc_mask": doc_mask})
    # independent: keep the 5 largest of each row by numpy sort, then in-batch softmax cross-entropy
    q = query.detach().numpy().copy()
    for row in q:
        row[np.argsort(row)[:-5]] = 0.0
    scores = q @ docs.numpy().T
    expected = np.mean([np.log(np.exp(s).sum()) - s[2 * i] for i, s in enumerate(scores)])
    assert parts["info_nce"].item() == pytest.approx(expected, rel=1e-5)
    parts["loss"].backward()
    outside = torch.from_numpy(q == 0) & (query.detach() > 0)
    assert outside.any() and (query.grad[outside] == 0).all()  # no ranking support below the top k
    query.grad = None
    args = LossArguments(ranking_query_top_k=5, flops_query_weight=1.0, flops_doc_weight=0.0)
    L.SparseLoss(args)("triplets", {"query": query, "doc": docs}, {"doc_mask": doc_mask})["loss"].backward()
    assert (query.grad[outside] > 0).all()  # FLOPS pulls them down


def test_a_query_side_document_gets_the_document_regularisers():
    """Parallel passages (query_is_document): the passage on the query side is sparsified as a document, never
    with the query's FLOPS and L1 (which would pull passages down to query length)."""
    weights = dict(ranking_loss="info_nce", flops_query_weight=0.5, l1_query_weight=0.25, flops_doc_weight=0.125)
    rows = Q.tolist() + D.tolist()  # the 2 query-side passages and the 4 documents, by hand
    flops = sum((sum(r[j] for r in rows) / len(rows)) ** 2 for j in range(3))
    loss = L.SparseLoss(LossArguments(**weights))
    as_doc = loss("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK}, query_is_document=True)
    as_query = loss("triplets", {"query": Q, "doc": D}, {"doc_mask": MASK})
    assert "flops_query" not in as_doc and "l1_query" not in as_doc
    assert as_doc["flops_doc"].item() == pytest.approx(flops)
    assert as_doc["loss"].item() == pytest.approx(as_doc["info_nce"].item() + 0.125 * flops)
    assert as_query["info_nce"].item() == pytest.approx(as_doc["info_nce"].item())
    assert as_query["l1_query"].item() == pytest.approx((3.0 + 2.0) / 2)


def test_per_document_l1_grows_with_the_documents_length():
    """l1_doc_length_exponent: each document's L1 times (tokens / reference) ** exponent, a padded document (mask
    False) dropped with its length; without lengths (term pairs) or with exponent 0, the plain mean."""
    mask = torch.tensor([[True, True], [True, False]])
    lengths = torch.tensor([400, 25, 100, 7])  # D's L1 norms 2, 2, 1 (the fourth is padding)
    weights = dict(ranking_loss="info_nce", flops_query_weight=0.0, flops_doc_weight=0.0, l1_doc_weight=0.5,
                   l1_doc_length_exponent=0.5, l1_doc_reference_length=100)
    batch = {"doc_mask": mask, "doc_length": lengths}
    scaled = L.SparseLoss(LossArguments(**weights))("triplets", {"query": Q, "doc": D}, batch)
    by_hand = (2.0 * 2.0 + 2.0 * 0.5 + 1.0 * 1.0) / 3  # sqrt(400/100), sqrt(25/100), sqrt(100/100)
    assert scaled["l1_doc"].item() == pytest.approx(by_hand)
    assert scaled["loss"].item() == pytest.approx(scaled["info_nce"].item() + 0.5 * by_hand)
    flat = L.SparseLoss(LossArguments(**{**weights, "l1_doc_length_exponent": 0.0}))
    assert flat("triplets", {"query": Q, "doc": D}, batch)["l1_doc"].item() == pytest.approx(5.0 / 3)
    as_doc = L.SparseLoss(LossArguments(**weights))(
        "triplets", {"query": Q, "doc": D}, {**batch, "query_length": torch.tensor([100, 400])}, query_is_document=True)
    # Q's norms 3, 2 at scales 1, 2, then the three documents
    assert as_doc["l1_doc"].item() == pytest.approx((3.0 + 4.0 + 4.0 + 1.0 + 1.0) / 5)


def test_a_splade_run_weights_flops_by_the_idf_file(tiny_model_dir, tmp_path):
    """`flops_idf_weighting` on a SPLADE model (which has no IDF of its own) reads `idf_file`: a frequent token's
    mean activation costs more than a rare one's, and a token the file lacks counts as rare as its rarest token."""
    import json

    import run_train
    from tests.tiny import SENTENCES

    vocab = json.loads((Path(tiny_model_dir) / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    frequent, middling, rare = sorted(vocab, key=vocab.get)[-3:]  # any three of the test-built vocabulary
    table = {frequent: 0.5, middling: 2.0, rare: 6.0, "absent-from-the-vocabulary": 9.0}
    (tmp_path / "idf.json").write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    data = tmp_path / "triplets.jsonl"
    data.write_text("".join(json.dumps({"query": s[:6], "positive": s}, ensure_ascii=False) + "\n" for s in SENTENCES),
                    encoding="utf-8")
    trainer, _ = run_train.build_trainer([
        "--model_name_or_path", str(tiny_model_dir), "--train_file", str(data), "--output_dir", str(tmp_path / "out"),
        "--report_to", "none", "--max_steps", "1", "--per_device_train_batch_size", "2",
        "--flops_idf_weighting", "true", "--idf_file", str(tmp_path / "idf.json")])
    weights = trainer.loss.flops_token_weights
    # by hand: 1 / (1 + idf), the 9.0 of a token outside the vocabulary ignored, every other token at the largest
    # known idf (6.0), then divided by the mean over the model's output rows
    vocab_size = weights.shape[0]
    raw = np.full(vocab_size, 1 / 7)
    for token, idf in list(table.items())[:3]:
        raw[vocab[token]] = 1 / (1 + idf)
    np.testing.assert_allclose(weights.numpy(), raw / raw.mean(), rtol=1e-5)
    reps = torch.rand(4, vocab_size)
    parts = trainer.loss("triplets", {"query": reps, "doc": reps}, {"doc_mask": torch.ones(4, 1, dtype=torch.bool)})
    expected = ((reps.numpy().mean(0) ** 2) * raw / raw.mean()).sum()
    assert parts["flops_query"].item() == pytest.approx(expected, rel=1e-5)


def test_stopwords_that_the_tokenizer_splits_are_left_out(tiny_model_dir, tmp_path):
    """A stopword the vocabulary cuts into pieces ("Themselves" -> "The", "m", ...) would put the penalty on pieces
    of content words; only one-piece stopwords are penalised."""
    from transformers import AutoTokenizer

    from training import SparseEncoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    whole = [w for w in ("the", "and", "is") if len(tokenizer.tokenize(w)) == 1]
    split = "models."  # "models", "." in the test-built vocabulary
    assert whole and tokenizer.tokenize(split) == ["models", "."]
    (tmp_path / "stop.txt").write_text("\n".join(whole + [split]) + "\n", encoding="utf-8")
    loss = L.SparseLoss.from_args(LossArguments(stopword_weight=1.0, stopwords_file=str(tmp_path / "stop.txt")),
                                  SparseEncoder.from_pretrained(tiny_model_dir))
    marked = set(torch.nonzero(loss.stopword_mask).flatten().tolist())
    assert marked == set(tokenizer.convert_tokens_to_ids(whole))


def test_stopwords_are_penalised_on_the_id_that_serves_their_name(tmp_path):
    """SentencePiece has "▁word" and "word"; the model serves one id per decoded name and never activates the
    other, so a penalty on the tokenizer's own id for a stopword can charge an id that is always zero."""
    from training import SparseEncoder
    from tests.tiny import build_tiny_sentencepiece_model

    model = SparseEncoder.from_pretrained(build_tiny_sentencepiece_model(tmp_path / "sp"))
    tokens = model.tokenizer.convert_ids_to_tokens(list(range(model.vocab_size)))
    served = {t.lstrip("\u2581"): i for i, t in enumerate(tokens) if model.output_mask[i] > 0}
    # one-piece words whose "▁word" id is masked: the name is served by the bare piece
    words = [t[1:] for i, t in enumerate(tokens) if t.startswith("\u2581") and len(t) > 1 and model.output_mask[i] == 0
             and len(model.tokenizer(t[1:], add_special_tokens=False)["input_ids"]) == 1][:5]
    assert words, "the test vocabulary has no '▁word' piece masked in favour of 'word'"
    (tmp_path / "stop.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    loss = L.SparseLoss.from_args(LossArguments(stopword_weight=1.0, stopwords_file=str(tmp_path / "stop.txt")),
                                  model)
    marked = set(torch.nonzero(loss.stopword_mask).flatten().tolist())
    assert marked == {served[w] for w in words}


@pytest.mark.parametrize("scope,side", [("all", "both"), ("own_script", "both"), ("all", "query"), ("all", "doc")])
def test_fragment_penalty_charges_continuation_pieces_a_text_does_not_contain(tmp_path, scope, side):
    """"ed" and "았" on a sentence without them (past tense put on every sentence) are charged; the "ed" of a text
    that writes "walk" "ed" is its own and is not. `own_script`: only fragments in a script the text writes, and
    those of neither script. `fragment_side`: only the texts of that side pay. Golden: piece strings, token names
    and Unicode names, in plain Python."""
    import unicodedata

    from tests.tiny import SENTENCES, build_tiny_sentencepiece_model
    from training import SparseEncoder

    model = SparseEncoder.from_pretrained(build_tiny_sentencepiece_model(tmp_path / "sp"))
    tok, vocab = model.tokenizer, model.vocab_size
    # Korean, English and code-switched texts, each query with two documents
    queries = [SENTENCES[0], "Machine learning 모델은 patterns을 학습했다."]
    docs = [SENTENCES[2], SENTENCES[3], "추천 시스템 recommends products.", SENTENCES[5]]
    features = {g: tok(t, padding=True, return_tensors="pt") for g, t in (("query", queries), ("doc", docs))}
    batch = {f"{g}_bag": model.token_bag(f["input_ids"], f["attention_mask"]) for g, f in features.items()}
    batch["doc_mask"] = torch.ones(2, 2, dtype=torch.bool)
    torch.manual_seed(0)
    reps = {g: torch.rand(len(t), vocab) * model.output_mask for g, t in (("query", queries), ("doc", docs))}
    loss = L.SparseLoss.from_args(LossArguments(fragment_weight=1.0, fragment_scope=scope, fragment_side=side),
                                  model)
    charged_groups = {"query", "doc"} if side == "both" else {side}
    assert set(loss.bag_groups("triplets")) == charged_groups
    parts = loss("triplets", reps, batch)
    assert {k for k in parts if k.startswith("fragment_")} == {f"fragment_{g}" for g in charged_groups}

    tokens = tok.convert_ids_to_tokens(list(range(vocab)))
    special = set(tok.all_special_ids)
    # a name is a fragment when any piece carrying it is a continuation piece: "e" is charged whether "▁e" or "e"
    # serves it (the model activates only the lower id of the two)
    fragment_names = {t for i, t in enumerate(tokens) if i not in special and not t.startswith("\u2581")}
    assert any(model.output_mask[i] > 0 and t.startswith("\u2581") and t[1:] in fragment_names
               for i, t in enumerate(tokens)), "no name is served by its word-start piece in the test vocabulary"

    def script(name):
        names = [unicodedata.name(ch, "") for ch in name]
        return "hangul" if any("HANGUL" in n for n in names) else "latin" if any("LATIN" in n for n in names) else ""

    def expected(texts, rows):
        total = 0.0
        for text, row in zip(texts, rows.tolist()):
            written = {t.lstrip("\u2581") for t in tok.tokenize(text)}
            charged = fragment_names - written
            if scope == "own_script":
                scripts = {script(w) for w in written} | {""}
                charged = {n for n in charged if script(n) in scripts}
            total += sum(w for i, w in enumerate(row) if i not in special and tokens[i].lstrip("\u2581") in charged)
        return total / len(texts)

    texts = {"query": queries, "doc": docs}
    for group in charged_groups:
        assert parts[f"fragment_{group}"].item() == pytest.approx(expected(texts[group], reps[group]), rel=1e-5)
    if "doc" in charged_groups:
        # a continuation piece the text contains is exempt; the same piece on another text is charged
        own = {t for t in tok.tokenize(docs[0]) if not t.startswith("\u2581")}
        assert own, "the first document has no continuation piece"
        assert parts["fragment_doc"].item() < reps["doc"][:, loss.fragment_mask > 0].sum(-1).mean().item()


LOSS_WEIGHTS = [f.name for f in dataclasses.fields(LossArguments) if f.name.endswith("_weight")]


@pytest.mark.parametrize("task", L.SparseLoss.TASKS)
@pytest.mark.parametrize("weight", LOSS_WEIGHTS)
def test_each_weight_alone_reads_only_what_the_trainer_provides(weight, task):
    """The trainer hands a loss exactly the max logits of `logit_groups` and the token bags of `bag_groups`; a loss
    that reads anything else fails at its first batch of a run (rank activation alone once did: KeyError)."""
    torch.manual_seed(0)
    rows, docs, vocab = 3, 2, 7
    groups = {"term_pairs": {"ko": rows, "en": rows}}.get(task, {"query": rows, "doc": rows * docs})
    marks = torch.zeros(vocab)
    marks[[1, 4]] = 1.0  # two tokens in every token set (non-target scripts, stopwords, fragments)
    loss = L.SparseLoss(LossArguments(**{w: float(w == weight) for w in LOSS_WEIGHTS}), non_target_mask=marks,
                        stopword_mask=marks, fragment_mask=marks, fragment_scripts=torch.stack([marks, 1 - marks]))
    logits = {g: torch.randn(n, vocab) for g, n in groups.items()}
    reps = {g: torch.log1p(torch.relu(x)) for g, x in logits.items()}
    reps.update({f"{g}_logits": logits[g] for g in loss.logit_groups(task)})
    batch = {"doc_mask": torch.ones(rows, docs, dtype=torch.bool), "teacher_scores": torch.randn(rows, docs)}
    batch.update({f"{g}_bag": (torch.rand(groups[g], vocab) > 0.6).float() for g in loss.bag_groups(task)})
    try:
        parts = loss(task, reps, batch)
    except ValueError as e:  # a weight that does not act on this task: the one clear refusal, never a KeyError
        assert "no loss is switched on" in str(e)
        return
    assert torch.isfinite(parts["loss"])
