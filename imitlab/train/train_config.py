"""The configuration of one SFT run. Defaults follow the paper where they fit a CPU; GPU scale is config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic

from imitlab.devices import check_device, check_dtype
from imitlab.errors import ImitlabError
from imitlab.stage_config import StageConfig

SAVE_POLICIES = ("final", "steps", "none")


class TrainConfig(StageConfig):
    base: str  # model spec of the student's base model
    data: str  # a data-set directory (conversations.jsonl) or a conversations .jsonl file
    out: str  # output directory: model/, metrics.jsonl, manifest.json, checkpoints/
    tokens: int | None = None  # token budget (counted like `imitlab data subset`); None = all the data
    eval_data: str | None = None  # held-out conversations for the eval loss (before and after training)
    block_size: int = 2048  # paper: conversations cut into 2048-token blocks
    packing: bool = True  # concatenate conversations into full blocks (else one padded row each)
    epochs: float = 1.0  # paper: one epoch
    max_steps: int = -1  # > 0 overrides epochs (tests, smoke runs)
    batch_size: int = 4  # per process
    grad_accum: int = 1
    learning_rate: float = 2e-5
    warmup_steps: float = 0.03  # a count, or a fraction of the steps when < 1
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] | str = "all-linear"
    merge_lora: bool = True  # save a merged model (False: adapter only)
    # What the run writes: "final" the trained model only; "steps" also a resumable checkpoint (weights and
    # optimizer state) every save_steps, which a rerun picks up; "none" no weights at all (benchmarks).
    save: str = "final"
    save_steps: int = 50
    logging_steps: int = 1
    device: str = "auto"  # auto | cpu | cuda | mps; one process per GPU is --processes (imitlab.devices)
    dtype: str = "auto"  # mixed-precision compute dtype: auto | bf16 | fp16 | fp32 (weights stay fp32)
    gradient_checkpointing: bool = False
    processes: int = 1  # > 1: data parallel through `accelerate launch` (gloo on CPU, NCCL on GPUs)
    cache: str | None = None
    report_to: str = "none"  # the Trainer's trackers: none, or tensorboard, wandb, mlflow (comma-separated)
    run_name: str | None = None  # the run's name in those trackers (default: the out directory's name)
    extra: dict[str, Any] = pydantic.Field(default_factory=dict)

    def validate(self) -> None:
        from imitlab.train.tracking import parse_report_to

        parse_report_to(self.report_to)  # an unknown or uninstalled tracker fails before any model loads
        if self.block_size < 16:
            raise ImitlabError(f"block_size must be at least 16, got {self.block_size}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.processes < 1:
            raise ImitlabError("batch_size, grad_accum and processes must be at least 1")
        if self.tokens is not None and self.tokens < 1:
            raise ImitlabError(f"token budget must be positive, got {self.tokens}")
        if self.save not in SAVE_POLICIES:
            raise ImitlabError(f"save must be one of {', '.join(SAVE_POLICIES)}, got {self.save!r}")
        if self.save_steps < 1:
            raise ImitlabError(f"save_steps must be at least 1, got {self.save_steps}")
        check_device(self.device)
        if self.device.startswith("cuda:"):
            # The Trainer puts a single process on cuda:0 (and one process per GPU with --processes).
            raise ImitlabError(
                f"device {self.device!r}: training picks GPUs through CUDA_VISIBLE_DEVICES and --processes; "
                "use --device cuda"
            )
        check_dtype(self.dtype)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """The config a launcher wrote for its worker processes (JSON is YAML)."""
        return cls.from_file(path)
