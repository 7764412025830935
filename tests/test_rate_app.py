"""The rating app and store: tokens, each pair once per rater, random sides, escaping, concurrency, report."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from imitlab.errors import ImitlabError
from imitlab.models.server import free_port
from imitlab.rate.app import COOKIE, create_app, is_loopback
from imitlab.rate.db import RatingStore
from imitlab.rate.report import export, report
from imitlab.stats import cohen_kappa

XSS = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def write_pairs(path: Path, n: int) -> Path:
    rows = [{"id": f"q{i}", "prompt": f"Prompt {i}", "a": f"answer-a-{i}", "b": f"answer-b-{i}"} for i in range(n)]
    rows[0]["a"] = XSS
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def store(tmp_path: Path) -> RatingStore:
    s = RatingStore(tmp_path / "ratings.db")
    s.add_pairs(write_pairs(tmp_path / "pairs.jsonl", 6), model_a="imitation", model_b="teacher")
    return s


def _client(store: RatingStore, token: str | None = None) -> TestClient:
    client = TestClient(create_app(store.path), follow_redirects=False)
    if token:
        assert client.post("/login", data={"token": token}).status_code == 303
    return client


def _rate(client: TestClient, choice: str) -> None:
    page = client.get("/").text
    pair_id = re.search(r'name="pair_id" value="(\d+)"', page).group(1)
    csrf = re.search(r'name="csrf" value="(\w+)"', page).group(1)
    assert client.post("/rate", data={"pair_id": pair_id, "choice": choice, "csrf": csrf}).status_code == 303


def test_token_required_and_login(store: RatingStore) -> None:
    token = store.add_rater("alice")
    anon = _client(store)
    r = anon.get("/")
    assert r.status_code == 401 and "token" in r.text and "Prompt" not in r.text
    assert anon.post("/login", data={"token": "wrong"}).status_code == 401
    assert anon.post("/rate", data={"pair_id": "1", "choice": "A", "csrf": "x"}).status_code == 401
    link = anon.get(f"/login?token={token}")
    assert link.status_code == 303 and COOKIE in link.headers["set-cookie"]
    assert "httponly" in link.headers["set-cookie"].lower() and "samesite=strict" in link.headers["set-cookie"].lower()
    page = _client(store, token).get("/")
    assert page.status_code == 200 and "alice: 0 of 6 rated" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none' forbids scripts
    assert "default-src 'none'" in page.headers["content-security-policy"]
    with pytest.raises(ImitlabError, match="already exists"):
        store.add_rater("alice")
    assert store.rater_for_token(token) == "alice"
    assert token not in store.path.read_bytes().decode("latin-1")  # only the hash is stored


def test_each_pair_once_then_done_and_verdicts_follow_sides(store: RatingStore) -> None:
    client = _client(store, store.add_rater("bob"))
    for _ in range(6):
        _rate(client, "A")
    page = client.get("/")
    assert "All done" in page.text and "bob: 6 of 6 rated" in page.text
    rows = store.ratings()
    assert len(rows) == 6 and len({r["item_id"] for r in rows}) == 6
    # "A" is whatever model was shown on the left, so the stored verdict is that side
    assert all(r["choice"] == "A" and r["verdict"] == r["left_side"] for r in rows)


def test_sides_are_random_across_pairs_and_raters(tmp_path: Path) -> None:
    s = RatingStore(tmp_path / "r.db")
    s.add_pairs(write_pairs(tmp_path / "p.jsonl", 40))
    sides = [s.left_side(rater, pid) for rater in ("r1", "r2") for pid in range(1, 41)]
    assert 20 < sides.count("a") < 60
    assert [s.left_side("r1", p) for p in range(1, 41)] != [s.left_side("r2", p) for p in range(1, 41)]
    assert s.next_pair("r1").pair_id != s.next_pair("r2").pair_id or s.next_pair("r1").left != s.next_pair("r2").left


def test_model_text_is_escaped(store: RatingStore) -> None:
    client = _client(store, store.add_rater("carol"))
    seen = False
    for _ in range(6):
        page = client.get("/").text
        if "answer-a-0" in page or "pwned" in page:
            seen = True
            assert "<script>alert" not in page and "<img src=x" not in page
            assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page
        _rate(client, "tie")
    assert seen


def test_bad_submissions(store: RatingStore) -> None:
    client = _client(store, store.add_rater("dave"))
    page = client.get("/").text
    pid = re.search(r'name="pair_id" value="(\d+)"', page).group(1)
    csrf = re.search(r'name="csrf" value="(\w+)"', page).group(1)
    assert client.post("/rate", data={"pair_id": pid, "choice": "A", "csrf": "forged"}).status_code == 403
    assert client.post("/rate", data={"pair_id": pid, "choice": "C", "csrf": csrf}).status_code == 400
    assert client.post("/rate", data={"pair_id": "999", "choice": "A", "csrf": csrf}).status_code == 400
    assert client.post("/rate", data={"pair_id": "x", "choice": "A", "csrf": csrf}).status_code == 400
    assert store.ratings() == []


def test_pairs_file_errors(tmp_path: Path) -> None:
    s = RatingStore(tmp_path / "r.db")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "prompt": "p", "a": "x", "b": "y"}\n{"id": "2", "prompt": "p", "a": "x"}\n')
    with pytest.raises(ImitlabError, match=r"bad.jsonl:2: missing field 'b'"):
        s.add_pairs(bad)
    assert s.ratings() == [] and s.progress("x") == (0, 0)  # the failed load left nothing behind
    good = write_pairs(tmp_path / "good.jsonl", 3)
    assert s.add_pairs(good) == 3 and s.add_pairs(good) == 0
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({"id": "q1", "prompt": "Prompt 1", "a": "other", "b": "answer-b-1"}) + "\n")
    with pytest.raises(ImitlabError, match="already loaded with other text"):
        s.add_pairs(changed)


def test_concurrent_submissions_on_a_live_server(store: RatingStore) -> None:
    """Two raters submit all pairs at once, each pair several times over; every pair is stored once per rater."""
    tokens = {name: store.add_rater(name) for name in ("erin", "frank")}
    config = uvicorn.Config(create_app(store.path), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.05)
        errors: list[str] = []

        def submit(name: str, pair_id: int, choice: str) -> None:
            with httpx.Client(base_url=base, cookies={COOKIE: tokens[name]}, timeout=30) as c:
                r = c.post("/rate", data={"pair_id": pair_id, "choice": choice, "csrf": store.csrf_token(name)})
                if r.status_code != 303:
                    errors.append(f"{r.status_code} {r.text}")

        threads = [
            threading.Thread(target=submit, args=(name, pid, choice))
            for pid in range(1, 7)
            for name in tokens
            for choice in ("A", "B", "tie")  # conflicting double submissions: only the first one counts
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        rows = store.ratings()
        assert len(rows) == 12
        assert sorted((r["rater"], r["pair_id"]) for r in rows) == sorted((n, p) for n in tokens for p in range(1, 7))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_export_report_agreement_and_judge_merge(store: RatingStore, tmp_path: Path) -> None:
    for name in ("r1", "r2", "r3"):
        store.add_rater(name)
    # r1 and r2 agree everywhere; r3 disagrees on two items. Choices are made by verdict, via the shown side.
    plan = {
        "r1": ["a", "a", "b", "tie", "a", "b"],
        "r2": ["a", "a", "b", "tie", "a", "b"],
        "r3": ["a", "b", "b", "a", "a", "b"],
    }
    for name, verdicts in plan.items():
        for pid, verdict in enumerate(verdicts, 1):
            left = store.left_side(name, pid)
            choice = "tie" if verdict == "tie" else ("A" if verdict == left else "B")
            assert store.submit(name, pid, choice)
    assert not store.submit("r1", 1, "B")  # second rating of a pair by the same rater is ignored
    n = export(store.path, tmp_path / "ratings.jsonl")
    exported = [json.loads(x) for x in (tmp_path / "ratings.jsonl").read_text().splitlines()]
    assert n == 18 and {r["model_a"] for r in exported} == {"imitation"}
    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    judge = {"q0": "win", "q1": "win", "q2": "loss", "q3": "tie", "q4": "loss", "q5": "unparsed"}
    rows = "".join(json.dumps({"id": k, "outcome": v}) + "\n" for k, v in judge.items())
    (judge_dir / "items.jsonl").write_text(rows)
    result = report(store.path, judge_dir=judge_dir, out=tmp_path / "rep", n_resamples=200)
    assert result["n_ratings"] == 18 and result["n_items_rated"] == 6
    # majority per item: win, win, loss, tie, win, loss
    assert result["human"]["counts"] == {"win": 3, "tie": 1, "loss": 2, "unparsed": 0, "inconsistent": 0}
    pairwise = {tuple(p["raters"]): p for p in result["inter_rater"]["pairwise"]}
    assert pairwise[("r1", "r2")]["cohen_kappa"] == 1.0
    x = ["win", "win", "loss", "tie", "win", "loss"]
    y = ["win", "loss", "loss", "win", "win", "loss"]
    assert pairwise[("r1", "r3")]["cohen_kappa"] == pytest.approx(cohen_kappa(x, y))
    assert result["inter_rater"]["fleiss"]["raters_per_item"] == 3 and result["inter_rater"]["fleiss"]["n"] == 6
    jh = result["judge_vs_human"]
    assert jh["n"] == 5 and jh["agreement"] == pytest.approx(4 / 5)  # q5 unparsed by the judge is left out
    merged = [json.loads(x) for x in (tmp_path / "rep" / "merged.jsonl").read_text().splitlines()]
    assert {m["id"]: m["judge"] for m in merged}["q5"] == "unparsed"


def test_loopback_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
