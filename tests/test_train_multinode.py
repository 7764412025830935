"""Multi-node training: two CPU processes on this machine as two nodes meeting at a rendezvous on 127.0.0.1.

Two ways in, both against the loss curve of 1 process x batch 4: `imitlab train --nodes 2 --node-rank R` started
twice, and the SLURM batch file `imitlab train --emit-sbatch` writes, run by bash with stand-in `srun` and
`scontrol` that start one task per "node" on this machine. Also: the launcher's command lines, the packaged
FSDP/DeepSpeed accelerate configs, and the refusals (FSDP on CPU, LoRA with sharding, bad ranks).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.train.launch import (
    ACCELERATE_CONFIGS,
    Rendezvous,
    accelerate_command,
    check_sharded,
    launch,
    node_rendezvous,
    sbatch_script,
    sharding,
)
from imitlab.train.train_config import TrainConfig

from .test_train_logic import _conv, _write, tiny_model, tokenizer  # noqa: F401  (fixtures)

STEPS = 5


def _losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if "loss" in x]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["--base", f"hf:{model}", "--data", str(data), "--out", str(out), "--block-size", "64",
            "--max-steps", str(STEPS), "--lr", "1e-3", "--warmup", "0", "--batch-size", "2"]  # fmt: skip


def _assert_same_curve(one: list[float], two: list[float]) -> None:
    print(f"\n1 process:   {one}\n2 nodes:     {two}")
    assert len(one) == len(two) == STEPS
    assert one[-1] < one[0]  # it learns
    for x, y in zip(one, two, strict=True):
        assert abs(x - y) <= 1e-3 * max(1.0, abs(x)), (one, two)


@pytest.fixture(scope="module")
def data_and_reference(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:  # noqa: F811
    root = tmp_path_factory.mktemp("multinode")
    data = _write(root / "d" / "conversations.jsonl", [_conv(i, answer_words=24) for i in range(48)]).parent
    config = TrainConfig(base=f"hf:{tiny_model}", data=str(data), out=str(root / "one"), block_size=64,
                         max_steps=STEPS, learning_rate=1e-3, warmup_steps=0, batch_size=4)  # fmt: skip
    assert launch(config)["processes"] == 1
    return data, _losses(root / "one")


@pytest.mark.real
def test_two_nodes_on_localhost_give_the_one_process_loss_curve(
    tiny_model: Path,  # noqa: F811
    data_and_reference: tuple[Path, list[float]],
    tmp_path: Path,
) -> None:
    data, reference = data_and_reference
    port = str(_free_port())
    out = tmp_path / "two"
    common = [*_train_args(tiny_model, data, out), "--nodes", "2", "--master-addr", "127.0.0.1", "--master-port", port]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "imitlab", "train", *common, "--node-rank", str(rank)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=540)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs
    assert "node 1 of 2 finished" in logs[1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["processes"] == 2  # one world of two processes, not two runs of one
    _assert_same_curve(reference, _losses(out))


@pytest.mark.real
def test_the_sbatch_file_runs_two_nodes_through_srun(
    tiny_model: Path,  # noqa: F811
    data_and_reference: tuple[Path, list[float]],
    tmp_path: Path,
) -> None:
    data, reference = data_and_reference
    out, script = tmp_path / "slurm-run", tmp_path / "train.sbatch"
    port = str(_free_port())
    emit = [*_train_args(tiny_model, data, out), "--nodes", "2", "--master-port", port, "--emit-sbatch", str(script)]
    command = [sys.executable, "-m", "imitlab", "train", *emit]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (out / "metrics.jsonl").exists()  # written, not run
    # Stand-ins for SLURM on this machine: srun starts one task per node with its SLURM_NODEID; scontrol names
    # the allocation's first node.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "scontrol", '#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && echo 127.0.0.1\n')
    _executable(
        bin_dir / "srun",
        """#!/bin/bash
shift  # --kill-on-bad-exit=1
pids=()
for ((rank = 0; rank < SLURM_NNODES; rank++)); do SLURM_NODEID=$rank "$@" & pids+=($!); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
""",
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "n[1-2]"}
    ran = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=540)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert json.loads((out / "manifest.json").read_text())["processes"] == 2
    _assert_same_curve(reference, _losses(out))


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# -- no weights needed -------------------------------------------------------------------------------------------
def test_the_launch_command_for_one_node_and_for_several(tmp_path: Path) -> None:
    config = tmp_path / "train_config.json"
    one = accelerate_command(config, 2)
    assert one[one.index("--num_processes") + 1] == "2" and one[one.index("--num_machines") + 1] == "1"
    assert one[one.index("--main_process_port") + 1] == "0"  # a free port: cells side by side on one machine
    assert "--multi_gpu" in one and "--machine_rank" not in one
    many = accelerate_command(config, 8, Rendezvous(nodes=4, node_rank=3, master_addr="10.0.0.1", master_port=1234))
    flags = dict(zip(many[3::2], many[4::2], strict=False))
    assert flags["--num_processes"] == "32" and flags["--num_machines"] == "4"  # 4 nodes x 8 processes
    rendezvous = (flags["--machine_rank"], flags["--main_process_ip"], flags["--main_process_port"])
    assert rendezvous == ("3", "10.0.0.1", "1234")
    assert many[-3:] == ["-m", "imitlab.train.sft_trainer", str(config)]
    fsdp = accelerate_command(config, 8, Rendezvous(accelerate_config="fsdp"))
    assert fsdp[fsdp.index("--config_file") + 1] == str(ACCELERATE_CONFIGS / "fsdp.yaml")
    assert "--multi_gpu" not in fsdp  # it would override the file's distributed type


def test_the_packaged_accelerate_configs_load_as_accelerate_reads_them() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted(ACCELERATE_CONFIGS.glob("*.yaml")):
        loaded = load_config_from_file(str(path))
        kinds[path.stem] = str(loaded.distributed_type)
        assert sharding(path.stem) == kinds[path.stem].split(".")[-1]
    assert kinds == {"deepspeed_zero2": "DistributedType.DEEPSPEED", "deepspeed_zero3": "DistributedType.DEEPSPEED",
                     "fsdp": "DistributedType.FSDP"}  # fmt: skip
    zero3 = load_config_from_file(str(ACCELERATE_CONFIGS / "deepspeed_zero3.yaml")).deepspeed_config
    assert zero3["zero_stage"] == 3 and zero3["deepspeed_multinode_launcher"] == "standard"


def test_sharding_is_refused_where_it_cannot_run(tmp_path: Path) -> None:
    config = TrainConfig(base="hf:x", data=str(tmp_path), out=str(tmp_path / "out"), device="cpu")
    # On CPU processes accelerate drops the FSDP plugin and runs DDP; imitlab says so instead.
    with pytest.raises(ImitlabError, match="fsdp: FSDP needs CUDA GPUs"):
        check_sharded(config, Rendezvous(accelerate_config="fsdp"))
    with pytest.raises(ImitlabError, match="deepspeed_zero3: LoRA is trained with plain data parallel"):
        check_sharded(TrainConfig(**{**config.__dict__, "lora": True}), Rendezvous(accelerate_config="deepspeed_zero3"))
    check_sharded(config, Rendezvous(nodes=2))  # plain data parallel: fine on CPUs
    with pytest.raises(ImitlabError, match="no such file, and not a packaged config"):
        Rendezvous(accelerate_config="zero9").validate()
    with pytest.raises(ImitlabError, match=r"--node-rank must be in 0\.\.1 for 2 node\(s\), got 2"):
        Rendezvous(nodes=2, node_rank=2).validate()
    with pytest.raises(ImitlabError, match="--master-port must be a TCP port"):
        Rendezvous(nodes=2, master_port=70000).validate()


def test_the_sbatch_file_and_the_node_entry(tmp_path: Path) -> None:
    config = TrainConfig(base="hf:x", data=str(tmp_path), out=str(tmp_path / "run"), processes=8)
    script = sbatch_script(config, 4, port=4321, accelerate_config="fsdp")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert {"#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8"} <= set(lines)
    srun = next(x for x in lines if x.startswith("srun "))
    assert f"-m imitlab.train.launch {tmp_path / 'run' / 'train_config.json'} --port 4321" in srun
    assert str(ACCELERATE_CONFIGS / "fsdp.yaml") in srun
    assert TrainConfig.from_json(tmp_path / "run" / "train_config.json") == config  # what every node will read
    env = {"SLURM_NNODES": "4", "SLURM_NODEID": "2", "IMITLAB_MASTER_ADDR": "node17"}
    assert node_rendezvous(4321, None, env) == Rendezvous(nodes=4, node_rank=2, master_addr="node17", master_port=4321)
    with pytest.raises(ImitlabError, match="SLURM_NODEID, IMITLAB_MASTER_ADDR not set"):
        node_rendezvous(4321, None, {"SLURM_NNODES": "4"})
