"""Model FLOPs per trained token and the peak a GPU is assumed to reach, for MFU.

MFU = model FLOPs per token x tokens/s / peak FLOP/s. Model FLOPs follow PaLM's convention (Chowdhery et al.
2022, appendix B): 6 N per token for the weight matmuls (forward 2N, backward 4N), where N counts the weights
that take part in a matmul (every parameter except the input embedding, which is a lookup; the output layer
counts once even when tied to it), plus 12 L H T for attention (L layers, hidden width H, sequence length T).
Activation recomputation (gradient checkpointing) is not counted: it is hardware work, not model work.
"""

from __future__ import annotations

from typing import Any

# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA's data sheets, by name fragment of
# torch.cuda.get_device_name() and compute dtype. The first fragment that matches wins.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bf16": 989.0, "fp16": 989.0}),  # same chip as the H100 SXM, more memory
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0}),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("A100", {"bf16": 312.0, "fp16": 312.0}),
    ("L40S", {"bf16": 362.0, "fp16": 362.0}),
    ("L4", {"bf16": 121.0, "fp16": 121.0}),
    ("A10G", {"bf16": 70.0, "fp16": 70.0}),
]


def matmul_parameters(model: Any) -> int:
    """Parameters that take part in a matmul: all of them but the input embedding (tied output counts once)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    # With tied weights, parameters() lists the shared matrix once: it is the output layer's, so keep it.
    return total if tied else total - embedding.numel()


def flops_per_token(model: Any, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM's convention (module docstring)."""
    config = model.config
    text = getattr(config, "text_config", None) or config
    attention = 12 * text.num_hidden_layers * text.hidden_size * seq_len
    return 6.0 * matmul_parameters(model) + attention


def peak_tflops(device_name: str, dtype: str) -> tuple[float | None, str]:
    """The assumed peak and where it came from; (None, why) when there is no figure for this GPU and dtype."""
    for fragment, peaks in PEAK_TFLOPS:
        if fragment in device_name:
            if dtype in peaks:
                return peaks[dtype], f"{fragment} {dtype} dense tensor-core peak, NVIDIA data sheet"
            return None, f"no {dtype} peak listed for {fragment} (MFU is quoted for bf16/fp16 runs)"
    return None, f"no peak listed for {device_name!r}; pass --peak-tflops"


def mfu(flops_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation (0..1), or None without a peak (CPU, unknown GPU)."""
    if not peak:
        return None
    return flops_token * tokens_per_s / (peak * 1e12)
