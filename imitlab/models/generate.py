"""Answer chat prompts with a local transformers model (greedy, batched, left-padded).

Used where a model has weights but no server: trained students in a sweep, for the judge and the style
metrics. Writes the answers-file format the judge reads: one ``{"id", "prompt", "answer", "model"}`` per line.
Runs on the GPU in bf16 when there is one (``device``/``dtype``, see :mod:`imitlab.devices`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imitlab.fileio import atomic_write_text


def generate_answers_local(
    model_dir: str,
    prompts: list[tuple[str, str]],
    out: str | Path,
    *,
    model_name: str,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = True,
) -> Path:
    """Answer ``(id, prompt)`` pairs with the model in ``model_dir``; write them to ``out`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imitlab.devices import resolve
    from imitlab.models.engine import ProgressBar
    from imitlab.models.tokenizer import ensure_chat_template

    out = Path(out)
    if out.is_file():
        return out
    where, precision = resolve(device, dtype)
    tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(model_dir))
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=precision).to(where).eval()
    rows: list[dict[str, Any]] = []
    bar = ProgressBar(f"answers {model_name}", len(prompts), enabled=progress)
    with bar:
        for start in range(0, len(prompts), batch_size):
            _answer_batch(model, tokenizer, prompts[start : start + batch_size], rows, model_name, max_new_tokens,
                          where)  # fmt: skip
            bar.advance(len(prompts[start : start + batch_size]))
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def _answer_batch(
    model: Any, tokenizer: Any, batch: list[tuple[str, str]], rows: list[dict[str, Any]], model_name: str,
    max_new_tokens: int, where: Any,
) -> None:  # fmt: skip
    import torch

    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for _, p in batch
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(where)
    with torch.inference_mode():
        generated = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    for (pid, prompt), seq in zip(batch, generated[:, enc["input_ids"].shape[1] :], strict=True):
        answer = tokenizer.decode(seq, skip_special_tokens=True).strip()
        rows.append({"id": pid, "prompt": prompt, "answer": answer, "model": model_name})
