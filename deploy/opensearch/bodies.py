"""Request bodies for ML Commons, the ingest pipeline, the index, `neural_sparse` queries and BM25 + sparse hybrid
search: plain dicts, built in one place, so the CLI, the README and the tests all show exactly what is sent."""
from __future__ import annotations

from typing import Optional

from ..features import FIELD_TYPES, validate_prune

ML = "/_plugins/_ml"
CHUNK_SIZE = 10_000_000  # bytes per upload_chunk call, as opensearch-py-ml uploads


def register_meta_body(config: dict, total_chunks: int, model_group_id: Optional[str] = None) -> dict:
    """POST /_plugins/_ml/models/_register_meta: the exported register config plus the chunk count."""
    body = {**config, "total_chunks": int(total_chunks)}
    if model_group_id:
        body["model_group_id"] = model_group_id
    return body


def ingest_pipeline_body(model_id: str, field_map: dict[str, str], prune_type: str = "none",
                         prune_ratio: float = 0.0, description: str = "Sparse encoding with a Korean/English "
                                                                       "SPLADE model") -> dict:
    """PUT /_ingest/pipeline/NAME: a `sparse_encoding` processor writing each text field's vector."""
    validate_prune(prune_type, prune_ratio)
    processor = {"model_id": model_id, "field_map": dict(field_map)}
    if prune_type != "none":
        processor["prune_type"] = prune_type
        processor["prune_ratio"] = prune_ratio
    return {"description": description, "processors": [{"sparse_encoding": processor}]}


def index_body(vector_field: str = "sparse_embedding", field_type: str = "rank_features",
               text_field: str = "text", default_pipeline: Optional[str] = None,
               seismic: Optional[dict] = None, text_analyzer: Optional[str] = None) -> dict:
    """PUT /INDEX: a `rank_features` field (any version), or a `sparse_vector` field with the seismic method
    (OpenSearch 3.3+, `index.sparse: true`; its keys are token ids, see deploy.features). `text_analyzer`: the
    text field's analyzer, which the BM25 half of a hybrid query matches on; for Korean, "nori" (the analysis-nori
    plugin, built on mecab-ko-dic like the mecab BM25 of run_eval.py) splits off particles and endings."""
    if field_type not in FIELD_TYPES:
        raise ValueError(f"field_type must be one of {FIELD_TYPES}, got {field_type!r}")
    settings: dict = {}
    if default_pipeline:
        settings["default_pipeline"] = default_pipeline
    if field_type == "sparse_vector":
        settings["sparse"] = True
        vector = {"type": "sparse_vector", "method": {"name": "seismic", "parameters": dict(seismic or {})}}
    else:
        vector = {"type": "rank_features"}
    text = {"type": "text", **({"analyzer": text_analyzer} if text_analyzer else {})}
    body: dict = {"mappings": {"properties": {text_field: text, vector_field: vector}}}
    if settings:
        body["settings"] = {"index": settings}
    return body


def neural_sparse_query(vector_field: str, query_text: Optional[str] = None, model_id: Optional[str] = None,
                        query_tokens: Optional[dict[str, float]] = None, size: int = 10,
                        method_parameters: Optional[dict] = None) -> dict:
    """POST /INDEX/_search: `neural_sparse` by `query_text` + `model_id` (encoded in the cluster) or by
    `query_tokens` (encoded here with deploy.features.encode_features). `method_parameters` (k, top_n,
    heap_factor) apply to `sparse_vector` fields only."""
    if (query_tokens is None) == (query_text is None):
        raise ValueError("give either query_text (+ model_id) or query_tokens")
    if query_text is not None and not model_id:
        raise ValueError("query_text needs the model_id of the deployed encoder or query tokenizer")
    clause: dict = ({"query_text": query_text, "model_id": model_id} if query_text is not None
                    else {"query_tokens": dict(query_tokens)})
    if method_parameters:
        clause["method_parameters"] = dict(method_parameters)
    return {"size": size, "query": {"neural_sparse": {vector_field: clause}},
            "_source": {"excludes": [vector_field]}}


def hybrid_search_pipeline_body(weights: tuple[float, float] = (0.5, 0.5), normalization: str = "min_max",
                                combination: str = "arithmetic_mean") -> dict:
    """PUT /_search/pipeline/NAME: a `normalization-processor` that fuses a `hybrid_query`'s two clauses (BM25 first,
    the sparse model second) as `run_eval.py --hybrid` measures it: min-max per query, weighted arithmetic mean.
    OpenSearch requires the weights to sum to 1."""
    weights = [float(w) for w in weights]
    if len(weights) != 2 or min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"hybrid weights: two non-negative numbers summing to 1 (BM25, sparse), got {weights}")
    return {"description": "BM25 + sparse model, scores normalised per query and combined",
            "phase_results_processors": [{"normalization-processor": {
                "normalization": {"technique": normalization},
                "combination": {"technique": combination, "parameters": {"weights": weights}}}}]}


def hybrid_query(text_field: str, query_text: str, sparse: dict) -> dict:
    """POST /INDEX/_search?search_pipeline=NAME: a `hybrid` query of BM25 (`match` on text_field) and the clause of
    a `neural_sparse_query` body, in the order the pipeline's weights name them."""
    return {"size": sparse["size"],
            "query": {"hybrid": {"queries": [{"match": {text_field: {"query": query_text}}}, sparse["query"]]}},
            "_source": sparse["_source"]}
