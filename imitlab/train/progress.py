"""A rich progress bar for training: steps, tokens/s and ETA, in place of the Trainer's tqdm bar.

The Trainer's bar counts steps; what a person plans a run around is tokens per second and the time left, the
same figures the other stages' bars show (imitlab.models.engine.ProgressBar). Only the main process draws it.
"""

from __future__ import annotations

import time
from typing import Any


def rich_progress_callback(tokens_per_step: int, *, enabled: bool = True) -> Any:
    """A ``TrainerCallback`` drawing one bar over the run's optimizer steps."""
    from transformers import TrainerCallback

    from imitlab.models.engine import ProgressBar

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: ProgressBar | None = None
            self.start = (0.0, 0)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.bar = ProgressBar("train", state.max_steps, enabled=enabled).__enter__()
                self.bar.advance(state.global_step)  # a resumed run starts where its checkpoint was
                self.start = (time.perf_counter(), state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                seconds, steps = time.perf_counter() - self.start[0], state.global_step - self.start[1]
                rate = steps * tokens_per_step / seconds if seconds > 0 else 0.0
                self.bar.advance(1, note=f"{rate:.0f} tok/s")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.__exit__(None, None, None)
                self.bar = None

    return RichProgress()
