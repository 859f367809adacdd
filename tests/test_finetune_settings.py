"""Fine-tuning a saved sparse model keeps its sparse settings (mode, allowed scripts, lengths) unless the config
sets them; training's max_seq_length / max_query_length truncate training batches only, never what the saved model
reads."""
import json

import pytest

import run_train
from tests.tiny import SENTENCES
from training import SparseEncoder

KO = SENTENCES[0::2]
SAVED = {"mode": "doc_only", "allowed_scripts": ["hangul"], "max_seq_length": 40, "max_query_length": 12}


@pytest.fixture(scope="module")
def saved_model(tiny_model_dir, tmp_path_factory):
    """A doc-only, Hangul-only model with its own lengths, saved as a training run would save it."""
    out = tmp_path_factory.mktemp("saved") / "doc_only"
    SparseEncoder.from_pretrained(tiny_model_dir, **SAVED).save_pretrained(out)
    data = out.parent / "triplets.jsonl"
    data.write_text("".join(json.dumps({"query": k[:6], "positive": k}, ensure_ascii=False) + "\n" for k in KO),
                    encoding="utf-8")
    return out, data


def _finetune(saved_model, tmp_path, *extra):
    model_dir, data = saved_model
    out = tmp_path / "out"
    config = tmp_path / "finetune.yaml"
    config.write_text(f"model_name_or_path: {model_dir}\ntrain_file: {data}\noutput_dir: {out}\nreport_to: none\n"
                      "max_steps: 2\nper_device_train_batch_size: 2\nsave_strategy: 'no'\nlearning_rate: 0.001\n",
                      encoding="utf-8")
    trainer, _ = run_train.build_trainer([str(config), *extra])
    run_train.train(trainer)
    return trainer, SparseEncoder.from_pretrained(out)


def test_saved_settings_survive_a_config_that_omits_them(saved_model, tmp_path):
    trainer, tuned = _finetune(saved_model, tmp_path)
    for key, value in SAVED.items():
        assert getattr(tuned.config, key) == value, key
    assert tuned.idf is not None  # still doc-only: IDF query side saved next to the model
    collator = trainer.data_collator
    assert (collator.max_seq_length, collator.max_query_length) == (40, 12)  # the collator used the saved lengths


def test_a_setting_the_config_gives_overrides_the_saved_one(saved_model, tmp_path):
    trainer, tuned = _finetune(saved_model, tmp_path, "--mode", "splade", "--allowed_scripts", "hangul", "latin",
                               "--inference_max_seq_length", "48", "--max_seq_length", "24")
    assert tuned.config.mode == "splade" and tuned.idf is None
    assert tuned.config.allowed_scripts == ["hangul", "latin"]
    assert (tuned.config.max_seq_length, tuned.config.max_query_length) == (48, 12)  # only the given key changed
    assert trainer.data_collator.max_seq_length == 24


def test_training_truncation_does_not_become_the_saved_models_limit(tiny_model_dir, saved_model, tmp_path):
    """A model trained on 24-token documents and 8-token queries still encodes whole texts (up to the backbone's 128
    positions): the quickstart trains at 96 and 32 tokens, and its saved model used to cut every KorQuAD paragraph
    (median 275) and 7% of its questions there, in evaluation and in the OpenSearch export alike."""
    _, data = saved_model  # its triplets, trained from the plain backbone
    trainer, saved = _finetune((tiny_model_dir, data), tmp_path, "--max_seq_length", "24", "--max_query_length", "8")
    assert (trainer.data_collator.max_seq_length, trainer.data_collator.max_query_length) == (24, 8)
    assert (saved.config.max_seq_length, saved.config.max_query_length) == (128, 128)
    document = " ".join(SENTENCES)  # Korean and English sentences, 162 pieces
    assert len(saved.tokenizer(document)["input_ids"]) > 128
    assert saved.tokenize([document])["input_ids"].shape[1] == 128  # read up to the positions, not 24
    query = " ".join(SENTENCES[:3])
    pieces = len(saved.tokenizer(query)["input_ids"])
    assert 8 < pieces < 128 and saved.tokenize([query], is_query=True)["input_ids"].shape[1] == pieces
