"""``imitlab rate init | add-rater | serve | export | report``: thin commands over imitlab.rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imitlab.cli.options import DbOpt
from imitlab.cli.output import console

rate_app = typer.Typer(help="Human preference ratings: a small web app (loopback, token per rater).")


@rate_app.command("init")
def rate_init(
    db: DbOpt,
    pairs: Annotated[Path, typer.Option("--pairs", help="pairs.jsonl from `imitlab judge --out DIR`.")],
    model_a: Annotated[str, typer.Option(help="Name of the model behind answer a.")] = "a",
    model_b: Annotated[str, typer.Option(help="Name of the model behind answer b.")] = "b",
) -> None:
    """Create (or extend) a rating database with the pairs to rate."""
    from imitlab.rate.db import RatingStore

    added = RatingStore(db).add_pairs(pairs, model_a=model_a, model_b=model_b)
    console.print(f"{added} new pairs in {db}")


@rate_app.command("add-rater")
def rate_add_rater(db: DbOpt, name: Annotated[str, typer.Argument(help="Rater name.")]) -> None:
    """Register a rater and print their token (shown once; only its hash is stored)."""
    from imitlab.rate.db import RatingStore

    token = RatingStore(db).add_rater(name)
    console.print(f"rater {name}: token {token}", markup=False, highlight=False)
    console.print("They sign in at http://HOST:PORT/ with it, or with the link /login?token=TOKEN", markup=False)


@rate_app.command("serve")
def rate_serve(
    db: DbOpt,
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
) -> None:
    """Serve the rating app until Ctrl-C."""
    from imitlab.extras import require

    require("rate", "imitlab rate serve")  # the web stack is an extra
    from imitlab.rate.app import serve

    console.print(f"rating app at http://{host}:{port}/  (Ctrl-C stops it)")
    serve(db, host=host, port=port)


@rate_app.command("export")
def rate_export(db: DbOpt, out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")]) -> None:
    """Export every rating as JSONL."""
    from imitlab.rate.report import export

    n = export(db, out)
    console.print(f"{n} ratings written to {out}")


@rate_app.command("report")
def rate_report(
    db: DbOpt,
    judge_dir: Annotated[Path | None, typer.Option("--judge", help="A judge output dir to merge with.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write human_summary.json and merged.jsonl here.")] = None,
) -> None:
    """Human win/tie/loss (majority per item), inter-rater agreement, and agreement with the judge."""
    from imitlab.rate.report import report

    result = report(db, judge_dir=judge_dir, out=out)
    console.print_json(json.dumps(result, default=str))
