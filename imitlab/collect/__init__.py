"""Querying a teacher: concurrency, retries, response cache, resume, token accounting."""

from imitlab.collect.config import CollectConfig
from imitlab.collect.runner import CollectAborted, CollectResult, collect

__all__ = ["CollectAborted", "CollectConfig", "CollectResult", "collect"]
