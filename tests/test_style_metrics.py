"""Style metrics (paper Table 2): detectors, the comparison, the tone probe, and real AlpacaEval outputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.judge.sources import Answers, PromptItem, load_answers, load_prompts
from imitlab.judge.style import StyleConfig, compare, has_list, has_summary, run_style, unigram_f1

LISTY = "Here are some tips:\n\n1. Sleep well.\n2. Eat well.\n3. Move.\n\nOverall, small habits add up."
PLAIN = "Just sleep more, honestly."


def test_detectors() -> None:
    assert has_list(LISTY) and has_list("- a\n- b") and has_list("* one\n* two\n")
    assert not has_list(PLAIN) and not has_list("1. only one item") and not has_list("```\n- a\n- b\n```")
    assert has_summary(LISTY)
    assert has_summary("Intro.\n\nIn conclusion, yes.") and not has_summary("In conclusion, yes.")
    assert not has_summary("Intro.\n\n- In summary a list item\n- b")
    assert unigram_f1("the cat sat", "the cat sat") == 1.0
    assert unigram_f1("a b", "c d") == 0.0
    assert unigram_f1("the cat", "the cat sat on the mat") == pytest.approx(2 * 1.0 * (2 / 6) / (1 + 2 / 6))


def _answers(texts: dict[str, str]) -> Answers:
    return Answers("mem", texts)


def test_compare_identical_and_plain_answers() -> None:
    prompts = [PromptItem(str(i), f"q{i}") for i in range(6)]
    teacher = {str(i): LISTY + " word" * (i * 5) for i in range(6)}
    same, _ = compare(_answers(teacher), _answers(teacher), prompts, n_resamples=200)
    assert same["list_when_teacher"]["value"] == 1.0 and same["summary_when_teacher"]["value"] == 1.0
    assert same["unigram_overlap"]["value"] == pytest.approx(100.0)
    assert same["length_pearson"]["value"] == pytest.approx(1.0)
    plain, items = compare(_answers({str(i): PLAIN for i in range(5)}), _answers(teacher), prompts, n_resamples=200)
    assert plain["n"] == 5 and len(items) == 5  # prompt 5 has no model answer: not compared
    assert plain["list_when_teacher"]["value"] == 0.0 and plain["summary_when_teacher"]["value"] == 0.0
    assert plain["unigram_overlap"]["value"] < 20


def test_run_style_with_fake_tone_judge_and_teacher2(tmp_path: Path) -> None:
    prompts = [{"id": f"p{i}", "prompt": f"Question {i}?"} for i in range(8)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))

    def write(name: str, texts: list[str]) -> str:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": f"p{i}", "answer": t}) + "\n" for i, t in enumerate(texts)))
        return str(path)

    teacher = write("teacher", [LISTY] * 8)
    hedgy = write("hedgy", ["I think maybe you could sleep more? Not sure."] * 8)
    copycat = write("copycat", [LISTY.replace("Move", "Walk")] * 8)
    teacher2 = write("teacher2", [LISTY] * 8)

    async def tone(messages: list[dict[str, str]]) -> str:
        answer = messages[-1]["content"].split("[Answer]\n", 1)[1]
        if "Walk" in answer and "Sleep" in answer:
            return "It hums along"  # unparseable: counted apart, never as a yes
        return "[[No]]" if "maybe" in answer else "[[Yes]]"

    result = run_style(
        StyleConfig(teacher=teacher, models={"base": hedgy, "imitation": copycat}, teacher2=teacher2,
                    prompts=str(tmp_path / "prompts.jsonl"), out=tmp_path / "out", n_resamples=200),
        judge=tone,
    )  # fmt: skip
    cols = result["columns"]
    assert set(cols) == {"base", "imitation", "teacher2"}
    assert cols["base"]["authoritative_tone"]["value"] == 0.0
    assert cols["teacher2"]["authoritative_tone"]["value"] == 1.0
    assert cols["imitation"]["tone_unparsed"] == 8 and cols["imitation"]["authoritative_tone"]["n"] == 0
    assert cols["imitation"]["list_when_teacher"]["value"] == 1.0 and cols["base"]["list_when_teacher"]["value"] == 0
    assert cols["teacher2"]["unigram_overlap"]["value"] == pytest.approx(100.0)
    assert (tmp_path / "out" / "style.json").is_file()
    rows = (tmp_path / "out" / "style_items.jsonl").read_text().splitlines()
    assert len(rows) == 24


def test_real_alpaca_eval_outputs_imitation_copies_chatgpt_style() -> None:
    """The paper's Table 2 pattern on real outputs: Vicuna-13B (trained on ChatGPT conversations) copies
    ChatGPT's style far more than Alpaca-7B (trained on text-davinci-003 outputs) does."""
    outputs = data_dir() / "alpaca_eval" / "model_outputs"
    prompts = load_prompts("alpaca-eval")
    chatgpt = load_answers(outputs / "gpt-3.5-turbo-0301.json.gz", prompts)
    vicuna, _ = compare(load_answers(outputs / "vicuna-13b.json.gz", prompts), chatgpt, prompts, n_resamples=300)
    alpaca, _ = compare(load_answers(outputs / "alpaca-7b.json.gz", prompts), chatgpt, prompts, n_resamples=300)
    assert vicuna["n"] == alpaca["n"] == 805
    for metric in ("list_when_teacher", "summary_when_teacher", "unigram_overlap", "length_pearson"):
        assert vicuna[metric]["low"] > alpaca[metric]["high"], metric  # CIs do not overlap
    # A second computation: the same rate with a CommonMark parser (markdown-it-py) as the list detector, on
    # the raw files matched by instruction. Measured: 255/296 for Vicuna-13B from both detectors, and 68/296
    # (imitlab) vs 65/296 (CommonMark) for Alpaca-7B, whose lists are less often well-formed markdown.
    for name, column in (("vicuna-13b", vicuna), ("alpaca-7b", alpaca)):
        assert column["list_when_teacher"]["value"] == pytest.approx(_commonmark_list_rate(name), abs=0.011), name
    # No published figure exists for this pair; 0.861 (255/296) is this code's own measurement, and this line
    # only guards it against change.
    assert vicuna["list_when_teacher"]["value"] == pytest.approx(0.861, abs=0.001)


def _commonmark_list_rate(model: str) -> float:
    """Of the AlpacaEval answers where ChatGPT uses a list (2+ items by CommonMark), the share where ``model``
    uses one too."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark")

    def has_markdown_list(text: str) -> bool:
        return sum(token.type == "list_item_open" for token in parser.parse(text)) >= 2

    def outputs(name: str) -> dict[str, str]:
        path = data_dir() / "alpaca_eval" / "model_outputs" / f"{name}.json.gz"
        return {row["instruction"]: row["output"] for row in json.loads(gzip.decompress(path.read_bytes()))}

    teacher, other = outputs("gpt-3.5-turbo-0301"), outputs(model)
    listed = [k for k, text in teacher.items() if k in other and has_markdown_list(text)]
    return sum(has_markdown_list(other[k]) for k in listed) / len(listed)


def test_style_cli_and_missing_file_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    imitlab = str(Path(sys.executable).parent / "imitlab")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}"}) + "\n" for i in range(4)))
    teacher, model = tmp_path / "t.jsonl", tmp_path / "m.jsonl"
    teacher.write_text("".join(json.dumps({"id": str(i), "answer": LISTY * (i + 1)}) + "\n" for i in range(4)))
    model.write_text("".join(json.dumps({"id": str(i), "answer": PLAIN * (i + 1)}) + "\n" for i in range(4)))
    args = [imitlab, "style", "--teacher", str(teacher), "--model", f"mine={model}", "--prompts", str(prompts)]
    done = subprocess.run([*args, "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "list when" in done.stdout and "mine" in done.stdout
    style = json.loads((tmp_path / "o" / "style.json").read_text())
    assert style["columns"]["mine"]["length_pearson"]["value"] == pytest.approx(1.0)
    bad = subprocess.run(
        [imitlab, "judge", "--a", str(tmp_path / "missing.jsonl"), "--b", str(model), "--prompts", str(prompts),
         "--judge", "smollm2-135m-instruct", "--out", str(tmp_path / "j")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "answers file not found" in bad.stderr and "Traceback" not in bad.stderr
