"""The ``imitlab`` command: the root app, its global options, every command group registered, and ``run()``.

Each group lives in its own module (``imitlab/cli/<group>.py``) as a thin layer over the Python API; options more
than one command takes are declared once, in ``imitlab/cli/options.py``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Annotated, NoReturn

import typer
from rich.logging import RichHandler
from rich.text import Text

from imitlab.cli import collect, data, export, judge, models, prompts, rate, study, train
from imitlab.cli import eval as eval_cli  # not to shadow the builtin
from imitlab.cli.output import err_console
from imitlab.errors import ImitlabError

app = typer.Typer(help="Imitate a strong LLM into a model you own, and measure what you got.", no_args_is_help=True)
app.add_typer(models.models_app, name="models")
app.add_typer(judge.judge_app, name="judge")
app.command("style")(judge.style_cmd)
app.add_typer(rate.rate_app, name="rate")
app.add_typer(export.export_app, name="export")
app.command("train")(train.train_cmd)
app.add_typer(prompts.prompts_app, name="prompts")
app.add_typer(data.data_app, name="data")
app.command("collect")(collect.collect_cmd)
app.command("serve")(models.serve)
app.command("chat")(models.chat)
app.command("eval")(eval_cli.eval_)
app.command("demo")(study.demo)
app.command("sweep")(study.sweep)
app.command("report")(study.report)

_debug = {"on": False}  # set by --debug; run() reads it when a command fails


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="IMITLAB_DEBUG", help="Show the Python traceback when a command fails.")
    ] = False,
) -> None:
    _debug["on"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
    )
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def run() -> None:
    """Entry point: a failure prints as one line, ``error: ...``, never as a traceback (``--debug`` shows it).

    ImitlabError (bad input, with a message that says what to do) and a file that cannot be opened exit 2;
    anything else is unexpected (a bug, or input nothing checks yet) and exits 1, naming the exception's type.
    """
    try:
        app()
    except ImitlabError as exc:
        _fail(exc, str(exc), 2)
    except OSError as exc:
        if exc.filename is None:
            _fail(exc, f"{type(exc).__name__}: {exc} (unexpected; rerun with --debug to see the traceback)", 1)
        _fail(exc, f"{exc.filename}: {exc.strerror or exc}", 2)
    except Exception as exc:
        if type(exc).__module__.startswith("pydantic") and type(exc).__name__ == "ValidationError":
            # a stage config built from keywords (not from a file or the sweep, which name their source)
            from imitlab.stage_config import describe_errors

            _fail(exc, describe_errors(exc, None, exc.title), 2)  # type: ignore[attr-defined]
        _fail(exc, f"{type(exc).__name__}: {exc} (unexpected; rerun with --debug to see the traceback)", 1)


def _fail(exc: BaseException, message: str, status: int) -> NoReturn:
    if _debug["on"]:
        traceback.print_exception(exc, file=sys.stderr)
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)  # soft_wrap: one line
    raise SystemExit(status) from None
