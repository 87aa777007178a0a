"""The local engine: a process pool that returns results in unit order.

At most ``2 * workers`` units are in flight, so memory stays bounded however
long the input is (``multiprocessing.Pool.imap`` would read the whole input
ahead).  With one worker everything runs in this process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from mlmcorpus.errors import MlmCorpusError

__all__ = ["map_ordered", "default_workers"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...] = (),
    in_flight: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` processes, yielding results in input order.

    On an error (in a worker, in ``items`` or in the consumer) no new unit
    starts, the running ones finish, and the error propagates.
    """
    if workers <= 1:
        initializer(*initargs)
        for item in items:
            yield fn(item)
        return
    # fork: workers start in milliseconds and inherit imported modules.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs)
    limit = in_flight or 2 * workers
    pending: deque[Future] = deque()
    finished = False
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            while len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    except BrokenProcessPool:
        raise MlmCorpusError("a worker process died (out of memory?); try fewer --workers") from None
    finally:
        # On an error, queued units are cancelled and the few already running finish
        # (a unit takes seconds).  Killing workers mid-write could leave the result
        # pipe with half a message and hang the executor at exit.
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=not finished)
