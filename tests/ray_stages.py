"""Stage functions for tests/test_sweep_ray.py, in a module of their own with light imports: every stage runs in a
fresh Ray worker process, which imports this module to unpickle the function."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from imitlab.errors import ImitlabError


def _trace(d: Path, started: float, **extra: object) -> None:
    record = {"start": started, "end": time.time(), "pid": os.getpid(),
              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), **extra}  # fmt: skip
    (d / "trace.json").write_text(json.dumps(record))


def sleeper(d: Path, seconds: float = 2.0) -> None:
    started = time.time()
    time.sleep(seconds)
    _trace(d, started)


def resumable(d: Path) -> None:
    """Three steps, each recorded before the next; the first attempt lingers after step 1 (where it is killed)."""
    started = time.time()
    progress = d / "progress.txt"
    resumed_from = int(progress.read_text()) if progress.is_file() else 0
    for step in range(resumed_from, 3):
        progress.write_text(str(step + 1))
        if step == 0:
            time.sleep(120)
    _trace(d, started, resumed_from=resumed_from)


def broken(d: Path) -> None:
    raise ImitlabError("this stage always fails")
