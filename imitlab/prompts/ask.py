"""Asking a teacher for generated data until enough is kept: the loop self-instruct and QA synthesis share.

Requests go through the teacher's :class:`~imitlab.models.engine.RequestEngine` (concurrency, retries, cache,
progress). Answers are handed to the caller's ``consume`` in *request* order, whatever order they arrive in, so a
run's output depends only on the seed and the teacher's answers, not on timing. Once ``consume`` says it has
enough, requests not yet sent are skipped; the few already in flight finish (their answers are cached) but are
not consumed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imitlab.models.api_model import APIModel
from imitlab.models.engine import Request, RequestFailed, Response


@dataclass
class AskStats:
    requests: int = 0  # answered or failed, in the consumed prefix
    failed: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def ask_until(
    teacher: APIModel, requests: Sequence[Request], consume: Callable[[int, Response], bool], *, desc: str
) -> AskStats:
    """Send ``requests`` and pass each answer, in order, to ``consume(index, answer)`` until it returns True."""
    stats = AskStats()
    arrived: dict[int, Response | RequestFailed] = {}
    state = {"next": 0, "enough": False}

    async def send(i: int) -> Response | None:
        if state["enough"]:
            return None
        return await teacher.engine.submit(requests[i])

    def on_result(i: int, result: Response | RequestFailed | None) -> None:
        if result is None:
            return
        arrived[i] = result
        while not state["enough"] and state["next"] in arrived:
            index = state["next"]
            answer = arrived.pop(index)
            state["next"] += 1
            stats.requests += 1
            if isinstance(answer, RequestFailed):
                stats.failed += 1
                stats.failure_reasons[answer.failure.reason] += 1
                continue
            stats.prompt_tokens += answer.prompt_tokens or 0
            stats.completion_tokens += answer.completion_tokens or 0
            state["enough"] = consume(index, answer)

    engine = teacher.engine
    engine.run(engine.run_jobs(range(len(requests)), send, desc=desc, on_result=on_result))
    return stats


def failure_note(stats: AskStats) -> str:
    """``"; 3 failed (HTTP 500: ...)"`` for error messages, or nothing when no request failed."""
    if not stats.failed:
        return ""
    reason, _ = stats.failure_reasons.most_common(1)[0]
    return f"; {stats.failed} failed (most often: {reason})"
