"""The local engine: a process pool whose maps return results in input order.

At most ``2 * workers`` tasks of a map are in flight, so memory stays bounded
however long the input is (``multiprocessing.Pool.imap`` would read the whole
input ahead).  With one worker everything runs in this process.  One pool can
serve several maps, at the same time (the reader's text splitting feeds the
units) or one after the other (the shuffle's stage 2 reuses the workers of
stage 1 instead of forking new ones from a parent that has grown meanwhile).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from mlmcorpus import runtime
from mlmcorpus.engines.base import Engine, SideMap
from mlmcorpus.errors import MlmCorpusError

__all__ = ["LocalPool", "map_ordered", "default_workers", "SideMap"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _start_worker(warm: Callable[[], None] | None) -> None:
    """What every pool worker runs first: settings for a process of ours, then the warm-up."""
    runtime.ignore_sigint()
    if warm is not None:
        warm()
    runtime.tune_gc()  # after the warm-up, so what it loaded is frozen too


class LocalPool(Engine):
    """``workers`` forked processes; ``warm()`` (e.g. a job's cache fill) runs first in each.

    On leaving with an error, queued tasks are cancelled and the running ones finish
    (a task takes seconds): killing workers mid-write could leave a result pipe with
    half a message and hang the executor at exit.
    """

    def __init__(self, workers: int, warm: Callable[[], None] | None = None, in_flight: int | None = None):
        self.workers = workers
        self.limit = in_flight or 2 * workers
        self._executor: ProcessPoolExecutor | None = None
        if workers <= 1:
            if warm is not None:
                warm()
        else:
            # fork: workers start in milliseconds and inherit imported modules.
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
            self._executor = ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_start_worker, initargs=(warm,)
            )

    def close(self, cancel: bool = False) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    @property
    def parallel(self) -> bool:
        return self._executor is not None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``map(fn, items)`` on the workers, in input order; an error stops new tasks and propagates."""
        if self._executor is None:
            yield from map(fn, items)
            return
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(self._executor.submit(fn, item))
                while len(pending) >= self.limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise MlmCorpusError("a worker process died (out of memory?); try fewer --workers") from None
        finally:
            for f in pending:
                f.cancel()


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T] | Callable[[SideMap | None], Iterable[T]],
    workers: int,
    warm: Callable[[], None] | None = None,
    in_flight: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` on a pool of ``workers`` processes living as long as this generator.

    ``items`` may also be a function of a *side map*: ``items(side_map)`` builds
    the item stream and may itself run ordered maps on the same workers with
    ``side_map(fn2, items2)`` (the reader splits text there); with one worker it
    gets None.
    """
    with LocalPool(workers, warm, in_flight) as pool:
        if callable(items):
            items = items(pool.map if pool.parallel else None)
        yield from pool.map(fn, items)
