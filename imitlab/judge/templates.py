"""Judge templates as data: imitlab's own (package data), MT-Bench and AlpacaEval (read from the data dir).

A template is a system prompt, a user prompt with ``{question}``, ``{answer_a}``, ``{answer_b}`` (and
``{reference}`` in its reference-guided variant), and the name of the parser for the judge's reply.
The MT-Bench and AlpacaEval texts are not copied into the package: they are read from
``$IMITLAB_DATA/mt_bench/judge_prompts.jsonl`` and ``$IMITLAB_DATA/alpaca_eval/evaluator_prompts/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.fileio import read_jsonl, read_text

ParserName = Literal["tag", "rank", "scores", "yesno"]
PARSERS = ("tag", "rank", "scores", "yesno")
DEFAULT_TEMPLATE = "imitlab-pair-v1"
TONE_TEMPLATE = "imitlab-tone-v1"
LABEL_TEMPLATE = "imitlab-pair-label-v1"  # verdict first, no reasons: for --verdict logprob and small judges
BUILTIN = ("default", "label", "mt-bench", "alpaca-eval", "vicuna")
_FIELDS = ("question", "answer_a", "answer_b", "answer", "reference")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(_FIELDS) + r")\}")


@dataclass(frozen=True)
class JudgeTemplate:
    name: str
    system: str | None
    prompt: str
    parser: ParserName
    reference_prompt: str | None = None
    reference_system: str | None = None
    source: str = ""

    def messages(self, *, reference: str | None = None, **fields: str) -> list[dict[str, str]]:
        """Chat messages for one judgment; the reference-guided variant when a reference is given."""
        use_ref = reference is not None and self.reference_prompt is not None
        prompt = self.reference_prompt if use_ref else self.prompt
        system = (self.reference_system or self.system) if use_ref else self.system
        values = dict(fields, reference=reference or "")
        assert prompt is not None
        messages = [{"role": "system", "content": system}] if system else []
        return [*messages, {"role": "user", "content": render(prompt, values)}]

    @property
    def has_reference_mode(self) -> bool:
        return self.reference_prompt is not None


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{field}`` placeholders in one pass, so braces inside answers are never re-expanded.

    Only the known field names are placeholders: judge templates also contain literal braces (the
    AlpacaEval one asks for a Python dict).
    """

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ImitlabError(f"judge template needs {{{key}}} but no value was given")
        return values[key]

    return _PLACEHOLDER.sub(sub, template)


def load_template(name: str, *, data: str | Path | None = None) -> JudgeTemplate:
    """A template by name (``default``, ``label``, ``mt-bench``, ``alpaca-eval``, ``vicuna``, a packaged name) or a
    JSON path."""
    if name in ("default", "label", DEFAULT_TEMPLATE, TONE_TEMPLATE, LABEL_TEMPLATE):
        return _packaged({"default": DEFAULT_TEMPLATE, "label": LABEL_TEMPLATE}.get(name, name))
    if name == "mt-bench":
        return _mt_bench(data_dir(data) / "mt_bench" / "judge_prompts.jsonl")
    if name == "alpaca-eval":
        prompts = data_dir(data) / "alpaca_eval" / "evaluator_prompts"
        return _alpaca_eval(prompts / "alpaca_eval_gpt4" / "alpaca_eval.txt")
    if name == "vicuna":
        return _vicuna(data_dir(data) / "vicuna_bench" / "review_prompt.jsonl")
    path = Path(name)
    if path.is_file():
        return _from_json(read_text(path), str(path))
    raise ImitlabError(f"unknown judge template {name!r}: use one of {', '.join(BUILTIN)} or a path to a JSON template")


def _packaged(name: str) -> JudgeTemplate:
    text = resources.files("imitlab.judge").joinpath("templates", f"{name}.json").read_text(encoding="utf-8")
    return _from_json(text, f"imitlab/judge/templates/{name}.json")


def _from_json(text: str, source: str) -> JudgeTemplate:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImitlabError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    except RecursionError:
        raise ImitlabError(f"{source}: JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise ImitlabError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    for key in ("name", "prompt", "parser"):
        if not isinstance(raw.get(key), str):
            raise ImitlabError(f"{source}: field {key!r} is missing or not a string")
    if raw["parser"] not in PARSERS:
        raise ImitlabError(f"{source}: field 'parser' is {raw['parser']!r}; expected one of {', '.join(PARSERS)}")
    return JudgeTemplate(
        name=raw["name"],
        system=raw.get("system"),
        prompt=raw["prompt"],
        parser=raw["parser"],
        reference_prompt=raw.get("reference_prompt"),
        reference_system=raw.get("reference_system"),
        source=source,
    )


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise ImitlabError(f"judge template file not found: {path}")
    return read_jsonl(path)


def _mt_bench(path: Path) -> JudgeTemplate:
    """MT-Bench pairwise: ``pair-v2``, with ``pair-math-v1`` as its reference-guided variant."""
    by_name = {row.get("name"): row for row in _read_jsonl(path)}
    for need in ("pair-v2", "pair-math-v1"):
        if need not in by_name:
            raise ImitlabError(f"{path}: no judge prompt named {need!r}")
    plain, math = by_name["pair-v2"], by_name["pair-math-v1"]
    return JudgeTemplate(
        name="mt-bench-pair-v2",
        system=plain["system_prompt"],
        prompt=plain["prompt_template"],
        parser="tag",
        reference_prompt=math["prompt_template"].replace("{ref_answer_1}", "{reference}"),
        reference_system=math["system_prompt"],
        source=str(path),
    )


def _alpaca_eval(path: Path) -> JudgeTemplate:
    """AlpacaEval's GPT-4 ranking prompt, a ChatML text: split into system and user messages."""
    if not path.is_file():
        raise ImitlabError(f"judge template file not found: {path}")
    text = read_text(path)
    parts = dict(re.findall(r"<\|im_start\|>(system|user)\n(.*?)\n?<\|im_end\|>", text, flags=re.S))
    if "user" not in parts:
        raise ImitlabError(f"{path}: expected ChatML blocks '<|im_start|>user ... <|im_end|>'")
    prompt = parts["user"].replace("{instruction}", "{question}")
    prompt = prompt.replace("{output_1}", "{answer_a}").replace("{output_2}", "{answer_b}")
    return JudgeTemplate("alpaca-eval-gpt4", parts.get("system"), prompt, "rank", source=str(path))


def _vicuna(path: Path) -> JudgeTemplate:
    """The Vicuna-80 GPT-4 review prompt (general questions): two scores on the first line."""
    rows = {row.get("prompt_id"): row for row in _read_jsonl(path)}
    if 1 not in rows:
        raise ImitlabError(f"{path}: no review prompt with prompt_id 1")
    row = rows[1]
    prompt = row["prompt_template"].replace("{prompt}", row["defaults"]["prompt"])
    prompt = prompt.replace("{answer_1}", "{answer_a}").replace("{answer_2}", "{answer_b}")
    return JudgeTemplate("vicuna-review-general", row["system_prompt"], prompt, "scores", source=str(path))
