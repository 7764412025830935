"""MFU's ingredients: model FLOPs per token (PaLM's convention) and the assumed GPU peaks."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from imitlab.train.flops import flops_per_token, matmul_parameters, mfu, peak_tflops


def _qwen_1_5b(tied: bool) -> Qwen2ForCausalLM:
    """Qwen2.5-1.5B's shape, on the meta device (no memory)."""
    config = Qwen2Config(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, tie_word_embeddings=tied,
    )  # fmt: skip
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    model.tie_weights()  # transformers 5.0 ties at load time, not at construction
    return model


def test_matmul_parameters_leave_out_the_embedding_lookup_only() -> None:
    embedding = 151936 * 1536
    tied, untied = _qwen_1_5b(True), _qwen_1_5b(False)
    total_tied = sum(p.numel() for p in tied.parameters())
    assert 1.54e9 < total_tied < 1.55e9  # the published 1.54B
    assert matmul_parameters(tied) == total_tied  # the shared matrix is the output layer's
    total_untied = sum(p.numel() for p in untied.parameters())
    assert total_untied == total_tied + embedding
    assert matmul_parameters(untied) == total_untied - embedding == total_tied


def test_flops_per_token_is_6n_plus_attention() -> None:
    model = _qwen_1_5b(True)
    n = matmul_parameters(model)
    assert flops_per_token(model, 2048) == 6 * n + 12 * 28 * 1536 * 2048
    assert flops_per_token(model, 4096) > flops_per_token(model, 2048)


def test_peaks_by_gpu_name_and_dtype() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16")[0] == 989.0
    assert peak_tflops("NVIDIA H200", "bf16")[0] == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16")[0] == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp16")[0] == 312.0
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32")[0] is None  # MFU is quoted for bf16/fp16 runs
    peak, why = peak_tflops("cpu (2 torch threads)", "bf16")
    assert peak is None and "--peak-tflops" in why
    assert mfu(1e9, 1e5, 989.0) == pytest.approx(1e14 / 989e12)
    assert mfu(1e9, 1e5, None) is None
