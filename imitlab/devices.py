"""Where a model runs and in what precision: the ``device`` and ``dtype`` settings, resolved to torch objects.

Every path that loads weights (the eval backend, local answer generation, training, the benchmarks) reads
the same two settings::

    device: auto | cpu | cuda | cuda:N | mps    auto = the first CUDA GPU when there is one, else the CPU
    dtype:  auto | bf16 | fp16 | fp32           auto = bf16 on a GPU that has it (fp16 on one that does not),
                                                fp32 on the CPU and on MPS

For inference the dtype is the weights' dtype. For training it is the compute dtype of mixed precision
(autocast); master weights and optimizer state stay fp32 (see docs/train.md).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from imitlab.errors import ImitlabError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps (auto: the first CUDA GPU, else the CPU)"
DTYPE_HELP = "auto | bf16 | fp16 | fp32 (auto: bf16 on a GPU, fp32 on the CPU)"
DTYPES = ("auto", "bf16", "fp16", "fp32")
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_TORCH_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def check_device(setting: str, where: str = "device") -> str:
    """The setting itself, if well formed (no torch import, so configs are checked before anything loads)."""
    if not isinstance(setting, str) or not _DEVICE_PATTERN.fullmatch(setting):
        raise ImitlabError(f"{where}: {setting!r} is not a device; use {DEVICE_HELP}")
    return setting


def check_dtype(setting: str, where: str = "dtype") -> str:
    if setting not in DTYPES:
        raise ImitlabError(f"{where}: {setting!r} is not a dtype; use {DTYPE_HELP}")
    return setting


def resolve_device(setting: str = "auto") -> torch.device:
    """The torch device a setting names; a GPU that is not there is an error, not a silent fall-back."""
    import torch

    check_device(setting)
    if setting == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ImitlabError(f"device {setting!r}: torch sees no CUDA GPU (torch {torch.__version__}); use cpu")
        index = int(setting.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ImitlabError(f"device {setting!r}: there are {torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", index)
    if setting == "mps" and not torch.backends.mps.is_available():
        raise ImitlabError("device 'mps': torch sees no Apple GPU; use cpu")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The torch dtype a setting names on ``device`` (auto: bf16 on CUDA when supported, fp16 on older GPUs)."""
    import torch

    check_dtype(setting)
    if setting == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if _cuda_has_bf16(device) else torch.float16
    if setting == "bf16" and device.type == "cuda" and not _cuda_has_bf16(device):
        raise ImitlabError(f"dtype bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp16 or fp32")
    return getattr(torch, _TORCH_DTYPE_NAMES[setting])


def dtype_name(dtype: torch.dtype) -> str:
    """bf16 / fp16 / fp32, the settings' own names (for manifests and printed benchmark lines)."""
    names = {v: k for k, v in _TORCH_DTYPE_NAMES.items()}
    return names.get(str(dtype).removeprefix("torch."), str(dtype))


def resolve(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    resolved = resolve_device(device)
    return resolved, resolve_dtype(dtype, resolved)


def describe(device: torch.device) -> str:
    """One line naming the hardware: the GPU's name, or the CPU with torch's thread count."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} torch threads)"
    return str(device)


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """Mixed-precision autocast for a training step in ``dtype``; fp32 runs without one."""
    import torch

    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _cuda_has_bf16(device: torch.device) -> bool:
    import torch

    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported())
