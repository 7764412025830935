"""Cached pipeline stages: each stage's output lives in ``RUN/stages/<stage>-<hash>/``.

The hash covers everything the stage depends on: its parameters, the hashes of its input files and the
directory names (so the hashes) of the stages it reads. A stage is done when its ``DONE.json`` exists
(written atomically, last); an interrupted stage has no marker and runs again, and the stages
themselves resume inside their directory (collection, training and evaluation all append or checkpoint).
Changing one parameter changes only the hashes downstream of it, so an extended sweep redoes only that.

Several processes may share one run directory (``imitlab sweep --executor ray``, or two sweeps started by
hand): a stage runs only while its process holds an exclusive ``flock`` on ``<stage dir>/.lock``, so two
processes never run the same stage at once, and one that waited finds the marker and reuses the stage. The
kernel drops the lock when its holder dies (SIGKILL included), so a lock never outlives its owner; the file
keeps the last owner's pid and host so the next one can say whose run it takes over. Every attempt appends
a line to ``<stage dir>/attempts.jsonl``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text

log = logging.getLogger(__name__)
DONE = "DONE.json"
LOCK = ".lock"
ATTEMPTS = "attempts.jsonl"


def stage_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stage_path(root: Path, stage: str, key: dict[str, Any]) -> Path:
    """Where ``stage`` with ``key`` lives under ``root`` (``RUN/stages``): the same on every machine."""
    return root / f"{stage}-{stage_hash({'stage': stage, **key})}"


@dataclass(frozen=True)
class StageOutcome:
    """What one request for a stage did: ran it here, or found it done (before or after waiting for its lock)."""

    directory: Path
    ran: bool
    seconds: float  # the stage's own run time (from its marker when it was reused)
    host: str
    pid: int


def owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3)}


@contextlib.contextmanager
def stage_lock(directory: Path, wait_note: Callable[[dict[str, Any]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Hold the stage's exclusive lock; yield the previous owner's record ({} if none was written).

    Blocks while another live process holds it. The descriptor is inheritable, so a child the stage starts
    (accelerate's launcher) holds the lock with it and a retried stage waits for that child too.
    """
    path = directory / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_note is not None:
                wait_note(_read_owner(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without locks (some FUSE mounts): no safe sharing there
            raise ImitlabError(f"{path}: cannot lock ({exc.strerror}); put the run directory on a filesystem "
                               "with flock support (local disk, NFSv4, Lustre with -o flock)") from None  # fmt: skip
        previous = _read_owner(fd)
        os.set_inheritable(fd, True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner()).encode(), 0)
        yield previous
    finally:
        os.close(fd)  # releases the lock (children that inherited it release theirs when they exit)


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        value = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def run_stage(
    root: Path, stage: str, key: dict[str, Any], fn: Callable[[Path], Any], on_event: Callable[[str, str], None]
) -> StageOutcome:
    """Run ``fn(directory)`` unless this exact stage already finished, under the stage's lock."""
    directory = stage_path(root, stage, key)
    if (directory / DONE).is_file():  # the marker is final: no lock needed to trust it
        return reused_outcome(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def waiting(holder: dict[str, Any]) -> None:
        on_event("wait", f"{directory.name} (held by pid {holder.get('pid')} on {holder.get('host')})")

    with stage_lock(directory, waiting) as previous:
        if (directory / DONE).is_file():  # the holder we waited for finished it
            return reused_outcome(directory)
        if previous:
            # Its owner died (or stopped) before the marker: this run takes over and resumes inside the directory.
            on_event("rerun", f"{directory.name} (unfinished by pid {previous.get('pid')} on {previous.get('host')})")
        me = owner()
        with open(directory / ATTEMPTS, "a", encoding="utf-8") as f:  # append-only: one line per attempt
            f.write(json.dumps(me) + "\n")
        atomic_write_text(directory / "key.json", json.dumps({"stage": stage, **key}, indent=2, default=str))
        on_event("start", directory.name)
        started = time.perf_counter()
        fn(directory)
        seconds = round(time.perf_counter() - started, 1)
        done = {"stage": stage, "seconds": seconds, "host": me["host"], "pid": me["pid"], "finished": time.time()}
        atomic_write_text(directory / DONE, json.dumps(done))
    on_event("done", directory.name)
    return StageOutcome(directory, True, seconds, me["host"], me["pid"])


def reused_outcome(directory: Path) -> StageOutcome:
    marker = _marker(directory / DONE)
    return StageOutcome(directory, False, _seconds(marker), str(marker.get("host", "")), int(marker.get("pid") or 0))


class StageCache:
    def __init__(self, run_dir: Path, on_event: Callable[[str, str], None] | None = None) -> None:
        self.root = run_dir / "stages"
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_event = on_event or (lambda what, stage: None)
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.stage_seconds = 0.0  # what every stage this sweep used took when it ran, reused ones included

    def path(self, stage: str, key: dict[str, Any]) -> Path:
        return stage_path(self.root, stage, key)

    def record(self, outcome: StageOutcome) -> None:
        """Count one request's outcome (the sweep's ``stages_run``/``stages_reused``), wherever it ran."""
        (self.ran if outcome.ran else self.reused).append(outcome.directory.name)
        self.stage_seconds += outcome.seconds
        if not outcome.ran:
            self.on_event("cached", outcome.directory.name)

    def run(self, stage: str, key: dict[str, Any], fn: Callable[[Path], Any]) -> Path:
        """Run ``fn(directory)`` unless this exact stage already finished; return the directory."""
        outcome = run_stage(self.root, stage, key, fn, self.on_event)
        self.record(outcome)
        return outcome.directory


def _marker(done: Path) -> dict[str, Any]:
    try:
        value = json.loads(done.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(marker: dict[str, Any]) -> float:
    try:
        return float(marker.get("seconds") or 0.0)
    except (ValueError, TypeError):
        return 0.0  # an older or hand-made marker: the stage counts as done, its time as unknown
