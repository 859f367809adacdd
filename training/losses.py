"""Sparse retrieval losses. Each is a vectorised function of pooled [batch, vocab] vectors returning one scalar;
`SparseLoss` combines the configured ones per task and returns a dict of named parts plus their weighted sum."""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F

from .encoder import load_idf, prune

if TYPE_CHECKING:
    from .arguments import LossArguments

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------- ranking
def info_nce(query: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor, temperature: float = 1.0,
             positives: Optional[torch.Tensor] = None):
    """Cross-entropy of each query's positive against every document in the batch (its own hard negatives and
    all other queries' documents). docs: [batch * n, vocab], grouped per query; doc_mask: [batch, n] (False =
    padding); positives: [batch] index of each query's positive in its own group (default: the first)."""
    batch, n = doc_mask.shape
    scores = query @ docs.T / temperature
    scores = scores.masked_fill(~doc_mask.reshape(1, batch * n), float("-inf"))
    labels = torch.arange(batch, device=query.device) * n
    if positives is not None:
        labels = labels + positives
    return F.cross_entropy(scores, labels)


def group_scores(query: torch.Tensor, docs: torch.Tensor, n: int) -> torch.Tensor:
    """Dot products of each query with its own n documents: [batch, n]."""
    return torch.einsum("bv,bnv->bn", query, docs.reshape(query.shape[0], n, -1))


def margin_ranking(scores: torch.Tensor, doc_mask: torch.Tensor, margin: float = 1.0):
    """Mean hinge max(0, margin - s(q, d+) + s(q, d-)) over each query's hard negatives (column 0 is d+)."""
    hinge = F.relu(margin - scores[:, :1] + scores[:, 1:])
    valid = doc_mask[:, 1:].to(hinge.dtype)
    return (hinge * valid).sum() / valid.sum().clamp(min=1)


def triplet_margin(anchor, positive, negative, margin: float = 0.2):
    """Hinge on cosine similarities: cos(a, n) + margin <= cos(a, p)."""
    return F.relu(margin - F.cosine_similarity(anchor, positive) + F.cosine_similarity(anchor, negative)).mean()


# -------------------------------------------------------------------------------------------------- distillation
def kl_distillation(student: torch.Tensor, teacher: torch.Tensor, doc_mask: torch.Tensor, temperature: float = 1.0):
    """KL(teacher || student) between softmax distributions over each query's documents, batch mean."""
    student = (student / temperature).masked_fill(~doc_mask, float("-inf"))
    teacher = (teacher / temperature).masked_fill(~doc_mask, float("-inf"))
    log_p_teacher = F.log_softmax(teacher, dim=-1)
    log_p_student = F.log_softmax(student, dim=-1)
    kl = torch.where(doc_mask, log_p_teacher.exp() * (log_p_teacher - log_p_student), torch.zeros_like(student))
    return kl.sum(-1).mean()


def teacher_best(teacher: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """[batch] index of each list's highest-scored unpadded document."""
    return teacher.masked_fill(~doc_mask, float("-inf")).argmax(-1)


def margin_mse(student: torch.Tensor, teacher: torch.Tensor, doc_mask: torch.Tensor):
    """MSE between student and teacher margins s(q, d_top) - s(q, d), d_top = the teacher's best document."""
    top = teacher_best(teacher, doc_mask).unsqueeze(1)
    s_margin = student.gather(1, top) - student
    t_margin = teacher.gather(1, top) - teacher
    valid = doc_mask & (torch.arange(student.shape[1], device=student.device) != top)
    diff = (s_margin - t_margin).pow(2) * valid
    return diff.sum() / valid.sum().clamp(min=1)


# ------------------------------------------------------------------------------------------------ regularisers
def flops(reps: torch.Tensor, token_weights: Optional[torch.Tensor] = None):
    """FLOPS regulariser: sum over the vocabulary of the squared mean activation (optionally weighted per token)."""
    mean_sq = reps.mean(0).pow(2)
    return (mean_sq * token_weights).sum() if token_weights is not None else mean_sq.sum()


def l1(reps: torch.Tensor, scale: Optional[torch.Tensor] = None):
    """Mean L1 norm of the vectors, each optionally multiplied by its own `scale` ([rows])."""
    norms = reps.sum(-1)
    return (norms * scale.to(norms.dtype)).mean() if scale is not None else norms.mean()


def length_scale(lengths: torch.Tensor, reference: int, exponent: float) -> torch.Tensor:
    """(length / reference) ** exponent per text: a per-text L1 that grows with the text's length in tokens."""
    return (lengths.float() / reference).pow(exponent)


def masked_mass(reps: torch.Tensor, token_mask: torch.Tensor):
    """Mean total weight each vector puts on the tokens in token_mask (non-target scripts, stopwords)."""
    return (reps @ token_mask.to(reps.dtype)).mean()


# ------------------------------------------------------------------------------------------------- term level
# Term targets are [batch, vocab] 0/1 bags (SparseEncoder.token_bag). SPLADE's log1p(relu(logit)) passes no
# gradient to a term whose max logit is <= 0, so a loss asking a target to become active on the weights never
# reaches the (usually most) targets that start inactive; the "logit" forms act on the max logits instead.
TERM_LOSS_SPACES = ("logit", "weight")
FRAGMENT_SCOPES = ("all", "own_script")
FRAGMENT_SIDES = ("both", "query", "doc")


def weight_to_logit(weight):
    """The max logit at which a term reaches `weight` (inverse of log1p): a number, or a tensor of them."""
    return torch.expm1(weight) if isinstance(weight, torch.Tensor) else math.expm1(weight)


def target_activation(reps: torch.Tensor, targets: torch.Tensor, target: float = 1.0):
    """Mean hinge max(0, target - w_t) over the target tokens t of each row, on the weights."""
    hinge = F.relu(target - reps) * targets
    return hinge.sum() / targets.sum().clamp(min=1)


def target_logit_activation(logits: torch.Tensor, targets: torch.Tensor, target: float = 1.0):
    """Mean hinge max(0, expm1(target) - l_t) over the target tokens t, on the max logits: the same zero set as
    `target_activation` (w_t >= target), but a target with a negative logit is still pushed up."""
    hinge = F.relu(weight_to_logit(target) - logits) * targets
    return hinge.sum() / targets.sum().clamp(min=1)


def rank_target(weights: torch.Tensor, targets: torch.Tensor, k: int, margin: float) -> torch.Tensor:
    """[batch, 1] weight at which a target is among its row's k largest: the k-th largest non-target weight plus
    `margin`. Detached: the bar moves with the vector but is not pushed down. Search reads a term's rank, and a
    fixed target (activation_target) is met by a translation that a dense vector still ranks out of its top k."""
    others = (weights * (1 - targets)).detach()
    return others.topk(min(k, others.shape[-1]), dim=-1).values[:, -1:] + margin


def translation_margin(reps: torch.Tensor, targets: torch.Tensor, margin: float = 1.0):
    """In-batch ranking of translations: a Korean term's mean score (weight, or max logit) on its own English
    tokens must beat its mean score on every other pair's English tokens by `margin`."""
    scores = reps @ (targets / targets.sum(-1, keepdim=True).clamp(min=1)).T
    hinge = F.relu(margin - scores.diagonal().unsqueeze(1) + scores)
    off_diagonal = ~torch.eye(scores.shape[0], dtype=torch.bool, device=reps.device)
    return (hinge * off_diagonal).sum() / off_diagonal.sum().clamp(min=1)


def dead_targets(reps: torch.Tensor, targets: torch.Tensor):
    """Share of target tokens whose weight is exactly 0 (a statistic, not a loss)."""
    return ((reps <= 0) * targets).sum() / targets.sum().clamp(min=1)


def cross_lingual_alignment(ko: torch.Tensor, en: torch.Tensor):
    """1 - cosine between the sparse vectors of a Korean text and its English counterpart."""
    return (1 - F.cosine_similarity(ko, en)).mean()


# ------------------------------------------------------------------------------------------------- combination
def flops_warmup_scale(step: int, warmup_steps: int) -> float:
    """SPLADE's quadratic warm-up of the regulariser weight: (step / warmup)^2, then 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step / warmup_steps) ** 2)


class SparseLoss:
    """The combined objective. `__call__(task, reps, batch)` -> {"loss": total, "<part>": unweighted value}.

    reps: {group: [batch, vocab]} (term pairs also `ko_logits`, the max logits); batch: doc_mask, teacher_scores,
    and for term pairs the token bags `ko_bag` / `en_bag`. Token sets (non-target scripts, stopwords, per-token
    FLOPS weights) are [vocab] tensors fixed at build time. `regularise_queries=False` skips query FLOPS / L1 for
    doc-only models, whose query side is an IDF lookup, not a model (as the OpenSearch tuning sample does)."""

    TASKS = ("triplets", "distillation", "term_pairs")

    def __init__(self, weights: "LossArguments", *, non_target_mask: Optional[torch.Tensor] = None,
                 stopword_mask: Optional[torch.Tensor] = None, fragment_mask: Optional[torch.Tensor] = None,
                 fragment_scripts: Optional[torch.Tensor] = None, flops_token_weights: Optional[torch.Tensor] = None,
                 regularise_queries: bool = True):
        self.w = weights
        self.non_target_mask = non_target_mask
        self.stopword_mask = stopword_mask
        self.fragment_mask = fragment_mask
        self.fragment_scripts = fragment_scripts
        self.flops_token_weights = flops_token_weights
        self.regularise_queries = regularise_queries
        self.set_step(0)

    @classmethod
    def from_args(cls, args: "LossArguments", model, idf_file: Optional[str] = None) -> "SparseLoss":
        """The loss for `model` (a SparseEncoder), with the token sets its settings need built from the model's
        tokenizer: non-target scripts (`non_target_weight`), the stopwords of `stopwords_file` (`stopword_weight`),
        word-continuation pieces (`fragment_weight`) and per-token FLOPS weights (`flops_idf_weighting`) from the
        model's IDF, or for a SPLADE model, which has none, from `idf_file`. Doc-only models get no query
        regularisers."""
        from .vocab import continuation_pieces, token_scripts

        scripts = token_scripts(model.tokenizer)[: model.vocab_size]
        non_target = torch.from_numpy((scripts == "other").astype("float32"))
        stopwords = None
        if args.stopwords_file:
            with open(args.stopwords_file, encoding="utf-8") as fh:
                words = [w.strip() for w in fh if w.strip()]
            # Only words that are one piece: the pieces of a split word ("Them" -> "The", "m") are parts of content
            # words too, and would be penalised everywhere.
            pieces = [model.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
            ids = [p[0] for p in pieces if len(p) == 1]
            if len(ids) < len(words):
                logger.info("stopwords_file: %d of %d words are one piece of the vocabulary; the split ones are "
                            "not penalised", len(ids), len(words))
            stopwords = model.served_set(ids)
        flops_weights = None
        if args.flops_idf_weighting:
            idf = model.idf
            if idf is None and idf_file:
                idf = load_idf(idf_file, model.tokenizer, model.vocab_size, default=None)
            if idf is None:
                raise ValueError("flops_idf_weighting needs an IDF: set idf_file")
            # Frequent (low-IDF) tokens cost more, as BM25 weighs them less; mean weight 1 keeps the FLOPS scale.
            w = 1.0 / (1.0 + idf.detach().clamp(min=0))
            flops_weights = w / w.mean()
        # Every name a continuation piece carries: "e" is a fragment whether "▁e" or "e" serves it
        fragments = model.served_set(continuation_pieces(model.tokenizer)[: model.vocab_size].nonzero()[0])
        # [2, vocab]: the Hangul and the Latin ids, for `fragment_scope: own_script` (a script is the name's, so
        # every id of a name has it: no served-space mapping needed)
        fragment_scripts = torch.stack([torch.from_numpy((scripts == script).astype("float32"))
                                        for script in ("hangul", "latin")])
        return cls(args, non_target_mask=non_target, stopword_mask=stopwords, fragment_mask=fragments,
                   fragment_scripts=fragment_scripts, flops_token_weights=flops_weights,
                   regularise_queries=model.config.mode == "splade")

    def with_weights(self, **overrides) -> "SparseLoss":
        """This loss with some settings changed (a source's `loss_overrides`), sharing its token sets and warm-up."""
        other = copy.copy(self)
        other.w = dataclasses.replace(self.w, **overrides)
        return other

    def set_step(self, step: int) -> None:
        """The FLOPS / L1 warm-up at global step `step` (a function of the step, so a resumed run restores it)."""
        self.regularizer_scale = flops_warmup_scale(step, self.w.flops_warmup_steps)

    def logit_groups(self, task: str) -> tuple[str, ...]:
        """Feature groups whose max logits the task's losses read (`{group}_logits` in reps)."""
        w = self.w
        if w.term_loss_space != "logit":
            return ()
        if task == "term_pairs":
            ko = ("ko",) if self._term_losses_on_ko() else ()
            return ko + (("en",) if w.ko_activation_weight else ())
        return tuple(dict.fromkeys(self._lexical_groups() + (("doc",) if self._coverage_on(task) else ())))

    def bag_groups(self, task: str) -> tuple[str, ...]:
        """Feature groups whose token bags the task's losses read (`{group}_bag` in batch)."""
        if task == "term_pairs":
            return ("ko", "en")
        return tuple(dict.fromkeys(self._lexical_groups() + self._fragment_groups()
                                   + (("query",) if self._coverage_on(task) else ())))

    def _fragment_groups(self) -> tuple[str, ...]:
        """The groups the fragment penalty charges (`fragment_side`; doc-only models have no query side)."""
        if not self.w.fragment_weight:
            return ()
        groups = ("query", "doc") if self.regularise_queries else ("doc",)
        return tuple(g for g in groups if self.w.fragment_side in ("both", g))

    def _lexical_groups(self) -> tuple[str, ...]:
        if not self.w.lexical_weight:
            return ()
        return ("query", "doc") if self.regularise_queries else ("doc",)

    def _coverage_on(self, task: str) -> bool:
        """The coverage loss reads the query's token bag and the documents' max logits."""
        return bool(self.w.coverage_weight) and task == "triplets"

    def _to(self, t: Optional[torch.Tensor], device):
        return None if t is None else t.to(device)

    def _regularisers(self, group: str, reps: torch.Tensor, parts: dict, terms: list,
                      own: Optional[torch.Tensor] = None, lengths: Optional[torch.Tensor] = None):
        """`own`: [rows, vocab] bags of the texts' own tokens, which the fragment penalty leaves alone; `lengths`:
        [rows] token counts, which scale the per-document L1 when l1_doc_length_exponent is set."""
        w = self.w
        flops_weight = w.flops_query_weight if group == "query" else w.flops_doc_weight
        l1_weight = w.l1_query_weight if group == "query" else w.l1_doc_weight
        if group == "query" and not self.regularise_queries:
            flops_weight = l1_weight = 0.0
        if flops_weight:
            parts[f"flops_{group}"] = flops(reps, self._to(self.flops_token_weights, reps.device))
            terms.append(flops_weight * self.regularizer_scale * parts[f"flops_{group}"])
        if l1_weight:
            scale = None
            if group == "doc" and w.l1_doc_length_exponent and lengths is not None:
                scale = length_scale(lengths, w.l1_doc_reference_length, w.l1_doc_length_exponent)
            parts[f"l1_{group}"] = l1(reps, scale)
            terms.append(l1_weight * self.regularizer_scale * parts[f"l1_{group}"])
        if w.non_target_weight and self.non_target_mask is not None:
            parts[f"non_target_{group}"] = masked_mass(reps, self._to(self.non_target_mask, reps.device))
            terms.append(w.non_target_weight * parts[f"non_target_{group}"])
        if w.stopword_weight and self.stopword_mask is not None:
            parts[f"stopword_{group}"] = masked_mass(reps, self._to(self.stopword_mask, reps.device))
            terms.append(w.stopword_weight * parts[f"stopword_{group}"])
        if group in self._fragment_groups() and self.fragment_mask is not None and own is not None:
            added = self._to(self.fragment_mask, reps.device) * (1 - own)
            if w.fragment_scope == "own_script":
                added = added * self._written_script_names(own)
            parts[f"fragment_{group}"] = (reps * added.to(reps.dtype)).sum(-1).mean()
            terms.append(w.fragment_weight * parts[f"fragment_{group}"])

    def _written_script_names(self, own: torch.Tensor) -> torch.Tensor:
        """[rows, vocab] 0/1: the names in a script (Hangul, Latin) each text writes, and every name of neither."""
        scripts = self._to(self.fragment_scripts, own.device).to(own.dtype)
        written = (own @ scripts.T > 0).to(own.dtype)
        return written @ scripts + (1 - scripts.sum(0))

    def _activation(self, reps: dict, group: str):
        """(target-activation loss, what it reads) for `group` in the configured term_loss_space."""
        if self.w.term_loss_space == "logit":
            return target_logit_activation, reps[f"{group}_logits"]
        return target_activation, reps[group]

    def check_tasks(self, tasks) -> None:
        """Fail before training, not at the first batch, when the data has term pairs and no term-pair loss is on
        (the regularisers alone would only empty their vectors)."""
        w = self.w
        if "term_pairs" in tasks and not (self._term_losses_on_ko() or w.ko_activation_weight or w.alignment_weight):
            raise ValueError("no loss is switched on for task 'term_pairs': set activation_weight, "
                             "rank_activation_weight, ko_activation_weight, preservation_weight, "
                             "translation_margin_weight or alignment_weight, or train without term pairs")

    def _term_losses_on_ko(self) -> bool:
        """Whether a term-pair loss reads the Korean term's scores (max logits in the logit space)."""
        w = self.w
        return bool(w.preservation_weight or w.activation_weight or w.rank_activation_weight
                    or w.translation_margin_weight)

    def _term_losses(self, reps: dict, batch: dict, parts: dict, terms: list):
        w = self.w
        ko, en, own, en_targets = reps["ko"], reps["en"], batch["ko_bag"], batch["en_bag"]
        self.check_tasks(["term_pairs"])
        activation, scores = self._activation(reps, "ko") if self._term_losses_on_ko() else (None, None)
        if w.preservation_weight:
            parts["preservation"] = activation(scores, own, w.preservation_target)
            terms.append(w.preservation_weight * parts["preservation"])
        if w.activation_weight:
            parts["en_activation"] = activation(scores, en_targets, w.activation_target)
            terms.append(w.activation_weight * parts["en_activation"])
        if w.rank_activation_weight:
            bar = rank_target(ko, en_targets, w.rank_activation_k, w.rank_activation_margin)
            parts["en_rank_activation"] = activation(scores, en_targets, bar)
            terms.append(w.rank_activation_weight * parts["en_rank_activation"])
        if w.ko_activation_weight:
            reverse, en_scores = self._activation(reps, "en")
            parts["ko_activation"] = reverse(en_scores, own, w.activation_target)
            terms.append(w.ko_activation_weight * parts["ko_activation"])
        if w.translation_margin_weight and ko.shape[0] > 1:
            parts["translation_margin"] = translation_margin(scores, en_targets, w.translation_margin)
            terms.append(w.translation_margin_weight * parts["translation_margin"])
        if w.alignment_weight:
            parts["alignment"] = cross_lingual_alignment(ko, en)
            terms.append(w.alignment_weight * parts["alignment"])
        parts["dead_en_targets"] = dead_targets(ko.detach(), en_targets)
        if w.ko_activation_weight:
            parts["dead_ko_targets"] = dead_targets(en.detach(), own)
        group = w.term_regularisation if self.regularise_queries else "doc"  # doc-only: no query side to mimic
        pair = (own + en_targets).clamp(max=1)  # a translation's pieces are the pair's own words
        self._regularisers(group, torch.cat([ko, en]), parts, terms, own=torch.cat([pair, pair]))

    def __call__(self, task: str, reps: dict[str, torch.Tensor], batch: dict,
                 query_is_document: bool = False) -> dict[str, torch.Tensor]:
        """`query_is_document`: the query side holds documents (a passage against its translation) and gets the
        documents' regularisers."""
        w, parts, terms = self.w, {}, []
        if task in ("triplets", "distillation"):
            query, docs, doc_mask = reps["query"], reps["doc"], batch["doc_mask"]
            ranking_query = prune(query, w.ranking_query_top_k) if w.ranking_query_top_k else query
            n = doc_mask.shape[1]
            scores = group_scores(ranking_query, docs, n)
            if task == "triplets" and w.ranking_loss != "none" and w.ranking_weight:
                if w.ranking_loss == "info_nce":
                    name, value = "info_nce", info_nce(ranking_query, docs, doc_mask, w.ranking_temperature)
                else:
                    name, value = "margin_ranking", margin_ranking(scores, doc_mask, w.ranking_margin)
                parts[name] = value
                terms.append(w.ranking_weight * value)
            if self._coverage_on(task):
                activation, doc_scores = self._activation(reps, "doc")
                positives = doc_scores.reshape(query.shape[0], n, -1)[:, 0]
                parts["coverage"] = activation(positives, batch["query_bag"], w.coverage_target)
                terms.append(w.coverage_weight * parts["coverage"])
            if task == "triplets" and w.triplet_margin_weight and n > 1:
                grouped = docs.reshape(query.shape[0], n, -1)
                parts["triplet_margin"] = triplet_margin(ranking_query, grouped[:, 0], grouped[:, 1])
                terms.append(w.triplet_margin_weight * parts["triplet_margin"])
            if task == "distillation" and w.distillation_loss != "none" and w.distillation_weight:
                teacher = batch["teacher_scores"].to(scores.dtype)
                if w.distillation_loss == "kl":
                    name, value = "kl", kl_distillation(scores, teacher, doc_mask, w.distillation_temperature)
                else:
                    name, value = "margin_mse", margin_mse(scores, teacher, doc_mask)
                parts[name] = value
                terms.append(w.distillation_weight * value)
            if task == "distillation" and w.distillation_in_batch_weight:
                best = teacher_best(batch["teacher_scores"], doc_mask)
                parts["distillation_in_batch"] = info_nce(ranking_query, docs, doc_mask, w.ranking_temperature,
                                                          positives=best)
                terms.append(w.distillation_in_batch_weight * parts["distillation_in_batch"])
            for group in self._lexical_groups():
                activation, own_scores = self._activation(reps, group)
                parts[f"lexical_{group}"] = activation(own_scores, batch[f"{group}_bag"], w.preservation_target)
                terms.append(w.lexical_weight * parts[f"lexical_{group}"])
            kept = doc_mask.reshape(-1)
            query_bag, doc_bag = batch.get("query_bag"), batch.get("doc_bag")
            doc_bag = None if doc_bag is None else doc_bag[kept]
            query_length, doc_length = batch.get("query_length"), batch.get("doc_length")
            doc_length = None if doc_length is None else doc_length[kept]
            if query_is_document:
                both = None if query_bag is None or doc_bag is None else torch.cat([query_bag, doc_bag])
                lengths = None if query_length is None or doc_length is None else torch.cat([query_length, doc_length])
                self._regularisers("doc", torch.cat([query, docs[kept]]), parts, terms, own=both, lengths=lengths)
            else:
                self._regularisers("query", query, parts, terms, own=query_bag)
                self._regularisers("doc", docs[kept], parts, terms, own=doc_bag, lengths=doc_length)
        elif task == "term_pairs":
            self._term_losses(reps, batch, parts, terms)
        else:
            raise ValueError(f"unknown task {task!r}; expected one of {self.TASKS}")
        if not terms:
            raise ValueError(f"no loss is switched on for task {task!r}: check the loss weights in the config")
        parts["loss"] = torch.stack(terms).sum()
        return parts
