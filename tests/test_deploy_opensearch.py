"""OpenSearch helpers, checked on the exact requests they send to a local HTTP server that records them (the real
opensearch-py client and transport, no fake client); plus a live-cluster test when OPENSEARCH_URL is set."""
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from deploy.features import encode_features
from deploy.ml_commons import export_opensearch
from deploy.opensearch import (bulk_index, connect, create_index, deploy_model, hybrid_query,
                               hybrid_search_pipeline_body, index_body, ingest_pipeline_body, neural_sparse_query,
                               predict_sparse, put_pipeline, put_search_pipeline, register_model, search)
from training import SparseEncoder


class Recorder(ThreadingHTTPServer):
    """Records every request as {method, path, params, body}; answers like OpenSearch would."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reply(self, method, path, body):
        if path.endswith("/_register_meta"):
            return {"model_id": "model-1", "status": "CREATED"}
        if "/upload_chunk/" in path:
            return {"status": "Uploaded"}
        if path.endswith("/_deploy"):
            return {"task_id": "task-1", "task_type": "DEPLOY_MODEL", "status": "CREATED"}
        if path.startswith("/_plugins/_ml/tasks/"):
            return {"model_id": "model-1", "task_type": "DEPLOY_MODEL", "state": "COMPLETED"}
        if path.startswith("/_plugins/_ml/_predict/"):
            docs = json.loads(body)["text_docs"]
            return {"inference_results": [{"output": [{"name": "output", "dataAsMap": {
                "response": [{"token": 1.0}]}}]} for _ in docs]}
        if path == "/_bulk":
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            items = [{"index": {"_id": a["index"]["_id"], "status": 201}} for a in lines[::2]]
            return {"took": 1, "errors": False, "items": items}
        if path.endswith("/_search"):
            return {"hits": {"total": {"value": 1}, "hits": [{"_id": "d1", "_score": 2.0, "_source": {}}]}}
        return {"acknowledged": True}


class _Handler(BaseHTTPRequestHandler):
    def _handle(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"method": self.command, "path": url.path,
                                     "params": {k: v[0] for k, v in parse_qs(url.query).items()}, "body": body})
        data = json.dumps(self.server.reply(self.command, url.path, body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return SparseEncoder.from_pretrained(tiny_model_dir, allowed_scripts=["hangul", "latin"]).eval()


@pytest.fixture(scope="module")
def exported(encoder, tmp_path_factory):
    return export_opensearch(encoder, tmp_path_factory.mktemp("os_zip"), name="tiny")


def _json(request):
    return json.loads(request["body"])


def test_register_uploads_the_zip_in_chunks_then_deploys(server, exported):
    config = json.loads(exported["encoding_config"].read_text())
    client = connect(server.url)
    model_id = register_model(client, exported["encoding_zip"], config, model_group_id="group-1",
                              chunk_size=50_000)
    task = deploy_model(client, model_id, poll=0.01)
    assert model_id == "model-1" and task["state"] == "COMPLETED"

    data = exported["encoding_zip"].read_bytes()
    chunks = -(-len(data) // 50_000)
    reqs = server.requests
    assert [(r["method"], r["path"]) for r in reqs] == (
        [("POST", "/_plugins/_ml/models/_register_meta")]
        + [("POST", f"/_plugins/_ml/models/model-1/upload_chunk/{i}") for i in range(chunks)]
        + [("POST", "/_plugins/_ml/models/model-1/_deploy"), ("GET", "/_plugins/_ml/tasks/task-1")])
    assert _json(reqs[0]) == {**config, "total_chunks": chunks, "model_group_id": "group-1"}
    assert b"".join(r["body"] for r in reqs[1:1 + chunks]) == data  # raw bytes, in order, nothing re-encoded


def test_register_refuses_a_config_of_another_zip(server, exported):
    config = {**json.loads(exported["encoding_config"].read_text()), "model_content_size_in_bytes": 1}
    with pytest.raises(ValueError, match="config"):
        register_model(connect(server.url), exported["encoding_zip"], config)
    assert server.requests == []


def test_pipeline_and_index_bodies(server):
    client = connect(server.url)
    put_pipeline(client, "ko-sparse", ingest_pipeline_body("model-1", {"text": "sparse_embedding"}, "max_ratio", 0.1))
    create_index(client, "docs", index_body("sparse_embedding", default_pipeline="ko-sparse"))
    create_index(client, "docs-ann", index_body("sparse_embedding", "sparse_vector",
                                                seismic={"n_postings": 300, "approximate_threshold": 1000}))
    pipeline, rank, ann = server.requests
    assert (pipeline["method"], pipeline["path"]) == ("PUT", "/_ingest/pipeline/ko-sparse")
    assert _json(pipeline) == {"description": "Sparse encoding with a Korean/English SPLADE model", "processors": [
        {"sparse_encoding": {"model_id": "model-1", "field_map": {"text": "sparse_embedding"},
                             "prune_type": "max_ratio", "prune_ratio": 0.1}}]}
    assert (rank["method"], rank["path"]) == ("PUT", "/docs")
    assert _json(rank) == {"settings": {"index": {"default_pipeline": "ko-sparse"}}, "mappings": {"properties": {
        "text": {"type": "text"}, "sparse_embedding": {"type": "rank_features"}}}}
    assert _json(ann) == {"settings": {"index": {"sparse": True}}, "mappings": {"properties": {
        "text": {"type": "text"}, "sparse_embedding": {"type": "sparse_vector", "method": {
            "name": "seismic", "parameters": {"n_postings": 300, "approximate_threshold": 1000}}}}}}
    with pytest.raises(ValueError):
        ingest_pipeline_body("m", {"text": "v"}, "top_k", 0.5)


HYBRID_PIPELINE = {"description": "BM25 + sparse model, scores normalised per query and combined",
                   "phase_results_processors": [{"normalization-processor": {
                       "normalization": {"technique": "min_max"},
                       "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.3, 0.7]}}}}]}


def test_hybrid_search_pipeline_and_query(server):
    client = connect(server.url)
    put_search_pipeline(client, "ko-hybrid", hybrid_search_pipeline_body((0.3, 0.7)))
    sparse = neural_sparse_query("sparse_embedding", query_text="한국의 수도", model_id="model-1", size=5)
    hits = search(client, "docs", hybrid_query("text", "한국의 수도", sparse), search_pipeline="ko-hybrid")
    pipeline, query = server.requests
    assert (pipeline["method"], pipeline["path"]) == ("PUT", "/_search/pipeline/ko-hybrid")
    assert _json(pipeline) == HYBRID_PIPELINE
    assert (query["method"], query["path"], query["params"]) == ("POST", "/docs/_search",
                                                                 {"search_pipeline": "ko-hybrid"})
    assert _json(query) == {"size": 5, "query": {"hybrid": {"queries": [
        {"match": {"text": {"query": "한국의 수도"}}},
        {"neural_sparse": {"sparse_embedding": {"query_text": "한국의 수도", "model_id": "model-1"}}}]}},
        "_source": {"excludes": ["sparse_embedding"]}}
    assert [h["_id"] for h in hits] == ["d1"]
    for bad in ((0.5, 0.6), (1.2, -0.2), (1.0,)):
        with pytest.raises(ValueError, match="summing to 1"):
            hybrid_search_pipeline_body(bad)


def test_cli_hybrid_search(server, capsys):
    from deploy.opensearch.__main__ import main

    base = ["--url", server.url]
    assert main(base + ["index", "docs", "--text-field", "body", "--text-analyzer", "nori"]) == 0
    assert _json(server.requests.pop()) == {"mappings": {"properties": {
        "body": {"type": "text", "analyzer": "nori"}, "sparse_embedding": {"type": "rank_features"}}}}
    with pytest.raises(SystemExit, match="--weights: hybrid weights"):
        main(base + ["search-pipeline", "ko-hybrid", "--weights", "0.5", "0.6"])
    assert server.requests == []  # nothing sent for bad weights
    assert main(base + ["search-pipeline", "ko-hybrid", "--weights", "0.3", "0.7"]) == 0
    assert main(base + ["search", "docs", "--query", "서울", "--model-id", "model-1", "--hybrid", "ko-hybrid",
                        "--text-field", "body"]) == 0
    pipeline, query = server.requests
    assert pipeline["path"] == "/_search/pipeline/ko-hybrid" and _json(pipeline) == HYBRID_PIPELINE
    assert query["params"] == {"search_pipeline": "ko-hybrid"}
    assert _json(query) == hybrid_query("body", "서울", neural_sparse_query("sparse_embedding", query_text="서울",
                                                                           model_id="model-1"))
    assert "d1" in capsys.readouterr().out


def test_bulk_and_query_tokens_share_feature_names(server, encoder):
    client = connect(server.url)
    texts = ["서울은 대한민국의 수도이다.", "OpenSearch uses an inverted index."]
    vectors = encode_features(encoder, texts, prune_type="max_ratio", prune_ratio=0.1)
    assert bulk_index(client, "docs", ["d1", "d2"], vectors, texts=texts) == 2
    query = encode_features(encoder, ["수도 서울"], is_query=True)[0]
    hits = search(client, "docs", neural_sparse_query("sparse_embedding", query_tokens=query, size=5))
    search(client, "docs", neural_sparse_query("sparse_embedding", query_text="수도 서울", model_id="model-1"))
    assert hits[0]["_id"] == "d1"

    bulk, by_tokens, by_text = server.requests
    assert (bulk["method"], bulk["path"], bulk["params"]) == ("POST", "/_bulk", {"pipeline": "_none",
                                                                                "refresh": "true"})
    lines = [json.loads(x) for x in bulk["body"].decode().splitlines()]
    assert lines == [{"index": {"_index": "docs", "_id": "d1"}}, {"text": texts[0], "sparse_embedding": vectors[0]},
                     {"index": {"_index": "docs", "_id": "d2"}}, {"text": texts[1], "sparse_embedding": vectors[1]}]
    assert (by_tokens["method"], by_tokens["path"]) == ("POST", "/docs/_search")
    assert _json(by_tokens) == {"size": 5, "query": {"neural_sparse": {"sparse_embedding": {"query_tokens": query}}},
                                "_source": {"excludes": ["sparse_embedding"]}}
    assert _json(by_text)["query"] == {"neural_sparse": {"sparse_embedding": {"query_text": "수도 서울",
                                                                              "model_id": "model-1"}}}
    # Both sides use one naming: every query token is a name some document could hold, none has a dot.
    assert all(k and "." not in k for v in vectors + [query] for k in v)
    assert set(query) & set(vectors[0])


def test_sparse_vector_fields_use_token_ids(encoder):
    texts = ["추천 시스템"]
    names = encode_features(encoder, texts)[0]
    ids = encode_features(encoder, texts, field_type="sparse_vector")[0]
    vocab = encoder.tokenizer.get_vocab()
    assert ids == {str(vocab[k]): v for k, v in names.items()}


def test_predict_request(server):
    out = predict_sparse(connect(server.url), "model-1", ["안녕", "hello"])
    assert out == [{"token": 1.0}, {"token": 1.0}]
    (req,) = server.requests
    assert (req["path"], _json(req)) == ("/_plugins/_ml/_predict/sparse_encoding/model-1",
                                         {"text_docs": ["안녕", "hello"]})


def test_cli_sends_the_same_bodies(server, exported, tiny_model_dir, tmp_path, capsys):
    from deploy.opensearch.__main__ import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}, ensure_ascii=False)
                                for i, t in enumerate(["서울은 수도이다.", "Seoul is a capital."])) + "\n")
    base = ["--url", server.url]
    assert main(base + ["register", "--zip", str(exported["encoding_zip"]),
                        "--config", str(exported["encoding_config"]), "--deploy", "--poll", "0.01"]) == 0
    assert main(base + ["pipeline", "ko-sparse", "--model-id", "model-1", "--prune", "max_ratio:0.1"]) == 0
    assert main(base + ["index", "docs", "--pipeline", "ko-sparse"]) == 0
    assert main(base + ["bulk", "docs", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                        "--prune", "max_ratio:0.1"]) == 0
    assert main(base + ["search", "docs", "--query", "서울", "--model-id", "model-1"]) == 0
    assert "model-1" in capsys.readouterr().out
    paths = [(r["method"], r["path"]) for r in server.requests]
    assert paths[0] == ("POST", "/_plugins/_ml/models/_register_meta")
    assert paths[-4:] == [("PUT", "/_ingest/pipeline/ko-sparse"), ("PUT", "/docs"), ("POST", "/_bulk"),
                          ("POST", "/docs/_search")]
    assert _json(server.requests[-4]) == ingest_pipeline_body("model-1", {"text": "sparse_embedding"},
                                                              "max_ratio", 0.1)


@pytest.mark.skipif(not os.environ.get("OPENSEARCH_URL"), reason="set OPENSEARCH_URL to run against a cluster")
def test_live_cluster_round_trip(encoder, exported):
    """Register + deploy the exported zip, check the cluster encodes like we do, ingest through the pipeline and
    by bulk, and find documents by query_text, by query_tokens and by BM25 + query_tokens hybrid. Cleans up after
    itself."""
    client = connect(os.environ["OPENSEARCH_URL"], os.environ.get("OPENSEARCH_USER"),
                     os.environ.get("OPENSEARCH_PASSWORD"), verify_certs=False)
    suffix = uuid.uuid4().hex[:8]
    index, pipeline = f"ko-sparse-test-{suffix}", f"ko-sparse-test-{suffix}"
    config = {**json.loads(exported["encoding_config"].read_text()), "name": f"ko-sparse-test-{suffix}"}
    model_id = register_model(client, exported["encoding_zip"], config)
    try:
        for _ in range(60):  # registration runs as a task after the last chunk
            state = client.transport.perform_request("GET", f"/_plugins/_ml/models/{model_id}")["model_state"]
            if state in ("REGISTERED", "DEPLOYED"):
                break
            time.sleep(2)
        deploy_model(client, model_id)
        texts = ["서울은 대한민국의 수도이다.", "OpenSearch uses an inverted index."]
        remote = predict_sparse(client, model_id, texts)
        local = encode_features(encoder, texts)
        for r, l in zip(remote, local):
            assert set(r) == set(l)
            assert all(abs(r[k] - l[k]) < 1e-4 for k in l)
        put_pipeline(client, pipeline, ingest_pipeline_body(model_id, {"text": "sparse_embedding"}))
        create_index(client, index, index_body("sparse_embedding", default_pipeline=pipeline))
        client.index(index=index, id="p1", body={"text": texts[0]}, refresh=True)
        bulk_index(client, index, ["b2"], local[1:], texts=texts[1:])
        by_text = search(client, index, neural_sparse_query("sparse_embedding", query_text="서울 수도",
                                                            model_id=model_id))
        query = encode_features(encoder, ["inverted index"], is_query=True)[0]
        by_tokens = search(client, index, neural_sparse_query("sparse_embedding", query_tokens=query))
        assert by_text[0]["_id"] == "p1" and by_tokens[0]["_id"] == "b2"
        put_search_pipeline(client, pipeline, hybrid_search_pipeline_body())
        hybrid = search(client, index, hybrid_query("text", "inverted index", neural_sparse_query(
            "sparse_embedding", query_tokens=query)), search_pipeline=pipeline)
        assert hybrid[0]["_id"] == "b2"
    finally:
        client.indices.delete(index=index, ignore=[404])
        client.ingest.delete_pipeline(id=pipeline, ignore=[404])
        client.search_pipeline.delete(id=pipeline, ignore=[404])
        client.transport.perform_request("POST", f"/_plugins/_ml/models/{model_id}/_undeploy")
        client.transport.perform_request("DELETE", f"/_plugins/_ml/models/{model_id}")
