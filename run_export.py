"""Export a trained sparse encoder for serving.

    python run_export.py --model DIR --target opensearch --output DIR [--name NAME] [--prune max_ratio:0.1]
    python run_export.py --model DIR --target onnx --output DIR
    python run_export.py --model DIR --target hf --output DIR [--results results.json] [--push USER/REPO]
"""
import argparse
import json
import sys
from pathlib import Path

from training import SparseEncoder


def parse_prune(value: str):
    from deploy.features import parse_prune as parse

    try:
        return parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved SparseEncoder directory")
    parser.add_argument("--target", required=True, choices=["opensearch", "onnx", "hf"])
    parser.add_argument("--output", required=True)
    parser.add_argument("--name", help="model name in OpenSearch / the model card (default: the model dir name)")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--description")
    parser.add_argument("--prune", type=parse_prune, default=("max_ratio", 0.1),
                        help="ingest-pipeline pruning TYPE:RATIO (none, max_ratio, alpha_mass, top_k, abs_value)")
    parser.add_argument("--field-type", default="rank_features", choices=["rank_features", "sparse_vector"])
    parser.add_argument("--results", help="results.json from run_eval.py for the model card "
                                          "(default: MODEL/results.json when present)")
    parser.add_argument("--push", metavar="REPO", help="upload the hf export to this hub repo")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="with --push: list what would be uploaded")
    args = parser.parse_args(argv)

    encoder = SparseEncoder.from_pretrained(args.model).eval()
    name = args.name or Path(args.model).resolve().name
    output = Path(args.output)
    if args.target == "opensearch":
        from deploy.ml_commons import export_opensearch
        from deploy.opensearch import index_body, ingest_pipeline_body

        paths = export_opensearch(encoder, output, name, args.version, args.description)
        prune_type, prune_ratio = args.prune
        # The pipeline and index bodies, ready for `python -m deploy.opensearch` (model ids filled in there).
        pipeline = ingest_pipeline_body("<MODEL_ID>", {"text": "sparse_embedding"}, prune_type, prune_ratio)
        paths["ingest_pipeline"] = _write(output / "ingest_pipeline.json", pipeline)
        paths["index"] = _write(output / "index.json", index_body("sparse_embedding", args.field_type))
    elif args.target == "onnx":
        from deploy.onnx_export import export_onnx

        paths = {"onnx": export_onnx(encoder, output)}
    else:
        from deploy.hub import export_hf, push_to_hub

        results = args.results or (Path(args.model) / "results.json")
        paths = {"hf": export_hf(encoder, output, name, results if Path(results).is_file() else None,
                                 prune=args.prune)}
        if args.push:
            operations = push_to_hub(output, args.push, private=args.private, dry_run=args.dry_run)
            for path in operations:
                print(f"{'would upload' if args.dry_run else 'uploaded'} {path}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    sys.exit(main())
