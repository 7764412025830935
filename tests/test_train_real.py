"""A real short SFT run: smollm2-135m-instruct on real GPT-4 answers (Alpaca-GPT4 sample in the data dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.models.packaged import PulledModel
from imitlab.train.sft_trainer import train
from imitlab.train.train_config import TrainConfig

pytestmark = pytest.mark.real


def _alpaca_gpt4_conversations(n: int, offset: int) -> list[dict]:
    rows = json.loads((data_dir() / "alpaca_gpt4_demo" / "alpaca_en_demo.json").read_text())[offset : offset + n]
    out = []
    for i, row in enumerate(rows):
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        out.append({"id": f"alpaca_gpt4:{offset + i}", "messages": messages})
    return out


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_short_full_finetune_lowers_held_out_loss(smollm2: PulledModel, tmp_path: Path) -> None:
    train_file = _write(tmp_path / "train.jsonl", _alpaca_gpt4_conversations(48, 0))
    held_out = _write(tmp_path / "heldout.jsonl", _alpaca_gpt4_conversations(8, 500))
    config = TrainConfig(
        base="smollm2-135m-instruct", data=str(train_file), eval_data=str(held_out), out=str(tmp_path / "run"),
        block_size=256, batch_size=4, max_steps=6, learning_rate=1e-4, warmup_steps=0, scheduler="constant",
        save_steps=100,
    )  # fmt: skip
    manifest = train(config)
    results = manifest["results"]
    print(f"\nheld-out loss {results['eval_loss_before']:.4f} -> {results['eval_loss_after']:.4f}")
    assert results["eval_loss_after"] < results["eval_loss_before"] - 0.01
    assert manifest["packing"]["packing_efficiency"] > 0.95
    # The trained model loads and generates.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tmp_path / "run" / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "Give one tip for sleeping well."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_lora_run_saves_a_merged_model(smollm2: PulledModel, tmp_path: Path) -> None:
    train_file = _write(tmp_path / "train.jsonl", _alpaca_gpt4_conversations(16, 100))
    config = TrainConfig(
        base="smollm2-135m-instruct", data=str(train_file), out=str(tmp_path / "run"), block_size=128, batch_size=2,
        max_steps=2, lora=True, lora_r=8, learning_rate=1e-3, save_steps=100,
    )  # fmt: skip
    manifest = train(config)
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["model_type"] == "llama" and not (tmp_path / "run" / "model" / "adapter_config.json").exists()
    assert manifest["config"]["lora"] is True
