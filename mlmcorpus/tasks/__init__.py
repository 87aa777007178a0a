"""Pair tasks by name (``PairConfig.task``): what an instance is.

A new task is a module with a :class:`~mlmcorpus.tasks.base.Task` and an entry in
:data:`_REGISTRY`; modules load on first use, so naming the tasks is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mlmcorpus.errors import ConfigError

if TYPE_CHECKING:
    from mlmcorpus.tasks.base import Task

__all__ = ["NAMES", "get"]

_REGISTRY = {"nsp": ("mlmcorpus.tasks.nsp", "NspTask")}
NAMES = tuple(_REGISTRY)
_LOADED: dict[str, Task] = {}


def get(name: str) -> Task:
    if name not in _LOADED:
        try:
            module, cls = _REGISTRY[name]
        except KeyError:
            raise ConfigError(f"unknown pair task {name!r} (known: {', '.join(NAMES)})") from None
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]
