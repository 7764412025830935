"""Where imitlab keeps things: one cache root, overridable by environment variable or flag."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "IMITLAB_CACHE"
DATA_ENV = "IMITLAB_DATA"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: the override, else $IMITLAB_CACHE, else $XDG_CACHE_HOME/imitlab, else ~/.cache/imitlab."""
    if override:
        root = Path(override)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "imitlab"
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The local data root (real benchmark and prompt files): the override, else $IMITLAB_DATA.

    Raises a clear error naming where it looked and how to point imitlab at the data.
    """
    from imitlab.errors import ImitlabError

    looked = []
    for source, value in (("--data-dir", override), (f"${DATA_ENV}", os.environ.get(DATA_ENV))):
        if value:
            path = Path(value).expanduser()
            if path.is_dir():
                return path.resolve()
            looked.append(f"{source} = {path} (not a directory)")
    if not looked:
        looked.append(f"neither --data-dir nor ${DATA_ENV} is set")
    raise ImitlabError(
        "data directory not found: " + "; ".join(looked) + f". Pass --data-dir DIR or set {DATA_ENV}=DIR "
        "(a directory laid out like shared/data: mmlu/, nq_open/, humaneval/, ...)."
    )
