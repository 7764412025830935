"""Run training in one process, or data-parallel in several through ``accelerate launch``, on one node or many.

On a CPU machine the processes talk over gloo; on GPUs the same command uses NCCL (DDP). Several nodes meet
at a rendezvous (``Rendezvous``: the node count, this node's rank, the first node's address and port): run the
same command on every node with its own ``--node-rank``, or let SLURM do it (``sbatch_script``: a batch file
whose one task per node runs ``python -m imitlab.train.launch RUN/train_config.json``, which reads its rank
from SLURM's environment). FSDP and DeepSpeed are accelerate config files (``accelerate_configs/``, or any
path): the file picks the distributed type, the command line the process counts and the rendezvous.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text
from imitlab.train.sft_trainer import train
from imitlab.train.train_config import TrainConfig

CONFIG_NAME = "train_config.json"
ACCELERATE_CONFIGS = Path(__file__).parent / "accelerate_configs"
DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Rendezvous:
    """Where the processes of one run meet. ``processes`` (TrainConfig) is per node; the world is nodes x it."""

    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"  # the address of the node of rank 0, as the other nodes reach it
    master_port: int = DEFAULT_PORT
    accelerate_config: str | None = None  # a name in accelerate_configs/ (fsdp, deepspeed_zero2, ...) or a path

    def validate(self) -> None:
        if self.nodes < 1:
            raise ImitlabError(f"--nodes must be at least 1, got {self.nodes}")
        if not 0 <= self.node_rank < self.nodes:
            raise ImitlabError(
                f"--node-rank must be in 0..{self.nodes - 1} for {self.nodes} node(s), got {self.node_rank}"
            )
        if not 0 < self.master_port < 65536:
            raise ImitlabError(f"--master-port must be a TCP port (1-65535), got {self.master_port}")
        if self.accelerate_config is not None:
            accelerate_config_path(self.accelerate_config)

    @property
    def distributed(self) -> bool:
        return self.nodes > 1 or self.accelerate_config is not None


def accelerate_config_path(name: str) -> Path:
    """A packaged config by name (``fsdp``, ``deepspeed_zero2``, ``deepspeed_zero3``) or a YAML path."""
    packaged = ACCELERATE_CONFIGS / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    path = Path(name)
    if path.is_file():
        return path.resolve()
    known = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
    raise ImitlabError(f"--accelerate-config {name!r}: no such file, and not a packaged config ({known})")


def sharding(accelerate_config: str | None) -> str | None:
    """FSDP or DEEPSPEED when the accelerate config file shards the model, else None."""
    import yaml

    if accelerate_config is None:
        return None
    path = accelerate_config_path(accelerate_config)
    try:
        value = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ImitlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    kind = str((value or {}).get("distributed_type", "")) if isinstance(value, dict) else ""
    return kind if kind in ("FSDP", "DEEPSPEED") else None


def check_sharded(config: TrainConfig, rendezvous: Rendezvous) -> None:
    """Refuse what FSDP/DeepSpeed cannot do here, before any process starts."""
    from imitlab.devices import resolve_device

    kind = sharding(rendezvous.accelerate_config)
    if kind is None:
        return
    if config.lora:
        raise ImitlabError(
            f"--accelerate-config {rendezvous.accelerate_config}: LoRA is trained with plain data parallel here "
            f"(merging the adapter needs the whole model in one process); drop {kind}"
        )
    if resolve_device(config.device).type != "cuda":
        # accelerate builds its FSDP/DeepSpeed plugins only for GPU processes; CPU processes would silently run
        # plain DDP (measured with accelerate 1.15: the same loss curve as DDP, DDP's reducer in the log).
        raise ImitlabError(
            f"--accelerate-config {rendezvous.accelerate_config}: {kind} needs CUDA GPUs; on this device "
            f"({config.device}) use plain data parallel (no --accelerate-config)"
        )


def accelerate_command(config_path: Path, processes: int, rendezvous: Rendezvous | None = None) -> list[str]:
    """``accelerate launch`` for this node: ``processes`` here, ``processes x nodes`` in all."""
    r = rendezvous or Rendezvous()
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if r.accelerate_config is not None:
        # The file says FSDP or DeepSpeed; naming --multi_gpu too would override it (accelerate reads the file's
        # distributed type only when no launcher flag is given).
        command += ["--config_file", str(accelerate_config_path(r.accelerate_config))]
    command += ["--num_processes", str(processes * r.nodes), "--num_machines", str(r.nodes)]
    if r.nodes > 1:
        command += ["--machine_rank", str(r.node_rank), "--main_process_ip", r.master_addr,
                    "--main_process_port", str(r.master_port)]  # fmt: skip
    else:
        command += ["--main_process_port", "0"]  # a free port: runs side by side on one machine (sweep cells)
    # Precision is imitlab's --dtype (the Trainer's bf16/fp16 arguments), never the launcher's.
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    if r.accelerate_config is None:
        # accelerate's --cpu multi-process path needs MPI; --multi_gpu is its torch.distributed launcher,
        # which works on CPUs too: the trainer then sets up gloo instead of NCCL.
        command.append("--multi_gpu")
    return [*command, "-m", "imitlab.train.sft_trainer", str(config_path)]


def launch(config: TrainConfig, rendezvous: Rendezvous | None = None) -> dict[str, Any]:
    """Train with ``config.processes`` processes on this node (of ``rendezvous.nodes``); return the manifest.

    On a node other than rank 0 the manifest is ``{}``: the run's files are written by global rank 0.
    """
    config.validate()
    r = rendezvous or Rendezvous()
    r.validate()
    check_sharded(config, r)
    if config.processes <= 1 and not r.distributed:
        return train(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = write_config(config)
    command = accelerate_command(config_path, config.processes, r)
    # close_fds=False: descriptors this process marked inheritable pass to the launcher, so a sweep stage's lock
    # (imitlab.study.stages) stays held while the launcher lives, even if this process is killed.
    done = subprocess.run(command, check=False, close_fds=False)
    if done.returncode != 0:
        where = f" (node {r.node_rank} of {r.nodes})" if r.nodes > 1 else ""
        raise ImitlabError(f"training with {config.processes} processes{where} failed (exit {done.returncode}): "
                           f"{shlex.join(command)}")  # fmt: skip
    manifest = out / "manifest.json"
    return json.loads(manifest.read_text()) if r.node_rank == 0 and manifest.is_file() else {}


def write_config(config: TrainConfig) -> Path:
    path = Path(config.out) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, config.to_json())
    return path


# -- SLURM ----------------------------------------------------------------------------------------------------
def sbatch_script(config: TrainConfig, nodes: int, *, port: int = DEFAULT_PORT, accelerate_config: str | None = None,
                  job_name: str | None = None) -> str:  # fmt: skip
    """A SLURM batch file for this run on ``nodes`` nodes x ``config.processes`` GPUs; writes the run's config.

    One srun task per node runs :func:`node_main`, which takes its rank from ``$SLURM_NODEID`` and the first
    node of the allocation as the rendezvous.
    """
    Rendezvous(nodes=nodes, master_port=port, accelerate_config=accelerate_config).validate()
    config.validate()
    if sharding(accelerate_config) and config.lora:
        raise ImitlabError(f"--accelerate-config {accelerate_config}: LoRA is trained with plain data parallel here")
    config_path = write_config(config).resolve()
    node_command = [sys.executable, "-m", "imitlab.train.launch", str(config_path), "--port", str(port)]
    if accelerate_config:
        node_command += ["--accelerate-config", str(accelerate_config_path(accelerate_config))]
    name = job_name or f"imitlab-train-{Path(config.out).name}"
    out = Path(config.out).resolve()
    return "\n".join([
        "#!/bin/bash",
        f"# imitlab train on {nodes} node(s) x {config.processes} process(es); submit with: sbatch THIS_FILE",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={config.processes}",
        f"#SBATCH --output={out}/slurm-%j.out",
        "# (add --partition, --time, --account and the like here or on sbatch's command line)",
        "set -euo pipefail",
        "# every task resolves the first node of the allocation the same way: the rendezvous host",
        'export IMITLAB_MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f"srun --kill-on-bad-exit=1 {shlex.join(node_command)}",
        "",
    ])  # fmt: skip


def node_rendezvous(port: int, accelerate_config: str | None, env: dict[str, str] | None = None) -> Rendezvous:
    """This node's place in a SLURM job (one task per node): ``SLURM_NNODES``, ``SLURM_NODEID``, the master."""
    env = dict(os.environ if env is None else env)
    missing = [k for k in ("SLURM_NNODES", "SLURM_NODEID", "IMITLAB_MASTER_ADDR") if not env.get(k)]
    if missing:
        raise ImitlabError(f"not inside the batch file's srun task: {', '.join(missing)} not set (see sbatch_script)")
    try:
        nodes, rank = int(env["SLURM_NNODES"]), int(env["SLURM_NODEID"])
    except ValueError:
        raise ImitlabError(f"SLURM_NNODES/SLURM_NODEID are not integers: {env['SLURM_NNODES']!r}, "
                           f"{env['SLURM_NODEID']!r}") from None  # fmt: skip
    return Rendezvous(nodes=nodes, node_rank=rank, master_addr=env["IMITLAB_MASTER_ADDR"], master_port=port,
                      accelerate_config=accelerate_config)  # fmt: skip


def node_main(argv: list[str] | None = None) -> None:
    """``python -m imitlab.train.launch RUN/train_config.json [--port P] [--accelerate-config C]``: one node's part."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m imitlab.train.launch", description=node_main.__doc__)
    parser.add_argument("config", help="the run's train_config.json (written by sbatch_script)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--accelerate-config", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        launch(TrainConfig.from_json(args.config), node_rendezvous(args.port, args.accelerate_config))
    except ImitlabError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    node_main()
