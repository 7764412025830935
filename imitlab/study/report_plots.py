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
from matplotlib.ticker import EngFormatter, PercentFormatter

KIND_STYLE = {"broad": {"color": "#1f77b4", "marker": "o"}, "local": {"color": "#ff7f0e", "marker": "s"}}
TEACHER = "#d62728"
BASE = "#555555"


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
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
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


def _fmt(v: float | None) -> str:
    return "not run" if v is None else f"{v:.2f}"


def _grid(n_rows: int, n_cols: int, w: float = 4.4, h: float = 3.1) -> tuple[Figure, list[list[Axes]]]:
    fig = Figure(figsize=(w * n_cols, h * n_rows + 0.5), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, [list(row) for row in axes]


def _token_axis(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("imitation tokens")
    ax.grid(True, alpha=0.25)


def _preference(report: dict[str, Any]) -> Figure:
    pref = report["preference"]
    bases = list(dict.fromkeys(s["base"] for s in pref["series"]))
    fig, axes = _grid(1, len(bases))
    for ax, base in zip(axes[0], bases, strict=True):
        for s in (s for s in pref["series"] if s["base"] == base):
            human = s["source"] == "human"
            style = dict(KIND_STYLE[s["data_kind"]], linestyle="--" if human else "-")
            if human:
                style["markerfacecolor"] = "white"
            _errorbar(ax, [p["tokens"] for p in s["points"]], [p["estimate"] for p in s["points"]],
                      f"{s['data_kind']} ({s['source']})", **style)  # fmt: skip
            if not human:
                _hline(ax, s["base_model"], f"{base}, no imitation", BASE, ":")
        ax.axhline(pref["parity"], color=TEACHER, linestyle="--", linewidth=1.4, label="teacher parity")
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(base, fontsize=10)
        ax.set_ylabel("win rate vs teacher (tie = ½)" if pref["metric"] == "win_rate_ties_half" else
                      "as good as or better than teacher")  # fmt: skip
        _token_axis(ax)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Preference vs imitation tokens (95% CIs)", fontsize=11)
    return fig


def _benchmarks(report: dict[str, Any]) -> Figure:
    benches = report["benchmarks"]
    bases = list(dict.fromkeys(b for e in benches.values() for b in e["bases"])) or ["(no base model)"]
    fig, axes = _grid(len(benches), len(bases))
    for row, (bench, entry) in zip(axes, benches.items(), strict=True):
        for ax, base in zip(row, bases, strict=True):
            for s in (s for s in entry["series"] if s["base"] == base):
                _errorbar(ax, [p["tokens"] for p in s["points"]], [p["estimate"] for p in s["points"]],
                          f"imitation, {s['data_kind']}", **KIND_STYLE[s["data_kind"]])  # fmt: skip
            teacher = entry["teacher"]
            _hline(ax, teacher, f"teacher {_fmt(teacher and teacher['value'])}", TEACHER, "--")
            ref = (entry["bases"].get(base) or {}).get("estimate")
            _hline(ax, ref, f"base, no imitation {_fmt(ref and ref['value'])}", BASE, ":")
            ax.set_title(f"{bench} — {base}", fontsize=10)
            ax.set_ylabel(entry["metric"])
            _token_axis(ax)
            if not ax.has_data():
                ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", color=BASE)
            else:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("Targeted benchmarks vs imitation tokens (95% CIs)", fontsize=11)
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
        _errorbar(ax, xs, [r["none"]["estimate"] for r in rows], "base, no imitation", color=BASE, marker="D")
        for kind, style in KIND_STYLE.items():
            _errorbar(ax, xs, [r[kind]["estimate"] for r in rows], f"imitation, {kind} (largest budget)", **style)
        teacher = entry["teacher"]
        _hline(ax, teacher, f"teacher {_fmt(teacher and teacher['value'])}", TEACHER, "--")
        ax.set_xscale("log")
        ax.set_xlabel("base model parameters (millions)")
        ax.set_ylabel(entry["metric"])
        ax.set_title(bench, fontsize=10)
        ax.grid(True, alpha=0.25)
        if ax.has_data():
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("Benchmarks vs base-model size (95% CIs)", fontsize=11)
    return fig
