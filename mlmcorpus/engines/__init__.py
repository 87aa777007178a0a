"""Engines decide where work units run; they never change what a unit produces."""

from mlmcorpus.engines.base import Engine, SideMap
from mlmcorpus.engines.local import LocalPool, default_workers, map_ordered

__all__ = ["Engine", "SideMap", "LocalPool", "default_workers", "map_ordered"]
