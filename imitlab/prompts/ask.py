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

from imitlab.errors import ImitlabError
from imitlab.models.api_model import APIModel
from imitlab.models.engine import Request, RequestFailed, Response


@dataclass(kw_only=True)
class TeacherRun:
    """What asking the teacher cost; the result classes of self-instruct and synthesis extend it."""

    requests: int = 0  # answered or failed, in the consumed prefix
    failed_requests: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def ask_until(
    teacher: APIModel,
    requests: Sequence[Request],
    consume: Callable[[int, Response], bool],
    run: TeacherRun,
    *,
    desc: str,
) -> None:
    """Send ``requests`` and pass each answer, in order, to ``consume(index, answer)`` until it returns True.

    ``run`` counts the requests consumed, their failures and their tokens.
    """
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
            run.requests += 1
            if isinstance(answer, RequestFailed):
                run.failed_requests += 1
                run.failure_reasons[answer.failure.reason] += 1
                continue
            run.prompt_tokens += answer.prompt_tokens or 0
            run.completion_tokens += answer.completion_tokens or 0
            state["enough"] = consume(index, answer)

    engine = teacher.engine
    engine.run(engine.run_jobs(range(len(requests)), send, desc=desc, on_result=on_result))


def nothing_kept(
    stage: str, things: str, run: TeacherRun, parsed: int, dropped: Counter[str], fmt: str
) -> ImitlabError:
    """The error for a run that kept nothing: what was asked, what failed, parsed and dropped, and the likely cause."""
    failed = ""
    if run.failed_requests:
        reason, _ = run.failure_reasons.most_common(1)[0]
        failed = f"; {run.failed_requests} failed (most often: {reason})"
    return ImitlabError(
        f"{stage} kept no {things} from {run.requests} requests{failed} ({parsed} parsed; dropped: {dict(dropped)}); "
        f"the teacher may not follow the {fmt}"
    )
