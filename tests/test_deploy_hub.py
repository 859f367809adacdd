"""HF export: the folder loads back as the same model, the card carries run_eval.py metrics, and --push uploads
exactly the folder (checked offline by intercepting HfApi's commit)."""
import json

import pytest
import torch

from deploy.hub import export_hf, push_to_hub
from training import SparseEncoder

RESULTS = {"miracl-ko-mini": {"bm25": {"ndcg@10": 0.371, "recall@100": 0.8},
                              "tiny-sparse": {"ndcg@10": 0.4123, "recall@100": 0.85}}}


@pytest.fixture(scope="module")
def hf_dir(tiny_model_dir, tmp_path_factory):
    encoder = SparseEncoder.from_pretrained(tiny_model_dir, mode="doc_only")
    results = tmp_path_factory.mktemp("eval") / "results.json"
    results.write_text(json.dumps(RESULTS))
    return encoder, export_hf(encoder, tmp_path_factory.mktemp("hf"), "tiny-ko-sparse", results)


def test_hf_folder_round_trips(hf_dir):
    encoder, folder = hf_dir
    for name in ("config.json", "tokenizer.json", "sparse_config.json", "idf.json", "README.md"):
        assert (folder / name).is_file(), name
    loaded = SparseEncoder.from_pretrained(folder)
    assert loaded.config.mode == "doc_only"
    torch.testing.assert_close(loaded.idf, encoder.idf)
    a, b = encoder.encode(["서울은 대한민국의 수도이다."]), loaded.encode(["서울은 대한민국의 수도이다."])
    assert a.to_dicts() == b.to_dicts()


def test_model_card_lists_eval_metrics(hf_dir):
    card = (hf_dir[1] / "README.md").read_text()
    assert card.startswith("---\nlanguage:\n- ko\n- en")
    assert "| system | ndcg@10 | recall@100 |" in card
    assert "| tiny-sparse | 0.4123 | 0.8500 |" in card and "**miracl-ko-mini**" in card


def test_push_dry_run_lists_the_folder(hf_dir):
    folder = hf_dir[1]
    expected = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert push_to_hub(folder, "me/tiny-ko-sparse", dry_run=True) == expected


def test_push_sends_one_commit_with_every_file(hf_dir):
    folder = hf_dir[1]

    class RecordingApi:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, private=False, exist_ok=False):
            self.calls.append(("create_repo", repo_id, private, exist_ok))

        def create_commit(self, repo_id, operations, commit_message):
            self.calls.append(("create_commit", repo_id, operations, commit_message))

    api = RecordingApi()
    uploaded = push_to_hub(folder, "me/tiny-ko-sparse", private=True, api=api)
    assert api.calls[0] == ("create_repo", "me/tiny-ko-sparse", True, True)
    _, repo, operations, _ = api.calls[1]
    assert repo == "me/tiny-ko-sparse" and [op.path_in_repo for op in operations] == uploaded
    for op in operations:  # each operation carries the file's bytes as they are on disk
        assert open(op.path_or_fileobj, "rb").read() == (folder / op.path_in_repo).read_bytes()


def test_run_export_hf_with_dry_run_push(tiny_model_dir, tmp_path, capsys):
    from run_export import main

    assert main(["--model", str(tiny_model_dir), "--target", "hf", "--output", str(tmp_path / "hf"),
                 "--push", "me/tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload README.md" in out and "would upload sparse_config.json" in out
