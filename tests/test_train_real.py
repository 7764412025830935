"""A real short SFT run: smollm2-135m-instruct on real GPT-4 answers (Alpaca-GPT4 sample in the data dir)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _logits(model: Any, tokenizer: Any) -> Any:
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Name three primary colours."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    with torch.no_grad():
        return model.eval()(**ids).logits[0]


def _check_lora_merged(model_dir: Path, base_dir: Path, adapter_dir: Path) -> None:
    """The saved model is the merge of the trained adapter into the base: every weight LoRA wrapped moved by
    exactly scaling * B @ A, every other weight is the base's, and it computes the adapter model's logits."""
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(path: Path) -> Any:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)

    merged, base = load(model_dir).state_dict(), load(base_dir).state_dict()
    adapter_model = PeftModel.from_pretrained(load(base_dir), adapter_dir)
    wrapped = {name.removeprefix("base_model.model."): module for name, module in adapter_model.named_modules()
               if isinstance(module, LoraLayer)}  # fmt: skip
    assert wrapped and set(merged) == set(base)
    for name, module in wrapped.items():
        delta = merged[f"{name}.weight"] - base[f"{name}.weight"]
        lora_a, lora_b = module.lora_A["default"].weight, module.lora_B["default"].weight
        expected = (lora_b @ lora_a) * module.scaling["default"]
        assert delta.abs().max() > 0, f"{name}: LoRA applied here but the saved weight is the base's"
        assert torch.allclose(delta, expected, atol=1e-6), f"{name}: saved weight is not base + scaling * B @ A"
    untouched = [k for k in base if k.removesuffix(".weight") not in wrapped]
    assert untouched and all(torch.equal(merged[k], base[k]) for k in untouched)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    merged_logits, adapter_logits = _logits(load(model_dir), tokenizer), _logits(adapter_model, tokenizer)
    base_logits = _logits(load(base_dir), tokenizer)
    gap = (merged_logits - adapter_logits).abs().max().item()
    moved = (adapter_logits - base_logits).abs().max().item()
    print(f"\nLoRA moved the logits by up to {moved:.4f}; merged vs adapter model: {gap:.2e}")
    assert gap < 1e-3 and moved > 100 * gap, (gap, moved)


def _check_as_the_old_test_did(run: Path, manifest: dict[str, Any]) -> None:
    """The LoRA test before issue 15: a merge that saved the untouched base weights passed it."""
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["model_type"] == "llama" and not (run / "model" / "adapter_config.json").exists()
    assert manifest["config"]["lora"] is True


def _save_model_unmerged(model: Any, tokenizer: Any, dest: Path, *, merge: bool) -> None:
    """A broken _save_model: it drops the LoRA layers without merging them, so it saves the base weights."""
    model = model.unload() if merge else model
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def test_lora_run_saves_a_merged_model(smollm2: PulledModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imitlab.train import sft_trainer

    adapter_dir = tmp_path / "adapter"
    real_save = sft_trainer._save_model

    def keep_the_adapter(model: Any, *args: Any, **kwargs: Any) -> None:  # the trained adapter, before the merge
        model.save_pretrained(adapter_dir)
        real_save(model, *args, **kwargs)

    monkeypatch.setattr(sft_trainer, "_save_model", keep_the_adapter)
    train_file = _write(tmp_path / "train.jsonl", _alpaca_gpt4_conversations(16, 100))
    run = tmp_path / "run"
    config = TrainConfig(
        base="smollm2-135m-instruct", data=str(train_file), out=str(run), block_size=128, batch_size=2,
        max_steps=2, lora=True, lora_r=8, learning_rate=1e-3,
    )  # fmt: skip
    manifest = train(config)
    base_dir = Path(manifest["base"]["path"])
    _check_as_the_old_test_did(run, manifest)
    _check_lora_merged(run / "model", base_dir, adapter_dir)

    # The same adapter saved by the broken implementation: the old checks pass it, the new ones do not.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken"
    adapter_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir
    )
    _save_model_unmerged(adapter_model, AutoTokenizer.from_pretrained(run / "model"), broken / "model", merge=True)
    _check_as_the_old_test_did(broken, manifest)
    with pytest.raises(AssertionError, match="LoRA applied here but the saved weight is the base's"):
        _check_lora_merged(broken / "model", base_dir, adapter_dir)
