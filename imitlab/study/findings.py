"""The paper's four findings, decided from ``results.json``: reproduced, not reproduced or inconclusive.

Gudibande et al. (2023) report that (1) style and preference move towards the teacher as imitation data grows;
(2) the targeted benchmarks of broad imitation models stay near their base model; (3) a larger base model closes
more of the gap than more imitation data; (4) task-specific ("local") imitation improves its own task.

Every decision is a rule on 95% confidence intervals, written out here and in docs/study.md, never a judgement
call. "Separated" means the two intervals do not overlap (one's low is above the other's high), which is stricter
than a 95% test of the difference. Finding 3 compares two differences of scores; its interval is the normal
approximation from each estimate's interval (standard error = half-width / 1.96, estimates taken as independent,
which overstates the error of scores on the same items, so it too errs towards "inconclusive").

Each finding collects evidence cells (one per base model, benchmark or measure) that support it, contradict it or
decide nothing. The finding is **reproduced** when at least one cell supports it and none contradicts it, **not
reproduced** when at least one contradicts it and none supports it, and **inconclusive** otherwise (no informative
cell, or cells both ways); the reason says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
SUPPORTS, CONTRADICTS, UNDECIDED = "supports", "contradicts", "undecided"
Z95 = 1.959963984540054
CLAIMS = {
    1: "Style and preference move towards the teacher as imitation tokens grow",
    2: "Targeted benchmarks of broad imitation models stay near their base model",
    3: "A larger base model closes more of the gap than more imitation data",
    4: "Task-specific imitation improves its own task",
}
# The metric each benchmark is decided on: a soft one where exact match sits at the floor for small models
# (token F1 credits a partly right answer), else the benchmark's headline. Overridable per call.
DECIDING_METRICS = {"nq_open": "f1", "triviaqa": "f1", "humaneval": "pass@1", "gsm8k": "number", "mmlu": "acc",
                    "arc_easy": "acc", "arc_challenge": "acc"}  # fmt: skip
PREFERENCE_MEASURES = ("win_rate_ties_half",)
# Style metrics where higher means more like the teacher (authoritative tone has no teacher value to move towards)
STYLE_MEASURES = ("unigram_overlap", "list_when_teacher_lists", "summary_when_teacher_summarizes")
POSITION_BIAS_LIMIT = 0.9  # a judge that picks one slot this often ranks the order, not the answers (report.py)


# -- intervals ------------------------------------------------------------------------------------------------
def _est(obj: Any) -> dict[str, float] | None:
    """An estimate with a usable interval, else None."""
    if not isinstance(obj, Mapping):
        return None
    vals = [obj.get(k) for k in ("value", "low", "high")]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in vals):
        return None
    return {"value": float(vals[0]), "low": float(vals[1]), "high": float(vals[2]), "n": obj.get("n")}  # type: ignore[arg-type]


def compare(x: dict[str, float], y: dict[str, float]) -> str:
    """ "above" / "below" when the intervals of x and y do not overlap, else "overlap"."""
    if x["low"] > y["high"]:
        return "above"
    if x["high"] < y["low"]:
        return "below"
    return "overlap"


def linear_combination(terms: Sequence[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """sum(c * x) with a normal-approximation 95% interval, each x's standard error from its own interval."""
    value = sum(c * x["value"] for c, x in terms)
    se = math.sqrt(sum((c * (x["high"] - x["low"]) / (2 * Z95)) ** 2 for c, x in terms))
    return {"value": value, "low": value - Z95 * se, "high": value + Z95 * se}


def decide(cells: Sequence[dict[str, Any]], what: str) -> tuple[str, str]:
    """The finding's verdict and reason from its evidence cells."""
    support = sum(c["outcome"] == SUPPORTS for c in cells)
    against = sum(c["outcome"] == CONTRADICTS for c in cells)
    if support and not against:
        return REPRODUCED, f"{support} of {len(cells)} {what} support it and none contradicts it"
    if against and not support:
        return NOT_REPRODUCED, f"{against} of {len(cells)} {what} contradict it and none supports it"
    if support and against:
        return INCONCLUSIVE, f"mixed: {support} of {len(cells)} {what} support it and {against} contradict it"
    if not cells:
        return INCONCLUSIVE, f"not measured: this run has no {what}"
    return INCONCLUSIVE, f"none of {len(cells)} {what} separates at 95% (the intervals overlap)"


# -- reading results.json -------------------------------------------------------------------------------------
class _Run:
    def __init__(self, results: Mapping[str, Any], metrics: Mapping[str, str] | None) -> None:
        self.results = results
        self.models = list(results.get("models") or [])
        self.teacher = next((m for m in self.models if m.get("role") == "teacher"), None)
        self.bases = {m.get("base") or m["spec"]: m for m in self.models if m.get("role") == "base"}
        self.base_names = list(self.bases) + sorted(
            {m["base"] for m in self.models if m.get("role") == "imitation"} - set(self.bases)
        )
        self.metrics = {**DECIDING_METRICS, **(metrics or {})}

    def imitations(self, base: str, kind: str) -> list[dict[str, Any]]:
        found = [
            m for m in self.models if m.get("role") == "imitation" and m["base"] == base and m["data_kind"] == kind
        ]
        return sorted(found, key=lambda m: m["tokens"])

    def benchmarks(self) -> list[str]:
        names: list[str] = []
        for benches in (self.results.get("benchmarks") or {}).values():
            names += [b for b in (benches or {}) if b not in names]
        return names

    def metric(self, bench: str) -> str | None:
        """The deciding metric if any model wrote it, else the headline."""
        written = {
            k
            for b in (self.results.get("benchmarks") or {}).values()
            for k in (((b or {}).get(bench) or {}).get("metrics") or {})
        }
        wanted = self.metrics.get(bench)
        if wanted in written:
            return wanted
        headline = (self.results.get("headline_metric") or {}).get(bench)
        return headline if headline in written else (sorted(written)[0] if written else None)

    def score(self, model: dict[str, Any] | None, bench: str, metric: str) -> dict[str, float] | None:
        if model is None:
            return None
        summary = ((self.results.get("benchmarks") or {}).get(model["id"]) or {}).get(bench) or {}
        return _est((summary.get("metrics") or {}).get(metric))

    def preference(self, model: dict[str, Any]) -> tuple[dict[str, float] | None, str | None, str]:
        """The preference against the teacher, why it is missing if it is, and what was read: people's or a text
        judge's tie-half win rate (``win_rate_ties_half``), or a probability judge's order-averaged P(better)
        (``p_a_better``)."""
        block = (self.results.get("preference") or {}).get(model["id"]) or {}
        for source in ("human", "judge"):
            rates = block.get(source)
            if not isinstance(rates, Mapping):
                continue
            if source == "judge" and rates.get("verdict") == "logprob" and _est(rates.get("p_a_better")):
                # P(better) averaged over both orders: a constant lean towards one slot cancels, so the position
                # gate below (for text verdicts) does not apply
                return _est(rates.get("p_a_better")), None, "p_a_better"
            if source == "judge" and _same_position(rates.get("position_bias")) >= POSITION_BIAS_LIMIT:
                return None, "the judge picked one position in 90% or more of its calls", "win_rate_ties_half"
            est = _est(rates.get("win_rate_ties_half")) or _est((rates.get("rates") or {}).get("win_rate_ties_half"))
            if est is not None:
                return est, None, "win_rate_ties_half"
        return None, "no preference measured", "win_rate_ties_half"

    def style(self, model: dict[str, Any], measure: str) -> dict[str, float] | None:
        return _est(((self.results.get("style") or {}).get(model["id"]) or {}).get(measure))

    def measure(self, model: dict[str, Any], family: str, measure: str) -> dict[str, float] | None:
        """A preference (the tie-half win rate) or style estimate of ``model``."""
        return self.preference(model)[0] if family == "preference" else self.style(model, measure)


def _same_position(bias: Any) -> float:
    if not isinstance(bias, Mapping) or not bias.get("n"):
        return 0.0
    shares = [bias[k] for k in ("A", "B") if isinstance(bias.get(k), int | float)]
    return max(shares) if shares else 0.0


def _cell(outcome: str, **fields: Any) -> dict[str, Any]:
    return {"outcome": outcome, **fields}


# -- the four findings --------------------------------------------------------------------------------------
def finding_1(run: _Run) -> dict[str, Any]:
    """Per base: the largest broad imitation vs the untouched base (or the smallest budget), on preference and
    on each style metric. Supported when preference and at least one style metric both move up for a base."""
    cells: list[dict[str, Any]] = []
    notes: list[str] = []
    for base in run.base_names:
        kind = "broad" if run.imitations(base, "broad") else "local"
        series = run.imitations(base, kind)
        if not series:
            continue
        top = series[-1]
        start_candidates = [run.bases.get(base), *series[:-1]]
        for family, measures in (("preference", PREFERENCE_MEASURES), ("style", STYLE_MEASURES)):
            for measure in measures:
                ref = next((m for m in start_candidates if m and run.measure(m, family, measure)), None)
                x = run.measure(top, family, measure)
                if family == "preference" and x is None:
                    notes.append(f"{base}: preference not used ({run.preference(top)[1]})")
                if x is None or ref is None:
                    continue
                y = run.measure(ref, family, measure)
                assert y is not None
                where = compare(x, y)
                shown = run.preference(top)[2] if family == "preference" else measure
                cells.append(_cell(
                    {"above": SUPPORTS, "below": CONTRADICTS}.get(where, UNDECIDED), base=base, family=family,
                    measure=shown, model=top["id"], reference=ref["id"], x=x, y=y, relation=where,
                ))  # fmt: skip
    by_base: dict[str, dict[str, set[str]]] = {}
    for c in cells:
        by_base.setdefault(c["base"], {}).setdefault(c["family"], set()).add(c["outcome"])
    both_up = [
        b
        for b, fam in by_base.items()
        if SUPPORTS in fam.get("preference", set()) and SUPPORTS in fam.get("style", set())
    ]
    against = [c for c in cells if c["outcome"] == CONTRADICTS]
    if both_up and not against:
        verdict, reason = REPRODUCED, f"preference and style both moved towards the teacher for {', '.join(both_up)}"
    elif against and not any(c["outcome"] == SUPPORTS for c in cells):
        verdict, reason = NOT_REPRODUCED, f"{len(against)} measure(s) moved away from the teacher and none towards it"
    elif not cells:
        verdict, reason = (
            INCONCLUSIVE,
            "not measured: no preference or style numbers for an imitation model and its base",
        )
    else:
        moved = sorted({f"{c['family']} ({c['measure']})" for c in cells if c["outcome"] == SUPPORTS})
        verdict = INCONCLUSIVE
        reason = (f"only {', '.join(moved)} moved towards the teacher; preference and style must both move"
                  if moved else "no measure separates at 95% (the intervals overlap)")  # fmt: skip
        if against:
            reason += f"; {len(against)} measure(s) moved away"
    return {"verdict": verdict, "reason": reason, "evidence": cells, "notes": notes}


def finding_2(run: _Run) -> dict[str, Any]:
    """Per base and benchmark: the largest broad imitation against the base and the teacher."""
    cells = []
    for bench in run.benchmarks():
        metric = run.metric(bench)
        if metric is None:
            continue
        teacher = run.score(run.teacher, bench, metric)
        for base in run.base_names:
            series = run.imitations(base, "broad")
            ref = run.score(run.bases.get(base), bench, metric)
            top = run.score(series[-1], bench, metric) if series else None
            if teacher is None or ref is None or top is None:
                continue
            fields = {"base": base, "benchmark": bench, "metric": metric, "model": series[-1]["id"], "x": top,
                      "base_score": ref, "teacher": teacher}  # fmt: skip
            if compare(teacher, ref) != "above":
                cells.append(_cell(UNDECIDED, relation="no gap: the teacher does not separate from the base", **fields))
            elif compare(top, ref) == "above":
                cells.append(_cell(CONTRADICTS, relation="moved above the base", **fields))
            elif compare(top, ref) == "below":
                cells.append(_cell(SUPPORTS, relation="fell below the base (no capability gained)", **fields))
            elif compare(top, teacher) == "below":
                cells.append(_cell(SUPPORTS, relation="overlaps the base, below the teacher", **fields))
            else:
                cells.append(_cell(UNDECIDED, relation="overlaps both the base and the teacher", **fields))
    verdict, reason = decide(cells, "base x benchmark cells with broad imitation")
    return {"verdict": verdict, "reason": reason, "evidence": cells}


def finding_3(run: _Run) -> dict[str, Any]:
    """Per benchmark: (largest base - smallest base, both at the largest broad budget) minus (smallest base at its
    largest broad budget - at its smallest, or its untouched base when it has one budget)."""
    sized = [(run.bases[b].get("params_m") if b in run.bases else None, b) for b in run.base_names]
    sized = [(p, b) for p, b in sized if isinstance(p, int | float)]
    cells: list[dict[str, Any]] = []
    if len(sized) < 2:
        return {"verdict": INCONCLUSIVE, "reason": "not measured: needs two base models of known size",
                "evidence": cells}  # fmt: skip
    small, large = min(sized)[1], max(sized)[1]
    small_series, large_series = run.imitations(small, "broad"), run.imitations(large, "broad")
    if not small_series or not large_series:
        return {"verdict": INCONCLUSIVE, "reason": "not measured: needs broad imitation of both base sizes",
                "evidence": cells}  # fmt: skip
    small_top = small_series[-1]
    large_top = next((m for m in reversed(large_series) if m["tokens"] == small_top["tokens"]), large_series[-1])
    small_start = small_series[0] if len(small_series) > 1 else run.bases.get(small)
    for bench in run.benchmarks():
        metric = run.metric(bench)
        if metric is None or small_start is None:
            continue
        big, small_end, small_begin = (run.score(m, bench, metric) for m in (large_top, small_top, small_start))
        if big is None or small_end is None or small_begin is None:
            continue
        bigger_base = linear_combination([(1, big), (-1, small_end)])
        more_data = linear_combination([(1, small_end), (-1, small_begin)])
        diff = linear_combination([(1, big), (-2, small_end), (1, small_begin)])  # bigger_base - more_data
        where = "above" if diff["low"] > 0 else "below" if diff["high"] < 0 else "overlap"
        cells.append(_cell(
            {"above": SUPPORTS, "below": CONTRADICTS}.get(where, UNDECIDED), benchmark=bench, metric=metric,
            bigger_base=bigger_base, more_data=more_data, difference=diff,
            models={"large": large_top["id"], "small": small_top["id"], "small_start": small_start["id"]},
            relation={"above": "the bigger base gained more", "below": "more data gained more"}.get(
                where, "the difference's interval includes 0"),
        ))  # fmt: skip
    verdict, reason = decide(cells, "benchmarks")
    return {"verdict": verdict, "reason": reason, "evidence": cells}


def local_benchmark(results: Mapping[str, Any]) -> str | None:
    """The benchmark local imitation targets, from the sweep config's seed file (NQ-open seeds -> nq_open)."""
    local = ((results.get("run") or {}).get("config") or {}).get("local") or {}
    seeds = str(local.get("seeds") or "") if isinstance(local, Mapping) else ""
    for needle, bench in (("nq_open", "nq_open"), ("NQ-open", "nq_open"), ("triviaqa", "triviaqa"), ("gsm8k", "gsm8k")):
        if needle in seeds:
            return bench
    return None


def finding_4(run: _Run, bench: str | None) -> dict[str, Any]:
    """Per base: the largest local imitation against the untouched base on the local task's benchmark."""
    cells = []
    metric = run.metric(bench) if bench else None
    if bench is None or metric is None:
        return {"verdict": INCONCLUSIVE, "reason": "not measured: the local task's benchmark is not in this run",
                "evidence": cells, "benchmark": bench}  # fmt: skip
    for base in run.base_names:
        series = run.imitations(base, "local")
        ref = run.score(run.bases.get(base), bench, metric)
        top = run.score(series[-1], bench, metric) if series else None
        if ref is None or top is None:
            continue
        where = compare(top, ref)
        broad = run.imitations(base, "broad")
        cells.append(_cell(
            {"above": SUPPORTS, "below": CONTRADICTS}.get(where, UNDECIDED), base=base, benchmark=bench, metric=metric,
            model=series[-1]["id"], x=top, base_score=ref, relation=where,
            broad=run.score(broad[-1], bench, metric) if broad else None,
        ))  # fmt: skip
    verdict, reason = decide(cells, "base models with local imitation")
    return {"verdict": verdict, "reason": reason, "evidence": cells, "benchmark": bench}


def decide_findings(
    results: Mapping[str, Any], *, metrics: Mapping[str, str] | None = None, local_bench: str | None = None
) -> dict[str, Any]:
    """All four findings: ``{"findings": [{id, claim, verdict, reason, evidence}], "reproduced": k, ...}``."""
    run = _Run(results, metrics)
    bench4 = local_bench or local_benchmark(results)
    decided = [finding_1(run), finding_2(run), finding_3(run), finding_4(run, bench4)]
    findings = [{"id": i, "claim": CLAIMS[i], **f} for i, f in enumerate(decided, start=1)]
    return {
        "rule": "95% intervals that do not overlap; finding 3: a normal-approximation interval of a difference",
        "metrics": {b: run.metric(b) for b in run.benchmarks()},
        "findings": findings,
        "reproduced": sum(f["verdict"] == REPRODUCED for f in findings),
    }
