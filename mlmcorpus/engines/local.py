"""The local engine: a process pool that returns results in unit order.

At most ``2 * workers`` tasks of a map are in flight, so memory stays bounded
however long the input is (``multiprocessing.Pool.imap`` would read the whole
input ahead).  With one worker everything runs in this process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from mlmcorpus.errors import MlmCorpusError

__all__ = ["map_ordered", "default_workers", "SideMap"]

T = TypeVar("T")
R = TypeVar("R")

#: ``side_map(fn, items)``: an ordered map on the same workers (see :func:`map_ordered`).
SideMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _ordered(pool: Executor, fn: Callable[[T], R], items: Iterable[T], limit: int) -> Iterator[R]:
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            while len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T] | Callable[[SideMap | None], Iterable[T]],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
    in_flight: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` processes, yielding results in input order.

    ``items`` may also be a function of a *side map*: ``items(side_map)`` builds
    the item stream and may itself run ordered maps on the same workers with
    ``side_map(fn2, items2)`` (the reader splits text there); with one worker it
    gets None.  The pool lives as long as this generator.  On an error (in a
    worker, in ``items`` or in the consumer) no new task starts, the running ones
    finish, and the error propagates.
    """
    limit = in_flight or 2 * workers
    if workers <= 1:
        initializer(*initargs)
        yield from map(fn, items(None) if callable(items) else items)
        return
    # fork: workers start in milliseconds and inherit imported modules.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs)
    finished = False
    try:
        if callable(items):
            items = items(lambda fn2, items2: _ordered(pool, fn2, items2, limit))
        yield from _ordered(pool, fn, items, limit)
        finished = True
    except BrokenProcessPool:
        raise MlmCorpusError("a worker process died (out of memory?); try fewer --workers") from None
    finally:
        # On an error, queued tasks are cancelled and the few already running finish
        # (a unit takes seconds).  Killing workers mid-write could leave the result
        # pipe with half a message and hang the executor at exit.
        pool.shutdown(wait=True, cancel_futures=not finished)
