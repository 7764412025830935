"""Cached pipeline stages: each stage's output lives in ``RUN/stages/<stage>-<hash>/``.

The hash covers everything the stage depends on: its parameters, the hashes of its input files and the
directory names (so the hashes) of the stages it reads. A stage is done when its ``DONE.json`` exists
(written atomically, last); an interrupted stage has no marker and runs again, and the stages
themselves resume inside their directory (collection, training and evaluation all append or checkpoint).
Changing one parameter changes only the hashes downstream of it, so an extended sweep redoes only that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imitlab.fileio import atomic_write_text

log = logging.getLogger(__name__)
DONE = "DONE.json"


def stage_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


class StageCache:
    def __init__(self, run_dir: Path, on_event: Callable[[str, str], None] | None = None) -> None:
        self.root = run_dir / "stages"
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_event = on_event or (lambda what, stage: None)
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.stage_seconds = 0.0  # what every stage this sweep used took when it ran, reused ones included

    def path(self, stage: str, key: dict[str, Any]) -> Path:
        return self.root / f"{stage}-{stage_hash({'stage': stage, **key})}"

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[Path], Any]) -> Path:
        """Run ``fn(directory)`` unless this exact stage already finished; return the directory."""
        directory = self.path(stage, key)
        if (directory / DONE).is_file():
            self.reused.append(directory.name)
            self.stage_seconds += _seconds(directory / DONE)
            self.on_event("cached", directory.name)
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "key.json", json.dumps({"stage": stage, **key}, indent=2, default=str))
        self.on_event("start", directory.name)
        started = time.perf_counter()
        fn(directory)
        seconds = round(time.perf_counter() - started, 1)
        atomic_write_text(directory / DONE, json.dumps({"stage": stage, "seconds": seconds}))
        self.ran.append(directory.name)
        self.stage_seconds += seconds
        self.on_event("done", directory.name)
        return directory


def _seconds(done: Path) -> float:
    try:
        return float(json.loads(done.read_text()).get("seconds") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0  # an older or hand-made marker: the stage counts as done, its time as unknown
