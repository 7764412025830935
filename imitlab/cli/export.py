"""``imitlab export gguf``: a thin CLI over :func:`imitlab.models.export.export_gguf`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imitlab.cli.options import CacheOpt
from imitlab.cli.output import console
from imitlab.models.export import QUANTS

export_app = typer.Typer(help="Export a trained student for serving outside Python (llama.cpp, Ollama).")


@export_app.command("gguf")
def export_gguf_cmd(
    run: Annotated[Path, typer.Argument(help="Training run directory (RUN/model), HF model dir or LoRA adapter.")],
    quant: Annotated[str, typer.Option(help=f"Quantization: {' | '.join(QUANTS)}.")] = "q8_0",
    out: Annotated[Path | None, typer.Option(help="GGUF file to write (default RUN/model-<quant>.gguf).")] = None,
    threads: Annotated[int | None, typer.Option(help="llama-quantize threads (q4_k_m; default: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    cache: CacheOpt = None,
) -> None:
    """Convert a run's model to one GGUF file with llama.cpp's own converter (LoRA adapters merged first)."""
    from imitlab.models.export import export_gguf, manifest_path

    with console.status(f"exporting {run} to GGUF ({quant}) ..."):
        result = export_gguf(run, quant=quant, out=out, cache=cache, threads=threads)
    if as_json:
        record = {"path": str(result.path), "quant": result.quant, "source": str(result.source),
                  "merged_lora": result.merged_lora, "bytes": result.bytes, "sha256": result.sha256,
                  "seconds": result.seconds, "manifest": str(manifest_path(result.path))}  # fmt: skip
        print(json.dumps(record))
        return
    merged = " (LoRA adapter merged into its base)" if result.merged_lora else ""
    console.print(f"[green]✓[/] {result.path}{merged}", soft_wrap=True)
    console.print(f"  {result.bytes / 1e6:.1f} MB, sha256 {result.sha256[:16]}, {result.seconds:.1f} s", soft_wrap=True)
    console.print(f"  serve it:  imitlab serve gguf:{result.path}", soft_wrap=True, markup=False)
    console.print(f"  chat:      imitlab chat gguf:{result.path} 'Hello'", soft_wrap=True, markup=False)
    console.print("  Ollama:    see docs/ecosystem.md (a Modelfile with FROM pointing at this file)", soft_wrap=True)
