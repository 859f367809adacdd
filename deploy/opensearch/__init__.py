"""OpenSearch helpers: request bodies (bodies.py), the calls that send them (client.py), a CLI (__main__.py)."""
from .bodies import (hybrid_query, hybrid_search_pipeline_body, index_body, ingest_pipeline_body, neural_sparse_query,
                     register_meta_body)
from .client import (bulk_index, connect, create_index, deploy_model, predict_sparse, put_pipeline,
                     put_search_pipeline, register_model, search, wait_for_task)

__all__ = ["hybrid_query", "hybrid_search_pipeline_body", "index_body", "ingest_pipeline_body", "neural_sparse_query",
           "register_meta_body", "bulk_index", "connect", "create_index", "deploy_model", "predict_sparse",
           "put_pipeline", "put_search_pipeline", "register_model", "search", "wait_for_task"]
