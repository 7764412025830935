"""The ``real`` marker's rules (tests/conftest.py): tests that need weights are real, or the quick suite says so.

Each case runs an inner pytest session, in a subprocess, with a copy of this suite's conftest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")


def _inner_pytest(tmp_path: Path, test_code: str, *args: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_code))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n  real: needs weights\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args]
    return subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_an_unmarked_test_that_fills_the_model_cache_fails(tmp_path: Path) -> None:
    done = _inner_pytest(
        tmp_path,
        """
        import os, subprocess, sys
        from pathlib import Path

        def test_pulls_in_process():
            (Path(os.environ["IMITLAB_CACHE"]) / "models" / "m").mkdir(parents=True)

        def test_builds_in_a_subprocess():
            code = "import os, pathlib; pathlib.Path(os.environ['IMITLAB_CACHE'], 'llama.cpp/bin').mkdir(parents=True)"
            subprocess.run([sys.executable, "-c", code], check=True)

        def test_writes_elsewhere_in_the_cache():
            (Path(os.environ["IMITLAB_CACHE"]) / "collect").mkdir()
        """,
        "-m", "not real",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_pulls_in_process is not marked real but pulled a model" in done.stdout
    assert "test_builds_in_a_subprocess is not marked real but pulled a model" in done.stdout
    assert "3 passed, 2 errors" in done.stdout  # the body passes; the check after it errors


def test_a_test_using_the_model_fixture_is_real_even_unmarked(tmp_path: Path) -> None:
    done = _inner_pytest(
        tmp_path,
        """
        def test_forgot_the_marker(smollm2):
            raise AssertionError("never runs in the quick suite, so nothing is pulled")

        def test_needs_nothing():
            pass
        """,
        "-m", "not real",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 deselected" in done.stdout
