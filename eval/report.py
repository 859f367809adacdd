"""Results of run_eval.py: the console table, results.json, a Markdown report and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

TABLE_COLUMNS = [("ndcg@10", "nDCG@10", "{:.4f}"), ("mrr@10", "MRR@10", "{:.4f}"), ("recall@10", "R@10", "{:.4f}"),
                 ("recall@100", "R@100", "{:.4f}"), ("avg_query_terms", "q terms", "{:.1f}"),
                 ("p99_query_terms", "q p99", "{:.0f}"), ("avg_doc_terms", "d terms", "{:.1f}"),
                 ("flops", "FLOPS", "{:.2f}"),
                 ("encode_ms", "encode ms", "{:.2f}"), ("search_ms", "search ms", "{:.2f}")]
SHARE_GROUPS = ("hangul", "latin", "common", "other")


def format_table(results: dict, markdown: bool = False) -> str:
    """One row per (benchmark, system) with the headline metrics; '-' where a metric was not computed."""
    header = ["benchmark", "system"] + [title for _, title, _ in TABLE_COLUMNS]
    rows = []
    for bench, systems in results.items():
        for system, metrics in systems.items():
            if "ndcg@10" not in metrics and "recall@100" not in metrics:
                continue  # term-pair results have their own section
            rows.append([bench, system] + [fmt.format(metrics[key]) if key in metrics else "-"
                                           for key, _, fmt in TABLE_COLUMNS])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_results(results: dict, output_dir: Path, activations: dict, settings: dict,
                  term_results: Optional[dict] = None, context_results: Optional[dict] = None) -> dict[str, Path]:
    """results.json (benchmark -> system -> metric -> value; term_pairs / context_discrimination -> model ->
    metric -> value), report.md and the plots; returns the paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": output_dir / "results.json", "report": output_dir / "report.md"}
    all_results = dict(results)
    if term_results:
        all_results["term_pairs"] = term_results
    if context_results:
        all_results["context_discrimination"] = context_results
    paths["results"].write_text(json.dumps(all_results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plots = write_plots(results, activations, output_dir)
    paths.update(plots)
    paths["report"].write_text(markdown_report(results, plots, settings, term_results, context_results),
                               encoding="utf-8")
    return paths


def markdown_report(results: dict, plots: dict, settings: dict, term_results: Optional[dict],
                    context_results: Optional[dict] = None) -> str:
    lines = ["# Retrieval evaluation", "", "Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()), "",
             format_table(results, markdown=True), ""]
    for bench, systems in results.items():
        lines += [f"## {bench}", ""]
        metric_names = sorted({m for s in systems.values() for m in s}, key=_metric_order)
        lines += ["| metric | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
        for m in metric_names:
            lines.append(f"| {m} | " + " | ".join(_fmt(systems[s].get(m)) for s in systems) + " |")
        lines.append("")
        for kind in ("metrics", "activations", "languages"):
            key = f"{kind}:{bench}"
            if key in plots:
                lines += [f"![{kind} {bench}]({plots[key].name})", ""]
    for title, per_model in (("Term pairs", term_results), ("Context discrimination", context_results)):
        if per_model:
            lines += [f"## {title}", ""]
            names = sorted({m for s in per_model.values() for m in s}, key=_metric_order)
            lines += ["| metric | " + " | ".join(per_model) + " |", "|---|" + "---|" * len(per_model)]
            lines += [f"| {m} | " + " | ".join(_fmt(per_model[s].get(m)) for s in per_model) + " |" for m in names]
            lines.append("")
    return "\n".join(lines)


def _metric_order(name: str):
    """Quality metrics first (ndcg, mrr, recall, precision, map; by cut-off), then everything else by name."""
    base, _, k = name.partition("@")
    quality = ("ndcg", "mrr", "recall", "precision", "map")
    return (quality.index(base) if base in quality else len(quality), int(k) if k.isdigit() else 0, name)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_plots(results: dict, activations: dict, output_dir: Path) -> dict[str, Path]:
    """metric bars per benchmark, active-term histograms (queries, documents), language shares per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    for bench, systems in results.items():
        names = list(systems)
        metrics = [m for m in ("ndcg@10", "mrr@10", "recall@10", "recall@100") if any(m in s for s in systems.values())]
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(metrics), 3.6))
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            values = [systems[name].get(m, 0.0) for m in metrics]
            ax.bar(np.arange(len(metrics)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(metrics)) + width * (len(names) - 1) / 2, metrics)
        ax.set_ylim(0, 1)
        ax.set_title(bench)
        ax.legend(fontsize=8)
        paths[f"metrics:{bench}"] = _save(fig, output_dir / f"metrics_{_safe(bench)}.png")

        counts = activations.get(bench, {})
        if counts:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
            for ax, side in zip(axes, ("query", "doc")):
                bins = np.histogram_bin_edges(np.concatenate([c[side] for c in counts.values()]), bins=40)
                for name, sides in counts.items():
                    ax.hist(sides[side], bins=bins, alpha=0.5, label=name)
                ax.set_title(f"{bench}: active terms per {side}")
                ax.legend(fontsize=8)
            paths[f"activations:{bench}"] = _save(fig, output_dir / f"activations_{_safe(bench)}.png")

        shared = {n: s for n, s in systems.items() if "doc_hangul_share" in s}
        if shared:
            fig, ax = plt.subplots(figsize=(2.5 + 1.5 * len(shared), 3.4))
            labels = [f"{n}\n{side}" for n in shared for side in ("query", "doc")]
            bottom = np.zeros(len(labels))
            for group in SHARE_GROUPS:
                values = np.array([shared[n].get(f"{side}_{group}_share", 0.0)
                                   for n in shared for side in ("query", "doc")])
                ax.bar(labels, values, bottom=bottom, label=group)
                bottom += values
            ax.set_ylim(0, 1)
            ax.set_title(f"{bench}: share of activated weight")
            ax.legend(fontsize=8)
            paths[f"languages:{bench}"] = _save(fig, output_dir / f"languages_{_safe(bench)}.png")
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
