"""Data-parallel training through accelerate with 2 CPU processes (gloo) matches 1 process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitlab.train.launch import launch
from imitlab.train.train_config import TrainConfig

from .test_train_logic import _conv, _write, tiny_model, tokenizer  # noqa: F401  (fixtures)


def _losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if "loss" in x]


@pytest.mark.real
def test_two_processes_give_the_one_process_loss_curve(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    data = _write(tmp_path / "d" / "conversations.jsonl", [_conv(i, answer_words=24) for i in range(48)])
    common = dict(base=f"hf:{tiny_model}", data=str(data.parent), block_size=64, max_steps=5, learning_rate=1e-3,
                  warmup_steps=0, save_steps=100)  # fmt: skip
    one = launch(TrainConfig(out=str(tmp_path / "one"), batch_size=4, processes=1, **common))  # type: ignore[arg-type]
    two = launch(TrainConfig(out=str(tmp_path / "two"), batch_size=2, processes=2, **common))  # type: ignore[arg-type]
    assert one["processes"] == 1 and two["processes"] == 2
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    print(f"\n1 process:   {a}\n2 processes: {b}")
    assert len(a) == len(b) == 5
    assert a[-1] < a[0]  # it learns
    for x, y in zip(a, b, strict=True):
        assert abs(x - y) <= 1e-3 * max(1.0, abs(x)), (a, b)
