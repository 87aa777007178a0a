"""Shard formats behind one lookup: ``get("parquet").writer(...)``, ``detect(path).iter_batches(...)``.

A new format is one module with a :class:`~mlmcorpus.formats.base.ShardFormat` and a line in
:data:`_REGISTRY`.  Modules load on first use, so naming the formats (``--help``, config
checks) imports neither pyarrow nor NumPy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mlmcorpus.errors import InputError

if TYPE_CHECKING:
    from mlmcorpus.formats.base import ShardFormat

__all__ = ["NAMES", "get", "detect"]

_REGISTRY = {
    "parquet": ("mlmcorpus.formats.parquet", "ParquetFormat"),
    "numpy": ("mlmcorpus.formats.numpy", "NumpyFormat"),
}
#: Format names, the default first.
NAMES = tuple(_REGISTRY)
_LOADED: dict[str, ShardFormat] = {}


def get(name: str) -> ShardFormat:
    """The format called ``name`` (as ``--format`` and the manifest spell it)."""
    if name not in _LOADED:
        try:
            module, cls = _REGISTRY[name]
        except KeyError:
            raise InputError(f"unknown shard format {name!r} (known: {', '.join(NAMES)})") from None
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]


def detect(path: str) -> ShardFormat | None:
    """The format of a lone shard at ``path``, if it looks like one."""
    for name in NAMES:
        if get(name).is_shard(path):
            return get(name)
    return None
