"""What collecting the paper's imitation data from a hosted teacher costs, live and by batch (docs/scale.md).

Measures two things from real data, then prices them:
- prompt length: the first user turns of the ShareGPT prompt files (the paper's main imitation source);
- answer length: ChatGPT's (gpt-3.5-turbo-0301) answers to the 805 AlpacaEval instructions, the one set of real
  ChatGPT answers in the data directory (ShareGPT's own replies are not there);
both counted with the Qwen2.5 tokenizer (read from the packaged GGUF; a stand-in for the teacher's own tokenizer).

A budget of N imitation tokens (prompt + answer, as training counts them) then needs N / (mean prompt + mean
answer) conversations, billed as prompt and completion tokens at the prices given, and at ``1 - discount`` of
them by batch. Prices are inputs, not measurements: pass the teacher's current list prices.

    python scripts/collect_cost.py --price-prompt 0.15 --price-completion 0.60 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from imitlab.config import data_dir
from imitlab.fileio import iter_records

BUDGETS = (300_000, 20_000_000, 80_000_000, 150_000_000)  # the paper's range of imitation tokens


def sharegpt_prompts(root: Path) -> list[str]:
    prompts = []
    for path in sorted((root / "sharegpt_prompts").glob("*.json*")):
        for _, _, record in iter_records(path):
            turns = [t["value"] for t in record.get("conversations", []) if t.get("from") == "human"]
            if turns and turns[0].strip():
                prompts.append(turns[0])
    return prompts


def chatgpt_answers(root: Path) -> list[str]:
    path = root / "alpaca_eval" / "model_outputs" / "gpt-3.5-turbo-0301.json.gz"
    return [r["output"] for _, _, r in iter_records(path) if r.get("output", "").strip()]


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from imitlab.models.packaged import pull

    gguf = pull("qwen2.5-coder-0.5b-instruct", convert=False).gguf
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def estimate(prompt_tokens: list[int], answer_tokens: list[int], price_prompt: float, price_completion: float,
             discount: float) -> dict[str, Any]:  # fmt: skip
    mean_p, mean_a = statistics.fmean(prompt_tokens), statistics.fmean(answer_tokens)
    rows = []
    for budget in BUDGETS:
        conversations = budget / (mean_p + mean_a)
        p_tok, a_tok = conversations * mean_p, conversations * mean_a
        live = (p_tok * price_prompt + a_tok * price_completion) / 1e6
        rows.append({"imitation_tokens": budget, "conversations": round(conversations), "prompt_tokens": round(p_tok),
                     "completion_tokens": round(a_tok), "cost_usd_live": round(live, 2),
                     "cost_usd_batch": round(live * (1 - discount), 2)})  # fmt: skip
    return {
        "prompts_measured": len(prompt_tokens), "answers_measured": len(answer_tokens),
        "mean_prompt_tokens": round(mean_p, 1), "median_prompt_tokens": statistics.median(prompt_tokens),
        "mean_answer_tokens": round(mean_a, 1), "median_answer_tokens": statistics.median(answer_tokens),
        "prices_per_million": {"prompt": price_prompt, "completion": price_completion}, "batch_discount": discount,
        "budgets": rows,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--price-prompt", type=float, required=True, help="USD per million prompt tokens")
    parser.add_argument("--price-completion", type=float, required=True, help="USD per million completion tokens")
    parser.add_argument("--discount", type=float, default=0.5, help="batch discount (OpenAI: 0.5)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = data_dir(args.data_dir)
    start = time.perf_counter()
    tok = tokenizer()
    prompts, answers = sharegpt_prompts(root), chatgpt_answers(root)
    p_tok = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]]
    a_tok = [len(ids) for ids in tok(answers, add_special_tokens=False)["input_ids"]]
    result = estimate(p_tok, a_tok, args.price_prompt, args.price_completion, args.discount)
    result["elapsed_s"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['prompts_measured']} ShareGPT prompts: mean {result['mean_prompt_tokens']} tokens "
          f"(median {result['median_prompt_tokens']}); {result['answers_measured']} ChatGPT answers: mean "
          f"{result['mean_answer_tokens']} (median {result['median_answer_tokens']})")  # fmt: skip
    print(f"prices ${args.price_prompt}/M prompt, ${args.price_completion}/M completion; discount {args.discount}")
    print("| imitation tokens | conversations | prompt tokens | completion tokens | live | batch |")
    print("|---|---|---|---|---|---|")
    for r in result["budgets"]:
        tokens = f"{r['prompt_tokens'] / 1e6:.1f}M | {r['completion_tokens'] / 1e6:.1f}M"
        costs = f"${r['cost_usd_live']:,.2f} | ${r['cost_usd_batch']:,.2f}"
        print(f"| {r['imitation_tokens'] / 1e6:g}M | {r['conversations']:,} | {tokens} | {costs} |")


if __name__ == "__main__":
    main()
