"""Where the sweep's stages run: in this process one after another (``local``), or on a Ray cluster (``ray``).

The sweep submits every stage with the stages it reads (``after``) and says where it must run:

* ``driver`` stages use the teacher's open model (collection, synthesis, the teacher's own benchmark run and
  answers, the judge, style). They run on the sweep's own thread, one at a time, so the teacher's model stays
  on the thread that opened it, its server sees exactly the concurrency the config sets, and the teacher's
  identity in the stage keys stays port-free;
* ``worker`` stages (training, the students' benchmarks and answers) need no teacher. With ``ray`` each one is
  a Ray task asking for its resources (``resources:`` in the sweep config: CPUs, GPUs), in a fresh worker
  process (``max_calls=1``: a stage's GPU memory and threads end with it), started as soon as the stages it
  reads have finished, so independent cells run in parallel as far as the cluster's resources go.

Every stage, wherever it runs, goes through :func:`imitlab.study.stages.run_stage`, so the stage cache's
guarantees hold across processes and machines: a finished stage is never redone, two processes never run
the same stage at once (its lock), and a stage whose worker was killed runs again (Ray retries the task on a
new worker, which takes the dead one's lock and resumes inside the stage's directory). The run directory,
``$IMITLAB_CACHE`` and ``$IMITLAB_DATA`` must be on storage every worker sees (one machine, or a shared
filesystem); the workers get those variables from the sweep.

The local executor runs each stage the moment it is submitted, in submission order: exactly the sweep's
sequential behaviour.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imitlab.errors import ImitlabError
from imitlab.study.stages import StageCache, StageOutcome, reused_outcome, run_stage

log = logging.getLogger(__name__)

Where = Literal["driver", "worker"]
Key = dict[str, Any] | Callable[[], dict[str, Any]]  # a callable key is computed once the stages it reads finished
EXECUTORS = ("local", "ray")
# Ray retries a task whose worker process died (killed, OOM, node lost) this many times; a stage that raises
# is not retried (its error is the answer).
WORKER_RETRIES = 3
# How often a stage thread waiting on a Ray task checks whether the sweep was interrupted.
POLL_SECONDS = 0.5
# Variables a worker on another machine needs to see the same data, cache and trackers as the sweep.
FORWARDED_ENV = ("IMITLAB_DATA", "IMITLAB_CACHE", "IMITLAB_REPORT_TO", "HF_HOME", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class Resources:
    """What one worker stage asks of the cluster (Ray's ``num_cpus``/``num_gpus``; fractions allowed)."""

    cpus: float = 1.0
    gpus: float = 0.0


class StageRun:
    """A submitted stage: its directory once it is done (``result()``), and where it will be when the key is known."""

    def __init__(
        self, future: Future[Path], path: Path | None, wait: Callable[[Future[Path]], Path] | None = None
    ) -> None:
        self.future = future
        self.path = path  # known at submission for a dict key; None for a key computed later
        self._wait = wait

    def result(self) -> Path:
        return self._wait(self.future) if self._wait else self.future.result()


class Executor:
    """Runs stages for one sweep against its :class:`StageCache`."""

    name = "local"

    def __init__(self, cache: StageCache) -> None:
        self.cache = cache

    def submit(
        self,
        stage: str,
        key: Key,
        fn: Callable[[Path], Any],
        *,
        where: Where = "driver",
        resources: Resources | None = None,
        after: Sequence[StageRun] = (),
    ) -> StageRun:
        """Run ``fn(directory)`` as stage ``stage`` unless done; ``fn`` must be picklable for a worker stage."""
        future: Future[Path] = Future()  # the stages in ``after`` ran at their own submission, before this one
        resolved = key() if callable(key) else key
        future.set_result(self.cache.run(stage, resolved, fn))  # an exception propagates at once, as before
        return StageRun(future, future.result())

    def join(self) -> None:
        """Wait for every submitted stage; raise if any failed (after the others have finished)."""

    def close(self, aborted: bool = False) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(aborted=exc_type is not None)


class RayExecutor(Executor):
    """Stages as Ray tasks on a cluster (``address``), or on a one-machine cluster it starts (``address=None``)."""

    name = "ray"

    def __init__(
        self, cache: StageCache, address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None
    ) -> None:
        super().__init__(cache)
        ray = _import_ray()
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        self._started_cluster = address is None and not ray.is_initialized()
        if not ray.is_initialized():
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                num_gpus=num_gpus if address is None else None,
                include_dashboard=False,
                configure_logging=False,
                runtime_env={"env_vars": env} if env else None,
            )  # fmt: skip
        self._ray = ray
        # max_calls=1: every stage in a fresh worker process, so its memory (GPU memory too) ends with it
        self._remote = ray.remote(max_calls=1)(_run_on_worker)
        # Threads only wait (on upstream stages, on Ray); the cluster's resources bound the work in flight.
        self._threads = ThreadPoolExecutor(max_workers=256, thread_name_prefix="stage")
        # Driver stages run on the sweep's own thread, one at a time, whenever it waits for a stage: the teacher's
        # open model (its response cache is an SQLite connection) stays on the thread that opened it, and its
        # server sees the configured concurrency.
        self._driver_thread = threading.get_ident()
        self._driver_jobs: queue.Queue[tuple[str, dict[str, Any], Callable[[Path], Any], Future[StageOutcome]]] = (
            queue.Queue()
        )
        self._record_lock = threading.Lock()
        self._submitted: dict[Path, StageRun] = {}
        self._in_flight: set[Any] = set()  # Ray tasks running now (cancelled if the sweep is interrupted)
        self._all: list[tuple[str, Future[Path]]] = []
        self._stopping = threading.Event()  # set by an aborted close: the stage threads stop waiting on Ray
        self._closed = False

    def submit(
        self,
        stage: str,
        key: Key,
        fn: Callable[[Path], Any],
        *,
        where: Where = "driver",
        resources: Resources | None = None,
        after: Sequence[StageRun] = (),
    ) -> StageRun:
        path = None if callable(key) else self.cache.path(stage, key)
        if path is not None and path in self._submitted:
            # The same stage asked for twice (e.g. two students with identical answers judged): the second
            # request waits for the first and counts as reused, as it does when the stages run one by one.
            first = self._submitted[path]
            future = self._threads.submit(self._reuse_after, first)
        else:
            future = self._threads.submit(self._run, stage, key, fn, where, resources or Resources(), list(after))
        run = StageRun(future, path, self._wait)
        if path is not None:
            self._submitted.setdefault(path, run)
        self._all.append((stage, future))
        return run

    def _reuse_after(self, first: StageRun) -> Path:
        directory = first.result()
        self._record(reused_outcome(directory))
        return directory

    def _run(
        self, stage: str, key: Key, fn: Callable[[Path], Any], where: Where, resources: Resources, after: list[StageRun]
    ) -> Path:
        for upstream in after:
            try:
                upstream.result()
            except Exception as exc:
                raise ImitlabError(f"{stage}: not run, a stage it reads failed ({exc})") from None
        resolved = key() if callable(key) else key
        if where == "driver":
            job: Future[StageOutcome] = Future()
            self._driver_jobs.put((stage, resolved, fn, job))
            outcome = self._until_stopped(stage, lambda t: job.result(timeout=t), FutureTimeout)
        else:
            task = self._remote.options(
                num_cpus=resources.cpus,
                num_gpus=resources.gpus,
                max_retries=WORKER_RETRIES,
                retry_exceptions=False,
                name=f"imitlab:{stage}",
            )
            self.cache.on_event("submit", f"{self.cache.path(stage, resolved).name} ({_describe(resources)})")
            ref = task.remote(str(self.cache.root), stage, resolved, fn)
            with self._record_lock:
                self._in_flight.add(ref)
            try:
                outcome = self._until_stopped(
                    stage, lambda t: self._ray.get(ref, timeout=t), self._ray.exceptions.GetTimeoutError
                )
            except self._ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, ImitlabError):  # bad input: its one-line message, as a local stage gives it
                    raise exc.cause from None
                raise  # anything else keeps the worker's traceback
            finally:
                with self._record_lock:
                    self._in_flight.discard(ref)
            if outcome.ran:
                self.cache.on_event("done", f"{outcome.directory.name} (pid {outcome.pid} on {outcome.host})")
        self._record(outcome)
        return outcome.directory

    def _until_stopped(
        self, stage: str, wait: Callable[[float], StageOutcome], timeout: type[Exception]
    ) -> StageOutcome:
        """``wait(POLL_SECONDS)`` until it returns, or give up once an aborted close sets ``_stopping``: a thread left
        blocked on a cluster that is shutting down (ray.get) or on a driver stage that will never run would never
        return, and concurrent.futures joins its threads when the process exits."""
        while True:
            try:
                return wait(POLL_SECONDS)
            except timeout:
                if self._stopping.is_set():
                    raise ImitlabError(
                        f"{stage}: not finished, the sweep was interrupted (a rerun resumes it)"
                    ) from None

    def _record(self, outcome: StageOutcome) -> None:
        with self._record_lock:
            self.cache.record(outcome)

    def _wait(self, future: Future[Path]) -> Path:
        """A stage's directory once it is done; on the sweep's thread, run the driver stages due meanwhile."""
        if threading.get_ident() != self._driver_thread:
            return future.result()
        while not future.done():
            try:
                stage, key, fn, job = self._driver_jobs.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                job.set_result(run_stage(self.cache.root, stage, key, fn, self.cache.on_event))
            except BaseException as exc:
                job.set_exception(exc)  # the stage's thread reports it; Ctrl-C also stops this thread
                if not isinstance(exc, Exception):
                    raise
        return future.result()

    def join(self) -> None:
        failures = []
        for stage, future in self._all:
            try:
                self._wait(future)
            except Exception as exc:
                failures.append((stage, exc))
        if failures:
            stage, first = failures[0]
            raise ImitlabError(f"{len(failures)} stage(s) failed; the first, {stage}: {first}") from first

    def close(self, aborted: bool = False) -> None:
        if self._closed:  # a second close (e.g. a `finally` after an aborted close) has nothing left to stop
            return
        self._closed = True
        if aborted:
            # Interrupted (Ctrl-C, a failed data stage): stop the cluster's work for this sweep instead of waiting
            # hours for it; the stages' locks die with their workers and a rerun resumes them.
            self._stopping.set()  # threads waiting on Ray or on a driver stage give up within POLL_SECONDS
            with self._record_lock:
                running = list(self._in_flight)
            for ref in running:
                self._ray.cancel(ref, force=True)
        # Every waiting thread polls, so even an aborted sweep's threads are done within a few POLL_SECONDS: wait
        # for them, so that none is inside ray.get when the cluster goes.
        self._threads.shutdown(wait=True, cancel_futures=True)
        if self._started_cluster:
            self._ray.shutdown()


def check_executor(name: str, address: str | None = None) -> None:
    """Fail on a bad --executor/--address (or a missing ray) before the sweep writes anything."""
    if name not in EXECUTORS:
        raise ImitlabError(f"--executor {name!r}: known executors are {', '.join(EXECUTORS)}")
    if name == "local" and address:
        raise ImitlabError("--address is for --executor ray")
    if name == "ray":
        _import_ray()


def make_executor(name: str, cache: StageCache, address: str | None = None) -> Executor:
    check_executor(name, address)
    return RayExecutor(cache, address) if name == "ray" else Executor(cache)


def _import_ray() -> Any:
    # A cluster this sweep starts itself serves one machine: keep Ray's servers on the loopback interface
    # (read when ray is first imported; a cluster joined by address keeps its own settings).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # each stage's start/done line, not "repeated 3x across cluster"
    from imitlab.extras import require

    require("cluster", "imitlab sweep --executor ray")
    import ray

    return ray


def _describe(resources: Resources) -> str:
    return f"{resources.cpus:g} CPU" + (f", {resources.gpus:g} GPU" if resources.gpus else "")


def _run_on_worker(root: str, stage: str, key: dict[str, Any], fn: Callable[[Path], Any]) -> StageOutcome:
    """The Ray task: one stage in this worker process, under the stage's lock."""
    import ray

    if not ray.get_runtime_context().get_accelerator_ids().get("GPU"):
        # Ray leaves CUDA_VISIBLE_DEVICES alone for a task given no GPU; such a stage must not take one.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def event(what: str, name: str) -> None:
        print(f"  {what:>6} {name}", flush=True)  # Ray forwards worker output to the sweep's terminal

    return run_stage(Path(root), stage, key, fn, event)
