"""Prepare a builder and export it as parquet + a dataset card whose `configs:` YAML lets
`datasets.load_dataset(OUT, CONFIG)` load it offline (datasets 5.x no longer runs builder scripts).

Several configs can share one output folder: each config keeps its card section in `<config>/card.md` and the
README is rebuilt from all of them."""
from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from collections import Counter

import yaml
from datasets.exceptions import DatasetGenerationError

from builders.contracts import RecordError
from builders.sources import Source

logger = logging.getLogger(__name__)


def build_and_export(builder_cls, config: str, output_dir: str, num_proc: int | None = None,
                     command: str = "", **config_kwargs) -> dict:
    """Runs download_and_prepare in a scratch cache, writes `<output_dir>/<config>/<split>-*.parquet` and the
    card; returns {split: rows}."""
    os.makedirs(output_dir, exist_ok=True)
    if os.path.exists(os.path.join(output_dir, os.path.basename(os.path.abspath(output_dir)) + ".py")):
        raise ValueError(f"{output_dir} holds a script named like the folder; datasets would refuse to load it")
    with tempfile.TemporaryDirectory(prefix="builders-cache-") as cache:
        builder = builder_cls(config_name=config, cache_dir=cache, **config_kwargs)
        try:
            builder.download_and_prepare(num_proc=num_proc)
        except DatasetGenerationError as e:  # show the user the file:line error, not the wrapper
            if isinstance(e.__cause__, (RecordError, FileNotFoundError, ValueError)):
                raise e.__cause__ from None
            raise
        dsd = builder.as_dataset()
        target = os.path.join(output_dir, config)
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        counts, per_source = {}, {}
        for split, ds in dsd.items():
            ds.to_parquet(os.path.join(target, f"{split}-00000-of-00001.parquet"))
            counts[split] = len(ds)
            if "source" in ds.column_names:
                per_source[split] = Counter(ds["source"])
        section = card_section(config, builder.config.description or "", builder.sources_used(), counts,
                               per_source, getattr(builder, "build_report", None), command)
    with open(os.path.join(target, "card.md"), "w", encoding="utf-8") as f:
        f.write(section)
    write_card(output_dir)
    return counts


def card_section(config: str, description: str, sources: list[Source], counts: dict, per_source: dict,
                 report: list | None, command: str) -> str:
    lines = [f"## {config}", "", description.strip(), ""]
    if command:
        lines += ["Built with:", "", f"    {command}", ""]
    lines += ["| split | rows |", "|---|---|"] + [f"| {s} | {n:,} |" for s, n in counts.items()] + [""]
    if per_source:
        lines += ["Rows per source:", ""]
        for split, c in per_source.items():
            lines.append(f"- {split}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items())))
        lines.append("")
    lines += ["| source | licence | commercial use | redistribution | homepage |", "|---|---|---|---|---|"]
    sources = list({s.name: s for s in sources}.values())  # msmarco_koen, msmarco_enko: one licence, msmarco_ko's
    for s in sources:
        lines.append(f"| {s.name} | {s.licence} | {'yes' if s.commercial else 'NO'} | "
                     f"{'yes' if s.redistributable else 'NO: ' + s.note} | {s.homepage} |")
    warnings = [f"{s.name}: non-commercial use only" for s in sources if not s.commercial]
    warnings += [f"{s.name}: {s.note}" for s in sources if not s.redistributable]
    if warnings:
        lines += ["", "**Licence warnings:** " + "; ".join(warnings) + "."]
        if any(not s.commercial for s in sources):
            lines[-1] += " Rebuild with `--exclude_noncommercial` to drop the non-commercial sources."
    if report:
        lines += ["", "Build log:", ""] + [f"- {r}" for r in report]
    return "\n".join(lines) + "\n"


def write_card(output_dir: str) -> None:
    """README.md with a `configs:` section listing every exported config of `output_dir`."""
    configs, sections = [], []
    for card in sorted(glob.glob(os.path.join(output_dir, "*", "card.md"))):
        folder = os.path.dirname(card)
        name = os.path.basename(folder)
        splits = sorted({os.path.basename(p).split("-")[0] for p in glob.glob(os.path.join(folder, "*.parquet"))})
        configs.append({"config_name": name,
                        "data_files": [{"split": s, "path": f"{name}/{s}-*.parquet"} for s in splits]})
        with open(card, encoding="utf-8") as f:
            sections.append(f.read())
    header = yaml.safe_dump({"configs": configs, "license": "other", "language": ["ko", "en"]},
                            sort_keys=False, allow_unicode=True)
    body = ("# Korean / Korean-English sparse retrieval training data\n\n"
            "Built by this toolkit's `builders` from public sources; each source keeps its own licence "
            "(tables below). Load a config with `datasets.load_dataset(\"<this folder>\", \"<config>\")`.\n\n")
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"---\n{header}---\n{body}" + "\n".join(sections))
