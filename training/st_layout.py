"""sentence-transformers layouts: a toolkit model folder that `sentence_transformers.SparseEncoder(path)` loads, and
the published sparse models in that layout (splade-ko-v1, PIXIE-Splade, OpenSearch's inference-free models) read
back into the toolkit.

The HF masked-LM files stay at the folder root (transformers, opensearch-py-ml and the toolkit read them there);
the sentence-transformers files sit next to them:
- SPLADE: modules.json = [MLMTransformer (path ""), SpladePooling (1_SpladePooling: max, relu)].
- doc-only: modules.json = [Router]; router_config.json routes "document" to the root MLMTransformer (module id "",
  so its weights are not stored twice) + SpladePooling, and "query" to a SparseStaticEmbedding
  (query_0_SparseStaticEmbedding/: tokenizer + weight = IDF x output mask).
Type names are the `sentence_transformers.sparse_encoder.models.*` names the published models carry
(sentence-transformers 6 maps them to its own modules).
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger(__name__)

MODULES_NAME = "modules.json"
ROUTER_CONFIG_NAME = "router_config.json"
MODULE_CONFIG_NAME = "config.json"
TRANSFORMER_CONFIG_NAME = "sentence_bert_config.json"
ST_CONFIG_NAME = "config_sentence_transformers.json"
POOLING_DIR = "1_SpladePooling"
ROUTER_POOLING_DIR = "document_1_SpladePooling"
QUERY_DIR = "query_0_SparseStaticEmbedding"
ROOT_MODULE = ""  # the MLM lives at the folder root

MLM_TYPE = "sentence_transformers.sparse_encoder.models.MLMTransformer"
POOLING_TYPE = "sentence_transformers.sparse_encoder.models.SpladePooling"
STATIC_TYPE = "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding"
ROUTER_TYPE = "sentence_transformers.models.Router"

# Decoder bias of ids the output mask zeroes. Any runtime that runs the MLM (sentence-transformers' SpladePooling,
# opensearch-py-ml's TorchScript, plain transformers) then gets relu(logit) = 0 there without knowing the mask.
# Finite, so poolers that multiply logits by the attention mask (0 * -inf = nan) and fp16 runtimes stay exact; far
# below any logit a trained MLM head produces.
MASKED_LOGIT_BIAS = -1.0e4


class LayoutError(ValueError):
    """A sentence-transformers layout the toolkit cannot represent; the message names the module and option."""


@dataclass
class Layout:
    """What a sentence-transformers sparse layout says about the toolkit model it maps to."""

    mode: str  # "splade" or "doc_only"
    mlm_subfolder: str = ""  # where the masked LM's files are (a Router saved by sentence-transformers: a subfolder)
    max_seq_length: Optional[int] = None
    max_query_length: Optional[int] = None
    idf: Optional[torch.Tensor] = None  # doc-only: the SparseStaticEmbedding weight


# ---------------------------------------------------------------------------------------------------- writing
def bake_output_mask(mlm, output_mask: torch.Tensor):
    """Set the decoder bias of every id with output_mask 0 to MASKED_LOGIT_BIAS, in place, so the mask is part of
    the weights: special tokens and disallowed scripts come out exactly 0 in any MLM runtime, not only in the
    toolkit that multiplies by the mask. Those ids are 0 in every toolkit output and get no gradient, so training
    is unchanged; a model loaded with a wider mask cannot activate them again. Returns (bias, masked ids, the
    previous values), or None for a decoder without bias."""
    bias = getattr(mlm.get_output_embeddings(), "bias", None)
    if bias is None:
        logger.warning("%s has no decoder bias: other runtimes will not apply the output mask",
                       type(mlm).__name__)
        return None
    masked = (output_mask[: bias.shape[0]] == 0).to(bias.device)
    previous = bias.data[masked].clone()
    bias.data[masked] = MASKED_LOGIT_BIAS
    return bias, masked, previous


@contextlib.contextmanager
def output_mask_in_decoder_bias(mlm, output_mask: torch.Tensor):
    """`bake_output_mask` within the block only (for saving a model built without `from_pretrained`)."""
    baked = bake_output_mask(mlm, output_mask)
    try:
        yield
    finally:
        if baked is not None:
            bias, masked, previous = baked
            bias.data[masked] = previous


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _versions() -> dict:
    out = {}
    for dist, key in (("sentence-transformers", "sentence_transformers"), ("transformers", "transformers"),
                      ("torch", "pytorch")):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[key] = metadata.version(dist)
    return out


def write_layout(encoder, output_dir) -> None:
    """Add the sentence-transformers files for `encoder` to a folder that already holds its HF model + tokenizer."""
    output_dir = Path(output_dir)
    cfg = encoder.config
    vocab_len = len(encoder.tokenizer.get_vocab())
    if cfg.mode == "doc_only" and vocab_len != encoder.vocab_size:
        # SparseStaticEmbedding sizes its weight by the tokenizer, the document side by the MLM head.
        logger.warning("tokenizer has %d ids, the MLM head %d: no sentence-transformers layout written",
                       vocab_len, encoder.vocab_size)
        return
    pooling = {"pooling_strategy": "max", "activation_function": "relu", "word_embedding_dimension": None}
    _write_json(output_dir / TRANSFORMER_CONFIG_NAME, {"max_seq_length": cfg.max_seq_length, "do_lower_case": False})
    _write_json(output_dir / ST_CONFIG_NAME, {
        "model_type": "SparseEncoder", "__version__": _versions(), "prompts": {"query": "", "document": ""},
        "default_prompt_name": None, "similarity_fn_name": "dot"})
    if cfg.mode == "splade":
        _write_json(output_dir / MODULES_NAME, [
            {"idx": 0, "name": "0", "path": "", "type": MLM_TYPE},
            {"idx": 1, "name": "1", "path": POOLING_DIR, "type": POOLING_TYPE}])
        _write_json(output_dir / POOLING_DIR / MODULE_CONFIG_NAME, pooling)
        return
    moved = int(((encoder.canonical_ids != torch.arange(encoder.vocab_size, device=encoder.canonical_ids.device))
                 & (encoder.output_mask == 0)).sum())
    if moved:
        logger.warning("%d vocabulary ids share their name with a lower id: the toolkit weighs such a query token "
                       "at that id, sentence-transformers' SparseStaticEmbedding at its own (masked) id, so "
                       "queries holding them differ there", moved)
    _write_json(output_dir / MODULES_NAME, [{"idx": 0, "name": "0", "path": "", "type": ROUTER_TYPE}])
    _write_json(output_dir / ROUTER_CONFIG_NAME, {
        "types": {QUERY_DIR: STATIC_TYPE, ROOT_MODULE: MLM_TYPE, ROUTER_POOLING_DIR: POOLING_TYPE},
        "structure": {"query": [QUERY_DIR], "document": [ROOT_MODULE, ROUTER_POOLING_DIR]},
        "parameters": {"default_route": "document", "allow_empty_key": True}})
    _write_json(output_dir / ROUTER_POOLING_DIR / MODULE_CONFIG_NAME, pooling)
    query_dir = output_dir / QUERY_DIR
    encoder.tokenizer.save_pretrained(query_dir)
    # SparseStaticEmbedding tokenizes without special tokens, truncating at model_max_length: the toolkit's
    # max_query_length counts them, so the same query keeps the same tokens.
    tok_config = query_dir / "tokenizer_config.json"
    data = json.loads(tok_config.read_text(encoding="utf-8"))
    data["model_max_length"] = cfg.max_query_length - encoder.tokenizer.num_special_tokens_to_add()
    _write_json(tok_config, data)
    _write_json(query_dir / MODULE_CONFIG_NAME, {"frozen": False})
    from safetensors.torch import save_file

    weight = (encoder.idf.detach().float().cpu() * encoder.output_mask.cpu()).contiguous()
    save_file({"weight": weight}, str(query_dir / "model.safetensors"))


# ---------------------------------------------------------------------------------------------------- reading
def model_file(name_or_path: str, filename: str, subfolder: str = "") -> Optional[Path]:
    """Path of `filename` in a local folder or a hub repo (downloaded or cached), None if the repo has none."""
    local = Path(name_or_path, subfolder, filename)
    if Path(name_or_path).is_dir():
        return local if local.is_file() else None
    from transformers.utils import cached_file

    found = cached_file(name_or_path, filename, subfolder=subfolder, _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    return Path(found) if found else None


def _read_json(name_or_path: str, filename: str, subfolder: str = "", required: bool = True):
    path = model_file(name_or_path, filename, subfolder)
    if path is None:
        if required:
            raise LayoutError(f"{name_or_path}: {Path(subfolder, filename)} is missing")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}: line {e.lineno}: {e.msg}") from None


def _class_name(module_type: str) -> str:
    return module_type.rsplit(".", 1)[-1]


def _check_mlm(source: str, name: str, module_type: str, subfolder: str) -> Optional[int]:
    """An MLM module the toolkit can run: returns the length sentence-transformers truncates it at (None: none)."""
    kind = _class_name(module_type)
    if kind not in ("MLMTransformer", "Transformer"):
        raise LayoutError(f"{source}: module {name!r} is {kind}; the toolkit's encoder needs an MLMTransformer "
                          "(a masked LM) followed by SpladePooling")
    config = _read_json(source, TRANSFORMER_CONFIG_NAME, subfolder, required=False)
    task = config.get("transformer_task", "fill-mask")
    if task != "fill-mask":
        raise LayoutError(f"{source}: module {name!r} ({kind}) has transformer_task={task!r}; only 'fill-mask' "
                          "(masked-LM logits) is supported")
    if config.get("do_lower_case"):
        raise LayoutError(f"{source}: module {name!r} ({kind}) has do_lower_case=true; the toolkit tokenizes "
                          "with the tokenizer's own normalisation only")
    if config.get("max_seq_length") is not None:
        return config["max_seq_length"]
    # unset: sentence-transformers truncates at the tokenizer's model_max_length
    from transformers import AutoTokenizer

    limit = AutoTokenizer.from_pretrained(source, subfolder=subfolder).model_max_length
    return limit if limit is not None and limit < 1_000_000 else None


def _check_pooling(source: str, name: str, module_type: str, subfolder: str) -> None:
    kind = _class_name(module_type)
    if kind != "SpladePooling":
        raise LayoutError(f"{source}: module {name!r} is {kind}; the toolkit supports an MLMTransformer followed "
                          "only by SpladePooling (no CSR / SparseAutoEncoder head, Dense or Normalize)")
    config = _read_json(source, MODULE_CONFIG_NAME, subfolder, required=False)
    options = {"pooling_strategy": "max", "activation_function": "relu"}
    for option, supported in options.items():
        value = config.get(option, supported)
        if value != supported:
            raise LayoutError(f"{source}: module {name!r} (SpladePooling) has {option}={value!r}; the toolkit "
                              f"supports only {option}={supported!r}")


def _check_model_config(source: str) -> None:
    config = _read_json(source, ST_CONFIG_NAME, required=False)
    similarity = config.get("similarity_fn_name")
    if similarity not in (None, "dot"):
        raise LayoutError(f"{source}: {ST_CONFIG_NAME} has similarity_fn_name={similarity!r}; the toolkit scores "
                          "with the dot product")
    prompts = {k: v for k, v in (config.get("prompts") or {}).items() if v}
    if prompts:
        raise LayoutError(f"{source}: {ST_CONFIG_NAME} has prompts {prompts}; the toolkit encodes texts without "
                          "prompts")


def _static_weight(source: str, subfolder: str) -> torch.Tensor:
    """A SparseStaticEmbedding's weight: model.safetensors, pytorch_model.bin, or the idf json its config names."""
    path = model_file(source, "model.safetensors", subfolder)
    if path is not None:
        from safetensors.torch import load_file

        return load_file(str(path))["weight"].float()
    path = model_file(source, "pytorch_model.bin", subfolder)
    if path is not None:
        return torch.load(path, map_location="cpu", weights_only=True)["weight"].float()
    raise LayoutError(f"{source}: module {subfolder!r} (SparseStaticEmbedding) has no model.safetensors; "
                      "an idf json file name in its config is not supported")


def _query_length(source: str, subfolder: str, document_subfolder: str) -> Optional[int]:
    """SparseStaticEmbedding truncates at its tokenizer's model_max_length without special tokens; the toolkit's
    max_query_length counts them. The toolkit tokenizes queries with the document tokenizer: they must agree."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, subfolder=subfolder)
    if tokenizer.get_vocab() != AutoTokenizer.from_pretrained(source, subfolder=document_subfolder).get_vocab():
        raise LayoutError(f"{source}: module {subfolder!r} (SparseStaticEmbedding) has a tokenizer unlike the "
                          "document encoder's; the toolkit tokenizes both sides with one tokenizer")
    limit = tokenizer.model_max_length
    return None if limit is None or limit >= 1_000_000 else limit + tokenizer.num_special_tokens_to_add()


def read_layout(name_or_path: str) -> Optional[Layout]:
    """The Layout of a sentence-transformers sparse model (folder or hub id), None when it has no modules.json;
    raises LayoutError for what the toolkit cannot represent."""
    source = str(name_or_path)
    modules = _read_json(source, MODULES_NAME, required=False)
    if not modules:
        return None
    _check_model_config(source)
    kinds = [_class_name(m.get("type", "")) for m in modules]
    if kinds in (["MLMTransformer", "SpladePooling"], ["Transformer", "SpladePooling"]):
        mlm, pool = modules
        subfolder = mlm.get("path", "")
        max_len = _check_mlm(source, mlm["name"], mlm["type"], subfolder)
        _check_pooling(source, pool["name"], pool["type"], pool.get("path", ""))
        return Layout("splade", mlm_subfolder=subfolder, max_seq_length=max_len)
    if kinds in (["Router"], ["Asym"]):
        return _read_router(source)
    raise LayoutError(f"{source}: modules {kinds} are not supported; the toolkit reads MLMTransformer + "
                      "SpladePooling, or a Router with a SparseStaticEmbedding query side")


def _read_router(source: str) -> Layout:
    config = _read_json(source, ROUTER_CONFIG_NAME)
    types, structure = config.get("types", {}), config.get("structure", {})
    if set(structure) != {"query", "document"}:
        raise LayoutError(f"{source}: Router routes {sorted(structure)} are not supported; it needs exactly "
                          "'query' and 'document'")
    document = structure["document"]
    if len(document) != 2:
        raise LayoutError(f"{source}: Router route 'document' has modules {document}; the toolkit needs "
                          "MLMTransformer + SpladePooling")
    mlm_id, pool_id = document
    subfolder = "" if mlm_id in (ROOT_MODULE, ".") else mlm_id
    max_len = _check_mlm(source, mlm_id, types[mlm_id], subfolder)
    _check_pooling(source, pool_id, types[pool_id], pool_id)
    query = structure["query"]
    if query == document:  # one encoder for both sides
        return Layout("splade", mlm_subfolder=subfolder, max_seq_length=max_len)
    if len(query) != 1 or _class_name(types[query[0]]) != "SparseStaticEmbedding":
        raise LayoutError(f"{source}: Router route 'query' has modules {[_class_name(types[q]) for q in query]}; "
                          "the toolkit supports a SparseStaticEmbedding or the document encoder itself")
    return Layout("doc_only", mlm_subfolder=subfolder, max_seq_length=max_len,
                  max_query_length=_query_length(source, query[0], subfolder), idf=_static_weight(source, query[0]))
