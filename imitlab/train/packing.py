"""Tokenize conversations with an assistant-only loss mask, and pack them into fixed-length blocks.

The mask comes from the chat template itself: for each assistant turn, the tokens between the rendering
of the conversation up to the generation prompt and the rendering that includes the turn are the
teacher's tokens (content, end-of-turn marker and what the template puts after it). This works for any
template whose earlier turns render identically in every prefix of the conversation; a template that
does not is reported, never silently mis-masked.

Packing follows the paper: token streams are concatenated and cut into ``block_size`` blocks, so a long
conversation continues in the next block (counted as split). Without packing each conversation is its
own row, truncated at ``block_size`` (counted as truncated).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from imitlab.errors import ImitlabError

IGNORE = -100


@dataclass
class PackStats:
    conversations: int = 0
    skipped_no_assistant: int = 0
    split_across_blocks: int = 0  # packing: conversations continued in the next block
    truncated: int = 0  # no packing: conversations cut at block_size
    truncated_tokens: int = 0
    tokens: int = 0  # all tokens of the tokenized conversations
    loss_tokens: int = 0  # assistant tokens (carry loss)
    blocks: int = 0
    dropped_blocks_without_loss: int = 0
    padding_tokens: int = 0

    @property
    def packing_efficiency(self) -> float:
        """Share of non-padding tokens in the rows the model sees."""
        total = self.tokens - self.truncated_tokens + self.padding_tokens
        return (self.tokens - self.truncated_tokens) / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "packing_efficiency": round(self.packing_efficiency, 4)}


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if hasattr(out, "keys"):  # BatchEncoding in some versions
        out = out["input_ids"]
    return list(out)


def tokenize_conversation(
    tokenizer: Any, messages: list[dict[str, str]], where: str = ""
) -> tuple[list[int], list[int]]:
    """Return (input_ids, loss_mask) for one conversation; loss_mask is 1 on the assistant's tokens."""
    full = _ids(tokenizer, messages)
    mask = [0] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _ids(tokenizer, messages[:i], generation_prompt=True)
        upto = _ids(tokenizer, messages[: i + 1])
        if full[: len(before)] != before or full[: len(upto)] != upto or len(upto) < len(before):
            raise ImitlabError(
                f"{where}: the chat template does not render turn {i} the same in every prefix of the "
                "conversation, so the assistant tokens cannot be masked reliably; use a template whose earlier "
                "turns are stable (see imitlab/models/tokenizer.py)"
            )
        for j in range(len(before), len(upto)):
            mask[j] = 1
    return full, mask


def build_rows(
    tokenizer: Any,
    records: list[dict[str, Any]],
    *,
    block_size: int,
    packing: bool = True,
    seed: int = 0,
) -> tuple[list[dict[str, list[int]]], PackStats]:
    """Tokenize, mask and pack ``records`` (dicts with ``messages``) into training rows.

    Rows are shuffled once with ``seed`` here and then read in order, so one process and N data-parallel
    processes see the same global batches (the N-process loss curve matches the 1-process one).
    """
    stats = PackStats()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows: list[dict[str, list[int]]] = []
    stream_ids: list[int] = []
    stream_labels: list[int] = []
    offset = 0  # position of the next conversation in the concatenated token stream

    def add_row(ids: list[int], labels: list[int]) -> None:
        if all(label == IGNORE for label in labels):
            stats.dropped_blocks_without_loss += 1
            return
        n_pad = block_size - len(ids) if packing else 0
        stats.padding_tokens += n_pad
        rows.append(
            {
                "input_ids": ids + [pad] * n_pad,
                "labels": labels + [IGNORE] * n_pad,
                "attention_mask": [1] * len(ids) + [0] * n_pad,
            }
        )

    for n, record in enumerate(records):
        ids, mask = tokenize_conversation(tokenizer, record["messages"], where=f"record {n} (id {record.get('id')})")
        if not any(mask):
            stats.skipped_no_assistant += 1
            continue
        stats.conversations += 1
        stats.tokens += len(ids)
        stats.loss_tokens += sum(mask)
        labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
        if packing:
            if (offset + len(ids) - 1) // block_size > offset // block_size:
                stats.split_across_blocks += 1
            offset += len(ids)
            stream_ids += ids
            stream_labels += labels
            while len(stream_ids) >= block_size:
                add_row(stream_ids[:block_size], stream_labels[:block_size])
                stream_ids, stream_labels = stream_ids[block_size:], stream_labels[block_size:]
        else:
            if len(ids) > block_size:
                stats.truncated += 1
                stats.truncated_tokens += len(ids) - block_size
            add_row(ids[:block_size], labels[:block_size])
    if packing and stream_ids:
        add_row(stream_ids, stream_labels)  # the last, partial block: padded
    if stats.conversations == 0:
        raise ImitlabError(
            f"no trainable conversations: {len(records)} record(s), {stats.skipped_no_assistant} without an "
            "assistant turn"
        )
    stats.blocks = len(rows)
    random.Random(seed).shuffle(rows)
    return rows, stats


def collate(pad_id: int):  # type: ignore[no-untyped-def]
    """Pad a batch of rows to its longest row (rows are already block_size long when packed)."""
    import torch

    def _collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in batch)
        out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for r in batch:
            n = width - len(r["input_ids"])
            out["input_ids"].append(r["input_ids"] + [pad_id] * n)
            out["labels"].append(r["labels"] + [IGNORE] * n)
            out["attention_mask"].append(r["attention_mask"] + [0] * n)
        return {k: torch.tensor(v) for k, v in out.items()}

    return _collate


def render_loss_tokens(tokenizer: Any, row: dict[str, list[int]]) -> str:
    """Show which tokens carry loss: ``[[...]]`` around runs of loss tokens (for docs and debugging)."""
    parts: list[str] = []
    run: list[int] = []
    in_loss = False
    for tok, label in zip(row["input_ids"], row["labels"], strict=True):
        loss = label != IGNORE
        if loss != in_loss and run:
            text = tokenizer.decode(run)
            parts.append(f"[[{text}]]" if in_loss else text)
            run = []
        in_loss = loss
        run.append(tok)
    if run:
        text = tokenizer.decode(run)
        parts.append(f"[[{text}]]" if in_loss else text)
    return "".join(parts)
