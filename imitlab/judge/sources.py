"""Prompt sets and answers for pairwise evaluation.

Prompt sets: ``koala`` (180), ``vicuna80`` (80, 10 with GPT-4 references), ``mt-bench`` (first turns of 80,
30 with GPT-4 references), ``alpaca-eval`` (805), or a JSON/JSONL file. Named sets come from the data directory,
a ``datasets`` folder or the hub, as :mod:`imitlab.sources` finds them. Answers come from a file (JSON/JSONL,
optionally gzipped) matched to prompts by id, or by prompt text when the file has no ids (AlpacaEval
outputs); :func:`generate_answers` makes such a file from a model spec.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imitlab.errors import ImitlabError
from imitlab.fileio import iter_records, repair_tail
from imitlab.sources import HubRef, load_rows, locate

if TYPE_CHECKING:
    from imitlab.models.api_model import APIModel
    from imitlab.models.engine import RequestFailed, Response

log = logging.getLogger(__name__)

PROMPT_SETS = ("koala", "vicuna80", "mt-bench", "alpaca-eval")
_ID_FIELDS = ("id", "question_id", "prompt_id")
_PROMPT_FIELDS = ("prompt", "instruction", "question", "text")
_ANSWER_FIELDS = ("answer", "output", "response", "completion", "text")
_ANSWER_SUFFIXES = (".json", ".jsonl", ".gz")


@dataclass(frozen=True)
class PromptItem:
    id: str
    prompt: str
    reference: str | None = None
    category: str | None = None


@dataclass
class Answers:
    """Answers keyed by prompt id, with what did not match reported rather than dropped silently."""

    source: str
    by_id: dict[str, str]
    unmatched: list[str] = field(default_factory=list)  # rows that match no prompt (file:line)
    model: str | None = None


def _norm(text: str) -> str:
    return " ".join(text.split())


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or item number, record) for a JSONL or JSON-list file, gzipped or not; bad rows name file and line."""
    for where, number, row in iter_records(path):
        if not isinstance(row, dict):
            raise ImitlabError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _first(row: dict[str, Any], fields: tuple[str, ...]) -> tuple[str, Any] | None:
    for key in fields:
        if key in row and row[key] is not None:
            return key, row[key]
    return None


# -- prompt sets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PromptSet:
    """A named prompt set: its local files, and its rows as ``datasets`` gives them (the hub copy's columns when it
    has one, else the local file's fields, for a datasets folder made from it)."""

    files: tuple[str, ...]
    local: Callable[[Path], list[PromptItem]]
    rows: Callable[[list[dict[str, Any]]], list[PromptItem]]
    hub: HubRef | None = None
    split: str = "train"


def _koala(root: Path) -> list[PromptItem]:
    return _koala_rows([r for _, r in read_records(root / "koala_test_set/koala_test_set.jsonl")])


def _koala_rows(rows: list[dict[str, Any]]) -> list[PromptItem]:
    return [PromptItem(str(r["id"]), r["prompt"]) for r in rows]


def _vicuna(root: Path) -> list[PromptItem]:
    refs = _fastchat_refs(root / "vicuna_bench/reference_answer_gpt-4.jsonl")
    return _vicuna_rows([r for _, r in read_records(root / "vicuna_bench/question.jsonl")], refs)


def _vicuna_rows(rows: list[dict[str, Any]], refs: Mapping[str, str] | None = None) -> list[PromptItem]:
    refs = refs or {}
    return [PromptItem(str(r["question_id"]), r["text"], refs.get(str(r["question_id"])), r.get("category"))
            for r in rows]  # fmt: skip


def _mt_bench(root: Path) -> list[PromptItem]:
    refs = _fastchat_refs(root / "mt_bench/reference_answer/gpt-4.jsonl")
    return [
        PromptItem(str(r["question_id"]), r["turns"][0], refs.get(str(r["question_id"])), r.get("category"))
        for _, r in read_records(root / "mt_bench/question.jsonl")
    ]


def _mt_bench_hub(rows: list[dict[str, Any]]) -> list[PromptItem]:
    """HuggingFaceH4/mt_bench_prompts rows {prompt: [turn, ...], prompt_id, category, reference: [str, ...]}."""
    return [PromptItem(str(r["prompt_id"]), r["prompt"][0], (r.get("reference") or [None])[0], r.get("category"))
            for r in rows]  # fmt: skip


def _alpaca_eval(root: Path) -> list[PromptItem]:
    return _alpaca_eval_rows([r for _, r in read_records(root / "alpaca_eval/alpaca_eval_instructions.jsonl")])


def _alpaca_eval_rows(rows: list[dict[str, Any]]) -> list[PromptItem]:
    # The set has no ids: the row index is the id, and answers match by instruction text.
    return [PromptItem(str(n), r["instruction"], None, r.get("dataset")) for n, r in enumerate(rows)]


_SETS = {
    "koala": _PromptSet(("koala_test_set/koala_test_set.jsonl",), _koala, _koala_rows),
    "vicuna80": _PromptSet(("vicuna_bench/question.jsonl", "vicuna_bench/reference_answer_gpt-4.jsonl"), _vicuna,
                           _vicuna_rows),
    "mt-bench": _PromptSet(("mt_bench/question.jsonl", "mt_bench/reference_answer/gpt-4.jsonl"), _mt_bench,
                           _mt_bench_hub, HubRef("HuggingFaceH4/mt_bench_prompts")),
    # the hub repo's loading script is refused by datasets >= 4, so its data file is read directly
    "alpaca-eval": _PromptSet(("alpaca_eval/alpaca_eval_instructions.jsonl",), _alpaca_eval, _alpaca_eval_rows,
                              HubRef("hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json")),
}  # fmt: skip


def load_prompts(
    name: str, *, data: str | Path | None = None, limit: int | None = None, overrides: Mapping[str, str] | None = None
) -> list[PromptItem]:
    """A named prompt set, or a JSON/JSONL file of ``{id?, prompt, reference?}`` rows.

    A named set is read as :mod:`imitlab.sources` finds it: ``overrides``/``$IMITLAB_DATASET_<NAME>``, else its
    files under the data directory, else its hub copy (mt-bench, alpaca-eval)."""
    if name in _SETS:
        spec = _SETS[name]
        located = locate(name, spec.files, spec.hub, data_dir=data, overrides=overrides)
        if located.origin == "files":
            items = spec.local(located.data_dir)  # type: ignore[arg-type]
        else:
            rows = load_rows(located, spec.split)
            try:
                items = spec.rows(rows)
            except (KeyError, TypeError, IndexError) as exc:
                raise ImitlabError(f"{name}: {located.ref} rows lack a field the set needs ({type(exc).__name__}: "
                                   f"{exc})") from None  # fmt: skip
    elif Path(name).is_file():
        items = _prompt_file(Path(name))
    else:
        raise ImitlabError(f"unknown prompt set {name!r}: use one of {', '.join(PROMPT_SETS)} or a JSON/JSONL file")
    return items[:limit] if limit else items


def _fastchat_refs(path: Path) -> dict[str, str]:
    return {str(r["question_id"]): r["choices"][0]["turns"][0] for _, r in read_records(path)}


def _prompt_file(path: Path) -> list[PromptItem]:
    items: list[PromptItem] = []
    seen: set[str] = set()
    for n, row in read_records(path):
        found = _first(row, _PROMPT_FIELDS)
        if found is None and isinstance(row.get("turns"), list) and row["turns"]:
            found = ("turns", row["turns"][0])
        if found is None or not isinstance(found[1], str) or not found[1].strip():
            raise ImitlabError(f"{path}:{n}: no prompt text (expected one of fields {', '.join(_PROMPT_FIELDS)})")
        pid = _first(row, _ID_FIELDS)
        item_id = str(pid[1]) if pid else str(n)
        if item_id in seen:
            raise ImitlabError(f"{path}:{n}: field 'id' repeats {item_id!r}")
        seen.add(item_id)
        ref = row.get("reference") or row.get("reference_answer")
        items.append(PromptItem(item_id, found[1], ref if isinstance(ref, str) else None, row.get("category")))
    return items


# -- answers ------------------------------------------------------------------------------------------
def is_answers_file(text: str) -> bool:
    path = Path(text)
    return path.is_file() and path.name.endswith(_ANSWER_SUFFIXES)


def _answer_text(row: dict[str, Any]) -> str | None:
    if isinstance(row.get("choices"), list) and row["choices"]:  # FastChat model_answer rows
        turns = row["choices"][0].get("turns") or []
        return turns[0] if turns and isinstance(turns[0], str) else None
    if isinstance(row.get("messages"), list):  # a conversation: the first assistant turn
        replies = [m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "assistant"]
        return replies[0] if replies and isinstance(replies[0], str) else None
    for key in ("answer", "output", "response", "completion"):
        if isinstance(row.get(key), str):
            return row[key]
    # ``text`` is the answer in FastChat answer files, but the prompt in our own prompt files.
    if isinstance(row.get("text"), str) and "question_id" in row and "answer_id" in row:
        return row["text"]
    return None


def _row_prompt(row: dict[str, Any]) -> str | None:
    if isinstance(row.get("messages"), list):
        users = [m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        return users[0] if users and isinstance(users[0], str) else None
    for key in ("prompt", "instruction", "question"):
        if isinstance(row.get(key), str):
            return row[key]
    return None


def load_answers(path: str | Path, prompts: list[PromptItem]) -> Answers:
    """Answers for ``prompts`` from a file: by id when rows carry one, else by the prompt text.

    A row whose id or prompt matches no prompt is reported in ``unmatched``; a second answer for the
    same prompt is an error naming both lines, since silently keeping one would hide a pairing bug.
    """
    path = Path(path)
    ids = {p.id for p in prompts}
    by_text: dict[str, str] = {}
    for p in prompts:
        by_text.setdefault(_norm(p.prompt), p.id)
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    unmatched: list[str] = []
    models: set[str] = set()
    for n, row in read_records(path):
        pid = _first(row, _ID_FIELDS)
        if pid is not None:
            key: str | None = str(pid[1])
            if key not in ids:
                key = None
        else:
            text = _row_prompt(row)
            if text is None:
                raise ImitlabError(
                    f"{path}:{n}: no field to match a prompt by (need id, question_id, prompt or instruction)"
                )
            key = by_text.get(_norm(text))
        if key is None:
            unmatched.append(f"{path}:{n}")
            continue
        if key in where:
            raise ImitlabError(f"{path}:{n}: a second answer for prompt {key!r} (first on line {where[key]})")
        where[key] = n
        answer = _answer_text(row)
        if answer is not None:  # an empty string is a (bad) answer; an absent or null one is missing
            out[key] = answer
        for mkey in ("model", "generator", "model_id"):
            if isinstance(row.get(mkey), str):
                models.add(row[mkey])
                break
    model = models.pop() if len(models) == 1 else None
    return Answers(str(path), out, unmatched, model=model or path.name.split(".")[0])


# -- generating answers through a model spec ------------------------------------------------------------
@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None
    parallel: int = 4  # requests in flight when a spec is opened for the answers (an open model keeps its own)
    timeout: float = 600.0  # per request: a loaded CPU decoding several slots can take minutes


def generate_answers(
    model: APIModel | str,
    prompts: list[PromptItem],
    out: str | Path,
    params: GenerationParams = GenerationParams(),
    *,
    cache: str | Path | None = None,
    base_url: str | None = None,
) -> Path:
    """Answer each prompt with ``model`` (a live model, or a spec opened here), appending to ``out`` as JSONL.

    Append-only and resumable: prompts already answered in ``out`` are skipped, so an interrupted run
    continues where it stopped. Requests go through the model's engine (retries, response cache, progress);
    a prompt whose request fails for good is left out of ``out`` and named in the error raised at the end.
    ``params.parallel`` and ``params.timeout`` apply only when a spec is opened here.
    """
    out = Path(out)
    repair_tail(out)
    done = {str(r.get("id")) for _, r in read_records(out)} if out.is_file() else set()
    todo = [p for p in prompts if p.id not in done]
    if not todo:
        return out
    if isinstance(model, str):
        from imitlab.models.api_model import open_model
        from imitlab.models.engine import EngineSettings

        settings = EngineSettings(concurrency=params.parallel, timeout=params.timeout, cache_root=cache)
        with open_model(model, settings=settings, base_url=base_url, cache=cache) as opened:
            return generate_answers(opened, prompts, out, params)
    log.info("generating %d answers with %s", len(todo), model.spec)
    failures = _answer(model, todo, out, params)
    if failures:
        finished = sum(1 for _ in read_records(out)) if out.is_file() else 0
        first = failures[0]
        raise ImitlabError(
            f"generating answers with {model.spec} failed for {len(failures)} prompt(s) (first: {first}); "
            f"{finished} of {len(prompts)} answers are saved in {out}, and a rerun continues from there"
        )
    return out


def _answer(model: APIModel, todo: list[PromptItem], out: Path, params: GenerationParams) -> list[RequestFailed]:
    """Send one chat request per prompt and append each answer as it arrives; returns the requests that failed."""
    from imitlab.models.engine import Request, RequestFailed

    out.parent.mkdir(parents=True, exist_ok=True)
    sampling = {"max_tokens": params.max_tokens, "temperature": params.temperature, "seed": params.seed}
    failures: list[RequestFailed] = []

    def write(item: PromptItem, result: Response | RequestFailed) -> None:
        if isinstance(result, RequestFailed):
            failures.append(result)
            return
        row = {
            "id": item.id,
            "prompt": item.prompt,
            "answer": result.text,
            "model": model.name,
            "finish_reason": result.finish_reason,
            "completion_tokens": result.completion_tokens,
        }
        # One write per line in append mode: a crash loses at most the lines in flight.
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def ask(item: PromptItem) -> Awaitable[Response]:
        messages = [{"role": "user", "content": item.prompt}]
        return model.engine.submit(Request.chat(messages, tag=f"answer {item.id}", **sampling))

    engine = model.engine
    engine.run(engine.run_jobs(todo, ask, desc=f"answers: {model.name}", on_result=write))
    return failures


def resolve_answers(
    source: str,
    prompts: list[PromptItem],
    out_file: Path,
    params: GenerationParams,
    *,
    cache: str | Path | None = None,
    base_url: str | None = None,
    models: Mapping[str, APIModel] | None = None,
) -> Answers:
    """An answers file as given, or a model spec whose answers are generated into ``out_file`` first.

    ``models`` maps spec texts to models the caller already has open; other specs are opened for the call.
    """
    if is_answers_file(source):
        return load_answers(source, prompts)
    if source.endswith(_ANSWER_SUFFIXES) or ("/" in source and not source.startswith(("openai:", "hf:", "gguf:"))):
        raise ImitlabError(f"answers file not found: {source}")
    model = (models or {}).get(source, source)
    path = generate_answers(model, prompts, out_file, params, cache=cache, base_url=base_url)
    answers = load_answers(path, prompts)
    answers.model = source
    return answers
