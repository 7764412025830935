"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright): the CLI creates the
database and raters, ``imitlab rate serve`` runs, two raters rate pairs in a real browser, and the stored
verdicts match what was clicked. An answer containing ``<script>`` must show as text and never run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imitlab.models.server import free_port
from imitlab.rate.db import RatingStore

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
XSS = "<script>alert('xss')</script>"
IMITLAB = str(Path(sys.executable).parent / "imitlab")

if not Path(CHROMIUM).is_file():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: CI must run `make browser` (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} not installed (make browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _cli(*args: str) -> str:
    done = subprocess.run([IMITLAB, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    pairs = [
        {"id": "p1", "prompt": "Say hi", "a": f"Hi! {XSS}", "b": "Hello there."},
        {"id": "p2", "prompt": "2+2?", "a": "4", "b": "Four, & <b>not</b> five."},
        {"id": "p3", "prompt": "Capital of France?", "a": "Paris.", "b": "It is Paris."},
        {"id": "p4", "prompt": "Name a colour", "a": "Blue", "b": "Red"},
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    db = tmp_path / "ratings.db"
    _cli(
        "rate",
        "init",
        "--db",
        str(db),
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--model-a",
        "imit",
        "--model-b",
        "teach",
    )
    tokens = {}
    for name in ("ann", "ben"):
        out = _cli("rate", "add-rater", "--db", str(db), name)
        tokens[name] = re.search(r"token (\S+)", out).group(1)
    port = free_port()
    proc = subprocess.Popen([IMITLAB, "rate", "serve", "--db", str(db), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "rating server did not start"
            time.sleep(0.1)
        yield base, db, tokens
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rating_in_headless_chromium(served: tuple[str, Path, dict[str, str]], tmp_path: Path) -> None:
    base, db, tokens = served
    answers = {p["id"]: p for p in map(json.loads, (tmp_path / "pairs.jsonl").read_text().splitlines())}
    expected: dict[tuple[str, str], str] = {}
    dialogs: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for rater, plan in (("ann", ["A", "B", "tie", "A"]), ("ben", ["B", "A"])):
                page = browser.new_context().new_page()
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(f"{base}/")
                assert page.locator("#token").is_visible()  # no token, no pairs
                page.fill("#token", "not-a-token")
                page.click("#login")
                assert "Unknown token" in page.inner_text("#error")
                page.fill("#token", tokens[rater])
                page.click("#login")
                for i, choice in enumerate(plan):
                    assert page.inner_text("#progress") == f"{rater}: {i} of 4 rated"
                    prompt = page.inner_text("#prompt")
                    left, right = page.inner_text("#answer-a"), page.inner_text("#answer-b")
                    item = next(p for p in answers.values() if p["prompt"] == prompt)
                    assert {left, right} == {item["a"], item["b"]}  # the two answers to this prompt, anonymised
                    if XSS in left + right:  # the script shows as text and is not a DOM element
                        assert page.locator("script").count() == 0
                    left_model = "a" if left == item["a"] else "b"
                    verdict = {"A": left_model, "B": "b" if left_model == "a" else "a", "tie": "tie"}[choice]
                    expected[(rater, item["id"])] = verdict
                    page.click({"A": "#choose-a", "B": "#choose-b", "tie": "#choose-tie"}[choice])
                if rater == "ann":
                    assert page.inner_text("#done") == "All done. Thank you!"
                    page.goto(f"{base}/")  # reloading after the last pair does not offer it again
                    assert page.locator("#done").count() == 1
                else:
                    assert page.inner_text("#progress") == "ben: 2 of 4 rated"
                page.context.close()
        finally:
            browser.close()
    assert dialogs == []  # no alert() ever ran
    stored = {(r["rater"], r["item_id"]): r["verdict"] for r in RatingStore(db).ratings()}
    assert stored == expected
    seen_xss = any(XSS in answers[i]["a"] for _, i in expected)
    assert seen_xss
    _cli("rate", "export", "--db", str(db), "--out", str(tmp_path / "export.jsonl"))
    exported = [json.loads(x) for x in (tmp_path / "export.jsonl").read_text().splitlines()]
    assert len(exported) == 6 and {r["model_b"] for r in exported} == {"teach"}
