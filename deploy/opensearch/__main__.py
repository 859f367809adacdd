"""Wire an OpenSearch cluster up for a sparse encoder exported by run_export.py.

    python -m deploy.opensearch --url URL register --zip Z.zip --config Z.config.json [--deploy]
    python -m deploy.opensearch --url URL deploy MODEL_ID
    python -m deploy.opensearch --url URL pipeline NAME --model-id ID [--prune max_ratio:0.1]
    python -m deploy.opensearch --url URL index NAME [--pipeline NAME] [--field-type sparse_vector]
                                                      [--text-analyzer nori]
    python -m deploy.opensearch --url URL bulk INDEX --model DIR --corpus corpus.jsonl [--prune ...]
    python -m deploy.opensearch --url URL search-pipeline NAME [--weights 0.5 0.5]
    python -m deploy.opensearch --url URL search INDEX --query TEXT (--model-id ID | --model DIR) [--hybrid NAME]

User and password come from --user / OPENSEARCH_USER and OPENSEARCH_PASSWORD.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from builders.contracts import RecordError, read_corpus

from ..features import FIELD_TYPES, encode_features, parse_prune
from .bodies import hybrid_query, hybrid_search_pipeline_body, index_body, ingest_pipeline_body, neural_sparse_query
from .client import (bulk_index, connect, create_index, deploy_model, put_pipeline, put_search_pipeline,
                     register_model, search)


def _prune(value: str):
    try:
        return parse_prune(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _field_map(values):
    pairs = [v.split("=", 1) for v in values or ["text=sparse_embedding"]]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit("--field-map takes TEXT_FIELD=VECTOR_FIELD")
    return dict(pairs)


def _read_corpus(path):
    """BEIR corpus.jsonl ({_id, title, text}); each text as run_eval.py encodes it (`document_text`)."""
    try:
        return read_corpus(path)
    except (RecordError, OSError) as e:
        raise SystemExit(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deploy.opensearch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://localhost:9200"))
    p.add_argument("--user", default=os.environ.get("OPENSEARCH_USER"))
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("register", help="upload a model zip in chunks (and deploy it)")
    r.add_argument("--zip", required=True)
    r.add_argument("--config", required=True, help="the .config.json run_export.py wrote next to the zip")
    r.add_argument("--model-group-id")
    r.add_argument("--deploy", action="store_true")
    r.add_argument("--poll", type=float, default=2.0)

    d = sub.add_parser("deploy", help="deploy a registered model")
    d.add_argument("model_id")
    d.add_argument("--poll", type=float, default=2.0)

    pl = sub.add_parser("pipeline", help="create a sparse_encoding ingest pipeline")
    pl.add_argument("name")
    pl.add_argument("--model-id", required=True)
    pl.add_argument("--field-map", action="append", metavar="TEXT=VECTOR")
    pl.add_argument("--prune", type=_prune, default=("max_ratio", 0.1))

    ix = sub.add_parser("index", help="create an index with a sparse vector field")
    ix.add_argument("name")
    ix.add_argument("--field", default="sparse_embedding")
    ix.add_argument("--text-field", default="text")
    ix.add_argument("--field-type", default="rank_features", choices=FIELD_TYPES)
    ix.add_argument("--pipeline", help="default ingest pipeline")
    ix.add_argument("--text-analyzer", help="the text field's analyzer (BM25 in hybrid search), e.g. nori")

    b = sub.add_parser("bulk", help="encode a corpus locally and bulk-index the vectors")
    b.add_argument("index")
    b.add_argument("--model", required=True)
    b.add_argument("--corpus", required=True, help="BEIR corpus.jsonl")
    b.add_argument("--field", default="sparse_embedding")
    b.add_argument("--text-field", default="text")
    b.add_argument("--field-type", default="rank_features", choices=FIELD_TYPES)
    b.add_argument("--prune", type=_prune, default=("none", 0.0))
    b.add_argument("--batch-size", type=int, default=32)

    sp = sub.add_parser("search-pipeline", help="create the search pipeline that fuses BM25 and the sparse model")
    sp.add_argument("name")
    sp.add_argument("--weights", type=float, nargs=2, default=[0.5, 0.5], metavar=("BM25", "SPARSE"))

    s = sub.add_parser("search", help="neural_sparse search by query_text (model in the cluster) or locally "
                                      "encoded query_tokens (--model); with --hybrid, fused with BM25")
    s.add_argument("index")
    s.add_argument("--query", required=True)
    s.add_argument("--field", default="sparse_embedding")
    s.add_argument("--field-type", default="rank_features", choices=FIELD_TYPES)
    group = s.add_mutually_exclusive_group(required=True)
    group.add_argument("--model-id")
    group.add_argument("--model")
    s.add_argument("--size", type=int, default=10)
    s.add_argument("--hybrid", metavar="PIPELINE", help="a search-pipeline name: BM25 on --text-field + the model")
    s.add_argument("--text-field", default="text")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    client = connect(args.url, args.user, os.environ.get("OPENSEARCH_PASSWORD"), verify_certs=not args.insecure)
    if args.command == "register":
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
        model_id = register_model(client, args.zip, config, args.model_group_id)
        print(f"model_id: {model_id}")
        if args.deploy:
            print(json.dumps(deploy_model(client, model_id, poll=args.poll)))
    elif args.command == "deploy":
        print(json.dumps(deploy_model(client, args.model_id, poll=args.poll)))
    elif args.command == "pipeline":
        body = ingest_pipeline_body(args.model_id, _field_map(args.field_map), *args.prune)
        print(json.dumps(put_pipeline(client, args.name, body)))
    elif args.command == "index":
        body = index_body(args.field, args.field_type, args.text_field, args.pipeline,
                          text_analyzer=args.text_analyzer)
        print(json.dumps(create_index(client, args.name, body)))
    elif args.command == "search-pipeline":
        try:
            body = hybrid_search_pipeline_body(args.weights)
        except ValueError as e:
            raise SystemExit(f"--weights: {e}") from None
        print(json.dumps(put_search_pipeline(client, args.name, body)))
    elif args.command == "bulk":
        from training import SparseEncoder

        encoder = SparseEncoder.from_pretrained(args.model).eval()
        ids, texts = _read_corpus(args.corpus)
        vectors = encode_features(encoder, texts, field_type=args.field_type, prune_type=args.prune[0],
                                  prune_ratio=args.prune[1], batch_size=args.batch_size)
        n = bulk_index(client, args.index, ids, vectors, args.field, texts=texts, text_field=args.text_field)
        print(f"indexed {n} documents into {args.index}")
    else:
        if args.model:
            from training import SparseEncoder

            encoder = SparseEncoder.from_pretrained(args.model).eval()
            tokens = encode_features(encoder, [args.query], is_query=True, field_type=args.field_type)[0]
            body = neural_sparse_query(args.field, query_tokens=tokens, size=args.size)
        else:
            body = neural_sparse_query(args.field, query_text=args.query, model_id=args.model_id, size=args.size)
        if args.hybrid:
            body = hybrid_query(args.text_field, args.query, body)
        for hit in search(client, args.index, body, search_pipeline=args.hybrid):
            print(f"{hit['_score']:.4f}\t{hit['_id']}\t{json.dumps(hit.get('_source', {}), ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
