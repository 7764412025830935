"""Prompt sources: importers, self-instruct bootstrap, task-specific (NQ-style) synthesis."""

from imitlab.prompts.importers import import_prompts
from imitlab.prompts.schema import PromptFormatError, PromptRecord, read_prompt_set, write_prompt_set

__all__ = ["PromptFormatError", "PromptRecord", "import_prompts", "read_prompt_set", "write_prompt_set"]
