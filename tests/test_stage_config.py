"""One config per stage: the pydantic model a command's options, its --config FILE, the Python API and the sweep
all go through (imitlab.stage_config, imitlab.cli.options.stage_config)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from imitlab.cli import app
from imitlab.collect import CollectConfig
from imitlab.errors import ImitlabError
from imitlab.evals import EvalConfig
from imitlab.judge.pairwise import JudgeConfig
from imitlab.stage_config import StageConfig
from imitlab.train.train_config import TrainConfig

runner = CliRunner()


def _refused(result: object) -> str:
    """The one-line error `imitlab` prints for a refused command (the app raises it; imitlab.cli.run prints it)."""
    assert isinstance(result.exception, ImitlabError), result.output  # type: ignore[attr-defined]
    return str(result.exception)  # type: ignore[attr-defined]


def test_every_stage_config_is_one_pydantic_model_refusing_unknown_keys() -> None:
    for cls in (TrainConfig, CollectConfig, EvalConfig, JudgeConfig):
        assert issubclass(cls, StageConfig)
        with pytest.raises(ImitlabError, match=r"where\.yaml: unknown key 'nope'; known keys: .*\bout\b"):
            cls.build({"nope": 1}, "where.yaml")


def test_a_file_error_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("base: smollm2-135m-instruct\ndata: d\nout: o\n\nbatch_size: two\nlr: 1\n")
    with pytest.raises(ImitlabError) as err:
        TrainConfig.from_file(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}:5: batch_size: Input should be a valid integer, unable to parse string as an integer " \
        "(got 'two')"  # fmt: skip
    assert lines[1].startswith(f"{path}:6: unknown key 'lr'; known keys: base, batch_size,")
    assert "learning_rate" in lines[1]


def test_python_api_and_file_give_the_same_config(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("base: smollm2-135m-instruct\ndata: d\nout: o\nlearning_rate: 3.0e-4\nlora: true\n")
    from_file = TrainConfig.from_file(path)
    by_keywords = TrainConfig(base="smollm2-135m-instruct", data=Path("d"), out="o", learning_rate=3e-4, lora=True)
    assert from_file == by_keywords and by_keywords.data == "d"  # a Path for a str field is taken as its string


def test_cli_config_file_unknown_key_fails_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("base: smollm2-135m-instruct\nlearning_rat: 1\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--data", "d", "--out", str(tmp_path / "o")])
    assert f"{path}:2: unknown key 'learning_rat'; known keys:" in _refused(result)
    assert not (tmp_path / "o").exists()


def test_cli_names_the_option_or_key_a_required_setting_needs(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("base: smollm2-135m-instruct\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "o")])
    assert f"missing --data or `data:` in {path}" in _refused(result)
    result = runner.invoke(app, ["collect", "--prompts", "p.jsonl", "--out", str(tmp_path / "c")])
    assert "missing --teacher (or --config FILE with it)" in _refused(result)


def test_the_file_fills_what_the_command_line_leaves_at_its_default_and_loses_to_what_it_gives(
    tmp_path: Path,
) -> None:
    """Decided through `imitlab eval`, which checks its benchmark names before loading any model."""
    path = tmp_path / "eval.yaml"
    path.write_text(f"model: smollm2-135m-instruct\nbenches: [from_the_file]\nout: {tmp_path / 'e'}\n")
    result = runner.invoke(app, ["eval", "--config", str(path)])
    assert "unknown benchmark 'from_the_file'" in _refused(result)
    result = runner.invoke(app, ["eval", "--config", str(path), "--bench", "from_the_command_line"])
    assert "unknown benchmark 'from_the_command_line'" in _refused(result)


def test_judge_config_file_checks_the_verdict_mode(tmp_path: Path) -> None:
    path = tmp_path / "judge.yaml"
    path.write_text("a: a.jsonl\nb: b.jsonl\nprompts: koala\njudge: smollm2-135m-instruct\nout: o\nverdict: prob\n")
    result = runner.invoke(app, ["judge", "--config", str(path)])
    assert f"{path}:6: verdict: Input should be 'text' or 'logprob'" in _refused(result)


def test_the_sweep_composes_the_train_config_instead_of_redeclaring_it() -> None:
    from imitlab.study.sweep_config import TRAIN_DEFAULTS, load_sweep_config

    base = {"name": "s", "teacher": "smollm2-135m-instruct", "bases": ["smollm2-135m-instruct"], "budgets": [100],
            "data_kinds": ["local"]}  # fmt: skip
    config = load_sweep_config({**base, "train": {"gradient_checkpointing": True, "lora": True}})
    cell = config.train_config(base="b", data="d", out="o", tokens=100, run_name="r", report_to="none")
    assert isinstance(cell, TrainConfig) and cell.gradient_checkpointing and cell.lora  # any TrainConfig key
    assert cell.block_size == TRAIN_DEFAULTS["block_size"] and cell.save == "steps"  # the sweep's CPU defaults
    with pytest.raises(ImitlabError, match=r"train: unknown key 'grad_checkpointing'; known keys: .*gradient_checkp"):
        load_sweep_config({**base, "train": {"grad_checkpointing": True}})
    with pytest.raises(ImitlabError, match=r"train\.tokens: set by the sweep for each cell"):
        load_sweep_config({**base, "train": {"tokens": 5}})


def test_a_keyword_built_config_error_prints_as_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A stage config a command builds from keywords raises pydantic's ValidationError; `imitlab` prints it as
    ``error: CONFIG: unknown key ...`` and exits 2, like any bad input, not as an unexpected failure."""
    import importlib

    from imitlab.data.dedup import DedupConfig

    cli_app = importlib.import_module("imitlab.cli.app")  # the module: imitlab.cli.app as an attribute is the Typer

    monkeypatch.setattr(cli_app, "app", lambda: DedupConfig(nope=1))
    with pytest.raises(SystemExit) as exit_:
        cli_app.run()
    assert exit_.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: DedupConfig: unknown key 'nope'; known keys: key, near," in err and "unexpected" not in err
