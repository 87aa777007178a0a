"""Shard formats behind one lookup: ``get("parquet").writer(...)``, ``detect(path).iter_batches(...)``.

A new format is one module with a :class:`~mlmcorpus.formats.base.ShardFormat` and a line in
:data:`_REGISTRY`.  Modules load on first use, so naming the formats (``--help``, config
checks) imports neither pyarrow nor NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlmcorpus.errors import InputError
from mlmcorpus.registry import Registry

if TYPE_CHECKING:
    from mlmcorpus.formats.base import ShardFormat

__all__ = ["NAMES", "get", "detect"]

_REGISTRY: Registry[ShardFormat] = Registry(
    "shard format",
    {"parquet": ("mlmcorpus.formats.parquet", "ParquetFormat"), "numpy": ("mlmcorpus.formats.numpy", "NumpyFormat")},
    InputError,
)
#: Format names, the default first.
NAMES = _REGISTRY.names


def get(name: str) -> ShardFormat:
    """The format called ``name`` (as ``--format`` and the manifest spell it)."""
    return _REGISTRY.get(name)


def detect(path: str) -> ShardFormat | None:
    """The format of a lone shard at ``path``, if it looks like one."""
    for name in NAMES:
        if get(name).is_shard(path):
            return get(name)
    return None
