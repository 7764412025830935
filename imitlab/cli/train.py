"""``imitlab train``: a thin CLI over :func:`imitlab.train.launch.launch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imitlab.cli.options import CacheOpt, ConfigFileOpt, DeviceOpt, DtypeOpt, PrivateOpt, stage_config
from imitlab.cli.output import console


def train_cmd(
    ctx: typer.Context,
    base: Annotated[
        str | None, typer.Option("--base", help="Student base model spec (packaged name, hf:DIR, gguf:PATH).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Data-set directory (conversations.jsonl) or .jsonl file.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory: model/, metrics.jsonl, manifest.json.")
    ] = None,
    tokens: Annotated[str | None, typer.Option(help="Token budget, e.g. 300k (as `imitlab data subset`).")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Held-out conversations for eval loss.")] = None,
    block_size: Annotated[int, typer.Option(help="Packed block length (paper: 2048).")] = 2048,
    packing: Annotated[bool, typer.Option(help="Pack conversations into full blocks.")] = True,
    epochs: Annotated[float, typer.Option(help="Epochs over the (budgeted) data (paper: 1).")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Stop after N optimizer steps (overrides epochs).")] = -1,
    batch_size: Annotated[int, typer.Option(help="Rows per process per step.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 2e-5,
    warmup: Annotated[float, typer.Option(help="Warm-up steps (a fraction of all steps when < 1).")] = 0.03,
    scheduler: Annotated[str, typer.Option(help="LR schedule (transformers name).")] = "cosine",
    seed: Annotated[int, typer.Option(help="Seed for shuffling and initialisation.")] = 0,
    lora: Annotated[bool, typer.Option(help="Train LoRA adapters instead of all weights.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    adapter_only: Annotated[bool, typer.Option(help="With --lora: save the adapter, not a merged model.")] = False,
    save: Annotated[
        str, typer.Option(help="final: the model at the end | steps: also resumable checkpoints | none: no weights.")
    ] = "final",
    save_steps: Annotated[int, typer.Option(help="With --save steps: checkpoint every N steps.")] = 50,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    processes: Annotated[int, typer.Option(help="Data-parallel processes per node (accelerate; gloo on CPU).")] = 1,
    nodes: Annotated[
        int, typer.Option(help="Nodes in the run; start the same command on each with its --node-rank.")
    ] = 1,
    node_rank: Annotated[int, typer.Option(help="This node's rank, 0..nodes-1 (rank 0 writes the run's files).")] = 0,
    master_addr: Annotated[str, typer.Option(help="Address of the rank-0 node, as the other nodes reach it.")] = (
        "127.0.0.1"
    ),
    master_port: Annotated[int, typer.Option(help="Rendezvous port on the rank-0 node.")] = 29500,
    accelerate_config: Annotated[
        str | None, typer.Option(help="fsdp | deepspeed_zero2 | deepspeed_zero3 (packaged, GPUs only) or a YAML path.")
    ] = None,
    emit_sbatch: Annotated[
        Path | None, typer.Option(help="Write a SLURM batch file for --nodes nodes x --processes GPUs; don't train.")
    ] = None,
    report_to: Annotated[
        str, typer.Option(envvar="IMITLAB_REPORT_TO", help="Trackers: none | tensorboard | wandb | mlflow (or a list).")
    ] = "none",
    run_name: Annotated[str | None, typer.Option(help="The run's name in the trackers (default: --out name).")] = None,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Push the student (LoRA merged) to this hub model repo, OWNER/NAME.")
    ] = None,
    private: PrivateOpt = False,
    cache: CacheOpt = None,
    config_file: ConfigFileOpt = None,
) -> None:
    """Fine-tune a student on teacher conversations (loss on the teacher's tokens only).

    --base, --data and --out are required unless the --config file sets base, data and out."""
    from imitlab.data.subset import parse_budget
    from imitlab.train.launch import Rendezvous, launch
    from imitlab.train.train_config import TrainConfig

    values = dict(
        base=base, data=str(data) if data else None, out=str(out) if out else None,
        tokens=parse_budget(tokens) if tokens else None, report_to=report_to, run_name=run_name,
        eval_data=str(eval_data) if eval_data else None, block_size=block_size, packing=packing, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, learning_rate=lr, warmup_steps=warmup,
        scheduler=scheduler, seed=seed, lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r, merge_lora=not adapter_only,
        save=save, save_steps=save_steps, device=device, dtype=dtype, gradient_checkpointing=gradient_checkpointing,
        processes=processes, cache=str(cache) if cache else None,
    )  # fmt: skip
    renamed = {"learning_rate": "lr", "warmup_steps": "warmup", "merge_lora": "adapter_only", "lora_alpha": "lora_r"}
    config = stage_config(ctx, TrainConfig, config_file, values, options=renamed)
    out = Path(config.out)
    if push_to_hub:  # checked before hours of training, not after
        from imitlab.train.push import check_train_push

        check_train_push(push_to_hub, config.save)

    if emit_sbatch is not None:
        from imitlab.fileio import atomic_write_text
        from imitlab.train.launch import sbatch_script

        script = sbatch_script(config, nodes, port=master_port, accelerate_config=accelerate_config)
        atomic_write_text(emit_sbatch, script)
        console.print(
            f"[green]✓[/] wrote {emit_sbatch} ({nodes} node(s) x {config.processes} GPU(s)); run: sbatch {emit_sbatch}"
        )
        return
    rendezvous = Rendezvous(nodes=nodes, node_rank=node_rank, master_addr=master_addr, master_port=master_port,
                            accelerate_config=accelerate_config)  # fmt: skip
    manifest = launch(config, rendezvous)
    if node_rank != 0:
        console.print(f"[green]✓[/] node {node_rank} of {nodes} finished; node 0 wrote {out}", soft_wrap=True)
        return
    results = manifest.get("results", {})
    where = out / "model" if config.save != "none" else out
    console.print(f"[green]✓[/] trained {config.base} for {results.get('steps')} steps -> {where}", soft_wrap=True)
    for key in ("train_loss", "eval_loss_before", "eval_loss_after"):
        if key in results:
            console.print(f"  {key}: {results[key]:.4f}")
    packing_stats = manifest.get("packing", {})
    console.print(
        f"  {packing_stats.get('conversations')} conversations, {packing_stats.get('tokens')} tokens "
        f"({packing_stats.get('loss_tokens')} with loss), packing efficiency {packing_stats.get('packing_efficiency')}"
    )
    if push_to_hub:
        from imitlab.train.push import push_student

        console.print(f"  pushed to {push_student(out, manifest, push_to_hub, private=private)}", soft_wrap=True)
