"""Hostile completions against the sandbox: each gets the verdict it deserves, and never costs another its own.

Every completion below completes the same small HumanEval-style problem, and they all run in one ``run_many``
batch, so one that deletes its files, kills its process or hangs shares the batch with the ones that pass.
A pass must mean the tests' own ``check(candidate)`` returned; the tricks try to fake that (exit 0 early,
exit hooks, fake markers, forged proofs, reaching the proof hook through frames, gc or /proc) or to leave
something behind on the host (files outside the sandbox, processes).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from imitlab.evals import sandbox
from imitlab.evals.sandbox import PROOF_EVENT, ExecResult, Limits, humaneval_program, run_many

PROBLEM = {
    "task_id": "Hostile/0",
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "test": (
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n"
    ),
    "entry_point": "add",
}
LIMITS = Limits(timeout_s=6.0, memory_mb=512)
KNOWN_NONCE = "5f1d3c0a9b8e7d6c5f4e3d2c1b0a9f8e"  # the scans below look for it by its hash, never by value
NONCE_SHA256 = hashlib.sha256(KNOWN_NONCE.encode()).hexdigest()
TRAP = Path(tempfile.gettempdir()) / f"imitlab-hostile-trap-{os.getpid()}"  # world-writable: only the hook guards it


@dataclass(frozen=True)
class Hostile:
    name: str
    body: str  # the completion: the function's body, and any module-level code after it
    expected: tuple[str, ...]  # the statuses this verdict may have
    stderr_has: tuple[str, ...] = ()  # what the sample must have reported (that the trick really ran)


def _body(code: str) -> str:
    """A completion from a function body written flush left (module-level code follows a line '#<top>')."""
    inner, _, top = textwrap.dedent(code).strip("\n").partition("#<top>\n")
    return textwrap.indent(inner, "    ") + "\n" + top


# A scan for the nonce through everything a sample can reach from frames, functions, modules and (if allowed)
# gc: any str/bytes of 32 characters whose sha256 is the nonce's. On a find it forges the proof everywhere.
_SCAN = f"""
import gc, hashlib, os, sys, types
NONCE_SHA256 = {NONCE_SHA256!r}
import time
found, seen, stats = [], set(), {{"proof_frames": 0, "f_code_denied": 0}}
stop_at = time.monotonic() + 2.5  # within the 6 s limit on a loaded machine, with time left to report
def look(root):
    todo = [(root, 0)]
    while todo and len(seen) < 400000 and time.monotonic() < stop_at:
        o, d = todo.pop()
        if id(o) in seen or d > 25:
            continue
        seen.add(id(o))
        try:
            if isinstance(o, (str, bytes)):
                b = o.encode("utf-8", "surrogatepass") if isinstance(o, str) else o
                if len(b) == 32 and hashlib.sha256(b).hexdigest() == NONCE_SHA256:
                    found.append(b)
                continue
            more = []
            if isinstance(o, dict):
                more = list(o.keys()) + list(o.values())
            elif isinstance(o, (list, tuple, set, frozenset)):
                more = list(o)
            elif isinstance(o, types.FrameType):
                if "_write" in o.f_locals:
                    stats["proof_frames"] += 1
                more = [o.f_locals, o.f_globals, o.f_back, o.f_builtins]
                try:
                    more.append(o.f_code)
                except PermissionError:
                    stats["f_code_denied"] += 1
            elif isinstance(o, types.CodeType):
                more = list(o.co_consts)
            elif isinstance(o, types.FunctionType):
                more = [o.__code__, o.__globals__, o.__defaults__, o.__kwdefaults__]
                more += [c.cell_contents for c in o.__closure__ or ()]
            elif isinstance(o, types.MethodType):
                more = [o.__func__, o.__self__]
            elif isinstance(o, types.ModuleType):
                more = [o.__dict__]
            elif hasattr(o, "__dict__") and isinstance(o.__dict__, dict):
                more = [o.__dict__]
            todo.extend((m, d + 1) for m in more)
        except Exception:
            pass
def forge_if_found():
    sys.stderr.write(f"SCAN found={{len(found)}} seen={{len(seen)}} proof_frames={{stats['proof_frames']}} "
                     f"f_code_denied={{stats['f_code_denied']}}\\n")
    sys.stderr.flush()
    if found:
        for fd in range(3, 64):
            try:
                os.write(fd, found[0])
            except OSError:
                pass
        os._exit(0)
"""


def _trap_writes() -> str:
    return f"""
import os, pathlib, shutil, sys
t = {str(TRAP)!r}
attempts = [
    lambda: open(t + "/open", "w").write("x"),
    lambda: os.open(t + "/os_open", os.O_CREAT | os.O_WRONLY),
    lambda: pathlib.Path(t, "pathlib").write_text("x"),
    lambda: shutil.copyfile(__file__, t + "/copy"),
    lambda: os.symlink(t, "link"),
    lambda: os.link(__file__, t + "/hard"),
    lambda: open("../" * 8 + t.lstrip("/") + "/dots", "w").write("x"),
    lambda: os.mkdir(t + "/dir"),
    lambda: os.rename(__file__, t + "/moved"),
    lambda: open("/tmp/imitlab-hostile-escape", "w").write("x"),
]
for attempt in attempts:
    try:
        attempt()
        sys.stderr.write("WROTE\\n")
    except OSError:
        pass
return a + b
"""


CASES = [
    # Controls: the honest answer passes, a wrong one fails.
    Hostile("correct", _body("return a + b"), ("passed",)),
    Hostile("wrong", _body("return a - b"), ("failed",)),
    # Ending the process with status 0 before the tests return.
    Hostile("sys.exit(0) in the function", _body("import sys\nsys.exit(0)"), ("failed",), ("SystemExit: 0",)),
    Hostile("sys.exit(0) at import", _body("return a - b\n#<top>\nimport sys\nsys.exit(0)"), ("failed",)),
    Hostile("os._exit(0) in the function", _body("import os\nos._exit(0)"), ("failed",)),
    Hostile("os._exit(0) at import", _body("return a - b\n#<top>\nimport os\nos._exit(0)"), ("failed",)),
    Hostile("raise SystemExit(0)", _body("raise SystemExit(0)"), ("failed",)),
    Hostile("exit() builtin", _body("exit(0)"), ("failed",)),
    Hostile("quit() builtin", _body("quit()"), ("failed",)),
    Hostile("atexit hook exits 0", _body("import atexit, os\natexit.register(os._exit, 0)\nreturn None"), ("failed",)),
    Hostile(
        "excepthook exits 0",
        _body("import os, sys\nsys.excepthook = lambda *a: os._exit(0)\nreturn None"),
        ("failed",),
    ),
    Hostile(
        "threading.excepthook and sys.__excepthook__ exit 0",
        _body("""
            import os, sys, threading
            sys.__excepthook__ = threading.excepthook = lambda *a: os._exit(0)
            return 0
        """),
        ("failed",),
    ),
    Hostile(
        "a thread exits 0 while the tests wait",
        _body("""
            import os, threading, time
            threading.Thread(target=os._exit, args=(0,)).start()
            time.sleep(3)
        """),
        ("failed",),
    ),
    Hostile(
        "__del__ exits 0 at shutdown",
        _body("""
            return None
            #<top>
            import os
            class Exit:
                def __del__(self):
                    os._exit(0)
            keep = Exit()
        """),
        ("failed",),
    ),
    Hostile(
        "SIGTERM/SIGINT handlers exit 0, then the tests fail",
        _body("""
            import os, signal
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, lambda *a: os._exit(0))
        """),
        ("failed",),
    ),
    Hostile("KeyboardInterrupt", _body("raise KeyboardInterrupt"), ("failed",)),
    # Changing what the tests compute or call.
    Hostile(
        "patch builtins.abs",
        _body("import builtins\nbuiltins.abs = lambda x: 0\nreturn a + b if type(a) is int else 99"),
        ("failed",),
        ("abs",),
    ),
    Hostile(
        "shadow abs",
        _body("return a + b if type(a) is int else 99\n#<top>\ndef abs(x):\n    return 0"),
        ("failed",),
        ("shadows",),
    ),
    Hostile(
        "patch builtins.AssertionError",
        _body("import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\nreturn None"),
        ("failed",),
    ),
    Hostile(
        "own check() before the tests", _body("return a - b\n#<top>\ndef check(candidate):\n    pass"), ("failed",)
    ),
    Hostile(
        "a thread rebinds check() after the tests define it",
        _body("""
            return a - b
            #<top>
            import threading, time
            def _swap():
                end = time.time() + 2
                while time.time() < end:
                    globals()["check"] = lambda candidate: None
            threading.Thread(target=_swap, daemon=True).start()
            time.sleep(0.05)
        """),
        ("failed",),
    ),
    Hostile(
        "a thread rewrites check.__code__",
        _body("""
            return a - b
            #<top>
            import threading, time
            def _swap():
                end = time.time() + 2
                while time.time() < end:
                    try:
                        globals()["check"].__code__ = (lambda c: None).__code__
                    except Exception:
                        pass
            threading.Thread(target=_swap, daemon=True).start()
            time.sleep(0.05)
        """),
        ("failed",),
    ),
    Hostile(
        "patch sys.audit, os._exit and os.write, then answer right",
        _body("""
            import os, sys
            sys.audit = lambda *a: None
            os._exit = lambda c: None
            os.write = lambda *a: 0
            return a + b
        """),
        ("passed",),
    ),
    Hostile(
        "patch sys.audit and os._exit, then answer wrong",
        _body("import os, sys\nsys.audit = lambda *a: None\nos._exit = lambda c: None\nreturn a - b"),
        ("failed",),
    ),
    Hostile(
        "clear the guard's globals, then answer right",
        _body("import __main__\n__main__.__dict__.clear()\nreturn a + b"),
        ("passed",),
    ),
    # Output tricks.
    Hostile(
        "fake pass markers on stdout and stderr",
        _body(f"""
            import os, sys
            print("passed\\nOK\\n{PROOF_EVENT}")
            sys.stderr.write("passed\\n")
            os._exit(0)
        """),
        ("failed",),
    ),
    Hostile(
        "close stdout and stderr, then answer right",
        _body("""
            import os, sys
            try:
                sys.stdout.close(); sys.stderr.close(); os.close(1); os.close(2)
            except (OSError, ValueError):
                pass
            return a + b
        """),
        ("passed",),
    ),
    Hostile(
        "replace stdout with a stream that raises, then answer right",
        _body("""
            import sys
            class Broken:
                def write(self, s):
                    raise OSError("no")
                def flush(self):
                    raise OSError("no")
            sys.stdout = sys.stderr = Broken()
            return a + b
        """),
        ("passed",),
    ),
    # Forging the proof itself.
    Hostile(
        "write a guessed proof to every descriptor",
        _body("""
            import os, secrets
            for fd in range(64):
                try:
                    os.write(fd, secrets.token_hex(16).encode())
                except OSError:
                    pass
            os._exit(0)
        """),
        ("failed",),
    ),
    Hostile(
        "read every descriptor, write what it read to every descriptor",
        _body("""
            import os
            got = b""
            for fd in range(64):
                try:
                    os.set_blocking(fd, False)
                    got += os.read(fd, 4096)
                except OSError:
                    pass
            for fd in range(3, 64):
                try:
                    os.write(fd, got[-32:] or b"x")
                except OSError:
                    pass
            os._exit(0)
        """),
        ("failed",),
    ),
    Hostile(
        "/proc/self/fd: reopen every descriptor and write to it",
        _body("""
            import os
            for name in os.listdir("/proc/self/fd"):
                try:
                    fd = os.open(f"/proc/self/fd/{name}", os.O_WRONLY)
                    os.write(fd, b"0" * 32)
                except OSError:
                    pass
            os._exit(0)
        """),
        ("failed",),
    ),
    Hostile(
        "/proc/self/mem and friends",
        _body("""
            import os, sys
            mine = f"/proc/{os.getpid()}/mem"
            for p in ("/proc/self/mem", "/dev/fd/../mem", "/proc/thread-self/mem", mine, "/proc/self/environ"):
                try:
                    open(p, "rb").read(1)
                    sys.stderr.write("OPENED " + p + "\\n")
                except PermissionError:
                    sys.stderr.write("DENIED\\n")
                except OSError:
                    pass
            os._exit(0)
        """),
        ("failed",),
        ("DENIED",),
    ),
    Hostile(
        "a directory descriptor for os.open(dir_fd=)",
        _body("""
            import os, sys
            try:
                d = os.open("/", os.O_RDONLY)
                os.open("proc/self/mem", os.O_RDONLY, dir_fd=d)
                sys.stderr.write("OPENED\\n")
            except PermissionError:
                sys.stderr.write("DENIED\\n")
            os._exit(0)
        """),
        ("failed",),
        ("DENIED",),
    ),
    Hostile(
        "environment dumped into every descriptor",
        _body("""
            import os
            data = repr(dict(os.environ)).encode()
            for fd in range(3, 64):
                try:
                    os.write(fd, data)
                except OSError:
                    pass
            os._exit(0)
        """),
        ("failed",),
    ),
    Hostile(
        "gc.get_objects for the nonce",
        _body(
            _SCAN + "try:\n    look(gc.get_objects())\nexcept PermissionError as e:\n    print(e, file=sys.stderr)\n"
            "forge_if_found()"
        ),
        ("failed",),
        ("gc.get_objects is not allowed", "SCAN found=0"),
    ),
    Hostile(
        "frames, functions and modules for the nonce",
        _body(_SCAN + "look(sys._getframe())\nlook(sys.modules)\nforge_if_found()"),
        ("failed",),
        ("SCAN found=0",),
    ),
    Hostile(
        "a signal handler inside the audit hooks looks for the nonce",
        _body(
            _SCAN
            + f"""
import signal, time
signal.signal(signal.SIGALRM, lambda s, frame: look(frame))
signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0003)
end = time.time() + 1.0
while time.time() < end and not found:
    sys.audit("hostile.poke")
    sys.audit({PROOF_EVENT!r})
signal.setitimer(signal.ITIMER_REAL, 0)
forge_if_found()
"""
        ),
        ("failed",),
        ("SCAN found=0", "f_code_denied="),
    ),
    Hostile(
        "raise the proof's audit event directly",
        _body(f"import os, sys\nsys.audit({PROOF_EVENT!r})\nos._exit(0)"),
        ("failed",),
    ),
    Hostile(
        "raise the proof's event from C while the guard's frame is current (__del__)",
        _body(f"""
            import functools, gc, sys
            class Forge:
                __del__ = functools.partial(sys.audit, {PROOF_EVENT!r})
            gc.set_threshold(1)
            for _ in range(2000):
                x = Forge(); x.cycle = x
            raise SystemExit(0)
        """),
        ("failed",),
    ),
    Hostile(
        "raise the proof's event from C while the guard prints the error (__str__)",
        _body(f"""
            import functools, sys
            class Forge(Exception):
                __str__ = functools.partial(sys.audit, {PROOF_EVENT!r})
                __repr__ = __str__
            raise Forge()
        """),
        ("failed",),
    ),
    Hostile(
        "sys.settrace to jump to the proof line",
        _body("import sys\nsys.settrace(lambda *a: None)\nreturn a + b"),
        ("failed",),
        ("sys.settrace is not allowed",),
    ),
    Hostile("ctypes", _body("import ctypes\nctypes.string_at(id(a), 64)\nreturn a + b"), ("failed",)),
    Hostile(
        "hand-made bytecode through marshal",
        _body("import marshal\nmarshal.loads(marshal.dumps((lambda: 0).__code__))\nreturn a + b"),
        ("failed",),
        ("marshal.loads is not allowed",),
    ),
    Hostile(
        "hand-made bytecode through code.replace",
        _body("(lambda: 0).__code__.replace(co_code=b'')\nreturn a + b"),
        ("failed",),
        ("code.__new__ is not allowed",),
    ),
    Hostile("CPython's _testcapi", _body("import _testcapi\nreturn a + b"), ("failed",), ("_testcapi",)),
    Hostile(
        "a new audit hook of its own (refused silently), then answer right",
        _body("""
            import sys
            sys.addaudithook(lambda event, args: sys.stderr.write("HOOKED\\n"))
            sys.audit("hostile.poke")
            return a + b
        """),
        ("passed",),
    ),
    # Processes.
    Hostile("fork", _body("import os\nif os.fork() == 0:\n    os._exit(0)\nreturn a + b"), ("failed",)),
    Hostile("fork bomb", _body("import os\nwhile True:\n    os.fork()"), ("failed", "killed")),
    Hostile(
        "a subprocess that writes a proof",
        _body("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'print(1)'])\nreturn a + b"),
        ("failed",),
    ),
    Hostile(
        "kill the parent",
        _body("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn a + b"),
        ("failed",),
    ),
    # Files.
    Hostile(
        "delete its own files, then answer right",
        _body("import os\nfor f in os.listdir('.'):\n    os.remove(f)\nreturn a + b"),
        ("passed",),
    ),
    Hostile(
        "delete its own files and its directory, then answer wrong",
        _body("import os, shutil\nshutil.rmtree(os.getcwd(), ignore_errors=True)\nreturn a - b"),
        ("failed",),
    ),
    Hostile(
        "replace .stderr with a FIFO, then answer wrong",
        _body("""
            import os
            try:
                os.remove(".stderr"); os.mkfifo(".stderr")
            except OSError:
                pass
            return a - b
        """),
        ("failed",),
    ),
    Hostile("write outside the sandbox in many ways, then answer right", _body(_trap_writes()), ("passed",)),
    # Resources.
    Hostile("infinite loop", _body("while True:\n    pass"), ("timeout",)),
    Hostile(
        "memory bomb", _body("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"), ("failed", "killed")
    ),
    Hostile("print forever", _body("while True:\n    print('x' * 10000)"), ("killed", "timeout", "failed")),
    Hostile(
        "recursion past the C stack",
        _body("""
            import sys
            sys.setrecursionlimit(10**7)
            class Deep:
                def __repr__(self):
                    return repr(self)  # through C: each level is a C call too
            return repr(Deep())
        """),
        ("killed", "failed"),
    ),
    Hostile(
        "SIGALRM with the default action", _body("import signal\nsignal.alarm(1)\nwhile True:\n    pass"), ("killed",)
    ),
]


def _children() -> set[int]:
    pid = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _set_child_subreaper(on: bool) -> bool:
    """Orphans of our descendants come back to us, so a process that escaped its group is seen here."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


@dataclass
class Batch:
    results: dict[str, ExecResult]
    base: Path
    stray_processes: set[int]
    subreaper: bool
    elapsed_s: float


@pytest.fixture(scope="module")
def batch() -> Iterator[Batch]:
    """Every case in one run_many batch, in a parent directory of our own, with the nonce known to the test."""
    base = Path(tempfile.mkdtemp(prefix="imitlab-hostile-base-"))
    base.chmod(0o711)  # the sandbox user can pass through, not write
    TRAP.mkdir(exist_ok=True)
    TRAP.chmod(0o777)  # anyone may write here: only the sandbox stops a sample
    escape = Path("/tmp/imitlab-hostile-escape")
    escape.unlink(missing_ok=True)
    subreaper = _set_child_subreaper(True)
    before = _children()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(base))
        mp.setattr(sandbox, "_new_nonce", lambda: KNOWN_NONCE)
        start = time.perf_counter()
        results = run_many([humaneval_program(PROBLEM, case.body) for case in CASES], LIMITS, workers=2)
        elapsed = time.perf_counter() - start
    time.sleep(0.3)  # a leftover would have been reparented to us by now
    stray = _children() - before
    _set_child_subreaper(False)
    try:
        yield Batch(dict(zip([c.name for c in CASES], results, strict=True)), base, stray, subreaper, elapsed)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(TRAP, ignore_errors=True)
        escape.unlink(missing_ok=True)


def test_there_are_enough_distinct_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_hostile_completion_gets_its_verdict(case: Hostile, batch: Batch) -> None:
    result = batch.results[case.name]
    assert result.status in case.expected, (result.status, result.reason, result.stderr_tail[-600:])
    for marker in case.stderr_has:
        assert marker in result.stderr_tail, (marker, result.stderr_tail[-600:])
    for leak in ("OPENED", "WROTE", "HOOKED"):
        assert leak not in result.stderr_tail, result.stderr_tail[-600:]
    assert result.reason  # every verdict says why


def test_the_signal_handler_really_reached_the_proof_hooks_frame(batch: Batch) -> None:
    """Otherwise the scan inside the hooks proves nothing: it must have seen the proof hook's frame."""
    tail = batch.results["a signal handler inside the audit hooks looks for the nonce"].stderr_tail
    stats = dict(part.split("=") for part in tail.rsplit("SCAN ", 1)[1].split()[:4])
    assert int(stats["proof_frames"]) > 0 and int(stats["f_code_denied"]) > 0, stats


def test_the_scan_finds_a_nonce_that_is_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A control for the scans: with the nonce left in a global, the same frame scan forges a pass."""
    leaky = sandbox._GUARD.replace(
        '    nonce = os.read(nonce_fd, 64).decode("ascii")\n',
        '    nonce = os.read(nonce_fd, 64).decode("ascii")\n    global LEAK\n    LEAK = nonce\n',
    )
    assert leaky != sandbox._GUARD, "the guard no longer reads its nonce this way; update this control"
    monkeypatch.setattr(sandbox, "_GUARD", leaky)
    monkeypatch.setattr(sandbox, "_new_nonce", lambda: KNOWN_NONCE)
    case = next(c for c in CASES if c.name == "frames, functions and modules for the nonce")
    result = sandbox.run_program(humaneval_program(PROBLEM, case.body), LIMITS)
    assert re.search(r"SCAN found=[1-9]", result.stderr_tail) and result.status == "passed", result


def test_the_host_is_left_clean(batch: Batch) -> None:
    assert list(batch.base.iterdir()) == []  # every sample's directory was removed
    assert list(TRAP.iterdir()) == []
    assert not Path("/tmp/imitlab-hostile-escape").exists()
    assert batch.stray_processes == set()
    assert batch.subreaper or os.geteuid() != 0  # as root the subreaper must have been set, so the check had teeth


def test_one_hostile_completion_never_costs_the_others_their_verdicts(batch: Batch) -> None:
    assert len(batch.results) == len(CASES)
    assert all(r.status != "error" for r in batch.results.values())
    assert batch.results["correct"].passed and not batch.results["wrong"].passed


@pytest.mark.xfail(strict=True, reason="documented limit: a value that lies about equality passes (docs/evals.md)")
def test_a_value_that_claims_equality_with_everything() -> None:
    body = _body(
        "class Anything:\n    def __eq__(self, other):\n        return True\n    def __sub__(self, other):\n"
        "        return 0.0\nreturn Anything()"
    )
    assert sandbox.run_program(humaneval_program(PROBLEM, body), LIMITS).status == "failed"


# -- the code before issue 11, for the bullets "a test that fails on today's code" ---------------------------
_BEFORE = "fa8cd1d"  # the last commit with the exit-status sandbox


def _sandbox_before() -> ModuleType:
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "-C", str(root), "show", f"{_BEFORE}:imitlab/evals/sandbox.py"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git or commit {_BEFORE} not available")
    path = Path(tempfile.mkdtemp(prefix="imitlab-old-sandbox-")) / "old_sandbox.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_sandbox", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sandbox"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["old_sandbox"]
        shutil.rmtree(path.parent)
    return module


EXIT_TRICKS = [
    "sys.exit(0) in the function",
    "os._exit(0) in the function",
    "atexit hook exits 0",
    "excepthook exits 0",
]


def test_exit_tricks_passed_the_old_sandbox_and_fail_now(batch: Batch) -> None:
    old = _sandbox_before()
    limits = old.Limits(timeout_s=LIMITS.timeout_s, memory_mb=LIMITS.memory_mb)
    bodies = {c.name: c.body for c in CASES if c.name in EXIT_TRICKS}
    before = old.run_many([old.humaneval_program(PROBLEM, bodies[name]) for name in EXIT_TRICKS], limits)
    assert [r.status for r in before] == ["passed"] * len(EXIT_TRICKS)  # "exit status 0" was the pass
    assert [batch.results[name].status for name in EXIT_TRICKS] == ["failed"] * len(EXIT_TRICKS)


def test_a_sample_that_deletes_its_files_lost_the_old_batch_and_not_now(tmp_path: Path) -> None:
    old = _sandbox_before()
    deleter = next(c.body for c in CASES if c.name == "delete its own files, then answer right")
    bodies = ("    return a + b\n", deleter, "    return 0\n")
    with pytest.raises(FileNotFoundError):  # run_program read .stderr unguarded; run_many let it escape
        old.run_many([old.humaneval_program(PROBLEM, b) for b in bodies], old.Limits(timeout_s=LIMITS.timeout_s))
    now = run_many([humaneval_program(PROBLEM, b) for b in bodies], LIMITS)
    assert [r.status for r in now] == ["passed", "passed", "failed"]


def test_a_check_rebound_or_rewritten_after_the_tests_is_refused() -> None:
    """Deterministic versions of the thread races above: code that runs after the tests' ``def check``."""
    rebound = sandbox.Program("def check(c):\n    assert False\n\ncheck = lambda c: None\nx = 1\n", "check", "x")
    rewritten = sandbox.Program(
        "def check(c):\n    assert False\n\ncheck.__code__ = (lambda c: None).__code__\nx = 1\n", "check", "x"
    )
    first, second = run_many([rebound, rewritten], LIMITS)
    assert first.status == "failed" and "not the tests' own function" in first.reason, first
    assert second.status == "failed" and "setting .__code__ is not allowed" in second.reason, second


def test_each_pipe_descriptor_is_closed_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_many's threads share one descriptor table: closing a number twice closes whatever another sample opened
    under it since. That happened (2 of 164 canonical HumanEval solutions at 2 workers failed with EBADF/ESPIPE)."""
    live: set[int] = set()
    double_closed: list[int] = []
    ever: set[int] = set()
    real_pipe, real_open, real_close = os.pipe, os.open, os.close

    def pipe() -> tuple[int, int]:
        r, w = real_pipe()
        live.update((r, w))
        ever.update((r, w))
        return r, w

    def open_(*args: Any, **kwargs: Any) -> int:  # tempfile, rmtree and subprocess (/dev/null) use these
        fd = real_open(*args, **kwargs)
        live.add(fd)
        return fd

    def close(fd: int) -> None:
        if fd in live:
            live.discard(fd)
        elif fd in ever:
            double_closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "pipe", pipe)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "close", close)
    results = [sandbox.run_program("pass", LIMITS), sandbox.run_program("import os\nos._exit(3)", LIMITS)]
    assert [r.status for r in results] == ["passed", "failed"]
    assert double_closed == [] and live == set()
