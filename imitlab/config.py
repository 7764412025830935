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
