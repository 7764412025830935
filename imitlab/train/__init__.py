"""Train imitation students: supervised fine-tuning on teacher conversations (transformers Trainer + peft)."""

from imitlab.train.train_config import TrainConfig

__all__ = ["TrainConfig"]
