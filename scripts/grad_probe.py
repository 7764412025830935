"""One forward and backward pass of a base model on the first training batch of a conversations file.

Prints the loss, the total gradient norm (before any clipping) and the tensors that carry most of it: the check
behind docs/study.md's note on the 0.5B coder's rising training loss. It builds the batch the way training does
(imitlab.train.packing: assistant-only loss, packed blocks, the same shuffle seed).

    python scripts/grad_probe.py MODEL_DIR CONVERSATIONS.jsonl [--block-size 256] [--batch-size 2]
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from imitlab.data.schema import read_conversations
from imitlab.train.packing import build_rows, collate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a Hugging Face model directory (e.g. ~/.cache/imitlab/models/NAME/hf)")
    parser.add_argument("data", help="conversations JSONL or a data-set directory")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--records", type=int, default=40, help="conversations to pack (enough for one batch)")
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    tied = model.get_input_embeddings().weight is model.get_output_embeddings().weight
    print(f"tie_word_embeddings={model.config.tie_word_embeddings}, embeddings shared with lm_head: {tied}")
    records = read_conversations(args.data)[: args.records]  # validated: a bad line names file and line
    rows, _ = build_rows(tokenizer, records, block_size=args.block_size, seed=0)
    batch = collate(tokenizer.pad_token_id)(rows[: args.batch_size])
    out = model(**batch)
    out.loss.backward()
    norms = {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}
    total = sum(v * v for v in norms.values()) ** 0.5
    print(f"loss {out.loss.item():.3f}, total gradient norm {total:.1f}")
    for name, value in sorted(norms.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {value:9.2f}  {name}")


if __name__ == "__main__":
    main()
