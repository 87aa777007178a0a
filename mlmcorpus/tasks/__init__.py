"""Pair tasks by name (``PairConfig.task``): what an instance is.

A new task is a module with a :class:`~mlmcorpus.tasks.base.Task` and an entry in
:data:`_REGISTRY`; modules load on first use, so naming the tasks is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlmcorpus.errors import ConfigError
from mlmcorpus.registry import Registry

if TYPE_CHECKING:
    from mlmcorpus.tasks.base import Task

__all__ = ["NAMES", "get"]

_REGISTRY: Registry[Task] = Registry(
    "pair task", {"nsp": ("mlmcorpus.tasks.nsp", "NspTask"), "sop": ("mlmcorpus.tasks.nsp", "SopTask"),
                  "none": ("mlmcorpus.tasks.packing", "PackingTask")}, ConfigError
)
NAMES = _REGISTRY.names


def get(name: str) -> Task:
    return _REGISTRY.get(name)
