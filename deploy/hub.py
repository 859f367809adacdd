"""HuggingFace export: the `save_pretrained` folder (+ idf.json for doc-only models) with a model card, and the
upload of that folder to the hub as one commit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

MODEL_CARD = "README.md"


def _metrics_table(results: dict) -> str:
    """results.json (benchmark -> system -> metric -> value, from run_eval.py) as one markdown table per
    benchmark: systems as rows, metrics as columns."""
    parts = []
    for benchmark, systems in results.items():
        metrics = sorted({m for values in systems.values() for m in values})
        rows = [f"| system | {' | '.join(metrics)} |", "|---" * (len(metrics) + 1) + "|"]
        for system, values in systems.items():
            cells = [f"{values[m]:.4f}" if isinstance(values.get(m), (int, float)) else str(values.get(m, ""))
                     for m in metrics]
            rows.append(f"| {system} | {' | '.join(cells)} |")
        parts.append(f"**{benchmark}**\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def model_card(encoder, name: str, results: Optional[dict] = None, prune=("max_ratio", 0.1)) -> str:
    cfg = encoder.config
    doc_only = cfg.mode == "doc_only"
    mode = ("doc-only: documents go through the model, queries are an IDF-weighted bag of tokens (idf.json), "
            "so search needs no model inference" if doc_only else
            "bi-encoder: documents and queries both go through the model")
    scripts = ", ".join(cfg.allowed_scripts) if cfg.allowed_scripts else "the whole vocabulary"
    lines = [
        "---",
        "language:\n- ko\n- en",
        "library_name: sentence-transformers",
        "pipeline_tag: feature-extraction",
        "tags:\n- sentence-transformers\n- sparse-encoder\n- sparse-retrieval\n- splade\n"
        "- learned-sparse-retrieval\n- opensearch\n- korean",
        "---",
        "",
        f"# {name}",
        "",
        f"A Korean / Korean-English learned sparse retrieval encoder (SPLADE family), {mode}. Every text becomes "
        f"non-negative weights over the tokenizer's vocabulary ({encoder.vocab_size} ids; active scripts: "
        f"{scripts}; special tokens always 0), ready for an OpenSearch `rank_features` field.",
        "",
        "## Evaluation",
        "",
        _metrics_table(results) if results else "No evaluation results were exported with this model "
                                                 "(run `run_eval.py` and export again with `--results`).",
        "",
        "## Usage",
        "",
        "With sentence-transformers (the folder is a `SparseEncoder`: " +
        ("a `Router` whose query side is a `SparseStaticEmbedding` holding the IDF" if doc_only else
         "`MLMTransformer` + `SpladePooling`") + "; special tokens and masked scripts are 0 in the weights):",
        "",
        "```python",
        "from sentence_transformers import SparseEncoder",
        "",
        f'model = SparseEncoder("{name}")',
        'queries = model.encode_query(["한국의 수도"])',
        'docs = model.encode_document(["서울은 대한민국의 수도이다."])',
        "print(model.similarity(queries, docs))",
        "```",
        "",
        "With this repository's toolkit (also what `run_eval.py --model` and `run_train.py` take):",
        "",
        "```python",
        "from training import SparseEncoder",
        "",
        f'model = SparseEncoder.from_pretrained("{name}")',
        'docs = model.encode(["서울은 대한민국의 수도이다."])',
        'queries = model.encode(["한국의 수도"], is_query=True)',
        "print(docs.decode(top_k=10))",
        "```",
        "",
        "Settings: " + ", ".join(f"`{k}={v}`" for k, v in
                                 [("mode", cfg.mode), ("max_seq_length", cfg.max_seq_length),
                                  ("max_query_length", cfg.max_query_length)]) + ".",
        "",
        "## OpenSearch",
        "",
        "`python run_export.py --model DIR --target opensearch --output out/` writes the ML Commons "
        "`SPARSE_ENCODING` zip" + (" and the `SPARSE_TOKENIZE` query zip" if doc_only else "") +
        " with their register configs; `python -m deploy.opensearch` registers them, creates a "
        f"`sparse_encoding` ingest pipeline (suggested pruning: `prune_type={prune[0]}`, "
        f"`prune_ratio={prune[1]}`) and a `rank_features` index, and runs `neural_sparse` queries.",
        "",
    ]
    return "\n".join(lines)


def export_hf(encoder, output_dir, name: str, results_path=None, prune=("max_ratio", 0.1)) -> Path:
    """save_pretrained (weights, tokenizer, sparse_config.json, idf.json for doc-only) + README.md card."""
    output_dir = Path(output_dir)
    encoder.save_pretrained(output_dir)
    results = json.loads(Path(results_path).read_text(encoding="utf-8")) if results_path else None
    (output_dir / MODEL_CARD).write_text(model_card(encoder, name, results, prune), encoding="utf-8")
    return output_dir


def push_to_hub(folder, repo_id: str, private: bool = False, dry_run: bool = False, api=None,
                commit_message: str = "Upload sparse encoder") -> list[str]:
    """Upload every file of `folder` in one commit; returns the paths in the repo. With dry_run nothing is sent
    (no token or network needed): the list is what would be uploaded."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.relative_to(folder).parts)
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
                  for p in files]
    if not dry_run:
        api = api or HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_commit(repo_id=repo_id, operations=operations, commit_message=commit_message)
    return [op.path_in_repo for op in operations]
