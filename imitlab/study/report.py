"""``imitlab report RUN_DIR``: the imitation-gap report, from ``RUN_DIR/results.json``.

Writes one self-contained HTML page (``report.html``: plots inline as base64 PNG, no scripts, no external
requests) and ``report.json`` (every number the page shows, with its 95% CI), plus ``report_main.png``
(benchmarks vs imitation tokens) for the README. The sections follow the paper (Gudibande et al. 2023):
preference vs imitation tokens, each targeted benchmark vs tokens with the teacher and the untouched base as
reference lines, benchmark vs base-model size, local vs broad imitation (Table 1), style (Table 2), sample
answers, and the manifests of what produced each model. A missing entry is ``null`` in JSON and "not run" on
the page, never zero. The input contract is in docs/study.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path, atomic_write_text, read_text, sha256_file
from imitlab.stage_config import StageConfig

SCHEMA = "imitlab.study/1"
REPORT_SCHEMA = "imitlab.report/1"
ROLES = ("teacher", "base", "imitation")
DATA_KINDS = ("broad", "local")
# A judge that puts the same position first in this share of its calls or more is ranking the order in which
# the answers are shown, not the answers: the report says so next to its verdicts.
POSITION_BIAS_WARN = 0.9
# The preference measure we plot: a tie counts half, so a model indistinguishable from the teacher sits at
# exactly 50% (the parity line) whatever the judge's tie rate. "As good or better" (the paper's crowd measure)
# is shown next to it in the table; it is >= 50% for such a model, by as much as the judge calls ties.
PREFERENCE_PLOT = "win_rate_ties_half"
PREFERENCE_FALLBACK = "as_good_or_better"
PREFERENCE_RATES = ("win_rate_ties_half", "as_good_or_better", "win", "tie", "loss", "p_a_better")
# A probability judge (verdict: logprob) is plotted by its mean P(imitation better), both orders averaged.
PREFERENCE_LOGPROB = "p_a_better"
# Style metric keys as the style stage writes them, and the older names in the results.json contract.
STYLE_LABELS = {
    "list_when_teacher": "lists when the teacher lists",
    "list_when_teacher_lists": "lists when the teacher lists",
    "summary_when_teacher": "summary when the teacher summarises",
    "summary_when_teacher_summarizes": "summary when the teacher summarises",
    "unigram_overlap": "unigram overlap (F1 x100)",
    "length_pearson": "length correlation (Pearson r)",
    "authoritative_tone": "authoritative tone",
}


class ReportConfig(StageConfig):
    max_samples: int = 8  # sample prompts shown side by side
    dpi: int = 110  # PNG resolution of the inline plots


def write_report(
    run_dir: str | Path,
    config: ReportConfig | None = None,
    human: dict[str, str | Path] | None = None,
    calibration: list[str | Path] | None = None,
) -> tuple[Path, Path]:
    """Read ``RUN_DIR/results.json``; write ``report.html``, ``report.json`` and ``report_main.png``.

    ``human`` maps model ids to rating databases (``imitlab rate``) whose ratings join the preference section.
    ``calibration`` lists ``calibration.json`` files (``imitlab judge calibrate``) shown beside the preference
    numbers of the judge they measured.
    """
    from imitlab.extras import require

    require("report", "the study report's plots")  # matplotlib: an extra, not everyone renders reports
    from imitlab.study.report_html import render_html
    from imitlab.study.report_plots import render_plots

    config = config or ReportConfig()
    run_dir = Path(run_dir)
    source = run_dir / "results.json"
    results = load_results(source)
    if human:
        results = merge_human(results, human, where=str(source))
    if calibration:
        results = merge_calibration(results, calibration)
    report = build_report(results, max_samples=config.max_samples)
    report["source"] = {"file": source.name, "sha256": sha256_file(source)}
    plots = render_plots(report, dpi=config.dpi)
    main_png = run_dir / "report_main.png"
    if "benchmarks" in plots:
        with atomic_path(main_png) as tmp:
            tmp.write_bytes(plots["benchmarks"])
    else:
        main_png.unlink(missing_ok=True)  # a plot from an earlier results.json would no longer match
    html_path, json_path = run_dir / "report.html", run_dir / "report.json"
    atomic_write_text(json_path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(html_path, render_html(report, plots))
    return html_path, json_path


# -- reading and checking results.json ------------------------------------------------------------------
def load_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ImitlabError(f"{path}: no results.json here (run `imitlab sweep` or `imitlab demo` first)")
    try:
        results = json.loads(read_text(path))  # read_text: encodings and NUL bytes, each naming line and column
    except json.JSONDecodeError as exc:
        raise ImitlabError(f"{path}, line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ImitlabError(f"{path}: JSON nested too deeply") from None
    _check(results, path)
    return results


def _fail(path: Path, field: str, problem: str) -> ImitlabError:
    return ImitlabError(f"{path}: field {field}: {problem}")


def _check(results: Any, path: Path) -> None:
    """Structural checks, so a bad file fails with the field that is wrong rather than deep in a plot."""
    if not isinstance(results, dict):
        raise _fail(path, "(top level)", "must be a JSON object")
    if results.get("schema") != SCHEMA:
        raise _fail(path, "schema", f"must be {SCHEMA!r}, got {results.get('schema')!r}")
    models = results.get("models")
    if not isinstance(models, list) or not models:
        raise _fail(path, "models", "must be a non-empty list")
    seen: set[str] = set()
    for i, m in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            raise _fail(path, f"{where}.id", "every model needs a string id")
        if m["id"] in seen:
            raise _fail(path, f"{where}.id", f"duplicate model id {m['id']!r}")
        seen.add(m["id"])
        if m.get("role") not in ROLES:
            raise _fail(path, f"{where}.role", f"must be one of {', '.join(ROLES)}, got {m.get('role')!r}")
        if m["role"] == "imitation":
            if m.get("data_kind") not in DATA_KINDS:
                raise _fail(path, f"{where}.data_kind", f"must be broad or local, got {m.get('data_kind')!r}")
            if not isinstance(m.get("tokens"), int | float) or m["tokens"] <= 0:
                raise _fail(path, f"{where}.tokens", "an imitation model needs a positive token count")
            if not isinstance(m.get("base"), str):
                raise _fail(path, f"{where}.base", "an imitation model needs its base model's name")
        params = m.get("params_m")
        if params is not None and (not isinstance(params, int | float) or params <= 0):
            raise _fail(path, f"{where}.params_m", f"must be a positive number or null, got {params!r}")
    for section in ("benchmarks", "preference", "style", "manifests"):
        block = results.get(section) or {}
        if not isinstance(block, dict):
            raise _fail(path, section, "must be an object keyed by model id")
        for key, value in block.items():
            if (
                value is not None
                and not isinstance(value, dict)
                and not (section == "manifests" and isinstance(value, str))
            ):
                raise _fail(path, f"{section}.{key}", "must be an object or null")
            # Style may carry reference columns that are not models (a second sample of the teacher: the ceiling).
            if key not in seen and section != "style":
                raise _fail(path, f"{section}.{key}", "names a model that is not in models")
    for mid, benches in (results.get("benchmarks") or {}).items():
        for bench, summary in (benches or {}).items():
            metrics = summary.get("metrics") if isinstance(summary, dict) else None
            if not isinstance(metrics, dict):
                raise _fail(path, f"benchmarks.{mid}.{bench}.metrics", "must be an object of estimates")
            for metric, est in metrics.items():
                _check_estimate(est, path, f"benchmarks.{mid}.{bench}.metrics.{metric}")
    if not isinstance(results.get("samples") or [], list):
        raise _fail(path, "samples", "must be a list")
    for i, s in enumerate(results.get("samples") or []):
        if not isinstance(s, dict) or not isinstance(s.get("prompt"), str) or not isinstance(s.get("answers"), dict):
            raise _fail(path, f"samples[{i}]", "needs a prompt string and an answers object")


def _check_estimate(est: Any, path: Path, field: str) -> None:
    if est is None:
        return
    if not isinstance(est, dict) or "value" not in est:
        raise _fail(path, field, "an estimate must be an object with value, low, high, n")
    for key in ("value", "low", "high"):
        v = est.get(key)
        if v is not None and not isinstance(v, int | float):
            raise _fail(path, f"{field}.{key}", f"must be a number or null, got {v!r}")


# -- from results to the report's numbers -----------------------------------------------------------------
def _est(obj: Any) -> dict[str, Any] | None:
    """A clean estimate dict, or None when the entry is missing (shown as "not run")."""
    if not isinstance(obj, dict) or "value" not in obj:
        return None

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    return {"value": num(obj.get("value")), "low": num(obj.get("low")), "high": num(obj.get("high")),
            "n": obj.get("n")}  # fmt: skip


def _rate(block: Any, name: str) -> dict[str, Any] | None:
    """A rate from a judge/human block: at the top level (sweep output) or under ``rates`` (tally output)."""
    if not isinstance(block, dict):
        return None
    return _est(block.get(name)) or _est((block.get("rates") or {}).get(name))


def _imitations(models: list[dict[str, Any]], base: str, kind: str) -> list[dict[str, Any]]:
    found = [m for m in models if m["role"] == "imitation" and m["base"] == base and m["data_kind"] == kind]
    return sorted(found, key=lambda m: m["tokens"])


def _model_row(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "role", "spec", "base", "data_kind", "tokens", "params_m")
    return {k: m.get(k) for k in keys}


def build_report(results: dict[str, Any], *, max_samples: int = 8) -> dict[str, Any]:
    """Everything the page shows, as plain JSON (the report.json file)."""
    from imitlab.study.findings import decide_findings

    models = results["models"]
    by_id = {m["id"]: m for m in models}
    teacher = next((m for m in models if m["role"] == "teacher"), None)
    bases = [m for m in models if m["role"] == "base"]
    # Base names: the untouched base models, plus any base an imitation model names without its own row.
    base_names = [m["base"] or m["spec"] for m in bases]
    base_names += sorted({m["base"] for m in models if m["role"] == "imitation"} - set(base_names))
    base_row = {(m["base"] or m["spec"]): m for m in bases}
    kinds = [k for k in DATA_KINDS if any(m.get("data_kind") == k for m in models)]
    return {
        "schema": REPORT_SCHEMA,
        "run": results.get("run", {}),
        "teacher": results.get("teacher") or (teacher or {}).get("spec"),
        "models": [_model_row(m) for m in models],
        "preference": _preference(results, models, base_names, base_row, kinds),
        "benchmarks": _benchmarks(results, models, teacher, base_names, base_row, kinds),
        "bench_cells": {
            m["id"]: {
                b: _bench_est(results, m["id"], b, h) for b in _bench_names(results) if (h := _headline(results, b))
            }
            for m in models
        },
        "table1": _table1(results, models, teacher, base_names, base_row),
        "style": _style(results, models),
        "samples": _samples(results, by_id, max_samples),
        "manifests": {m["id"]: (results.get("manifests") or {}).get(m["id"]) for m in models},
        "findings": decide_findings(results),  # the paper's four findings, decided by CI rules (findings.py)
        "calibration": _calibration(results),
    }


def merge_calibration(results: dict[str, Any], paths: list[str | Path]) -> dict[str, Any]:
    """Put judge calibrations (``imitlab judge calibrate`` output) into ``results["judge_calibration"]``."""
    merged = dict(results.get("judge_calibration") or {})
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ImitlabError(f"judge calibration not found: {path}")
        try:
            cal = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise ImitlabError(f"{path}, line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(cal, dict) or not isinstance(cal.get("judge"), str) or not isinstance(cal.get("text"), dict):
            raise ImitlabError(f"{path}: field judge/text: not an `imitlab judge calibrate` calibration.json")
        merged[cal["judge"]] = cal
    return {**results, "judge_calibration": merged}


def _calibration(results: dict[str, Any]) -> dict[str, Any]:
    """Per judge spec, its agreement with GPT-4 for the verdict kind its preference numbers used (text unless the
    judge stage says ``verdict: logprob``), so the page can show how far to trust them."""
    blocks = (results.get("preference") or {}).values()
    judges = [p["judge"] for p in blocks if isinstance((p or {}).get("judge"), dict)]
    used = {j.get("spec"): j.get("verdict", "text") for j in judges}
    out = {}
    for spec, cal in (results.get("judge_calibration") or {}).items():
        kind = used.get(spec, "text")
        numbers = cal.get(kind) or cal.get("text") or {}
        out[spec] = {
            "verdict": kind if kind in cal else "text",
            "n": (cal.get("sample") or {}).get("n"),
            **{k: _est(numbers.get(k)) for k in ("agreement", "kappa", "order_agreement", "position_a")},
        }
    return out


def merge_human(results: dict[str, Any], human: dict[str, str | Path], where: str = "results.json") -> dict[str, Any]:
    """Put people's ratings into ``results["preference"][model]["human"]``.

    One rating database per model, filled from that model's judge pairs (``RUN/stages/judge-*/pairs.jsonl``,
    where side a is the model and side b the teacher), so a win is the model's. Each item counts once, by the
    majority of its raters, and the tally comes with bootstrap CIs (``imitlab.rate.report``).
    """
    from imitlab.rate.report import report as rating_report

    ids = [m["id"] for m in results.get("models", []) if m.get("role") != "teacher"]
    preference = dict(results.get("preference") or {})
    for model_id, db in human.items():
        if model_id not in ids:
            raise ImitlabError(f"human ratings for {model_id!r}: no such model in {where}; models: {', '.join(ids)}")
        if not Path(db).is_file():
            raise ImitlabError(f"human ratings for {model_id!r}: rating database not found: {db}")
        summary = rating_report(db)
        if not summary["n_items_rated"]:
            raise ImitlabError(f"human ratings for {model_id!r}: {db} holds no ratings yet")
        sides = {a for a, _ in summary["models"]}
        if sides != {model_id}:  # a win must be the model's: side a of every rated pair is that model
            raise ImitlabError(
                f"human ratings for {model_id!r}: {db} rates side a = {', '.join(sorted(sides))}; load that model's "
                f"judge pairs with `imitlab rate init --model-a {model_id} --model-b teacher`"
            )
        block = {"source": str(db), "n": summary["n_items_rated"], "ratings": summary["n_ratings"],
                 "raters": summary["inter_rater"]["raters"], **summary["human"]}  # fmt: skip
        preference[model_id] = {**(preference.get(model_id) or {}), "human": block}
    return {**results, "preference": preference}


def _preference(results, models, base_names, base_row, kinds) -> dict[str, Any]:
    pref = results.get("preference") or {}
    blocks = {mid: (p or {}) for mid, p in pref.items()}
    # Plot the tie-half win rate where the judge stage wrote it; otherwise "as good or better". A probability
    # judge is plotted by its order-averaged P(better) (people, where they rated, by their tie-half win rate).
    has_half = any(_rate(p.get(src), PREFERENCE_PLOT) for p in blocks.values() for src in ("judge", "human"))
    metric = PREFERENCE_PLOT if has_half or not blocks else PREFERENCE_FALLBACK
    judged = [p.get("judge") for p in blocks.values() if p.get("judge")]
    if judged and all(j.get("verdict") == "logprob" and _rate(j, PREFERENCE_LOGPROB) for j in judged):
        metric = PREFERENCE_LOGPROB
    rows = []
    for m in models:
        if m["role"] == "teacher":
            continue
        row = {"model": m["id"], "base": m.get("base"), "data_kind": m.get("data_kind"), "tokens": m.get("tokens")}
        for src in ("judge", "human"):
            block = blocks.get(m["id"], {}).get(src)
            row[src] = {r: _rate(block, r) for r in PREFERENCE_RATES} if block else None
            if block and src == "judge":
                row["judge_spec"] = block.get("spec")
                row["judge_unparsed"] = block.get("unparsed", (block.get("counts") or {}).get("unparsed"))
                row["judge_same_position"] = _same_position(block.get("position_bias"))
                row["judge_verdict"] = block.get("verdict", "text")
        rows.append(row)
    series = []
    for src in ("judge", "human"):
        for base in base_names:
            ref = base_row.get(base)
            ref_block = blocks.get(ref["id"], {}).get(src) if ref else None
            for kind in kinds:
                points = []
                for m in _imitations(models, base, kind):
                    est = _rate(blocks.get(m["id"], {}).get(src), _metric_of(src, metric))
                    if est is not None:
                        points.append({"model": m["id"], "tokens": m["tokens"], "estimate": est})
                if points:
                    series.append({"source": src, "base": base, "data_kind": kind, "points": points,
                                   "base_model": _rate(ref_block, _metric_of(src, metric))})  # fmt: skip
    # a probability judge averages both orders, so a lean towards one slot cancels: no warning for it
    biased = [r["model"] for r in rows if (r.get("judge_same_position") or 0) >= POSITION_BIAS_WARN
              and r.get("judge_verdict") != "logprob"]  # fmt: skip
    return {"metric": metric, "parity": 0.5, "rows": rows, "series": series, "position_biased": biased}


def _metric_of(source: str, metric: str) -> str:
    """People give verdicts, not probabilities: their series keeps the tie-half win rate."""
    return PREFERENCE_PLOT if source == "human" and metric == PREFERENCE_LOGPROB else metric


def _same_position(bias: Any) -> float | None:
    """The larger of the judge's first- and second-position shares (0.5 = no preference for a position)."""
    if not isinstance(bias, dict) or not bias.get("n"):
        return None
    shares = [bias.get(k) for k in ("A", "B") if isinstance(bias.get(k), int | float)]
    return max(shares) if shares else None


def _bench_est(results: dict[str, Any], model_id: str | None, bench: str, metric: str) -> dict[str, Any] | None:
    if model_id is None:
        return None
    summary = ((results.get("benchmarks") or {}).get(model_id) or {}).get(bench) or {}
    return _est((summary.get("metrics") or {}).get(metric))


def _bench_names(results: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for benches in (results.get("benchmarks") or {}).values():
        names += [b for b in (benches or {}) if b not in names]
    return names


def _headline(results: dict[str, Any], bench: str) -> str | None:
    """The named headline metric if any model has it; else the first metric written (a misnamed headline,
    e.g. ``exact_match`` where the evaluator writes ``em``, must not turn every cell into "not run")."""
    written: list[str] = []
    for benches in (results.get("benchmarks") or {}).values():
        metrics = ((benches or {}).get(bench) or {}).get("metrics") or {}
        written += [k for k in metrics if k not in written]
    named = (results.get("headline_metric") or {}).get(bench)
    if named in written or not written:
        return named
    return written[0]


def _benchmarks(results, models, teacher, base_names, base_row, kinds) -> dict[str, Any]:
    out = {}
    for bench in _bench_names(results):
        metric = _headline(results, bench)
        if metric is None:
            continue
        tid = teacher["id"] if teacher else None
        entry: dict[str, Any] = {
            "metric": metric,
            "metric_named": (results.get("headline_metric") or {}).get(bench),
            "teacher": _bench_est(results, tid, bench, metric),
            "teacher_params_m": (teacher or {}).get("params_m"),
            "bases": {},
            "series": [],
        }
        for base in base_names:
            ref = base_row.get(base)
            entry["bases"][base] = {
                "model": ref["id"] if ref else None,
                "params_m": (ref or {}).get("params_m")
                or next((m.get("params_m") for m in models if m.get("base") == base), None),
                "estimate": _bench_est(results, ref["id"] if ref else None, bench, metric),
            }
            for kind in kinds:
                points = [
                    {"model": m["id"], "tokens": m["tokens"], "estimate": _bench_est(results, m["id"], bench, metric)}
                    for m in _imitations(models, base, kind)
                ]
                if points:
                    entry["series"].append({"base": base, "data_kind": kind, "points": points})
        out[bench] = entry
    return out


def _cell(results: dict[str, Any], model: dict[str, Any] | None, bench: str, metric: str) -> dict[str, Any]:
    mid = model["id"] if model else None
    return {"model": mid, "tokens": (model or {}).get("tokens"), "estimate": _bench_est(results, mid, bench, metric)}


def _table1(results, models, teacher, base_names, base_row) -> dict[str, Any]:
    """Paper Table 1, per benchmark: rows are base models; no imitation / broad / local (largest budget) / teacher."""
    tables = {}
    for bench in _bench_names(results):
        metric = _headline(results, bench)
        if metric is None:
            continue
        rows = []
        for base in base_names:
            row: dict[str, Any] = {"base": base, "none": _cell(results, base_row.get(base), bench, metric)}
            for kind in DATA_KINDS:
                found = _imitations(models, base, kind)
                row[kind] = _cell(results, found[-1] if found else None, bench, metric)
            rows.append(row)
        tables[bench] = {"metric": metric, "rows": rows, "teacher": _cell(results, teacher, bench, metric)["estimate"]}
    return tables


def _style(results: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, Any]:
    style = results.get("style") or {}
    metrics: list[str] = []
    for table in style.values():
        metrics += [k for k in (table or {}) if k not in metrics and isinstance((table or {})[k], dict)]
    order = [m["id"] for m in models if m["id"] in style] + [k for k in style if k not in {m["id"] for m in models}]
    rows = [{"model": mid, "values": {k: _est((style[mid] or {}).get(k)) for k in metrics}} for mid in order]
    references = [k for k in style if k not in {m["id"] for m in models}]
    labels = {k: STYLE_LABELS.get(k, k) for k in metrics}
    return {"metrics": metrics, "labels": labels, "rows": rows, "references": references}


def _samples(results: dict[str, Any], by_id: dict[str, Any], limit: int) -> dict[str, Any]:
    samples = results.get("samples") or []
    order = {mid: i for i, mid in enumerate(by_id)}
    shown = []
    for s in samples[:limit]:
        answers = sorted(s["answers"].items(), key=lambda kv: order.get(kv[0], len(order)))
        shown.append({"prompt": s["prompt"], "answers": [{"model": k, "text": v} for k, v in answers]})
    return {"total": len(samples), "shown": shown}
