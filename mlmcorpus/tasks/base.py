"""What an instance is: the interface every pair task implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from mlmcorpus.config import BuildConfig
from mlmcorpus.tokenizers import SpecialIds
from mlmcorpus.units import PairedUnit, SegmentedUnit

__all__ = ["Task"]


class Task(ABC):
    """Turns a unit's segments into unmasked rows; every draw from generators keyed by (seed, unit)."""

    name: str
    #: The shard column of the pair label (0/1); None: rows without a pair (packing).
    label: str | None

    @abstractmethod
    def instances(self, seg: SegmentedUnit, config: BuildConfig, special: SpecialIds) -> PairedUnit:
        """The unit's rows, in their final order within the unit."""
