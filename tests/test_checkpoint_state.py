"""Resumable LoRA state is stored as safetensors (tensors only) and restores the model exactly."""
import json

import torch

import run_train
from tests.tiny import SENTENCES
from training.trainer import LORA_STATE_NAME


def test_lora_checkpoint_is_safetensors_and_restores_every_weight(tiny_model_dir, tmp_path):
    data = tmp_path / "triplets.jsonl"
    data.write_text("".join(json.dumps({"query": k[:6], "positive": k}, ensure_ascii=False) + "\n"
                            for k in SENTENCES[0::2]), encoding="utf-8")
    trainer, _ = run_train.build_trainer(["--model_name_or_path", str(tiny_model_dir), "--train_file", str(data),
                                          "--output_dir", str(tmp_path / "out"), "--report_to", "none",
                                          "--use_lora", "true", "--lora_r", "2", "--max_steps", "1"])
    model = trainer.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # non-initial LoRA weights, so a restore is visible
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoint = tmp_path / "checkpoint-1"
    trainer._save(str(checkpoint))
    assert (checkpoint / LORA_STATE_NAME).is_file() and LORA_STATE_NAME.endswith(".safetensors")
    assert not list(checkpoint.glob("*.pt"))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    trainer._load_from_checkpoint(str(checkpoint))
    restored = model.state_dict()
    assert restored.keys() == saved.keys()
    assert all(torch.equal(restored[k], saved[k]) for k in saved)
