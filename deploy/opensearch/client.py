"""opensearch-py calls that wire a cluster up: register (chunked upload) and deploy a model, create the ingest
pipeline and index, bulk-index locally computed vectors, search. Each takes an `opensearchpy.OpenSearch`."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .bodies import CHUNK_SIZE, ML, register_meta_body


def connect(url: str, user: Optional[str] = None, password: Optional[str] = None, verify_certs: bool = True,
            timeout: int = 120):
    from opensearchpy import OpenSearch

    auth = (user, password) if user else None
    return OpenSearch(hosts=[url], http_auth=auth, verify_certs=verify_certs, ssl_show_warn=verify_certs,
                      timeout=timeout)


def register_model(client, zip_path, config: dict, model_group_id: Optional[str] = None,
                   chunk_size: int = CHUNK_SIZE) -> str:
    """Upload a model zip in chunks: `_register_meta` with the config (sha256 + size), then one `upload_chunk`
    per slice. ML Commons checks the hash once every chunk has arrived. Returns the model id."""
    zip_path = Path(zip_path)
    size = zip_path.stat().st_size
    if config.get("model_content_size_in_bytes") != size:
        raise ValueError(f"{zip_path} is {size} bytes but its config says {config.get('model_content_size_in_bytes')}"
                         " -- re-export or pass the matching config")
    total = max(1, math.ceil(size / chunk_size))
    meta = client.transport.perform_request("POST", f"{ML}/models/_register_meta",
                                            body=register_meta_body(config, total, model_group_id))
    model_id = meta.get("model_id")
    if not model_id:
        raise RuntimeError(f"model registration failed: {meta}")
    with open(zip_path, "rb") as f:
        for number in range(total):
            client.transport.perform_request("POST", f"{ML}/models/{model_id}/upload_chunk/{number}",
                                             body=f.read(chunk_size))
    return model_id


def wait_for_task(client, task_id: str, timeout: float = 600, poll: float = 2.0) -> dict:
    """Poll an ML Commons task until it completes; raise with the task's error if it fails or times out."""
    deadline = time.monotonic() + timeout
    while True:
        task = client.transport.perform_request("GET", f"{ML}/tasks/{task_id}")
        state = task.get("state")
        if state == "COMPLETED":
            return task
        if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
            raise RuntimeError(f"ML Commons task {task_id} {state}: {task.get('error', task)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"ML Commons task {task_id} still {state} after {timeout}s")
        time.sleep(poll)


def deploy_model(client, model_id: str, wait: bool = True, timeout: float = 600, poll: float = 2.0) -> dict:
    """`_deploy` the model (loads it on the ML nodes); by default wait for the deploy task to finish."""
    response = client.transport.perform_request("POST", f"{ML}/models/{model_id}/_deploy")
    if wait and response.get("task_id") and response.get("status") != "COMPLETED":
        return wait_for_task(client, response["task_id"], timeout, poll)
    return response


def predict_sparse(client, model_id: str, texts: Sequence[str]) -> list[dict[str, float]]:
    """Encode texts with a deployed SPARSE_ENCODING / SPARSE_TOKENIZE model: one {token: weight} per text."""
    kind = "sparse_encoding"
    response = client.transport.perform_request("POST", f"{ML}/_predict/{kind}/{model_id}",
                                                body={"text_docs": list(texts)})
    return [result["output"][0]["dataAsMap"]["response"][0] for result in response["inference_results"]]


def put_pipeline(client, name: str, body: dict) -> dict:
    return client.ingest.put_pipeline(id=name, body=body)


def create_index(client, name: str, body: dict) -> dict:
    return client.indices.create(index=name, body=body)


def bulk_index(client, index: str, ids: Sequence[str], vectors: Sequence[dict[str, float]],
               vector_field: str = "sparse_embedding", texts: Optional[Sequence[str]] = None,
               text_field: str = "text", extra: Optional[Sequence[dict]] = None, chunk_size: int = 500,
               refresh: bool = True, pipeline: Optional[str] = "_none") -> int:
    """Index vectors computed locally (deploy.features.encode_features), no ML node involved. `pipeline="_none"`
    skips an index's default pipeline, which would otherwise re-encode the text. Returns the count indexed."""
    from opensearchpy import helpers

    if len(ids) != len(vectors) or (texts is not None and len(texts) != len(ids)):
        raise ValueError("ids, vectors (and texts) must have the same length")

    def actions() -> Iterable[dict]:
        for i, (doc_id, vector) in enumerate(zip(ids, vectors)):
            source = dict(extra[i]) if extra is not None else {}
            if texts is not None:
                source[text_field] = texts[i]
            source[vector_field] = vector
            yield {"_op_type": "index", "_index": index, "_id": doc_id, "_source": source}

    params = {"pipeline": pipeline} if pipeline else {}
    ok, errors = helpers.bulk(client, actions(), chunk_size=chunk_size, refresh=refresh, raise_on_error=True,
                              **params)
    return ok


def put_search_pipeline(client, name: str, body: dict) -> dict:
    return client.search_pipeline.put(id=name, body=body)


def search(client, index: str, body: dict, search_pipeline: Optional[str] = None) -> list[dict]:
    """Run a search body (bodies.neural_sparse_query, or bodies.hybrid_query with the search pipeline that fuses
    it) and return the hits: [{_id, _score, _source}]."""
    return client.search(index=index, body=body, search_pipeline=search_pipeline)["hits"]["hits"]  # None: not sent
