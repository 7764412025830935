"""``imitlab demo``, ``imitlab sweep`` and ``imitlab report``: the study, thin over imitlab.study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from imitlab.cli.options import CacheOpt, DataDirOpt
from imitlab.cli.output import console
from imitlab.errors import ImitlabError


def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its results.")] = Path("runs/demo"),
    data_dir: DataDirOpt = None,
    cache: CacheOpt = None,
) -> None:
    """The paper's study in miniature, offline: collect, train, evaluate, judge, report."""
    from imitlab.study.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, cache=cache, data_dir=data_dir), console=console)


def sweep(
    config: Annotated[Path, typer.Argument(help="Sweep config (YAML); see docs/study.md.")],
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<name>).")] = None,
    executor: Annotated[
        str, typer.Option(help="local: stages one by one here | ray: independent cells in parallel on a Ray cluster.")
    ] = "local",
    address: Annotated[
        Optional[str], typer.Option(help="With --executor ray: the cluster (ray://HOST:10001, HOST:6379, auto).")
    ] = None,
) -> None:
    """Run the grid (budgets x base models x broad/local data); every stage is cached and resumable."""
    from imitlab.study.sweep import sweep as run

    results = run(config, out, console, executor=executor, address=address)
    console.print(
        f"results: {len(results['models'])} models; stages run {len(results['run']['stages_run'])}, "
        f"reused {len(results['run']['stages_reused'])}"
    )


def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding results.json (from sweep or demo).")],
    human: Annotated[
        list[str] | None,
        typer.Option("--human", help="MODEL_ID=RATINGS.db: people's ratings of that model vs the teacher (repeat)."),
    ] = None,
    calibration: Annotated[
        list[Path] | None,
        typer.Option("--calibration", help="calibration.json from `imitlab judge calibrate`, shown by its judge."),
    ] = None,
) -> None:
    """The imitation-gap report: RUN_DIR/report.html (one self-contained page) and report.json."""
    from imitlab.study.report import write_report

    ratings: dict[str, str | Path] = {}
    for item in human or []:
        model_id, sep, db = item.partition("=")  # model ids never hold "="; a path might
        if not sep or not model_id or not db:
            raise ImitlabError(f"--human {item!r}: expected MODEL_ID=RATINGS.db")
        ratings[model_id] = Path(db)
    html, numbers = write_report(run_dir, human=ratings, calibration=list(calibration or []))
    console.print(f"report: {html}\nnumbers: {numbers}\nmain plot: {run_dir / 'report_main.png'}", soft_wrap=True)
