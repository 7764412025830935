"""``imitlab judge calibrate``: how far to trust a judge, measured against GPT-4's recorded verdicts.

The local data holds GPT-4's verdicts on real answer pairs: AlpacaEval's annotations (805 instructions, three
models each against text-davinci-003) and the Vicuna-80 reviews (four models each against Vicuna-13B). A seeded
sample of the pairs GPT-4 decided, short enough for the machine (``max_words``), is judged in both orders and
compared with GPT-4:

- ``agreement``: the judge's verdict (both orders combined; a flip is a tie) equals GPT-4's. Ties and unparsed
  replies count as disagreement, so a judge that always answers "A" scores 0, not 50%;
- ``agreement_when_decided``, ``decided``: the same among items the judge decided, and how many it decided;
- ``kappa``: Cohen's kappa with GPT-4 (chance-corrected, on the same labels);
- ``order_agreement``: the judge's own agreement across the two orders (same answer preferred both times);
- ``position_a``: the share of its verdicts that picked the first slot (0.5: no position bias);
- ``longer_wins``: among decided items whose answers differ in length, how often the longer answer won; GPT-4's
  rate on the same items is beside it (``gpt4_longer_wins``), so a length bias shows as a difference.

With ``logprobs`` the same calls also ask for token log-probabilities and every number is computed a second time
for the probability verdict (:mod:`imitlab.judge.logprob`): P(answer 1 better) averaged over both orders, which
cancels a constant slot preference. It adds ``soft_agreement`` (the mean probability given to GPT-4's choice) and
``position_a`` becomes the mean P(first slot) before averaging.

Every rate has a 95% percentile-bootstrap CI over items (:func:`imitlab.stats.bootstrap_ci`). Output directory:
``pairs.jsonl`` (the sample), ``judgments.jsonl`` (append-only: a rerun resumes), ``items.jsonl`` and
``calibration.json``.
"""

from __future__ import annotations

import json
import os
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text
from imitlab.judge.aggregate import combine, json_ready
from imitlab.judge.logprob import p_a_better
from imitlab.judge.pairwise import Pair, judge_pairs_in_time
from imitlab.judge.recorded import vicuna_reviews
from imitlab.judge.sources import read_records
from imitlab.judge.style import words
from imitlab.judge.templates import LABEL_TEMPLATE, load_template
from imitlab.stage_config import StageConfig
from imitlab.stats import bootstrap_ci, cohen_kappa

if TYPE_CHECKING:
    from imitlab.judge.pairwise import JudgeFn
    from imitlab.models.api_model import APIModel

SOURCES = ("alpaca_eval", "vicuna80")
ALPACA_EVAL_MODELS = ("alpaca-7b", "vicuna-13b", "gpt-3.5-turbo-0301")  # each vs text-davinci-003 (output_1)
VICUNA_MODELS = ("alpaca-13b", "bard", "gpt35", "llama-13b")  # each (assistant 1) vs vicuna-13b (assistant 2)
# GPT-4's verdict from answer 1's side, the labels the judge's verdicts are compared on
LABELS = ("1", "2", "tie", "unparsed")
_SIDE = {"a": "1", "b": "2", "tie": "tie", None: "unparsed"}
_OUTCOME = {"win": "1", "loss": "2", "tie": "tie", "unparsed": "unparsed", "inconsistent": "tie"}


@dataclass(frozen=True)
class RecordedPair:
    """One answer pair GPT-4 judged: ``gpt4`` is "1" (answer 1 better), "2", "tie" or "unparsed"."""

    id: str
    source: str
    question: str
    answer_1: str
    answer_2: str
    gpt4: str

    @property
    def max_words(self) -> int:
        return max(len(words(self.question)), len(words(self.answer_1)), len(words(self.answer_2)))

    @property
    def longer(self) -> str | None:
        """Which answer has more words ("1" or "2"); None when they are as long."""
        n1, n2 = len(words(self.answer_1)), len(words(self.answer_2))
        return "1" if n1 > n2 else "2" if n2 > n1 else None


def _alpaca_eval_pairs(root: Path) -> list[RecordedPair]:
    from imitlab.judge.aggregate import alpaca_eval_outcome

    pairs = []
    for model in ALPACA_EVAL_MODELS:
        path = root / "alpaca_eval" / "annotations_alpaca_eval_gpt4" / f"{model}.json.gz"
        if not path.is_file():
            raise ImitlabError(f"recorded verdicts not found: {path} (set $IMITLAB_DATA or --data-dir)")
        for n, row in read_records(path):
            for key in ("instruction", "output_1", "output_2", "preference"):
                if key not in row:
                    raise ImitlabError(f"{path}: item {n}: no field {key!r}")
            try:  # the outcome is output_2's; answer 1 here is output_1 (davinci-003)
                outcome = alpaca_eval_outcome(row["preference"])
            except ValueError as exc:
                raise ImitlabError(f"{path}: item {n}: field 'preference': {exc}") from None
            gpt4 = {"win": "2", "loss": "1", "tie": "tie", "unparsed": "unparsed"}[outcome]
            pairs.append(RecordedPair(f"alpaca_eval/{model}/{n}", f"alpaca_eval:{model}", str(row["instruction"]),
                                      str(row["output_1"]), str(row["output_2"]), gpt4))  # fmt: skip
    return pairs


def _vicuna_pairs(root: Path) -> list[RecordedPair]:
    base = root / "vicuna_bench"

    def by_question(path: Path, field: str = "text") -> dict[str, str]:
        if not path.is_file():
            raise ImitlabError(f"recorded verdicts not found: {path} (set $IMITLAB_DATA or --data-dir)")
        out = {}
        for n, row in read_records(path):
            if "question_id" not in row or field not in row:
                raise ImitlabError(f"{path}:{n}: needs fields 'question_id' and {field!r}")
            out[str(row["question_id"])] = str(row[field])
        return out

    questions = by_question(base / "question.jsonl")
    vicuna = by_question(base / "answer" / "answer_vicuna-13b.jsonl")
    pairs = []
    for model in VICUNA_MODELS:
        answers = by_question(base / "answer" / f"answer_{model}.jsonl")
        for review in vicuna_reviews(base / "review_gpt4" / f"review_{model}_vicuna-13b.jsonl"):
            qid = review.question_id
            if qid not in questions or qid not in answers or qid not in vicuna:
                raise ImitlabError(f"vicuna_bench: review of question {qid} ({model}) has no question or answer")
            s1, s2 = review.recorded  # the file's own score field, GPT-4's scores for assistants 1 and 2
            gpt4 = "1" if s1 > s2 else "2" if s2 > s1 else "tie"
            pairs.append(RecordedPair(f"vicuna80/{model}/{qid}", f"vicuna80:{model}", questions[qid], answers[qid],
                                      vicuna[qid], gpt4))  # fmt: skip
    return pairs


def load_recorded(data: str | Path | None = None, sources: Sequence[str] = SOURCES) -> list[RecordedPair]:
    """Every recorded GPT-4 pairwise verdict in the data dir, from answer 1's side."""
    root = data_dir(data)
    loaders: dict[str, Callable[[Path], list[RecordedPair]]] = {
        "alpaca_eval": _alpaca_eval_pairs,
        "vicuna80": _vicuna_pairs,
    }
    pairs: list[RecordedPair] = []
    for source in sources:
        if source not in loaders:
            raise ImitlabError(f"unknown source of recorded verdicts {source!r}; known: {', '.join(SOURCES)}")
        pairs += loaders[source](root)
    return pairs


def sample_pairs(
    pool: Sequence[RecordedPair], n: int, *, seed: int = 0, max_words: int | None = None
) -> list[RecordedPair]:
    """A seeded sample of ``n`` pairs GPT-4 decided, each text (question, both answers) at most ``max_words`` words.

    The same seed and pool give the same sample, and a larger ``n`` extends a smaller one (a run can grow).
    """
    eligible = [p for p in pool if p.gpt4 in ("1", "2") and (max_words is None or p.max_words <= max_words)]
    if not eligible:
        raise ImitlabError(f"no recorded pair GPT-4 decided has texts of at most {max_words} words")
    order = sorted(eligible, key=lambda p: p.id)
    random.Random(seed).shuffle(order)
    return order[:n]


# -- the numbers ------------------------------------------------------------------------------------------------
def _rate(values: Sequence[float], n_resamples: int, seed: int) -> dict[str, Any]:
    return bootstrap_ci(np.asarray(values, dtype=float), n_resamples=n_resamples, seed=seed).as_dict()


def _kappa(judge: Sequence[str], gpt4: Sequence[str], n_resamples: int, seed: int) -> dict[str, Any]:
    code = {label: float(i) for i, label in enumerate(LABELS)}
    rows = np.array([[code[j], code[g]] for j, g in zip(judge, gpt4, strict=True)], dtype=float)

    def statistic(sample: np.ndarray) -> float:
        return cohen_kappa(sample[:, 0].tolist(), sample[:, 1].tolist())

    if len(rows) == 0:
        return bootstrap_ci([]).as_dict()
    return bootstrap_ci(rows, statistic, n_resamples=n_resamples, seed=seed).as_dict()


def verdict_metrics(items: Sequence[dict[str, Any]], *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Agreement, consistency, position and length numbers for one kind of verdict.

    Each item: ``gpt4`` and ``judge`` ("1"/"2"/"tie"/"unparsed"), ``longer`` ("1"/"2"/None), ``order_sides``
    (the side preferred in each order, None where unparsed) and ``position_a`` (the share, or probability, of
    the first slot per order, None where unparsed); ``p_gpt4`` (probability given to GPT-4's choice) if any.
    """
    decided = [i for i in items if i["judge"] in ("1", "2")]
    both = [i for i in items if all(s is not None for s in i["order_sides"])]
    lead = [i for i in items if i["longer"] is not None]
    per_item_a = [np.mean(vals) for i in items if (vals := [p for p in i["position_a"] if p is not None])]
    out = {
        "n": len(items),
        "counts": {label: sum(i["judge"] == label for i in items) for label in LABELS},
        "agreement": _rate([i["judge"] == i["gpt4"] for i in items], n_resamples, seed),
        "decided": _rate([i["judge"] in ("1", "2") for i in items], n_resamples, seed),
        "agreement_when_decided": _rate([i["judge"] == i["gpt4"] for i in decided], n_resamples, seed),
        "kappa": _kappa([i["judge"] for i in items], [i["gpt4"] for i in items], n_resamples, seed),
        "order_agreement": _rate([i["order_sides"][0] == i["order_sides"][1] for i in both], n_resamples, seed),
        "position_a": _rate(per_item_a, n_resamples, seed),
        "longer_wins": _rate([i["judge"] == i["longer"] for i in lead if i["judge"] in ("1", "2")], n_resamples, seed),
        "gpt4_longer_wins": _rate([i["gpt4"] == i["longer"] for i in lead], n_resamples, seed),
    }
    soft = [i["p_gpt4"] for i in items if i.get("p_gpt4") is not None]
    if any("p_gpt4" in i for i in items):
        out["soft_agreement"] = _rate(soft, n_resamples, seed)
    return out


def item_verdicts(pair: RecordedPair, ab: dict[str, Any], ba: dict[str, Any]) -> dict[str, Any]:
    """One item's text and (when recorded) probability verdicts, from its two judgments.

    ``ab`` put answer 1 in slot A, ``ba`` answer 2.
    """
    text = {
        "gpt4": pair.gpt4,
        "longer": pair.longer,
        "judge": _OUTCOME[combine(ab["winner"], ba["winner"], "tie")],
        "order_sides": [_SIDE[ab["winner"]] if ab["winner"] else None, _SIDE[ba["winner"]] if ba["winner"] else None],
        "position_a": [_position_a(r["position"]) for r in (ab, ba)],
    }
    row: dict[str, Any] = {"id": pair.id, "source": pair.source, "text": text}
    if "p_first" in ab and "p_first" in ba:
        pf_ab, pf_ba = ab["p_first"], ba["p_first"]
        p1 = p_a_better(pf_ab, pf_ba)
        side = "unparsed" if p1 is None else "1" if p1 > 0.5 else "2" if p1 < 0.5 else "tie"
        row["logprob"] = {
            "gpt4": pair.gpt4,
            "longer": pair.longer,
            "judge": side,
            "p_1": p1,
            "p_gpt4": None if p1 is None else (p1 if pair.gpt4 == "1" else 1.0 - p1),
            # the side each order's more probable label names: slot A is answer 1 in ab, answer 2 in ba
            "order_sides": [
                None if pf_ab is None else ("1" if pf_ab > 0.5 else "2"),
                None if pf_ba is None else ("2" if pf_ba > 0.5 else "1"),
            ],
            "position_a": [pf_ab, pf_ba],
        }
    return row


def _position_a(position: str | None) -> float | None:
    return None if position is None else float(position == "A")


# -- the run -----------------------------------------------------------------------------------------------
class CalibrateConfig(StageConfig):
    judge: str  # model spec of the judge
    out: Path
    n: int = 40  # pairs (each judged twice)
    max_words: int | None = 50  # the longest question or answer in a sampled pair, in words: what fits a CPU
    sources: tuple[str, ...] = SOURCES
    template: str = LABEL_TEMPLATE
    logprobs: bool = False  # also ask for token log-probabilities and score the probability verdict
    judge_max_tokens: int = 8  # the label template's verdict comes first
    judge_temperature: float = 0.0
    parallel: int = 1  # one slot: a CPU gains nothing from two, and each call then runs at full speed
    # Stop starting new pairs after this many seconds of judging and score the pairs done (a prefix of the
    # sample, so a later run with more time extends it). None: judge all n.
    max_seconds: float | None = None
    n_resamples: int = 2000
    seed: int = 0
    data: Path | None = None
    cache: Path | None = None
    base_url: str | None = None
    extra: dict[str, Any] = pydantic.Field(default_factory=dict)  # free-form notes kept in calibration.json


def run_calibration(config: CalibrateConfig, judge: APIModel | JudgeFn | None = None) -> dict[str, Any]:
    """Judge a seeded sample of GPT-4-judged pairs in both orders; write the output directory; return the numbers."""
    if config.n < 1:
        raise ImitlabError(f"--n must be at least 1, not {config.n}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    template = load_template(config.template, data=config.data)
    pool = load_recorded(config.data, config.sources)
    sample = sample_pairs(pool, config.n, seed=config.seed, max_words=config.max_words)
    pairs = [Pair(p.id, p.question, p.answer_1, p.answer_2) for p in sample]
    atomic_write_text(out / "pairs.jsonl", "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in sample))
    timed = judge_pairs_in_time(pairs, template, config, judge, out / "judgments.jsonl", chunk=2 * config.parallel,
                                verdict="logprob" if config.logprobs else "text")  # fmt: skip
    records, usage, seconds, load_before = timed.records, timed.usage, timed.seconds, timed.load_before
    by_key = {(r["id"], r["order"]): r for r in records}
    judged = [p for p in sample if (p.id, "ab") in by_key]
    items = [item_verdicts(p, by_key[(p.id, "ab")], by_key[(p.id, "ba")]) for p in judged]
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(json_ready(i)) + "\n" for i in items))
    eligible = [p for p in pool if p.gpt4 in ("1", "2") and p.longer is not None]
    result = {
        "judge": config.judge,
        "template": {"name": template.name, "source": template.source},
        "sample": {
            "n": len(judged),
            "n_sampled": len(sample),
            "stopped_by_time": len(judged) < len(sample),
            "pool": len(pool),
            "max_words": config.max_words,
            "seed": config.seed,
            "sources": {s: sum(p.source == s for p in judged) for s in sorted({p.source for p in judged})},
            "gpt4_prefers_answer_1": sum(p.gpt4 == "1" for p in judged),
        },
        "text": verdict_metrics([i["text"] for i in items], n_resamples=config.n_resamples, seed=config.seed),
        "gpt4_longer_wins_pool": _rate([p.gpt4 == p.longer for p in eligible], config.n_resamples, config.seed),
        "n_call_errors": sum(1 for r in records if r.get("error")),
        "run": {
            "seconds": round(seconds, 1),
            "calls": usage.get("requests"),
            "cached": usage.get("cached"),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "config": config.as_dict(),
    }
    if config.logprobs:
        result["logprob"] = verdict_metrics(
            [i["logprob"] for i in items if "logprob" in i], n_resamples=config.n_resamples, seed=config.seed
        )
    result = json_ready(result)
    atomic_write_text(out / "calibration.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
