"""``imitlab train``: supervised fine-tuning of a student on teacher conversations.

Built on transformers' ``Trainer`` (optimizer, schedule, gradient accumulation, checkpoints and resume,
DDP/FSDP/DeepSpeed through accelerate) and peft (LoRA). imitlab adds what they do not: the assistant-only
loss mask derived from the student's own chat template, the paper's block packing, token budgets that
match ``imitlab data subset``, metrics JSONL and a manifest. (TRL's SFTTrainer can mask assistant tokens
only for templates with ``{% generation %}`` markers, which the SmolLM2, Qwen2.5 and Gemma templates lack.)

Outputs in ``out``::

    model/          the trained student (HF format; LoRA merged unless merge_lora is off)
    metrics.jsonl   one line per log step: step, loss, learning_rate, tokens_per_s, ...; eval lines too
    manifest.json   config, data set manifest + hash, base model, packing stats, versions, results
    checkpoints/    with ``save: steps`` only: resumable Trainer checkpoints (weights and optimizer state);
                    rerunning the same command resumes from the last one

Precision is mixed: master weights and optimizer state in fp32, forward and backward under autocast in
``dtype`` (bf16 on a GPU by default). With LoRA the frozen base weights load in ``dtype`` directly.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path, atomic_write_text, sha256_file
from imitlab.train.packing import PackStats, build_rows, collate
from imitlab.train.progress import rich_progress_callback
from imitlab.train.tracking import parse_report_to, tracker_environment
from imitlab.train.train_config import TrainConfig

log = logging.getLogger(__name__)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def load_records(config: TrainConfig, tokenizer: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The conversations to train on: all of them, or the token-budget subset ``imitlab data subset`` picks."""
    from imitlab.data.schema import read_conversations
    from imitlab.data.subset import SubsetConfig, token_subsets

    records = read_conversations(config.data)
    if config.tokens is None:
        return records, {"budget": None, "records": len(records)}
    subsets, report = token_subsets(
        records, SubsetConfig(budgets=[config.tokens], student=config.base), tokenizer=tokenizer
    )
    chosen = subsets[config.tokens]
    return chosen, {"budget": config.tokens, "records": len(chosen), **report["subsets"][str(config.tokens)]}


def training_precision(config: TrainConfig) -> tuple[Any, Any]:
    """The device the run's processes use (its type: each process gets its own GPU) and the compute dtype."""
    from imitlab.devices import resolve

    device, dtype = resolve(config.device, config.dtype)
    if device.type == "cpu" and str(dtype) == "torch.float16":
        raise ImitlabError("dtype fp16: mixed-precision training in fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return device, dtype


def checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """TrainingArguments for activation (gradient) checkpointing under the name this transformers uses.

    transformers 5.0-5.17 call it ``gradient_checkpointing``; later 5.x call it ``activation_checkpointing``
    and keep the old name as a deprecated alias. Non-reentrant checkpointing also works when the inputs need
    no gradient (LoRA with frozen embeddings).
    """
    from dataclasses import fields

    from transformers import TrainingArguments

    if not enabled:
        return {}
    names = {f.name for f in fields(TrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def load_student(config: TrainConfig, dtype: Any = None) -> tuple[Any, Any, str]:
    """The student and its tokenizer. Full fine-tuning loads fp32 master weights; LoRA loads the frozen base in
    ``dtype`` (half the memory on a GPU) and peft keeps the adapters in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    from imitlab.models.spec import parse_spec, resolve_hf
    from imitlab.models.tokenizer import load_tokenizer

    path = resolve_hf(parse_spec(config.base), config.cache)
    tokenizer = load_tokenizer(config.base, config.cache)
    weights = dtype if config.lora and dtype is not None else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=weights)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=config.lora_targets,
                task_type="CAUSAL_LM",
            ),
        )
    return model, tokenizer, path


class _MetricsWriter:
    """A TrainerCallback that appends each log line (with tokens/s) to metrics.jsonl on the main process."""

    def __init__(self, path: Path, tokens_per_step: int) -> None:
        from transformers import TrainerCallback

        self.path = path
        self.tokens_per_step = tokens_per_step
        self._last: tuple[float, int] | None = None
        outer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                outer._last = (time.perf_counter(), state.global_step)

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if not state.is_world_process_zero or not logs:
                    return
                now = time.perf_counter()
                line = {"step": state.global_step, "epoch": state.epoch, **logs}
                if "loss" in logs and outer._last is not None:
                    seconds, step = now - outer._last[0], state.global_step - outer._last[1]
                    if step > 0 and seconds > 0:
                        line["tokens_per_s"] = round(step * outer.tokens_per_step / seconds, 1)
                    outer._last = (now, state.global_step)
                with open(outer.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")

        self.callback = Callback()


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) one SFT run; return the manifest it writes."""
    import torch
    from transformers import TrainingArguments

    from imitlab.devices import describe, dtype_name

    config.validate()
    device, dtype = training_precision(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    model, tokenizer, base_path = load_student(config, dtype)
    records, budget = load_records(config, tokenizer)
    rows, stats = build_rows(tokenizer, records, block_size=config.block_size, packing=config.packing, seed=config.seed)
    eval_rows: list[dict[str, list[int]]] | None = None
    eval_stats: PackStats | None = None
    if config.eval_data:
        from imitlab.data.schema import read_conversations

        eval_rows, eval_stats = build_rows(
            tokenizer, read_conversations(config.eval_data), block_size=config.block_size, packing=config.packing
        )
    if _is_main():
        log.info(
            "training on %d conversations: %d tokens (%d carry loss) in %d blocks of %d; packing efficiency %.3f",
            stats.conversations, stats.tokens, stats.loss_tokens, stats.blocks, config.block_size,
            stats.packing_efficiency,
        )  # fmt: skip
        if stats.split_across_blocks or stats.truncated:
            log.info(
                "%d conversations continue across block boundaries; %d truncated (%d tokens dropped)",
                stats.split_across_blocks, stats.truncated, stats.truncated_tokens,
            )  # fmt: skip

    world = int(os.environ.get("WORLD_SIZE", "1"))
    trackers = parse_report_to(config.report_to)
    run_name = config.run_name or out.name
    use_cpu = device.type == "cpu"
    if _is_main():
        log.info("training on %s, %s mixed precision, save: %s", describe(device), dtype_name(dtype), config.save)
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.scheduler,
        logging_steps=config.logging_steps,
        # Only resumable runs write checkpoints: one holds the weights and the optimizer state (16 bytes per
        # parameter with AdamW: ~8 GB at 0.5B, ~110 GB at 7B).
        save_strategy="steps" if config.save == "steps" else "no",
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=use_cpu,
        ddp_backend="gloo" if use_cpu and world > 1 else None,
        **checkpointing_arguments(config.gradient_checkpointing),
        report_to=trackers or "none",
        run_name=run_name,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,  # imitlab.train.progress draws a bar with tokens/s and ETA instead of tqdm's
    )
    metrics_path = out / "metrics.jsonl"
    tokens_per_step = config.batch_size * config.grad_accum * world * config.block_size
    writer = _MetricsWriter(metrics_path, tokens_per_step)
    with tracker_environment(trackers, out, run_name):  # the Trainer builds the trackers' callbacks
        trainer = sequential_trainer(
            model=model,
            args=args,
            train_dataset=rows,
            eval_dataset=eval_rows,
            data_collator=collate(tokenizer.pad_token_id),
            callbacks=[writer.callback, rich_progress_callback(tokens_per_step, enabled=_is_main())],
        )
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    resume = str(checkpoints[-1]) if checkpoints and config.save == "steps" else None
    if resume and _is_main():
        log.info("resuming from %s", resume)

    results: dict[str, Any] = {}
    if eval_rows is not None and resume is None:
        results["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    train_output = trainer.train(resume_from_checkpoint=resume)
    results["train_loss"] = train_output.training_loss
    results["steps"] = trainer.state.global_step
    if eval_rows is not None:
        results["eval_loss_after"] = trainer.evaluate()["eval_loss"]

    results["precision"] = {"device": describe(device), "dtype": dtype_name(dtype)}
    manifest: dict[str, Any] = {}
    sharded = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    if sharded and config.save != "none":
        _save_sharded(trainer, tokenizer, out / "model")  # every rank: gathering the shards is a collective
    if trainer.is_world_process_zero():
        if config.save != "none" and not sharded:
            _save_model(trainer.model, tokenizer, out / "model", merge=config.lora and config.merge_lora)
        manifest = _manifest(config, base_path, stats, eval_stats, budget, results, started, world)
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
        log.info("finished %s (train loss %.4f, save: %s)", out, results["train_loss"], config.save)
    return manifest


def sequential_trainer(**kwargs: Any) -> Any:
    """A transformers Trainer that reads rows in order (build_rows shuffled them once, with the seed).

    With in-order reading, N data-parallel processes see exactly the global batches one process sees, so
    their loss curves agree up to floating-point reduction order.
    """
    import torch
    from transformers import Trainer

    class SequentialTrainer(Trainer):
        def _get_train_sampler(self, *args: Any, **kw: Any) -> torch.utils.data.Sampler[int]:
            return torch.utils.data.SequentialSampler(self.train_dataset)

    return SequentialTrainer(**kwargs)


def _save_model(model: Any, tokenizer: Any, dest: Path, *, merge: bool) -> None:
    with atomic_path(dest, is_dir=True) as tmp:
        if merge:
            model = model.merge_and_unload()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _save_sharded(trainer: Any, tokenizer: Any, dest: Path) -> None:
    """FSDP/DeepSpeed weights gathered into one HF checkpoint by the Trainer (FULL_STATE_DICT, or ZeRO-3's
    16-bit gather), written by rank 0 into a staging directory every rank names alike, then renamed."""
    import shutil

    staging = dest.parent / f".tmp-{dest.name}-gathered"
    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(staging)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    trainer.accelerator.wait_for_everyone()


def _manifest(
    config: TrainConfig,
    base_path: str,
    stats: PackStats,
    eval_stats: PackStats | None,
    budget: dict[str, Any],
    results: dict[str, Any],
    started: float,
    world: int,
) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from imitlab import __version__
    from imitlab.data.dataset import read_manifest
    from imitlab.data.schema import conversations_path

    data_file = conversations_path(config.data)
    model_files = sorted(p for p in (Path(config.out) / "model").glob("*.safetensors"))
    return {
        "operation": "train",
        "config": json.loads(config.to_json()),
        "base": {"spec": config.base, "path": base_path},
        "data": {"path": str(data_file), "sha256": sha256_file(data_file), "manifest": read_manifest(data_file)},
        "budget": budget,
        "packing": stats.as_dict(),
        "eval_packing": eval_stats.as_dict() if eval_stats else None,
        "results": results,
        "processes": world,
        "model_sha256": {p.name: sha256_file(p) for p in model_files},
        "seconds": round(time.perf_counter() - started, 1),
        "versions": {
            "imitlab": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
        },
    }


def train_from_file(config_path: str) -> None:
    """Entry point for worker processes started by ``accelerate launch`` (see launch.py)."""
    train(TrainConfig.from_json(config_path))


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m imitlab.train.sft_trainer CONFIG.json")
    try:
        train_from_file(sys.argv[1])
    except ImitlabError as exc:
        raise SystemExit(f"error: {exc}") from None
