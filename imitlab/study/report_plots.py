"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no display, no global state).

Every point is a number from report.json with its 95% CI as an error bar; a missing number is not drawn
(never drawn as zero). Reference lines: the teacher (red, dashed, CI shaded) and the untouched base model
(grey, dotted, CI shaded).
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, PercentFormatter

KIND_STYLE = {"broad": {"color": "#1f77b4", "marker": "o"}, "local": {"color": "#ff7f0e", "marker": "s"}}
# Broad and local points at the same x are nudged apart (x is on a log axis, so by a factor) to keep both visible.
DODGE = {"broad": 0.96, "local": 1.04}
TEACHER = "#d62728"
BASE = "#555555"


# The preference plot's y axis, by the metric the report chose (imitlab.study.report._preference).
PREFERENCE_AXIS = {"win_rate_ties_half": "win rate vs teacher (tie = ½)", "p_a_better": "P(better than teacher), judge"}


def render_plots(report: dict[str, Any], *, dpi: int = 110) -> dict[str, bytes]:
    """PNG bytes per figure: ``preference``, ``benchmarks`` (the main plot) and ``size``, where there is data."""
    plots = {}
    if report["preference"]["series"]:
        plots["preference"] = _png(_preference(report), dpi)
    if report["benchmarks"]:
        plots["benchmarks"] = _png(_benchmarks(report), dpi)
    size = _size(report)
    if size is not None:
        plots["size"] = _png(size, dpi)
    return plots


def _png(fig: Figure, dpi: int) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # constrained layout already fits; "tight" would draw twice
    return buf.getvalue()


def _yerr(est: dict[str, Any]) -> tuple[float, float]:
    v, lo, hi = est["value"], est.get("low"), est.get("high")
    return (v - lo if lo is not None else 0.0, hi - v if hi is not None else 0.0)


def _errorbar(ax: Axes, xs: list[float], ests: list[dict[str, Any] | None], label: str, **style: Any) -> None:
    pts = [(x, e) for x, e in zip(xs, ests, strict=True) if e is not None and e["value"] is not None]
    if not pts:
        return
    errs = [_yerr(e) for _, e in pts]
    ax.errorbar([x for x, _ in pts], [e["value"] for _, e in pts], yerr=[[a for a, _ in errs], [b for _, b in errs]],
                label=label, capsize=3, linewidth=1.6, markersize=5, **style)  # fmt: skip


def _hline(ax: Axes, est: dict[str, Any] | None, label: str, color: str, style: str) -> None:
    if est is None or est["value"] is None:
        return
    ax.axhline(est["value"], color=color, linestyle=style, linewidth=1.4, label=label)
    if est.get("low") is not None and est.get("high") is not None:
        ax.axhspan(est["low"], est["high"], color=color, alpha=0.08, linewidth=0)


def _grid(n_rows: int, n_cols: int, w: float = 4.4, h: float = 3.1) -> tuple[Figure, list[list[Axes]]]:
    fig = Figure(figsize=(w * n_cols, h * n_rows + 0.5), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, [list(row) for row in axes]


def _short(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def _log_x(ax: Axes, ticks: list[float], label: str) -> None:
    """Log x with ticks at the values that were run (a budget sweep has a handful), not decade labels."""
    ax.set_xscale("log")
    ticks = sorted({t for t in ticks if t})
    if ticks:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.25)


def _legend(fig: Figure, axes: list[list[Axes]]) -> None:
    """One legend for the whole figure, below the panels, so it never covers a point."""
    seen: dict[str, Any] = {}
    for row in axes:
        for ax in row:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(label, handle)
    if seen:
        ncols = min(len(seen), 2 * len(axes[0]))  # about two entries per panel's width, so it is never cut off
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, fontsize=8,
                   frameon=False)  # fmt: skip


def _preference(report: dict[str, Any]) -> Figure:
    pref = report["preference"]
    bases = list(dict.fromkeys(s["base"] for s in pref["series"]))
    fig, axes = _grid(1, len(bases))
    for ax, base in zip(axes[0], bases, strict=True):
        series = [s for s in pref["series"] if s["base"] == base]
        ref = next((s["base_model"] for s in series if s["source"] == "judge" and s["base_model"]), None)
        _hline(ax, ref, "base model, no imitation (judge)", BASE, ":")
        ax.axhline(pref["parity"], color=TEACHER, linestyle="--", linewidth=1.4, label="teacher parity (50%)")
        for s in series:
            human = s["source"] == "human"
            style = dict(KIND_STYLE[s["data_kind"]], linestyle="--" if human else "-")
            if human:
                style["markerfacecolor"] = "white"
            label = f"imitation, {s['data_kind']} ({s['source']})"
            xs = [p["tokens"] * DODGE[s["data_kind"]] for p in s["points"]]
            _errorbar(ax, xs, [p["estimate"] for p in s["points"]], label, **style)
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(base, fontsize=10)
        ax.set_ylabel(PREFERENCE_AXIS.get(pref["metric"], "as good as or better than teacher"))
        _log_x(ax, [p["tokens"] for s in series for p in s["points"]], "imitation tokens")
    fig.suptitle("Preference vs imitation tokens (95% CIs)", fontsize=11)
    _legend(fig, axes)
    return fig


def _benchmarks(report: dict[str, Any]) -> Figure:
    benches = report["benchmarks"]
    bases = list(dict.fromkeys(b for e in benches.values() for b in e["bases"])) or ["(no base model)"]
    fig, axes = _grid(len(benches), len(bases))
    for row, (bench, entry) in zip(axes, benches.items(), strict=True):
        for ax, base in zip(row, bases, strict=True):
            _hline(ax, entry["teacher"], "teacher", TEACHER, "--")
            _hline(ax, (entry["bases"].get(base) or {}).get("estimate"), "base model, no imitation", BASE, ":")
            series = [s for s in entry["series"] if s["base"] == base]
            for s in series:
                _errorbar(ax, [p["tokens"] * DODGE[s["data_kind"]] for p in s["points"]],
                          [p["estimate"] for p in s["points"]], f"imitation, {s['data_kind']}",
                          **KIND_STYLE[s["data_kind"]])  # fmt: skip
            low, high = ax.get_ylim()
            if low < 0:  # benchmark metrics are rates: no negative axis, just room for markers at 0
                ax.set_ylim(-0.03 * high, high)
            ax.set_title(f"{bench} — {base}", fontsize=10)
            ax.set_ylabel(entry["metric"])
            _log_x(ax, [p["tokens"] for s in series for p in s["points"]], "imitation tokens")
            if not ax.has_data():
                ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", color=BASE)
    fig.suptitle("Targeted benchmarks vs imitation tokens (95% CIs)", fontsize=11)
    _legend(fig, axes)
    return fig


def _size(report: dict[str, Any]) -> Figure | None:
    """Benchmark vs base-model size: only meaningful with two or more base sizes."""
    benches = report["benchmarks"]
    sizes = {b["params_m"] for e in benches.values() for b in e["bases"].values() if b["params_m"]}
    if len(sizes) < 2:
        return None
    fig, axes = _grid(1, len(benches))
    for ax, (bench, entry) in zip(axes[0], benches.items(), strict=True):
        rows = [r for r in report["table1"][bench]["rows"] if entry["bases"][r["base"]]["params_m"]]
        rows.sort(key=lambda r: entry["bases"][r["base"]]["params_m"])
        xs = [entry["bases"][r["base"]]["params_m"] for r in rows]
        _hline(ax, entry["teacher"], "teacher", TEACHER, "--")
        _errorbar(ax, xs, [r["none"]["estimate"] for r in rows], "base model, no imitation", color=BASE, marker="D")
        for kind, style in KIND_STYLE.items():
            _errorbar(ax, [x * DODGE[kind] for x in xs], [r[kind]["estimate"] for r in rows],
                      f"imitation, {kind} (largest budget)", **style)  # fmt: skip
        ax.set_ylabel(entry["metric"])
        ax.set_title(bench, fontsize=10)
        _log_x(ax, xs, "base model parameters (millions)")
    fig.suptitle("Benchmarks vs base-model size (95% CIs)", fontsize=11)
    _legend(fig, axes)
    return fig
