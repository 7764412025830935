"""`imitlab export gguf` on a tiny random model: llama.cpp's converter carries the weights, LoRA adapters are
merged first, bad input is a clear error. (The round trip through llama-server is tests/test_export_real.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imitlab.errors import ImitlabError
from imitlab.fileio import sha256_file
from imitlab.models.export import export_gguf, manifest_path
from imitlab.train.sft_trainer import train
from imitlab.train.train_config import TrainConfig

from .test_train_logic import _conv, _write, tiny_model, tokenizer  # noqa: F401  (fixtures)


def _read_gguf(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(architecture, tensor name -> values as float32, tensor name -> type name)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    field = reader.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode()
    tensors = {t.name: dequantize(t.data, t.tensor_type).reshape(t.data.shape[0], -1) for t in reader.tensors}
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    return arch, tensors, types


def _hf_weights(model_dir: Path, *, adapter: bool = False) -> dict[str, np.ndarray]:
    import torch
    from transformers import AutoModelForCausalLM

    if adapter:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_f16_export_carries_the_weights_and_writes_a_manifest(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    result = export_gguf(tiny_model, quant="f16", out=tmp_path / "tiny.gguf")
    assert result.path == tmp_path / "tiny.gguf" and not result.merged_lora
    arch, tensors, types = _read_gguf(result.path)
    hf = _hf_weights(tiny_model)
    assert arch == "llama" and types["blk.0.ffn_down.weight"] == "F16"
    # llama.cpp permutes q/k rows for its rope layout; these tensors are stored as they are.
    for gguf_name, hf_name in [("token_embd.weight", "model.embed_tokens.weight"),
                               ("blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"),
                               ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight")]:  # fmt: skip
        np.testing.assert_allclose(tensors[gguf_name], hf[hf_name], atol=1e-3, rtol=1e-3)  # f16 rounding
    record = json.loads(manifest_path(result.path).read_text())
    assert record["quant"] == "f16" and record["sha256"] == sha256_file(result.path) == result.sha256
    assert record["source"] == str(tiny_model) and record["source_sha256"]["model.safetensors"]
    assert not list(tmp_path.glob(".tmp-*"))  # no intermediate left behind


def test_lora_adapter_run_exports_merged(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    data = _write(tmp_path / "data" / "conversations.jsonl", [_conv(i) for i in range(16)])
    run = tmp_path / "lora-run"
    config = TrainConfig(base=f"hf:{tiny_model}", data=str(data.parent), out=str(run), block_size=64, batch_size=2,
                         max_steps=3, learning_rate=2e-2, warmup_steps=0, lora=True, lora_r=4,
                         merge_lora=False)  # fmt: skip
    train(config)
    assert (run / "model" / "adapter_config.json").is_file()  # --adapter-only: no merged weights on disk
    result = export_gguf(run, quant="f16")
    assert result.merged_lora and result.path == run / "model-f16.gguf"
    _, tensors, _ = _read_gguf(result.path)
    merged, base = _hf_weights(run / "model", adapter=True), _hf_weights(tiny_model)
    name = "model.layers.1.mlp.down_proj.weight"
    np.testing.assert_allclose(tensors["blk.1.ffn_down.weight"], merged[name], atol=1e-3, rtol=1e-3)
    # The adapter moved this weight by far more than f16 rounding, so the GGUF is the merged model, not the base.
    assert np.abs(merged[name] - base[name]).max() > 10 * np.abs(tensors["blk.1.ffn_down.weight"] - merged[name]).max()


def test_cli_q8_0_export_prints_json(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "tiny-q8.gguf"
    done = subprocess.run([sys.executable, "-m", "imitlab", "export", "gguf", str(tiny_model), "--quant", "q8_0",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["path"] == str(out) and printed["quant"] == "q8_0" and printed["bytes"] == out.stat().st_size
    _, tensors, types = _read_gguf(out)
    assert types["blk.0.ffn_down.weight"] == "Q8_0"
    hf = _hf_weights(tiny_model)
    np.testing.assert_allclose(tensors["blk.0.ffn_down.weight"], hf["model.layers.0.mlp.down_proj.weight"], atol=2e-3)


def test_bad_input_is_a_clear_error(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    with pytest.raises(ImitlabError, match="unknown quantization 'q5'; choose one of f16, q8_0, q4_k_m"):
        export_gguf(tiny_model, quant="q5")
    with pytest.raises(ImitlabError, match="no such run or model directory"):
        export_gguf(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImitlabError, match="not a training run or model directory"):
        export_gguf(tmp_path / "empty")
    with pytest.raises(ImitlabError, match=r"must end in \.gguf"):
        export_gguf(tiny_model, out=tmp_path / "model.bin")
    with pytest.raises(ImitlabError, match=r"converter not found .*build_llama_server\.sh"):
        export_gguf(tiny_model, cache=tmp_path / "empty-cache")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "sentencepiece" else real_find_spec(n))
    with pytest.raises(ImitlabError, match=r"needs sentencepiece \(not installed\): pip install 'imitlab\[export\]'"):
        export_gguf(tiny_model, out=tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
