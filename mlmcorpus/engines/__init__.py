"""Engines decide where work units run; they never change what a unit produces."""

from mlmcorpus.engines.local import map_ordered

__all__ = ["map_ordered"]
