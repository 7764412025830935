"""``imitlab demo``: the offline study on packaged models, on a laptop CPU.

The teacher is ``qwen2.5-coder-0.5b-instruct`` served by llama.cpp; the student is
``smollm2-135m-instruct``. Today the demo runs the stages that exist (pull, serve, ask the teacher, load
the student's HF checkpoint and ask it the same prompts) and says which stages are still to come.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from imitlab import __version__
from imitlab.fileio import atomic_write_text

DEFAULT_PROMPTS = (
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the capital of Australia? Answer in one sentence.",
    "Give three tips for writing clear commit messages.",
)

STAGES_TO_COME = {
    "collect": "prompt sources, resumable teacher collection, dedup/decontamination, token budgets (issue 3)",
    "train": "SFT of the student on teacher conversations, LoRA/full, accelerate (issue 4)",
    "evaluate": "NQ / MMLU / HumanEval and more, checked against the reference harnesses (issue 5)",
    "judge": "pairwise LLM judge, human rating app, style metrics (issue 6)",
    "report": "sweep and the imitation-gap report (issue 7)",
}


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    cache: Path | None = None
    teacher: str = "qwen2.5-coder-0.5b-instruct"
    student: str = "smollm2-135m-instruct"
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    max_tokens: int = 96
    extra: dict[str, str] = field(default_factory=dict)


def _student_answers(hf_dir: str, prompts: tuple[str, ...], max_tokens: int) -> list[dict[str, object]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.eval()
    answers = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        new = out[0, ids["input_ids"].shape[1] :]
        answers.append(
            {
                "text": tokenizer.decode(new, skip_special_tokens=True).strip(),
                "completion_tokens": int(new.shape[0]),
                "seconds": time.perf_counter() - start,
            }
        )
    return answers


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, object]:
    from imitlab.models.packaged import pull
    from imitlab.models.spec import open_chat, parse_spec

    console = console or Console()
    started = time.perf_counter()
    console.rule("imitlab demo")
    with console.status(f"pulling teacher {config.teacher} and student {config.student} ..."):
        pull(config.teacher, cache=config.cache, convert=False)
        student = pull(config.student, cache=config.cache, convert=True)
    console.print(f"[green]✓[/] models ready (teacher {config.teacher}, student {config.student})")

    teacher_answers = []
    with console.status("starting the teacher's llama.cpp server ..."):
        chat_ctx = open_chat(parse_spec(config.teacher), cache=config.cache, parallel=1)
        client = chat_ctx.__enter__()
    try:
        console.print(f"[green]✓[/] teacher served at {client.base_url}")
        for prompt in config.prompts:
            with console.status(f"teacher: {prompt[:50]} ..."):
                r = client.chat([{"role": "user", "content": prompt}], max_tokens=config.max_tokens, temperature=0)
            teacher_answers.append(
                {"text": r.text, "completion_tokens": r.completion_tokens, "prompt_tokens": r.prompt_tokens,
                 "finish_reason": r.finish_reason, "seconds": r.latency_s}
            )  # fmt: skip
    finally:
        chat_ctx.__exit__(None, None, None)

    with console.status("student (before imitation) answers the same prompts ..."):
        assert student.hf is not None
        student_answers = _student_answers(str(student.hf), config.prompts, config.max_tokens)

    table = Table(title="teacher vs. untrained student", show_lines=True)
    table.add_column("prompt", ratio=1)
    table.add_column(f"teacher ({config.teacher})", ratio=2)
    table.add_column(f"student ({config.student})", ratio=2)
    for prompt, t, s in zip(config.prompts, teacher_answers, student_answers, strict=True):
        table.add_row(prompt, str(t["text"]), str(s["text"]))
    console.print(table)

    result = {
        "imitlab": __version__,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "prompts": list(config.prompts),
        "teacher_answers": teacher_answers,
        "student_answers": student_answers,
        "stages_done": ["pull", "serve", "chat"],
        "stages_to_come": STAGES_TO_COME,
        "seconds": time.perf_counter() - started,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config.out / "demo.json", json.dumps(result, indent=2))
    console.print("[bold]Stages still to come[/] (the demo will run them as they land):")
    for stage, what in STAGES_TO_COME.items():
        console.print(f"  • {stage}: {what}")
    console.print(f"results: {config.out / 'demo.json'}  ({result['seconds']:.0f} s)")
    return result
