"""Assemble what bench/gpu_check.py needs on a GPU machine that has no network, in one git-ignored folder.

Weights cannot travel (the copy is limited to 64 MiB, the repo included), so the check builds its models from
real configs with random weights. This writes, under ``--out`` (default ``gpu_check_pack/``)::

    manifest.json              what is here: models (config, tokenizer, parameter counts), data, wheels, sizes
    models/<name>/config.json  each packaged model's config (from its converted HF copy, else its GGUF header)
    tokenizers/<sha12>/        tokenizer files, once per distinct tokenizer (the two Qwen models share one)
    data/                      the benchmark and prompt files the check reads (an $IMITLAB_DATA subset)
    wheels/                    cp312 manylinux or pure-Python wheels of what the GPU image lacks (../shared/GPU.md)

    python bench/gpu_pack.py [--out gpu_check_pack] [--models NAME ...] [--no-wheels]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
# The $IMITLAB_DATA folders the check reads: training conversations, MMLU, HumanEval, the sweep's judge prompts.
DATA = ["alpaca_gpt4_demo", "mmlu", "humaneval", "koala_test_set"]
# What the GPU image lacks for imitlab's train/eval/sweep paths and for lm-eval (../shared/GPU.md), with the
# packages the venv resolves them to; anything in the image's own torch/transformers stack stays out, since a
# second copy first on PYTHONPATH would shadow the image's matching versions.
ROOTS = ["openai", "lm_eval", "datasketch", "rouge_score", "typer", "typing_extensions", "anyio"]
IMAGE_HAS = [
    "torch", "transformers", "accelerate", "peft", "safetensors", "tokenizers", "numpy", "scipy", "pandas",
    "pyarrow", "pyyaml", "jinja2", "httpx", "httpcore", "rich", "matplotlib", "pytest", "psutil", "huggingface-hub",
    "filelock", "fsspec", "packaging", "regex", "tqdm", "requests", "urllib3", "certifi", "idna", "charset-normalizer",
    "click", "h11", "markupsafe", "pygments", "markdown-it-py", "mdurl", "python-dateutil", "six", "pytz", "tzdata",
    "pillow", "kiwisolver", "fonttools", "cycler", "contourpy", "pyparsing", "sympy", "networkx", "mpmath",
    "setuptools", "hf-xet", "shellingham", "iniconfig", "pluggy",
]  # fmt: skip
# Needed by neither path the check takes: lm-eval imports scikit-learn (13 MB) only inside metrics it does not use.
LEAVE_OUT = ["scikit-learn", "joblib", "threadpoolctl"]
SDIST_ONLY = {"rouge-score", "sqlitedict", "word2number"}  # no wheels on the index: built here (pure Python)


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _copy_tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- models ---------------------------------------------------------------------------------------------------
def _sources(name: str) -> tuple[Path | None, Path | None]:
    """The packaged model's converted HF folder (if converted) and its GGUF (if assembled)."""
    from imitlab.models.catalog import get_packaged
    from imitlab.models.packaged import gguf_cache_path, hf_cache_path

    model = get_packaged(name)
    hf, gguf = hf_cache_path(model, None), gguf_cache_path(model, None)
    return (hf if (hf / "config.json").is_file() else None), (gguf if gguf.is_file() else None)


def pack_model(name: str, out: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from imitlab.train.flops import matmul_parameters

    hf, gguf = _sources(name)
    if hf is not None:
        config, tokenizer, source = AutoConfig.from_pretrained(hf), AutoTokenizer.from_pretrained(hf), str(hf)
    elif gguf is not None:  # the GGUF header holds the config and the vocabulary; no tensor is read
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        source = str(gguf)
    else:
        raise SystemExit(f"{name}: not in the cache; run `imitlab models pull {name} --no-convert` first")
    config.__dict__.pop("quantization_config", None)  # a GGUF-read config remembers the file's quantisation
    model_dir = out / "models" / name
    model_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        digest = hashlib.sha256(Path(tmp, "tokenizer.json").read_bytes()).hexdigest()[:12]
        dest = out / "tokenizers" / digest
        if not dest.exists():
            shutil.copytree(tmp, dest)
    with torch.device("meta"):
        shape = AutoModelForCausalLM.from_config(config)
    return {
        "config": str(model_dir.relative_to(out) / "config.json"),
        "tokenizer": str(dest.relative_to(out)),
        "source": source,
        "model_type": config.model_type,
        "parameters": sum(p.numel() for p in shape.parameters()),
        "matmul_parameters": matmul_parameters(shape),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }


# -- data and wheels ------------------------------------------------------------------------------------------
def pack_data(out: Path) -> list[str]:
    from imitlab.config import data_dir

    root = data_dir()
    for name in DATA:
        dest = out / "data" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(root / name, dest)
    return DATA


def _closure(roots: list[str], skip: set[str]) -> dict[str, str]:
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        key = _key(name)
        if key in found or key in skip:
            continue
        dist = md.distribution(name)
        found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return found


def pack_wheels(out: Path) -> dict[str, str]:
    """Download (or, for sdist-only packages, build) one wheel per needed package at the venv's version."""
    wanted = _closure(ROOTS, {_key(n) for n in IMAGE_HAS + LEAVE_OUT})
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    binary = [f"{name}=={version}" for name, version in sorted(wanted.items()) if name not in SDIST_ONLY]
    subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform",
         "manylinux2014_x86_64", "-d", str(wheels), *binary],
        check=True,
    )  # fmt: skip
    built = [f"{name}=={version}" for name, version in sorted(wanted.items()) if name in SDIST_ONLY]
    if built:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), *built], check=True)
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "gpu_check_pack")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheels (a CPU smoke run needs none)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"models": {}, "data": [], "wheels": {}}
    for name in args.models:
        manifest["models"][name] = pack_model(name, out)
        print(f"model {name}: {manifest['models'][name]['parameters'] / 1e6:.0f}M parameters")
    manifest["data"] = pack_data(out)
    if not args.no_wheels:
        manifest["wheels"] = pack_wheels(out)
    manifest["bytes"] = _copy_tree_size(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    repo = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    repo_bytes = sum((REPO / p.decode()).stat().st_size for p in repo if p and (REPO / p.decode()).is_file())
    total = (manifest["bytes"] + repo_bytes) / 2**20
    print(f"{out}: {manifest['bytes'] / 2**20:.1f} MiB; with the repo's tracked files {total:.1f} MiB (limit 64)")
    if total > 64:
        raise SystemExit("over the 64 MiB a GPU run can carry: drop --models or data")


if __name__ == "__main__":
    main()
