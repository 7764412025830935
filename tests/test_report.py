"""The imitation-gap report: numbers in report.json, escaping of model text, "not run" for missing entries,
bad input, the CLI, and the page rendered in headless Chromium (images load, no script runs).

FIXTURE DATA: every number in ``fake_results`` below is invented for these tests only. It has the shape of a
real sweep's results.json (docs/study.md), not the numbers of any run.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imitlab.cli import app
from imitlab.errors import ImitlabError
from imitlab.study.report import write_report

SCRIPT_XSS = "<script>alert(1)</script>"
IMG_XSS = '<img src=x onerror="window.__pwned=1;alert(2)">'
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def est(value: float, low: float, high: float, n: int) -> dict[str, Any]:
    return {"value": value, "low": low, "high": high, "n": n, "confidence": 0.95}


def judge(win_half: float, good: float, n: int = 20, first: float = 0.55) -> dict[str, Any]:
    return {
        "spec": "qwen2.5-coder-0.5b-instruct",
        "n": n,
        "unparsed": 1,
        "position_bias": {"n": 2 * n, "A": first, "B": round(1 - first, 2), "tie": 0.0},
        "win": est(good - 0.2, good - 0.35, good - 0.05, n),
        "tie": est(0.2, 0.05, 0.35, n),
        "loss": est(1 - good, 0.8 - good, 1.2 - good, n),
        "as_good_or_better": est(good, good - 0.15, good + 0.15, n),
        "win_rate_ties_half": est(win_half, win_half - 0.15, win_half + 0.15, n),
    }


def fake_results() -> dict[str, Any]:
    """Invented fixture numbers: two bases, broad+local budgets for one, broad only for the other."""
    teacher = {"id": "teacher", "role": "teacher", "spec": "qwen2.5-coder-0.5b-instruct", "params_m": 630,
               "base": None, "data_kind": None, "tokens": None}  # fmt: skip
    models = [teacher]
    for base, params in (("smollm2-135m-instruct", 134.5), ("gemma3-270m", 268.1)):
        models.append({"id": f"base/{base}", "role": "base", "spec": base, "params_m": params, "base": base,
                       "data_kind": None, "tokens": 0})  # fmt: skip
        kinds = ("broad", "local") if base.startswith("smollm2") else ("broad",)
        for kind in kinds:
            for tokens in (20000, 80000):
                models.append({"id": f"{base}/{kind}/{tokens}", "role": "imitation",
                               "spec": f"hf:RUN/stages/train-{kind}{tokens}/model", "params_m": params,
                               "base": base, "data_kind": kind, "tokens": tokens})  # fmt: skip
    nq = {
        "teacher": est(0.31, 0.22, 0.40, 100),
        "base/smollm2-135m-instruct": est(0.04, 0.01, 0.08, 100),
        "smollm2-135m-instruct/broad/20000": est(0.05, 0.01, 0.09, 100),
        "smollm2-135m-instruct/broad/80000": est(0.06, 0.02, 0.11, 100),
        "smollm2-135m-instruct/local/20000": est(0.09, 0.04, 0.15, 100),
        "smollm2-135m-instruct/local/80000": est(0.14, 0.08, 0.21, 100),
        "base/gemma3-270m": est(0.07, 0.03, 0.12, 100),
        "gemma3-270m/broad/20000": est(0.08, 0.03, 0.13, 100),
        # gemma3-270m/broad/80000 has no nq_open entry: it must show as "not run"
    }
    he = {mid: est(0.02 * i, 0.0, 0.02 * i + 0.05, 40) for i, mid in enumerate(nq)} | {
        "teacher": est(0.3, 0.15, 0.45, 40)
    }
    benchmarks: dict[str, Any] = {}
    for mid in {m["id"] for m in models}:
        benches = {}
        if mid in nq:
            benches["nq_open"] = {"n": 100, "metrics": {"exact_match": nq[mid], "f1": est(0.5, 0.4, 0.6, 100)},
                                  "methods": {"generate": 100}}  # fmt: skip
        if mid in he:
            benches["humaneval"] = {"n": 40, "metrics": {"pass@1": he[mid]}, "methods": {"generate": 40}}
        benchmarks[mid] = benches
    preference = {
        "base/smollm2-135m-instruct": {"judge": judge(0.12, 0.2), "human": None},
        "smollm2-135m-instruct/broad/20000": {"judge": judge(0.30, 0.41), "human": None},
        "smollm2-135m-instruct/broad/80000": {"judge": judge(0.42, 0.55), "human": None},
        "smollm2-135m-instruct/local/20000": {"judge": judge(0.25, 0.33), "human": None},
        "smollm2-135m-instruct/local/80000": {"judge": judge(0.28, 0.37, first=1.0), "human": None},
        # human ratings in the rate stage's tally shape (counts + rates)
        "gemma3-270m/broad/20000": {"judge": judge(0.35, 0.47),
                                    "human": {"counts": {"win": 3, "tie": 2, "loss": 5},
                                              "rates": {"as_good_or_better": est(0.5, 0.2, 0.8, 10),
                                                        "win_rate_ties_half": est(0.4, 0.15, 0.65, 10)}}},
    }  # fmt: skip
    style_row = {
        "list_when_teacher_lists": est(0.6, 0.3, 0.9, 10),
        "summary_when_teacher_summarizes": est(0.25, 0.0, 0.6, 4),
        "unigram_overlap": est(38.2, 33.0, 43.1, 20),
        "length_pearson": est(0.41, 0.05, 0.7, 20),
        "authoritative_tone": est(0.7, 0.5, 0.9, 20),
    }
    style = {"smollm2-135m-instruct/broad/80000": style_row,
             "base/smollm2-135m-instruct": {**style_row, "authoritative_tone": None},
             "teacher#2": style_row}  # fmt: skip
    samples = [
        {"prompt": f"Who wrote Hamlet? {SCRIPT_XSS}",
         "answers": {"teacher": "William Shakespeare.", "smollm2-135m-instruct/broad/80000": f"Sure! {SCRIPT_XSS}",
                     "base/smollm2-135m-instruct": f"Hamlet {IMG_XSS} & friends"}},
        {"prompt": "Write fib(n).", "answers": {"teacher": "def fib(n):\n    a, b = 0, 1\n    ...",
                                                "gemma3-270m/broad/20000": "```python\nprint(1 < 2)\n```"}},
    ]  # fmt: skip
    manifests = {m["id"]: {"train": f"stages/train-{i}/manifest.json", "eval": f"stages/eval-{i}/manifest.json"}
                 for i, m in enumerate(models) if m["role"] == "imitation"}  # fmt: skip
    manifests["base/smollm2-135m-instruct"] = {"eval": "stages/eval-<b>x</b>/manifest.json"}
    return {
        "schema": "imitlab.study/1",
        "run": {
            "name": "fixture",
            "created": "2026-11-25T23:10:00Z",
            "seconds": 12.4,
            "config": {},
            "stages_run": ["report-1"],
            "stages_reused": ["train-1", "eval-1", "eval-2"],
            "stage_seconds": 812.4,
        },
        "teacher": "qwen2.5-coder-0.5b-instruct",
        "models": models,
        "benchmarks": benchmarks,
        "headline_metric": {"nq_open": "em", "humaneval": "pass@1"},  # "em" is not written: see the test
        "preference": preference,
        "style": style,
        "samples": samples,
        "manifests": manifests,
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    run = tmp_path_factory.mktemp("run")
    (run / "results.json").write_text(json.dumps(fake_results(), indent=1))
    html_path, json_path = write_report(run)
    return run, html_path.read_text(), json.loads(json_path.read_text())


def test_report_json_numbers(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    run, _, rep = rendered
    t1 = rep["table1"]["nq_open"]
    assert t1["metric"] == "exact_match" and t1["teacher"]["value"] == 0.31
    smol, gemma = t1["rows"]
    assert smol["base"] == "smollm2-135m-instruct" and smol["none"]["estimate"]["value"] == 0.04
    assert smol["broad"]["tokens"] == 80000 and smol["broad"]["estimate"] == {"value": 0.06, "low": 0.02,
                                                                             "high": 0.11, "n": 100}  # fmt: skip
    assert smol["local"]["model"] == "smollm2-135m-instruct/local/80000" and smol["local"]["estimate"]["value"] == 0.14
    assert gemma["broad"]["model"] == "gemma3-270m/broad/80000" and gemma["broad"]["estimate"] is None  # not run
    assert gemma["local"] == {"model": None, "tokens": None, "estimate": None}  # no local imitation for gemma
    assert rep["table1"]["humaneval"]["metric"] == "pass@1"
    # headline_metric names "em" for nq_open, which no model wrote: the first metric written is shown instead
    assert rep["benchmarks"]["nq_open"]["metric"] == "exact_match"
    series = {(s["base"], s["data_kind"]): s for s in rep["benchmarks"]["nq_open"]["series"]}
    assert [p["tokens"] for p in series[("smollm2-135m-instruct", "local")]["points"]] == [20000, 80000]
    assert rep["benchmarks"]["nq_open"]["bases"]["gemma3-270m"]["params_m"] == 268.1
    pref = rep["preference"]
    assert pref["metric"] == "win_rate_ties_half" and pref["parity"] == 0.5
    judge_broad = next(s for s in pref["series"] if s["source"] == "judge" and s["data_kind"] == "broad"
                       and s["base"] == "smollm2-135m-instruct")  # fmt: skip
    assert [p["estimate"]["value"] for p in judge_broad["points"]] == [0.30, 0.42]
    assert judge_broad["base_model"]["value"] == 0.12
    human = next(s for s in pref["series"] if s["source"] == "human")
    assert human["points"][0]["estimate"]["value"] == 0.4  # read from the tally's "rates"
    rows = {r["model"]: r for r in pref["rows"]}
    assert rows["smollm2-135m-instruct/broad/80000"]["judge"]["as_good_or_better"]["value"] == 0.55
    assert pref["position_biased"] == ["smollm2-135m-instruct/local/80000"]
    assert rows["smollm2-135m-instruct/broad/80000"]["judge_same_position"] == 0.55
    assert rows["gemma3-270m/broad/80000"]["judge"] is None
    style = {r["model"]: r["values"] for r in rep["style"]["rows"]}
    assert list(style) == ["base/smollm2-135m-instruct", "smollm2-135m-instruct/broad/80000", "teacher#2"]
    assert style["base/smollm2-135m-instruct"]["authoritative_tone"] is None
    assert style["teacher#2"]["unigram_overlap"]["value"] == 38.2
    assert rep["style"]["references"] == ["teacher#2"]
    assert rep["manifests"]["teacher"] is None
    assert rep["bench_cells"]["gemma3-270m/broad/80000"]["nq_open"] is None
    assert rep["source"]["file"] == "results.json" and len(rep["source"]["sha256"]) == 64
    assert (run / "report_main.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_html_shows_cis_and_not_run(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    _, html, _ = rendered
    text = re.sub(r"<[^>]+>", "", html)
    assert "0.060 [0.020, 0.110] n=100" in text  # smollm2 broad, largest budget, with its CI
    assert "38.2 [33.0, 43.1] n=20" in text  # style: unigram overlap
    assert "the run names em as its headline metric but no model has it" in text
    # Table 1's gemma row: broad (80k) has no nq_open number, and there is no local model at all.
    gemma_row = re.search(r"<tr><td>gemma3-270m</td>(.*?)</tr>", html, re.S)
    assert gemma_row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", gemma_row.group(1), re.S)
    assert "not run" in cells[1] and "80k tokens" in cells[1] and "not run" in cells[2]
    assert "0.070" in cells[0] and "0.310" in cells[3]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3  # preference, benchmarks, size (two base sizes)
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "http://" not in html and "https://" not in html  # self-contained
    # a rerun that reused stages says so, with what those stages cost when they ran
    assert "this run took 12 s (3 of 4 stages reused, which took 812 s in all when they ran)" in " ".join(html.split())
    # one judge run picked position A every time: flagged by name, and its share shown in the table
    warning = re.search(r'<p class="warn">(.*?)</p>', html, re.S)
    assert warning is not None and "smollm2-135m-instruct/local/80000" in warning.group(1)
    assert "1 of 8 models" in " ".join(warning.group(1).split())
    assert ">100%</td>" in html and ">55%</td>" in html


def test_model_text_is_escaped(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    _, html, _ = rendered
    assert SCRIPT_XSS not in html and "<img src=x" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__pwned=1;alert(2)&#34;&gt; &amp; friends" in html
    assert "<script" not in html.lower()  # the page itself has no script either


def test_missing_sections_say_not_run(tmp_path: Path) -> None:
    results = fake_results()
    for key in ("benchmarks", "preference", "style", "samples"):
        del results[key]
    results["models"] = results["models"][:3]  # teacher, one base, one imitation model
    results["manifests"] = {"smollm2-135m-instruct/broad/20000": "stages/train-2/manifest.json"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "report_main.png").write_bytes(b"stale plot from an earlier run")
    html_path, json_path = write_report(tmp_path)
    rep = json.loads(json_path.read_text())
    assert rep["benchmarks"] == {} and rep["preference"]["series"] == [] and rep["style"]["rows"] == []
    html = html_path.read_text()
    for what in ("No preference judgements", "No benchmark results", "No style metrics", "No sample answers"):
        assert f"{what} in this run (not run)" in html
    assert "data:image/png" not in html and not (tmp_path / "report_main.png").exists()
    assert "<code>stages/train-2/manifest.json</code>" in html  # a manifest given as one path string


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["models"][1].update(role="student"), "field models[1].role: must be one of teacher, base"),
        (lambda r: r["models"][2].update(tokens=0), "field models[2].tokens"),
        (lambda r: r["models"].append(dict(r["models"][0])), "duplicate model id 'teacher'"),
        (lambda r: r.update(schema="other/9"), "field schema"),
        (lambda r: r["preference"].update(ghost={}), "field preference.ghost: names a model that is not in models"),
        (lambda r: r["benchmarks"]["teacher"]["nq_open"]["metrics"].update(exact_match={"value": "high"}),
         "field benchmarks.teacher.nq_open.metrics.exact_match.value"),
        (lambda r: r["preference"].update(teacher=[0.5]), "field preference.teacher: must be an object or null"),
        (lambda r: r["benchmarks"]["teacher"].update(mmlu=0.4), "field benchmarks.teacher.mmlu.metrics"),
        (lambda r: r["samples"].append({"prompt": "x"}), "field samples[2]: needs a prompt string"),
    ],
)  # fmt: skip
def test_bad_results_name_the_field(tmp_path: Path, mutate: Any, message: str) -> None:
    results = fake_results()
    mutate(results)
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(ImitlabError, match=re.escape(message)) as err:
        write_report(tmp_path)
    assert str(tmp_path / "results.json") in str(err.value)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{\n "schema": "imitlab.study/1",\n "models": [,]\n}\n')
    with pytest.raises(ImitlabError, match=r"results\.json, line 3 column"):
        write_report(tmp_path)
    with pytest.raises(ImitlabError, match=r"no results\.json here"):
        write_report(tmp_path / "nowhere")


def test_cli_report(tmp_path: Path) -> None:
    results = fake_results()
    results["benchmarks"] = {}  # no plots: this checks the wiring, the rendering is tested above
    results["preference"] = {}
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.json").is_file()
    assert "report.html" in result.output
    (tmp_path / "results.json").write_text("{}")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(result.exception, ImitlabError) and "field schema" in str(result.exception)


def test_report_in_headless_chromium(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: CI must run `make browser` (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed (make browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    run, _, _ = rendered
    dialogs: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((run / "report.html").as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            assert len(widths) == 3 and all(w > 0 for w in widths)  # only the three plots, all decoded
            assert page.locator("script").count() == 0
            assert page.evaluate("window.__pwned === undefined")
            answers = page.locator(".answer pre").all_inner_texts()
            assert f"Sure! {SCRIPT_XSS}" in answers  # shown as text, not run
            assert f"Hamlet {IMG_XSS} & friends" in answers
            assert "not run" in page.inner_text("#table1 ~ table")
            page.screenshot(path=str(run / "report.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []
    assert (run / "report.png").stat().st_size > 10_000


def test_human_ratings_join_the_preference_section(tmp_path: Path) -> None:
    from imitlab.rate.db import RatingStore

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(fake_results()))
    model = "smollm2-135m-instruct/local/20000"
    pairs = tmp_path / "pairs.jsonl"  # as the sweep's judge stage writes them: a = the model, b = the teacher
    rows = [{"id": f"k{i}", "prompt": f"p{i}", "a": f"mine {i}", "b": f"teacher {i}"} for i in range(4)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = RatingStore(tmp_path / "ratings.db")
    store.add_pairs(pairs, model_a=model, model_b="teacher")
    for rater in ("ann", "bob"):
        store.add_rater(rater)
        while (shown := store.next_pair(rater)) is not None:
            # both prefer the model's answer on k0 and k1, the teacher's on k2, and call k3 a tie
            want = {"k0": "a", "k1": "a", "k2": "b"}.get(shown.item_id)
            choice = "tie" if want is None else ("A" if shown.left == want else "B")
            assert store.submit(rater, shown.pair_id, choice)
    _, json_path = write_report(run, human={model: tmp_path / "ratings.db"})
    rows = {r["model"]: r for r in json.loads(json_path.read_text())["preference"]["rows"]}
    human = rows[model]["human"]
    assert human["win_rate_ties_half"]["value"] == pytest.approx((2 + 0.5) / 4)
    assert human["as_good_or_better"]["value"] == pytest.approx(3 / 4)
    assert rows[model]["judge"] is not None  # the judge's verdicts stay beside the people's
    with pytest.raises(ImitlabError, match="no such model"):
        write_report(run, human={"nobody": tmp_path / "ratings.db"})
    with pytest.raises(ImitlabError, match="rating database not found"):
        write_report(run, human={model: tmp_path / "missing.db"})
    with pytest.raises(ImitlabError, match=r"rates side a = smollm2-135m-instruct/local/20000; load that model's"):
        write_report(run, human={"smollm2-135m-instruct/broad/20000": tmp_path / "ratings.db"})  # another model
    res = CliRunner().invoke(app, ["report", str(run), "--human", f"{model}={tmp_path / 'ratings.db'}"])
    assert res.exit_code == 0, res.output
    bad = CliRunner().invoke(app, ["report", str(run), "--human", "ratings.db"])
    assert bad.exit_code != 0 and "expected MODEL_ID=RATINGS.db" in str(bad.exception)


def test_a_probability_judge_is_plotted_by_p_better_without_a_position_warning(tmp_path: Path) -> None:
    """verdict: logprob averages both orders, so a judge that always leans to slot A still ranks by content: the
    report plots its P(better) and does not call its numbers order-driven."""
    results = fake_results()
    for i, block in enumerate(results["preference"].values()):
        judge = block["judge"]
        judge.update(verdict="logprob", p_a_better={"value": 0.2 + 0.05 * i, "low": 0.1, "high": 0.5, "n": 16},
                     position_bias={"A": 1.0, "B": 0.0, "n": 32})  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    html_path, json_path = write_report(tmp_path)
    pref = json.loads(json_path.read_text())["preference"]
    assert pref["metric"] == "p_a_better" and pref["position_biased"] == []
    judged = [s for s in pref["series"] if s["source"] == "judge"]
    assert judged and all(p["estimate"]["n"] == 16 for s in judged for p in s["points"])
    assert any(s["source"] == "human" for s in pref["series"])  # people keep their win rate
    html = html_path.read_text()
    assert "averaged over both orders" in html and "The judge put the same position first" not in html
