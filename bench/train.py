"""Benchmark: `imitlab train` against a bare PyTorch loop on the same model, batch and sequence length.

Both run in child processes of this one run (so each reports its own peak RSS), on the same packed
blocks of real teacher conversations (Alpaca-GPT4 sample from $IMITLAB_DATA), full fine-tuning with AdamW.
Throughput counts block tokens per optimizer step over the timed steps (the first step is warm-up).

    python bench/train.py [--model smollm2-135m-instruct] [--steps 6] [--batch 4] [--block 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def conversations(n: int) -> list[dict]:
    from imitlab.config import data_dir

    rows = json.loads((data_dir() / "alpaca_gpt4_demo" / "alpaca_en_demo.json").read_text())[:n]
    return [
        {
            "id": f"alpaca_gpt4:{i}",
            "messages": [
                {"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")},
                {"role": "assistant", "content": r["output"]},
            ],
        }
        for i, r in enumerate(rows)
    ]


def bare_loop(args: argparse.Namespace, data: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from imitlab.data.schema import read_conversations
    from imitlab.models.spec import parse_spec, resolve_hf
    from imitlab.models.tokenizer import load_tokenizer
    from imitlab.train.packing import build_rows, collate

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    rows, _ = build_rows(tokenizer, read_conversations(data), block_size=args.block, packing=True)
    model = AutoModelForCausalLM.from_pretrained(resolve_hf(parse_spec(args.model)), dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = torch.utils.data.DataLoader(rows, batch_size=args.batch, collate_fn=collate(tokenizer.pad_token_id))
    times = []
    for step, batch in enumerate(batches):
        if step == args.steps:
            break
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    timed = times[1:]
    return {"tokens_per_s": args.batch * args.block * len(timed) / sum(timed), "steps": len(times)}


def imitlab_train(args: argparse.Namespace, data: Path, out: Path) -> dict:
    from imitlab.train.sft_trainer import train
    from imitlab.train.train_config import TrainConfig

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
            save_steps=10_000,
            logging_steps=1,
        )
    )
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [x["tokens_per_s"] for x in lines if "tokens_per_s" in x][1:]  # drop the warm-up step
    # Harmonic mean = total tokens / total time over the timed steps.
    return {"tokens_per_s": len(rates) / sum(1 / r for r in rates), "packing": manifest["packing"]}


def child(args: argparse.Namespace) -> None:
    data, out = Path(args.data), Path(args.out)
    result = bare_loop(args, data) if args.child == "bare" else imitlab_train(args, data, out)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two sides this many times; best of each")
    parser.add_argument("--child", choices=["bare", "imitlab"])
    parser.add_argument("--data")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from imitlab.data.schema import write_conversations

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "conversations.jsonl"
        write_conversations(data, conversations(args.conversations))
        runs: dict[str, list[dict]] = {"bare": [], "imitlab": []}
        # Alternate the sides and keep each side's fastest run: on a shared machine the load changes between
        # runs, and one run per side confounds the ratio with it.
        for r in range(args.rounds):
            for kind in ("bare", "imitlab"):
                out = Path(tmp) / f"{kind}-{r}"
                cmd = [sys.executable, __file__, "--child", kind, "--data", str(data), "--out", str(out),
                       "--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch),
                       "--block", str(args.block)]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                runs[kind].append(json.loads(line.removeprefix("RESULT ")))
        results = {kind: max(rs, key=lambda x: x["tokens_per_s"]) for kind, rs in runs.items()}
        for kind, rs in runs.items():
            print(f"{kind} runs (tokens/s): {[round(x['tokens_per_s'], 1) for x in rs]}")
    bare, ours = results["bare"], results["imitlab"]
    ratio = ours["tokens_per_s"] / bare["tokens_per_s"]
    print(f"model {args.model}, batch {args.batch} x block {args.block}, {args.steps} steps (first is warm-up)")
    print(f"bare PyTorch loop : {bare['tokens_per_s']:7.1f} tokens/s, peak RSS {bare['peak_rss_gib']:.2f} GiB")
    print(f"imitlab train     : {ours['tokens_per_s']:7.1f} tokens/s, peak RSS {ours['peak_rss_gib']:.2f} GiB")
    print(f"ratio imitlab/bare: {ratio:.3f} (target >= 0.9)")
    print(f"packing efficiency: {ours['packing']['packing_efficiency']:.4f} (target >= 0.95)")


if __name__ == "__main__":
    main()
