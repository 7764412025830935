"""Collection throughput: imitlab collect vs a plain sequential openai loop, on one llama.cpp server.

One process, one ``llama-server`` with ``--slots`` parallel slots, the same prompts and the same fixed
completion length (``ignore_eos`` so every answer is exactly ``--max-tokens`` tokens). Measured, in order:

1. ``sequential``  a plain loop over the synchronous ``openai`` client, one request at a time (the baseline);
2. ``saturated``   raw ``AsyncOpenAI`` + ``asyncio.gather`` with ``--slots`` requests in flight, nothing else:
                   the server's saturated throughput, the ceiling for any client;
3. ``collect@c``   :func:`imitlab.collect.collect` (retries, cache lookups, fsync'd JSONL, manifest) at
                   concurrency c = 1, 2, 4, 8, response cache off so every request reaches the server.

Prints completion tokens/s for each and the ratios to ``sequential`` and to ``saturated`` (target: collect
at full concurrency >= 0.9 of saturated). ``--json FILE`` also writes the figures.

    .venv/bin/python bench/collect.py [--model smollm2-135m-instruct] [--prompts 16] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import openai

from imitlab.collect import CollectConfig, collect
from imitlab.models.client import ChatClient
from imitlab.models.server import LlamaServer
from imitlab.models.spec import parse_spec, resolve_gguf
from imitlab.prompts import PromptRecord, write_prompt_set

TOPICS = [
    "the water cycle", "how vaccines work", "the French revolution", "black holes", "compound interest",
    "photosynthesis", "the history of tea", "how a CPU works", "volcanoes", "the stock market", "honey bees",
    "plate tectonics", "the printing press", "jazz music", "antibiotics", "the moon landing",
]  # fmt: skip


def prompts(n: int) -> list[PromptRecord]:
    return [PromptRecord(id=f"b{i}", turns=[f"Explain {TOPICS[i % len(TOPICS)]} to a child. ({i})"]) for i in range(n)]


def sequential(base_url: str, model: str, recs: list[PromptRecord], params: dict) -> tuple[int, float]:
    client = openai.OpenAI(base_url=base_url, api_key="sk-none", max_retries=0)
    tokens, start = 0, time.perf_counter()
    for r in recs:
        resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": r.turns[0]}], **params)
        tokens += resp.usage.completion_tokens
    return tokens, time.perf_counter() - start


async def saturated(base_url: str, model: str, recs: list[PromptRecord], params: dict, slots: int) -> tuple[int, float]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-none", max_retries=0)
    sem = asyncio.Semaphore(slots)

    async def one(r: PromptRecord) -> int:
        async with sem:
            resp = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": r.turns[0]}], **params
            )
        return resp.usage.completion_tokens

    start = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(r) for r in recs)))
    elapsed = time.perf_counter() - start
    await client.close()
    return tokens, elapsed


def via_collect(base_url: str, model: str, recs: list[PromptRecord], max_tokens: int, c: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        write_prompt_set(Path(tmp) / "p.jsonl", recs)
        cfg = CollectConfig(
            teacher=model, prompts=Path(tmp) / "p.jsonl", out=Path(tmp) / "out", concurrency=c, temperature=0.0,
            max_tokens=max_tokens, extra_params={"extra_body": {"ignore_eos": True}}, use_cache=False,
            progress=False, timeout=600,
        )  # fmt: skip
        start = time.perf_counter()
        result = collect(cfg, client=ChatClient(base_url, model))
        elapsed = time.perf_counter() - start  # end to end: reading prompts, resume scan, manifest included
        assert result.manifest["counts"]["collected"] == len(recs), result.manifest["failures"]
        return result.manifest["tokens"]["completion_tokens"], elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="packaged name or gguf:PATH")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--slots", type=int, default=8, help="llama-server parallel slots")
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=1, help="repeat all runs, interleaved; report medians")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    spec = parse_spec(args.model)
    gguf = resolve_gguf(spec)
    recs = prompts(args.prompts)
    params = {"temperature": 0.0, "max_tokens": args.max_tokens, "extra_body": {"ignore_eos": True}}
    levels = [int(x) for x in args.concurrency.split(",")]
    names = ["sequential (openai loop)", f"saturated (raw async, {args.slots} in flight)"]
    names += [f"imitlab collect, concurrency {c}" for c in levels]
    rates: dict[str, list[float]] = {n: [] for n in names}
    tokens: dict[str, int] = {}
    with LlamaServer(gguf, alias=spec.name, parallel=args.slots, ctx_per_slot=256 + args.max_tokens,
                     threads=args.threads) as srv:  # fmt: skip
        url, model = srv.base_url, spec.name
        sequential(url, model, recs[:2], params)  # warm-up: page in the weights
        runs = [
            lambda: sequential(url, model, recs, params),
            lambda: asyncio.run(saturated(url, model, recs, params, args.slots)),
            *[(lambda c=c: via_collect(url, model, recs, args.max_tokens, c)) for c in levels],
        ]
        # Interleaved rounds: on a shared machine the load drifts, and every run should see the same drift.
        for _ in range(args.rounds):
            for name, run in zip(names, runs, strict=True):
                n, secs = run()
                tokens[name] = n
                rates[name].append(n / secs)
                print(f"  {name}: {n} tokens in {secs:.2f} s = {n / secs:.1f} tok/s", flush=True)
    med = {n: statistics.median(r) for n, r in rates.items()}
    base, sat = med[names[0]], med[names[1]]
    load = os.getloadavg()
    print(f"\n{spec.name}, {args.prompts} prompts x {args.max_tokens} tokens, {args.slots} slots, "
          f"{os.cpu_count()} CPUs, median of {args.rounds} round(s), load average {load[0]:.1f} at end")  # fmt: skip
    print(f"{'run':<44} {'tokens':>7} {'tok/s':>8} {'x seq':>6} {'/ sat':>6}")
    results = []
    for name in names:
        rate = med[name]
        print(f"{name:<44} {tokens[name]:>7} {rate:>8.1f} {rate / base:>6.2f} {rate / sat:>6.2f}")
        results.append({"run": name, "completion_tokens": tokens[name], "tok_s": round(rate, 2),
                        "tok_s_rounds": [round(r, 2) for r in rates[name]], "vs_sequential": round(rate / base, 3),
                        "vs_saturated": round(rate / sat, 3)})  # fmt: skip
    if args.json:
        summary = {"model": spec.name, "prompts": args.prompts, "max_tokens": args.max_tokens, "slots": args.slots,
                   "rounds": args.rounds, "cpus": os.cpu_count(), "load_avg": load,
                   "python": platform.python_version(), "results": results}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
