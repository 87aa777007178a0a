"""What an engine is: an ordered map over picklable jobs, with bounded work in flight.

An engine decides where work runs, never what it produces: a job is a picklable
callable that carries its own context (tokenizer spec, configuration) and keeps
what is costly to rebuild in a per-process cache, so the same job gives the same
result in this process, a forked worker or another machine.  Results come back in
input order, so the output is the same bytes for any engine and any worker count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["Engine", "SideMap"]

T = TypeVar("T")
R = TypeVar("R")

#: ``side_map(fn, items)``: another ordered map on the same engine (the reader splits text there).
SideMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


class Engine(ABC):
    """Runs jobs; a context manager that cancels queued work when left with an error."""

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``map(fn, items)`` in input order, with at most a bounded number of items in flight;
        an error stops new work and propagates.  Several maps may run at once."""

    @property
    @abstractmethod
    def parallel(self) -> bool:
        """Whether jobs run outside this process (then a side map is worth having)."""

    @abstractmethod
    def close(self, cancel: bool = False) -> None:
        """Wait for running work and release the workers; ``cancel`` drops queued work first."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(cancel=exc_type is not None)
