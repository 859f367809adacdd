"""`python -m builders build NAME [--config CFG] --data_dir DIR --output_dir OUT [--num_proc N]`,
`python -m builders validate FILE --schema triplets`, `python -m builders idf --tokenizer T --output idf.json ...`."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

import yaml

BUILDERS = {
    "term_pairs": ("builders.term_pairs", "TermPairs"),
    "triplets": ("builders.triplets", "Triplets"),
    "distillation": ("builders.distillation", "Distillation"),
}


def builder_class(name: str):
    import importlib

    module, cls = BUILDERS[name]
    return getattr(importlib.import_module(module), cls)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m builders", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="prepare a dataset and export parquet + card (or a BEIR benchmark folder)")
    b.add_argument("name", choices=[*BUILDERS, "benchmark"])
    b.add_argument("--config", help="builder config (default: the builder's default); for benchmark a name or 'all'")
    b.add_argument("--data_dir", required=True, help="folder with the raw sources (see MANIFEST / builders.sources)")
    b.add_argument("--output_dir", required=True)
    b.add_argument("--num_proc", type=int, default=None)
    b.add_argument("--exclude_noncommercial", action="store_true", help="drop sources that forbid commercial use")
    b.add_argument("--skip_bad_records", action="store_true",
                   help="skip and count malformed records instead of stopping at the first")
    b.add_argument("--extra_jsonl", nargs="*", default=[], help="your own records in the config's contract")
    b.add_argument("--max_per_source", type=int, default=None, help="cap rows per source (quick builds)")
    b.add_argument("--seed", type=int, default=13)
    b.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="other config fields, e.g. --set teacher=ensemble docs_per_query=16")
    v = sub.add_parser("validate", help="check a JSONL file against a data contract")
    v.add_argument("file")
    v.add_argument("--schema", required=True, choices=["term_pairs", "triplets", "distillation", "corpus", "queries"])
    v.add_argument("--skip_bad_records", action="store_true", help="report every bad line instead of the first")
    i = sub.add_parser("idf", help="idf.json for a tokenizer over a corpus")
    i.add_argument("--tokenizer", required=True, help="a tokenizer folder or tokenizer.json")
    i.add_argument("--output", required=True)
    i.add_argument("--texts", nargs="*", default=[], help=".txt (one text a line) or .jsonl files")
    i.add_argument("--field", default="text", help="JSONL field(s) holding text, comma-separated")
    i.add_argument("--data_dir", help="with --corpus: read a named corpus from the raw sources")
    i.add_argument("--corpus", nargs="*", default=[], help="named corpora: korquad, msmarco_ko, msmarco_en")
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.command == "validate":
        return validate(args)
    if args.command == "idf":
        return idf(args)
    command = "python -m builders " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.name == "benchmark":
        from builders.benchmarks import BENCHMARKS, export_benchmark  # "all": the ones buildable offline

        names = list(BENCHMARKS) if args.config in (None, "all") else [args.config]
        for name in names:
            counts = export_benchmark(name, args.data_dir, args.output_dir, args.exclude_noncommercial, command)
            print(f"{name}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        return 0
    from builders.export import build_and_export

    cls = builder_class(args.name)
    kwargs = dict(data_dir=args.data_dir, exclude_noncommercial=args.exclude_noncommercial,
                  skip_bad_records=args.skip_bad_records, extra_jsonl=tuple(args.extra_jsonl),
                  max_per_source=args.max_per_source, seed=args.seed)
    for item in args.set:
        key, _, value = item.partition("=")
        kwargs[key] = yaml.safe_load(value)
    config = args.config or cls.DEFAULT_CONFIG_NAME
    counts = build_and_export(cls, config, args.output_dir, args.num_proc, command, **kwargs)
    print(f"{args.name}/{config}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + f" -> {args.output_dir}")
    return 0


def validate(args) -> int:
    from builders.contracts import SCHEMAS, RecordError, validate_file

    try:
        good, bad = validate_file(args.file, SCHEMAS[args.schema], skip=args.skip_bad_records)
    except RecordError as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    print(f"{args.file}: {good:,} valid {args.schema} records; {bad.summary()}")
    return 1 if bad.total else 0


def idf(args) -> int:
    from builders.idf import compute_idf, load_tokenizer, named_corpus, read_texts, save_idf

    texts = read_texts(args.texts, args.field.split(","))
    for name in args.corpus:
        texts += named_corpus(name, args.data_dir)
    if not texts:
        print("no texts: give --texts files or --data_dir with --corpus names", file=sys.stderr)
        return 2
    table = compute_idf(load_tokenizer(args.tokenizer), texts)
    save_idf(table, args.output)
    print(f"{args.output}: idf of {len(table):,} tokens over {len(texts):,} texts")
    return 0
