"""`imitlab train --report-to`: the Trainer's tracker integrations; a TensorBoard log written and read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imitlab.errors import ImitlabError
from imitlab.train.sft_trainer import train
from imitlab.train.tracking import parse_report_to, tensorboard_dir
from imitlab.train.train_config import TrainConfig

from .test_train_logic import _conv, _write, tiny_model, tokenizer  # noqa: F401  (fixtures)


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_log_is_written_and_reads_back(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    data = _write(tmp_path / "data" / "conversations.jsonl", [_conv(i) for i in range(24)])
    heldout = _write(tmp_path / "heldout.jsonl", [_conv(i) for i in range(100, 104)])
    out = tmp_path / "smol-1k"
    config = TrainConfig(base=f"hf:{tiny_model}", data=str(data.parent), eval_data=str(heldout), out=str(out),
                         block_size=64, batch_size=2, max_steps=3, learning_rate=1e-3, warmup_steps=0,
                         report_to="tensorboard")  # fmt: skip
    train(config)
    log_dir = tensorboard_dir(out, "smol-1k")  # no run name given: the out directory's name
    assert log_dir == out / "tensorboard" / "smol-1k" and any(log_dir.glob("events.out.tfevents.*"))
    scalars = _scalars(log_dir)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3] == [step for step, _ in expected]
    # The tracker saw the same numbers imitlab's own metrics.jsonl has (TensorBoard stores float32).
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in expected], rel=1e-6)
    assert "train/learning_rate" in scalars and "eval/loss" in scalars


def test_run_name_names_the_log_directory(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    data = _write(tmp_path / "data" / "conversations.jsonl", [_conv(i) for i in range(8)])
    out = tmp_path / "run"
    train(TrainConfig(base=f"hf:{tiny_model}", data=str(data.parent), out=str(out), block_size=64, batch_size=2,
                      max_steps=1, report_to="tensorboard", run_name="smollm2/broad/1500"))  # fmt: skip
    assert _scalars(out / "tensorboard" / "smollm2_broad_1500")["train/loss"][0][0] == 1


def test_report_to_none_writes_no_tracker_files(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    data = _write(tmp_path / "data" / "conversations.jsonl", [_conv(i) for i in range(8)])
    out = tmp_path / "run"
    train(TrainConfig(base=f"hf:{tiny_model}", data=str(data.parent), out=str(out), block_size=64, batch_size=2,
                      max_steps=1))  # fmt: skip
    assert not (out / "tensorboard").exists() and not list(out.rglob("events.out.tfevents.*"))


def test_report_to_is_checked_before_any_model_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_report_to("none") == [] and parse_report_to("") == [] and parse_report_to(None) == []
    assert parse_report_to("tensorboard") == ["tensorboard"]
    config = TrainConfig(base="hf:/nonexistent", data=str(tmp_path), out=str(tmp_path / "o"), report_to="comet")
    with pytest.raises(ImitlabError, match="unknown tracker 'comet'; choose none or any of tensorboard, wandb, mlflow"):
        config.validate()
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name))
    missing = r"--report-to wandb needs wandb \(not installed\): pip install 'imitlab\[track\]'"
    with pytest.raises(ImitlabError, match=missing):
        config.model_copy(update={"report_to": "tensorboard,wandb"}).validate()


def test_sweep_names_each_training_run_by_cell_and_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import imitlab.train.launch
    from imitlab.study import sweep
    from imitlab.study.sweep_config import ResourcesSection, SweepConfig

    class RunNow:
        """Stands in for the sweep's stage runner: runs the training stage at once, in tmp_path."""

        def run(self, stage: str, key: dict, fn: Any) -> Path:
            fn(tmp_path)
            return tmp_path

        def submit(self, stage: str, key: dict, fn: Any, **placement: Any) -> Path:
            return self.run(stage, key, fn)

    launched: list[TrainConfig] = []

    def launch(config: TrainConfig) -> None:  # a finished run: its resumable checkpoints are on disk
        launched.append(config)
        (Path(config.out) / "checkpoints" / "checkpoint-25").mkdir(parents=True)

    monkeypatch.setattr(imitlab.train.launch, "launch", launch)
    monkeypatch.setenv("IMITLAB_REPORT_TO", "tensorboard")
    config = SweepConfig(name="t", teacher="smollm2-135m-instruct", bases=["smollm2-135m-instruct"], budgets=[1500],
                         resources=ResourcesSection())  # fmt: skip
    sweep._train("smollm2-135m-instruct", "broad", 1500, tmp_path / "data", config, RunNow())  # type: ignore[arg-type]
    assert [(c.run_name, c.report_to) for c in launched] == [("smollm2-135m-instruct/broad/1500", "tensorboard")]
    assert launched[0].save == "steps"  # resumable while it runs ...
    assert not (tmp_path / "checkpoints").exists()  # ... and the checkpoints go once the stage finished
