"""Run training in one process, or data-parallel in several through ``accelerate launch``.

On a CPU machine the processes talk over gloo; on GPUs the same command uses NCCL (DDP). For FSDP or
DeepSpeed, run ``accelerate launch --config_file CONFIG -m imitlab.train.sft_trainer RUN/train_config.json``
with one of the configs in docs/train.md: the trainer reads everything else from the JSON config.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text
from imitlab.train.sft_trainer import train
from imitlab.train.train_config import TrainConfig

CONFIG_NAME = "train_config.json"


def accelerate_command(config_path: Path, processes: int) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(processes),
        "--num_machines", "1",
        "--mixed_precision", "no",
        "--dynamo_backend", "no",
        # accelerate's --cpu multi-process path needs MPI; --multi_gpu is its torch.distributed launcher,
        # which works on CPUs too: the trainer then sets up gloo instead of NCCL.
        "--multi_gpu",
        "-m", "imitlab.train.sft_trainer", str(config_path),
    ]  # fmt: skip


def launch(config: TrainConfig) -> dict[str, Any]:
    """Train with ``config.processes`` processes; return the run's manifest."""
    config.validate()
    if config.processes <= 1:
        return train(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / CONFIG_NAME
    atomic_write_text(config_path, config.to_json())
    command = accelerate_command(config_path, config.processes)
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise ImitlabError(f"training with {config.processes} processes failed (exit {done.returncode}): {command}")
    return json.loads((out / "manifest.json").read_text())
