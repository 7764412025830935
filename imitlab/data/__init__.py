"""Imitation sets: schema, dedup and decontamination, held-out split, token budgets, manifests."""

from imitlab.data.schema import DataFormatError, read_conversations, write_conversations

__all__ = ["DataFormatError", "read_conversations", "write_conversations"]
