"""Where benchmark and prompt data comes from: local files, a local ``datasets`` folder, or the Hugging Face hub.

Every named data set imitlab reads (a benchmark such as ``mmlu``, a prompt set such as ``mt-bench``) is found
the same way, first match wins:

1. an explicit reference for that name: ``--dataset NAME=REF`` where a command takes it, or the environment
   variable ``IMITLAB_DATASET_<NAME>`` (``IMITLAB_DATASET_MMLU``, ``IMITLAB_DATASET_MT_BENCH``);
2. the local files under the data directory (``--data-dir`` or ``$IMITLAB_DATA``, laid out like shared/data);
3. the data set's hub id, through ``datasets.load_dataset``. ``datasets`` caches what it downloads (in
   ``$HF_DATASETS_CACHE``); with ``HF_HUB_OFFLINE=1`` it reads only that cache.

A REF is one of::

    hf:OWNER/NAME[:CONFIG]           a hub dataset, as load_dataset(OWNER/NAME, CONFIG) reads it
    hf://datasets/OWNER/NAME/FILE    one data file in a hub repository (JSON, JSONL, CSV or parquet)
    PATH                             a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk,
                                     a data file (.parquet, .json, .jsonl, .csv, optionally .gz), or a
                                     folder of data files (a downloaded hub snapshot)

Rows read through ``datasets`` have the hub data set's columns (a local copy of ``cais/mmlu`` has ``question,
subject, choices, answer``); each benchmark or prompt set maps them to the items its local files give. When
nothing serves a data set, the error names the local path and the environment variables that would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imitlab.config import DATA_ENV
from imitlab.errors import ImitlabError
from imitlab.extras import require

Row = dict[str, Any]
_DATA_FILE = re.compile(r"\.(parquet|jsonl?|csv)(\.gz)?$")
_BUILDERS = {"parquet": "parquet", "json": "json", "jsonl": "json", "csv": "csv"}


class DataSourceError(ImitlabError):
    """A data set could not be read from any of the places it may come from (the message says which would serve)."""


@dataclass(frozen=True)
class HubRef:
    """A data set on the Hugging Face hub: a dataset id (and config), or one data file in a hub repository."""

    path: str  # "cais/mmlu", or "hf://datasets/OWNER/NAME/FILE"
    config: str | None = None

    @property
    def is_file(self) -> bool:
        return self.path.startswith("hf://")

    def __str__(self) -> str:
        if self.is_file:
            return self.path
        return f"hf:{self.path}" + (f":{self.config}" if self.config else "")


DatasetRef = HubRef | Path


def parse_ref(text: str, where: str = "dataset") -> DatasetRef:
    """``hf:ID[:CONFIG]``, ``hf://datasets/...`` or a local path (which must exist)."""
    text = text.strip()
    if text.startswith("hf://"):
        if not _DATA_FILE.search(text):
            raise DataSourceError(f"{where}: {text} is not a data file (.parquet, .json, .jsonl or .csv)")
        return HubRef(text)
    if text.startswith("hf:"):
        dataset, _, config = text[3:].partition(":")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset):
            raise DataSourceError(f"{where}: {text!r} is not a hub dataset id (hf:OWNER/NAME[:CONFIG])")
        return HubRef(dataset, config or None)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataSourceError(
            f"{where}: {path} does not exist (expected a datasets folder, a data file, or hf:OWNER/NAME[:CONFIG])"
        )
    return path.resolve()


def env_var(name: str) -> str:
    """The environment variable that points one data set at a REF: ``mt-bench`` -> ``IMITLAB_DATASET_MT_BENCH``."""
    return "IMITLAB_DATASET_" + re.sub(r"\W", "_", name).upper()


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``["mmlu=hf:cais/mmlu:all", "koala=./koala"]`` -> {name: REF}; a malformed pair is a clear error."""
    overrides = {}
    for pair in pairs:
        name, sep, ref = pair.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise DataSourceError(f"--dataset {pair!r}: expected NAME=REF (REF: hf:OWNER/NAME[:CONFIG] or a path)")
        overrides[name.strip()] = ref.strip()
    return overrides


# -- where a named data set comes from ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Located:
    """The place one data set is read from, and what would serve it instead (for error messages)."""

    name: str
    origin: Literal["files", "datasets"]
    data_dir: Path | None = None  # origin "files": the data directory holding the set's files
    ref: DatasetRef | None = None  # origin "datasets": the explicit REF or the hub default
    looked: str = ""  # hub default: why the local files did not serve
    instead: str = ""  # hub default: what would serve it locally

    def describe(self) -> dict[str, str]:
        """For manifests: where the rows came from."""
        if self.origin == "files":
            return {"origin": "files", "data_dir": str(self.data_dir)}
        kind = "hub" if isinstance(self.ref, HubRef) else "local datasets"
        return {"origin": kind, "ref": str(self.ref)}


def locate(
    name: str,
    files: Sequence[str],
    hub: HubRef | None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Located:
    """Where ``name`` is read from: its explicit REF, else its ``files`` under the data directory, else ``hub``."""
    variable = env_var(name)
    explicit = (overrides or {}).get(name) or os.environ.get(variable)
    if explicit:
        where = "--dataset" if (overrides or {}).get(name) else f"${variable}"
        return Located(name, "datasets", ref=parse_ref(explicit, f"{name} ({where})"))
    root, looked = _data_root(data_dir)
    missing = [str(root / f) for f in files if not (root / f).exists()] if root else []
    if root is not None and not missing:
        return Located(name, "files", data_dir=root)
    if root is not None:
        looked = f"data not found: {', '.join(missing)} (data directory {root})"
    local = f"pass --data-dir DIR or set ${DATA_ENV}=DIR to a directory laid out like shared/data "
    local += f"(with {', '.join(files)})"
    if hub is None:
        raise DataSourceError(
            f"{name}: {looked}. P{local[1:]}, or set {variable}=REF (a datasets folder, data files or hf:OWNER/NAME)."
        )
    instead = f"{local}, or set {variable}=REF to a datasets folder or data files with {hub}'s columns"
    return Located(name, "datasets", ref=hub, looked=looked, instead=instead)


def _data_root(override: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """The data directory, or None and why not (said the way imitlab.config.data_dir says it)."""
    looked = []
    for source, value in (("--data-dir", override), (f"${DATA_ENV}", os.environ.get(DATA_ENV))):
        if value:
            path = Path(value).expanduser()
            if path.is_dir():
                return path.resolve(), ""
            looked.append(f"{source} = {path} (not a directory)")
    return None, "; ".join(looked) or f"neither --data-dir nor ${DATA_ENV} is set"


# -- reading rows through `datasets` ----------------------------------------------------------------------------
def load_rows(located: Located, split: str, *, primary: bool = True) -> list[Row]:
    """The rows of ``split`` from a located ``datasets`` source.

    ``primary`` is the split a set is scored or imported from; a source holding a single split (one data file,
    a saved ``Dataset``) serves it under any name. Other splits (few-shot pools) must exist by name, so test
    items are never used as examples by accident.
    """
    ref = located.ref
    if located.origin != "datasets" or ref is None:
        raise ValueError(f"{located.name} is read from files, not through datasets")
    require("data", f"reading {located.name} from {ref}")
    try:
        return _load(ref, split, primary)
    except Exception as exc:  # datasets/hub errors of every kind: say which source failed and what serves instead
        reason = str(exc) if isinstance(exc, DataSourceError) else _reason(exc)
        if located.looked:  # the hub default, taken because the local files were not there
            message = (
                f"{located.name}: {located.looked}; its hub copy {ref} could not be loaded (split {split!r}): "
                f"{reason}. To serve it locally, {located.instead}."
            )
        else:
            message = f"{located.name}: could not load {ref} (split {split!r}): {reason}"
        raise DataSourceError(message) from (None if isinstance(exc, DataSourceError) else exc)


def _load(ref: DatasetRef, split: str, primary: bool) -> list[Row]:
    import datasets

    if isinstance(ref, HubRef):
        if ref.is_file:
            if not primary:
                raise DataSourceError(f"{ref} is one file: it has no {split!r} split")
            builder = _BUILDERS[_DATA_FILE.search(ref.path).group(1)]  # type: ignore[union-attr]
            return datasets.load_dataset(builder, data_files=ref.path, split="train").to_list()
        return datasets.load_dataset(ref.path, ref.config, split=split).to_list()
    if (ref / "dataset_dict.json").is_file() or (ref / "state.json").is_file():
        loaded = datasets.load_from_disk(str(ref))
    elif ref.is_file():
        match = _DATA_FILE.search(ref.name)
        if match is None:
            raise DataSourceError(f"{ref}: not a data file (.parquet, .json, .jsonl or .csv, optionally .gz)")
        loaded = datasets.load_dataset(_BUILDERS[match.group(1)], data_files=str(ref))
    else:
        loaded = datasets.load_dataset(str(ref))  # a folder of data files: splits from the file names
    return _pick_split(loaded, split, primary, ref).to_list()


def _pick_split(loaded: Any, split: str, primary: bool, ref: DatasetRef) -> Any:
    """The split to read. A source with one split (a saved Dataset, one data file) serves the primary role under
    any name, and a few-shot split only when saved under that name: the pool must never be the scored items."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        saved_as = str(loaded.split) if loaded.split is not None else None
        if primary or saved_as == split:
            return loaded
        raise DataSourceError(
            f"{ref} holds one split ({saved_as or 'unnamed'}); the {split!r} split is needed too: save a "
            "DatasetDict with both"
        )
    if len(loaded) == 1:
        if primary:
            return next(iter(loaded.values()))
        raise DataSourceError(
            f"{ref} holds one split ({next(iter(loaded))}), read as the items; the few-shot examples need their "
            f"own {split!r} split: save a DatasetDict with both"
        )
    if split in loaded:
        return loaded[split]
    raise DataSourceError(f"{ref} has no split {split!r} (it has: {', '.join(loaded)})")


def _reason(exc: BaseException) -> str:
    """One line: the offline case said plainly, else the error's own first line."""
    import datasets

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if datasets.config.HF_HUB_OFFLINE and isinstance(exc, OSError):  # ConnectionError, FileNotFoundError, ...
        return f"offline (HF_HUB_OFFLINE is set) and not in the datasets cache ({type(exc).__name__}: {text})"
    return f"{type(exc).__name__}: {text}"


def rows_sha256(rows: Sequence[Row]) -> str:
    """A digest of the rows' content, whatever they were read from (for manifests and resume keys)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()
