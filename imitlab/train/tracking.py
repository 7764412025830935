"""Experiment tracking for ``imitlab train --report-to``: the transformers Trainer's own integrations.

imitlab writes its ``metrics.jsonl`` either way; ``--report-to`` adds the Trainer's callbacks for TensorBoard,
Weights & Biases or MLflow (``report_to`` in ``TrainingArguments``), configured as those tools document
(``WANDB_PROJECT``, ``MLFLOW_TRACKING_URI``, ...). The run's name in them is ``run_name`` (the sweep passes
the cell and budget, e.g. ``smollm2-135m-instruct/broad/1500``). TensorBoard logs go to
``RUN/tensorboard/<run name>`` unless ``$TENSORBOARD_LOGGING_DIR`` says otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from imitlab.errors import ImitlabError

REPORT_TO_ENV = "IMITLAB_REPORT_TO"  # the default of --report-to, and what the sweep's training runs report to
_TB_DIR_ENV = "TENSORBOARD_LOGGING_DIR"  # read by transformers' TensorBoardCallback when the Trainer is built
# tracker -> the module that provides it (all three come with the [track] extra; mlflow from mlflow-skinny)
TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def parse_report_to(value: str | None) -> list[str]:
    """``"none"``/empty -> []; ``"tensorboard,wandb"`` -> both, each checked to be known and installed."""
    names = [n.strip() for n in (value or "none").split(",") if n.strip()]
    if names == ["none"] or not names:
        return []
    from imitlab.extras import require

    for name in names:
        if name not in TRACKERS:
            raise ImitlabError(f"report_to: unknown tracker {name!r}; choose none or any of {', '.join(TRACKERS)}")
        require("track", f"--report-to {name}", modules=(TRACKERS[name],))
    return names


def tensorboard_dir(out: str | Path, run_name: str) -> Path:
    return Path(out) / "tensorboard" / run_name.replace("/", "_")


@contextlib.contextmanager
def tracker_environment(trackers: list[str], out: str | Path, run_name: str) -> Iterator[None]:
    """Hold ``$TENSORBOARD_LOGGING_DIR`` at this run's directory while the Trainer (and its callbacks) is built.

    Scoped, because a sweep trains several runs in one process: each must log to its own directory.
    """
    if "tensorboard" not in trackers or os.environ.get(_TB_DIR_ENV):
        yield
        return
    os.environ[_TB_DIR_ENV] = str(tensorboard_dir(out, run_name))
    try:
        yield
    finally:
        del os.environ[_TB_DIR_ENV]
