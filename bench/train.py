"""Benchmark: `imitlab train` against a bare PyTorch loop on the same model, data, device and precision.

Both sides run in child processes of this one run (so each reports its own peak memory), on the same packed
blocks of real teacher conversations (the Alpaca-GPT4 sample from $IMITLAB_DATA, repeated when a run needs more
tokens than it holds), full fine-tuning with the Trainer's AdamW (fused where the Trainer uses fused), the same
learning rate, clipping and mixed precision: fp32 master weights, forward and backward under autocast in
``--dtype`` (auto: bf16 on a GPU, fp32 on the CPU). Throughput counts block tokens per optimizer step over the
timed steps (the first step is warm-up). On a GPU each side also reports MFU: model FLOPs per token
(imitlab/train/flops.py) x tokens/s / the GPU's assumed dense peak, which is printed; on the CPU MFU is n/a.

    python bench/train.py [--model smollm2-135m-instruct] [--device auto] [--dtype auto] [--steps 6]
                          [--batch 4] [--block 256] [--json FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def conversations(n: int) -> list[dict[str, Any]]:
    """``n`` conversations from the Alpaca-GPT4 sample, cycling through it when ``n`` is larger."""
    from imitlab.config import data_dir

    rows = json.loads((data_dir() / "alpaca_gpt4_demo" / "alpaca_en_demo.json").read_text())
    out = []
    for i in range(n):
        r = rows[i % len(rows)]
        out.append(
            {
                "id": f"alpaca_gpt4:{i}",
                "messages": [
                    {"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")},
                    {"role": "assistant", "content": r["output"]},
                ],
            }
        )
    return out


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    from imitlab.data.schema import read_conversations
    from imitlab.devices import autocast, resolve
    from imitlab.models.spec import parse_spec, resolve_hf
    from imitlab.models.tokenizer import load_tokenizer
    from imitlab.train.flops import flops_per_token
    from imitlab.train.packing import build_rows, collate

    device, dtype = resolve(args.device, args.dtype)
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    rows, _ = build_rows(tokenizer, read_conversations(data), block_size=args.block, packing=True)
    model = AutoModelForCausalLM.from_pretrained(resolve_hf(parse_spec(args.model)), dtype=torch.float32)
    model.to(device).train()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # The Trainer's default optimizer is torch's fused AdamW (torch >= 2.8); the bare loop uses the same kernel.
    fused = "fused" in str(TrainingArguments.__dataclass_fields__["optim"].default)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0, fused=fused or None)
    batches = torch.utils.data.DataLoader(rows, batch_size=args.batch, collate_fn=collate(tokenizer.pad_token_id))
    times = []
    for step, batch in enumerate(itertools.cycle(batches)):
        if step == args.steps:
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        start = time.perf_counter()
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    timed = times[1:]
    return {
        "tokens_per_s": args.batch * args.block * len(timed) / sum(timed),
        "steps": len(times),
        "flops_per_token": flops_per_token(model, args.block),
        "fused_adamw": fused,
        **_memory(device),
    }


def imitlab_train(args: argparse.Namespace, data: Path, out: Path) -> dict[str, Any]:
    from imitlab.devices import resolve
    from imitlab.train.sft_trainer import train
    from imitlab.train.train_config import TrainConfig

    device, _ = resolve(args.device, args.dtype)
    manifest = train(
        TrainConfig(
            base=args.model,
            data=str(data),
            out=str(out),
            block_size=args.block,
            batch_size=args.batch,
            max_steps=args.steps,
            learning_rate=1e-5,
            warmup_steps=0,
            scheduler="constant",
            save="none",  # throughput only: no weights written
            logging_steps=1,
            device=args.device,
            dtype=args.dtype,
            gradient_checkpointing=args.gradient_checkpointing,
        )
    )
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [x["tokens_per_s"] for x in lines if "tokens_per_s" in x][1:]  # drop the warm-up step
    # Harmonic mean = total tokens / total time over the timed steps.
    return {
        "tokens_per_s": len(rates) / sum(1 / r for r in rates),
        "packing": manifest["packing"],
        "precision": manifest["results"]["precision"],
        **_memory(device),
    }


def _memory(device: Any) -> dict[str, float]:
    import torch

    memory = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        memory["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return memory


def child(args: argparse.Namespace) -> None:
    data, out = Path(args.data), Path(args.out)
    result = bare_loop(args, data) if args.child == "bare" else imitlab_train(args, data, out)
    print("RESULT " + json.dumps(result))


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate the two sides over ``args.rounds`` rounds; return both sides' best runs, the ratio and MFU."""
    from imitlab.data.schema import write_conversations
    from imitlab.devices import describe, dtype_name, resolve
    from imitlab.train.flops import mfu, peak_tflops

    device, dtype = resolve(args.device, args.dtype)  # the children resolve the same settings the same way
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "conversations.jsonl"
        write_conversations(data, conversations(args.conversations))
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "imitlab": []}
        # Alternate the sides and keep each side's fastest run: on a shared machine the load changes between
        # runs, and one run per side confounds the ratio with it.
        for r in range(args.rounds):
            for kind in ("bare", "imitlab"):
                out = Path(tmp) / f"{kind}-{r}"
                cmd = [sys.executable, __file__, "--child", kind, "--data", str(data), "--out", str(out),
                       "--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch),
                       "--block", str(args.block), "--device", args.device, "--dtype", args.dtype]  # fmt: skip
                if args.gradient_checkpointing:
                    cmd.append("--gradient-checkpointing")
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{kind} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                runs[kind].append(json.loads(line.removeprefix("RESULT ")))
    best = {kind: max(rs, key=lambda x: x["tokens_per_s"]) for kind, rs in runs.items()}
    bare, ours = best["bare"], best["imitlab"]
    where = describe(device)
    if args.peak_tflops:
        peak, peak_source = args.peak_tflops, "--peak-tflops"
    elif device.type == "cuda":
        peak, peak_source = peak_tflops(where, dtype_name(dtype))
    else:
        peak, peak_source = None, f"not computed on {device.type}"
    flops = bare["flops_per_token"]
    return {
        "model": args.model, "device": where, "dtype": dtype_name(dtype), "imitlab_precision": ours["precision"],
        "batch": args.batch, "block": args.block, "steps": args.steps, "rounds": args.rounds,
        "gradient_checkpointing": args.gradient_checkpointing,
        "runs_tokens_per_s": {k: [round(x["tokens_per_s"], 1) for x in rs] for k, rs in runs.items()},
        "bare": bare, "imitlab": ours, "ratio": ours["tokens_per_s"] / bare["tokens_per_s"],
        "flops_per_token": flops, "peak_tflops": peak, "peak_source": peak_source,
        "bare_mfu": mfu(flops, bare["tokens_per_s"], peak), "imitlab_mfu": mfu(flops, ours["tokens_per_s"], peak),
        "packing_efficiency": ours["packing"]["packing_efficiency"],
    }  # fmt: skip


def report(result: dict[str, Any]) -> None:
    def mfu_text(value: float | None) -> str:
        return f"MFU {value:.1%}" if value is not None else "MFU n/a"

    bare, ours = result["bare"], result["imitlab"]
    memory = "peak_gpu_gib" if "peak_gpu_gib" in bare else "peak_rss_gib"
    print(f"runs (tokens/s): {result['runs_tokens_per_s']}")
    amp = "no autocast" if result["dtype"] == "fp32" else "autocast, fp32 master weights"
    print(f"device {result['device']}, {result['dtype']} ({amp}); imitlab ran {result['imitlab_precision']}")
    print(f"model {result['model']}, batch {result['batch']} x block {result['block']}, {result['steps']} steps "
          f"(first is warm-up), {result['flops_per_token'] / 1e9:.2f} GFLOP/token")  # fmt: skip
    peak = f"{result['peak_tflops']} TFLOP/s" if result["peak_tflops"] else "none"
    print(f"assumed peak: {peak} ({result['peak_source']})")
    print(f"bare PyTorch loop : {bare['tokens_per_s']:9.1f} tokens/s, {mfu_text(result['bare_mfu'])}, "
          f"{memory} {bare[memory]:.2f}")  # fmt: skip
    print(f"imitlab train     : {ours['tokens_per_s']:9.1f} tokens/s, {mfu_text(result['imitlab_mfu'])}, "
          f"{memory} {ours[memory]:.2f}")  # fmt: skip
    print(f"ratio imitlab/bare: {result['ratio']:.3f} (target >= 0.9)")
    print(f"packing efficiency: {result['packing_efficiency']:.4f} (target >= 0.95)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model spec (packaged name, hf:DIR)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps, for both sides")
    p.add_argument("--dtype", default="auto", help="auto | bf16 | fp16 | fp32 compute dtype, for both sides")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--conversations", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2, help="alternate the two sides this many times; best of each")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the assumed peak (dense, TFLOP/s)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--child", choices=["bare", "imitlab"])
    p.add_argument("--data")
    p.add_argument("--out")
    return p


def main() -> None:
    args = parser().parse_args()
    if args.child:
        child(args)
        return
    result = run_benchmark(args)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
