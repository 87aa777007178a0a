"""Named implementations that load on first use: the shard formats, pair tasks and masking policies.

Naming the entries (``--help``, config checks) imports nothing; ``get`` imports the entry's
module once per process and keeps its (stateless) instance.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from mlmcorpus.errors import MlmCorpusError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """``entries`` maps a name to (module, class); the first entry is the default."""

    def __init__(self, kind: str, entries: dict[str, tuple[str, str]], error: type[MlmCorpusError]):
        self.kind = kind
        self._entries = dict(entries)
        self._error = error
        self._loaded: dict[str, T] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get(self, name: str) -> T:
        if name not in self._loaded:
            try:
                module, cls = self._entries[name]
            except KeyError:
                raise self._error(f"unknown {self.kind} {name!r} (known: {', '.join(self._entries)})") from None
            self._loaded[name] = getattr(importlib.import_module(module), cls)()
        return self._loaded[name]
