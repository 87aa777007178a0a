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
from typing import Any, TypeVar

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
    """``map(fn, items)`` on ``workers`` processes, yielding results in input order."""
    if workers <= 1:
        initializer(*initargs)
        for item in items:
            yield fn(item)
        return
    # fork: workers start in milliseconds and inherit imported modules.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(workers, initializer=initializer, initargs=initargs)
    limit = in_flight or 2 * workers
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            while len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
