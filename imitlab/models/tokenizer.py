"""Loading a student's tokenizer, with a plain chat template for base models that have none.

Instruct models (SmolLM2, Qwen2.5) bring their own chat template and are trained and scored with it.
A base model such as gemma3-270m has none; imitlab gives it this documented plain template, so that
training, token budgets and generation all see the same text::

    <bos>{system}\\n\\n### User:\\n{user}\\n\\n### Assistant:\\n{assistant}<eos>\\n\\n ...

``add_generation_prompt`` ends the text with ``### Assistant:\\n``. Every earlier turn renders the same
in every prefix of the conversation, which the trainer's assistant-only loss mask relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give a tokenizer without a chat template the plain one (in place); return it."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    if tokenizer.pad_token is None:  # padding the last packed block / batches needs one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str, cache: str | Path | None = None) -> Any:
    """The tokenizer of any local model spec, ready for chat-formatted training and counting."""
    from transformers import AutoTokenizer

    from imitlab.models.spec import parse_spec, resolve_hf

    return ensure_chat_template(AutoTokenizer.from_pretrained(resolve_hf(parse_spec(spec), cache)))
