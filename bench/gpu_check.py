"""The GPU check in one command: imitlab's train, eval and sweep paths on one GPU, against the bare loop and
lm-eval on the same device, with random-weight models built from real configs. Writes one JSON summary.

    python bench/gpu_check.py [--pack gpu_check_pack] [--out runs/gpu_check]     # on the GPU machine
    python bench/gpu_check.py --cpu-smoke                                          # here: tiny sizes, CPU

The pack comes from ``scripts/pack_gpu_check.sh`` (configs, tokenizers, data, wheels; see bench/gpu_pack.py).
Wheels in the pack are installed once into ``PACK/site`` (``pip install --no-index --no-deps --target``) and put
first on the path of this process and its children; the data becomes $IMITLAB_DATA.

Phases (each one's failure is recorded and the next one still runs; the summary is rewritten after each):
1. build   models from the pack's configs with random weights, saved in bf16 (fp32 in the CPU smoke run);
2. train   per shape, bench/train.py: `imitlab train` vs the bare loop, tokens/s and MFU, same device and dtype;
3. eval    MMLU 5-shot (imitlab vs lm-eval, items/s, identical predictions) and HumanEval greedy completions
           (imitlab's run with its sandbox vs lm-eval's generate_until on the same prompts: problems/s, identical
           completions), both sides on the same device in the same dtype;
4. sweep   `imitlab sweep` end to end on a random-weight student with a fake OpenAI teacher (tests/
           fake_openai_server.py): collection, training, evaluation, local answers and judging, on this device.
Sizes are chosen to finish in about 7 minutes on one H100 (``--cpu-smoke`` shrinks every one of them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Sizes:
    shapes: dict[str, str]  # label -> packaged model whose config gives the shape
    train: dict[str, dict[str, int]]  # label -> steps, batch, block
    mmlu_items: int
    humaneval_problems: int
    humaneval_tokens: int
    eval_batch: int
    sweep_budget: int
    sweep_prompts: int
    shrink: bool = False  # CPU smoke: 2 layers, 64 wide, the real vocabulary and tokenizer
    sweep_eval: dict[str, int] = field(default_factory=dict)


GPU_SIZES = Sizes(
    shapes={"0.5b": "qwen2.5-coder-0.5b-instruct", "1.5b": "qwen2.5-coder-1.5b-instruct"},
    train={"0.5b": {"steps": 30, "batch": 8, "block": 2048}, "1.5b": {"steps": 15, "batch": 4, "block": 2048}},
    mmlu_items=300, humaneval_problems=40, humaneval_tokens=128, eval_batch=16,
    sweep_budget=20_000, sweep_prompts=64, sweep_eval={"humaneval": 16},
)  # fmt: skip
SMOKE_SIZES = Sizes(
    shapes={"0.5b": "qwen2.5-coder-0.5b-instruct"},
    train={"0.5b": {"steps": 3, "batch": 2, "block": 128}},
    mmlu_items=8, humaneval_problems=3, humaneval_tokens=16, eval_batch=4,
    sweep_budget=600, sweep_prompts=8, sweep_eval={"humaneval": 2}, shrink=True,
)  # fmt: skip


# -- setup ----------------------------------------------------------------------------------------------------
def use_pack(pack: Path) -> None:
    """The pack's data as $IMITLAB_DATA; its wheels installed once and first on the path (here and in children)."""
    if not (pack / "manifest.json").is_file():
        raise SystemExit(f"{pack}: no manifest.json; assemble it with scripts/pack_gpu_check.sh")
    os.environ["IMITLAB_DATA"] = str((pack / "data").resolve())
    paths = [str(REPO)]
    wheels = sorted((pack / "wheels").glob("*.whl"))
    if wheels and importlib.util.find_spec("openai") is None:
        site = pack / "site"
        if not (site / ".complete").is_file():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                            str(site), *map(str, wheels)], check=True)  # fmt: skip
            (site / ".complete").touch()
        paths.append(str(site.resolve()))
    sys.path[:0] = paths
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as a module (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def environment(device: Any) -> dict[str, Any]:
    import torch
    import transformers

    from imitlab.devices import describe

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {
        "device": describe(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "imitlab_commit": commit.stdout.strip() or None,
    }  # fmt: skip


# -- 1. build -------------------------------------------------------------------------------------------------
def build_model(pack: Path, name: str, dest: Path, *, shrink: bool, device: Any, dtype: Any) -> dict[str, Any]:
    """A random-weight model with the packaged model's config (and tokenizer), saved to ``dest``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from imitlab.train.flops import matmul_parameters

    entry = json.loads((pack / "manifest.json").read_text())["models"][name]
    config = AutoConfig.from_pretrained(pack / Path(entry["config"]).parent)
    if shrink:
        config.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                       "num_attention_heads": 4, "num_key_value_heads": 2, "max_window_layers": 2})  # fmt: skip
        if hasattr(config, "layer_types") and config.layer_types:
            config.layer_types = config.layer_types[:2]
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):  # initialise where it will run: seconds on a GPU for 1.5B parameters
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()
    if dest.exists():
        shutil.rmtree(dest)
    model.save_pretrained(dest)
    for file in (pack / entry["tokenizer"]).iterdir():
        shutil.copy2(file, dest / file.name)
    info = {
        "from": name, "dir": str(dest), "parameters": sum(p.numel() for p in model.parameters()),
        "matmul_parameters": matmul_parameters(model), "layers": config.num_hidden_layers,
        "hidden": config.hidden_size, "tied_embeddings": bool(config.tie_word_embeddings),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return info


# -- 2. train -------------------------------------------------------------------------------------------------
def train_phase(model_dir: str, sizes: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """bench/train.py on one shape; on a GPU out-of-memory, once more with gradient checkpointing on both sides."""
    bench = load_bench("train")
    argv = ["--model", f"hf:{model_dir}", "--device", args.device, "--dtype", args.dtype, "--rounds", "1",
            "--steps", str(sizes["steps"]), "--batch", str(sizes["batch"]), "--block", str(sizes["block"]),
            "--conversations", str(max(200, sizes["steps"] * sizes["batch"] * sizes["block"] // 150))]  # fmt: skip
    try:
        result = bench.run_benchmark(bench.parser().parse_args(argv))
    except SystemExit as exc:
        if "out of memory" not in str(exc).lower():
            raise
        print("out of memory: again with gradient checkpointing", flush=True)
        result = bench.run_benchmark(bench.parser().parse_args([*argv, "--gradient-checkpointing"]))
        result["note"] = "the first try ran out of GPU memory; these figures are with gradient checkpointing"
    bench.report(result)
    return result


# -- 3. eval --------------------------------------------------------------------------------------------------
def mmlu_phase(model_dir: str, sizes: Sizes, args: argparse.Namespace) -> dict[str, Any]:
    bench = load_bench("eval")
    per_subject = -(-sizes.mmlu_items // len(bench.SUBJECTS))
    subjects = min(len(bench.SUBJECTS), -(-sizes.mmlu_items // per_subject))
    argv = ["--model", f"hf:{model_dir}", "--subjects", str(subjects), "--per-subject", str(per_subject),
            "--batch-size", str(sizes.eval_batch), "--device", args.device, "--dtype", args.dtype,
            "--rounds", "1"]  # fmt: skip
    return bench.compare(bench.parser().parse_args(argv))


def humaneval_phase(model_dir: str, sizes: Sizes, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """imitlab's HumanEval run (generation and sandboxed tests) vs lm-eval completing the same prompts."""
    from imitlab.config import data_dir
    from imitlab.evals import EvalConfig, get_task, run_eval
    from imitlab.evals.hf_backend import HFModel
    from imitlab.evals.lmeval_ref import run_lm_eval_generate

    task = get_task("humaneval")
    run_dir = out / "humaneval"
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    model = HFModel(model_dir, batch_size=sizes.eval_batch, device=args.device, dtype=args.dtype)
    config = EvalConfig(model=f"hf:{model_dir}", benches=["humaneval"], out=run_dir, data_dir=data_dir(),
                        limit=sizes.humaneval_problems, max_tokens=sizes.humaneval_tokens)  # fmt: skip
    summary = run_eval(config, model=model)["humaneval"]
    ours_s = time.perf_counter() - started
    precision = model.precision
    model.close()
    records = [json.loads(line) for line in (run_dir / "humaneval.items.jsonl").read_text().splitlines()]
    by_id = {item["id"]: item for item in task.load(data_dir())}
    prompts = {r["id"]: by_id[r["id"]]["prompt"] for r in records}
    started = time.perf_counter()
    ref = run_lm_eval_generate(prompts, model_dir, until=list(task.stop), max_gen_toks=sizes.humaneval_tokens,
                               batch_size=sizes.eval_batch, device=args.device, dtype=args.dtype)  # fmt: skip
    ref_s = time.perf_counter() - started
    same = sum(r["output"] == ref.outputs[r["id"]] for r in records)
    n = len(records)
    return {
        "problems": n, "max_new_tokens": sizes.humaneval_tokens, "batch_size": sizes.eval_batch, **precision,
        "imitlab_s": round(ours_s, 2), "lm_eval_s": round(ref_s, 2),
        "imitlab_problems_per_s": round(n / ours_s, 3), "lm_eval_problems_per_s": round(n / ref_s, 3),
        "imitlab_includes": "model load, generation and the sandboxed unit tests",
        "lm_eval_includes": "model load and generation (no tests run)",
        "identical_completions": same / n, "imitlab_pass@1": summary["metrics"]["pass@1"]["value"],
    }  # fmt: skip


# -- 4. sweep -------------------------------------------------------------------------------------------------
def sweep_phase(model_dir: str, sizes: Sizes, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`imitlab sweep` in a child process against a fake OpenAI teacher served from this process."""
    sys.path.insert(0, str(REPO / "tests"))
    from fake_openai_server import FakeOpenAI  # type: ignore[import-not-found]

    def respond(body: dict[str, Any]) -> str:
        text = json.dumps(body.get("messages", ""))
        if "[[A]]" in text:  # a judge prompt: a verdict in the format the judge parses
            return "Both answers are of similar quality. [[C]]"
        return "Here is a short, helpful answer: " + " ".join(["imitation"] * 40)

    benches = sorted(sizes.sweep_eval)
    config = {
        "name": "gpu-check", "teacher": "openai:fake-teacher", "bases": [f"hf:{model_dir}"],
        "budgets": [sizes.sweep_budget], "data_kinds": ["broad"],
        "broad": {"prompts": ["${IMITLAB_DATA}/alpaca_gpt4_demo/alpaca_en_demo.json"],
                  "limit": sizes.sweep_prompts, "max_tokens": 128},
        "train": {"block_size": 512 if not sizes.shrink else 128, "batch_size": 4},
        "eval": {"benches": benches, "limit": sizes.sweep_eval, "batch_size": sizes.eval_batch},
        "judge": {"prompts": "koala", "limit": 4, "max_tokens": 32, "style": False},
    }  # fmt: skip
    run_dir = out / "sweep"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    (run_dir.parent / "sweep.yaml").write_text(json.dumps(config, indent=2))  # YAML reads JSON
    with FakeOpenAI(responder=respond, max_requests=100_000) as teacher:
        env = {**os.environ, "IMITLAB_BASE_URL": teacher.base_url, "OPENAI_API_KEY": "fake"}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "imitlab", "sweep", str(run_dir.parent / "sweep.yaml"),
                               "--out", str(run_dir)], env=env, capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - started
        requests = teacher.requests
    (out / "sweep.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"imitlab sweep exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
    stages = {}
    for marker in sorted((run_dir / "stages").glob("*/DONE.json")):
        stages[marker.parent.name] = json.loads(marker.read_text()).get("seconds")
    return {"seconds": round(seconds, 1), "teacher_requests": requests, "stages": stages, "config": config}


# -- driver ---------------------------------------------------------------------------------------------------
def run_phase(summary: dict[str, Any], name: str, fn: Any, out: Path) -> Any:
    started = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        result = fn()
        summary["phases"][name] = {"ok": True, "seconds": round(time.perf_counter() - started, 1), **result}
    except Exception as exc:  # the check records every failure and goes on to the next phase
        summary["phases"][name] = {"ok": False, "seconds": round(time.perf_counter() - started, 1),
                                   "error": f"{type(exc).__name__}: {exc}"[-3000:],
                                   "traceback": traceback.format_exc()[-4000:]}  # fmt: skip
        print(f"{name} failed: {type(exc).__name__}: {str(exc)[-500:]}", flush=True)
        result = None
    write_summary(summary, out)
    return result


def write_summary(summary: dict[str, Any], out: Path) -> None:
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(out / "summary.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", type=Path, default=REPO / "gpu_check_pack")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (fp32), to test the script")
    parser.add_argument("--phases", default="train,mmlu,humaneval,sweep", help="comma-separated subset")
    args = parser.parse_args()
    use_pack(args.pack)
    args.device, args.dtype = ("cpu", "fp32") if args.cpu_smoke else ("auto", "auto")
    sizes = SMOKE_SIZES if args.cpu_smoke else GPU_SIZES
    phases = set(args.phases.split(","))

    from imitlab.devices import resolve

    device, dtype = resolve(args.device, args.dtype)
    if not args.cpu_smoke and device.type != "cuda":
        raise SystemExit("no CUDA GPU here; run with --cpu-smoke to check the script on the CPU")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu", "environment": environment(device),
                               "sizes": sizes.__dict__, "models": {}, "phases": {}}  # fmt: skip
    write_summary(summary, out)
    for label, name in sizes.shapes.items():
        built = run_phase(summary, f"build-{label}",
                          lambda n=name, lb=label: build_model(args.pack, n, out / "models" / lb, shrink=sizes.shrink,
                                                               device=device, dtype=dtype), out)  # fmt: skip
        if built:
            summary["models"][label] = built
    first = next(iter(summary["models"].values()), None)
    for label, model in summary["models"].items():
        if "train" in phases:
            run_phase(summary, f"train-{label}", lambda m=model, lb=label: train_phase(m["dir"], sizes.train[lb], args),
                      out)  # fmt: skip
    if first and "mmlu" in phases:
        run_phase(summary, "mmlu", lambda: mmlu_phase(first["dir"], sizes, args), out)
    if first and "humaneval" in phases:
        run_phase(summary, "humaneval", lambda: humaneval_phase(first["dir"], sizes, args, out), out)
    if first and "sweep" in phases:
        run_phase(summary, "sweep", lambda: sweep_phase(first["dir"], sizes, args, out), out)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["ok"] = all(p["ok"] for p in summary["phases"].values())
    write_summary(summary, out)
    print(f"summary: {out / 'summary.json'} ({summary['seconds']} s, {'all phases ok' if summary['ok'] else 'FAILED'})")
    if not summary["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
