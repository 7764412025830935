"""Does imitlab collect keep every slot busy? A contention-proof check against a loopback server.

The server (127.0.0.1, threads) answers every chat request after a fixed ``--latency`` of *sleep*, like
an ideal server with ``--slots`` parallel slots, so the ceiling is ``slots / latency`` requests/s and
CPU contention from other processes barely moves it. Measured in one process: a sequential openai loop,
raw ``AsyncOpenAI`` + ``asyncio.gather`` with ``slots`` in flight (saturated), and :func:`collect` (cache
off, fsync'd output, manifest) at concurrency 1, 2, 4, 8. Prints requests/s and ratios.

    .venv/bin/python bench/collect_overhead.py [--requests 64] [--latency 0.1] [--slots 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai

from imitlab.collect import CollectConfig, collect
from imitlab.models.client import ChatClient
from imitlab.prompts import PromptRecord, write_prompt_set


def serve(latency: float, slots: int) -> ThreadingHTTPServer:
    gate = threading.Semaphore(slots)  # at most `slots` requests are "decoding" at once, like llama-server

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with gate:
                time.sleep(latency)
            body = json.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * 32},
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 32, "total_tokens": 42},
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--slots", type=int, default=8)
    args = ap.parse_args()
    httpd = serve(args.latency, args.slots)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(args.requests)]
    rows = []

    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    start = time.perf_counter()
    for m in msgs:
        client.chat.completions.create(model="m", messages=m)
    rows.append(("sequential (openai loop)", time.perf_counter() - start))

    async def raw() -> float:
        aclient = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        sem = asyncio.Semaphore(args.slots)

        async def one(m: list[dict[str, str]]) -> None:
            async with sem:
                await aclient.chat.completions.create(model="m", messages=m)

        t = time.perf_counter()
        await asyncio.gather(*(one(m) for m in msgs))
        return time.perf_counter() - t

    rows.append((f"saturated (raw async, {args.slots} in flight)", asyncio.run(raw())))
    for c in (1, 2, 4, 8):
        with tempfile.TemporaryDirectory() as tmp:
            write_prompt_set(
                Path(tmp) / "p.jsonl", [PromptRecord(id=f"q{i}", turns=[f"q{i}"]) for i in range(len(msgs))]
            )
            cfg = CollectConfig(teacher="openai:m", base_url=url, prompts=Path(tmp) / "p.jsonl", out=Path(tmp) / "o",
                                concurrency=c, use_cache=False, progress=False)  # fmt: skip
            t = time.perf_counter()
            result = collect(cfg, client=ChatClient(url, "m"))
            rows.append((f"imitlab collect, concurrency {c}", time.perf_counter() - t))
            assert result.manifest["counts"]["collected"] == len(msgs)
    httpd.shutdown()
    ceiling = args.slots / args.latency
    seq, sat = len(msgs) / rows[0][1], len(msgs) / rows[1][1]
    print(f"{args.requests} requests, {args.latency * 1000:.0f} ms each, {args.slots} slots: "
          f"ceiling {ceiling:.1f} req/s")  # fmt: skip
    print(f"{'run':<40} {'req/s':>7} {'x seq':>6} {'/ sat':>6} {'/ ceiling':>9}")
    for name, secs in rows:
        rate = len(msgs) / secs
        print(f"{name:<40} {rate:>7.1f} {rate / seq:>6.2f} {rate / sat:>6.2f} {rate / ceiling:>9.2f}")


if __name__ == "__main__":
    main()
