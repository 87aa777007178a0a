"""Random generators derived from ``(seed, unit id, purpose, ...)``.

Every random choice in a work unit comes from a generator made here, so the
output depends on the seed and the unit alone, never on which process ran the
unit or in what order.  Keys go through NumPy's ``SeedSequence`` (a hash), so
neighbouring seeds or units give unrelated streams (``seed + i`` would collide).
"""

from __future__ import annotations

import random
from enum import IntEnum

import numpy as np

__all__ = ["Purpose", "ShuffleStream", "CorpusStream", "unit_generator", "unit_random", "corpus_generator"]


class Purpose(IntEnum):
    """What a stream of random numbers is for; part of the key."""

    PAIRS = 1
    MASK = 2
    SHUFFLE = 3


class ShuffleStream(IntEnum):
    """The two-stage shuffle's streams of :attr:`Purpose.SHUFFLE`, the key's next part.

    (A unit's own row order is ``(seed, unit, SHUFFLE)`` with nothing after it; a group's
    permutation is keyed by the group's index where the unit id goes.)
    """

    SCATTER = 1  # which bucket each row of a unit goes to
    GROUP = 2  # the order of a group's rows


class CorpusStream(IntEnum):
    """Streams over the whole input rather than one unit (keyed by the seed alone)."""

    TOKENIZER_SAMPLE = 0x5EED  # which sentences the tokenizer trainer keeps


def _key(seed: int, unit_id: int, purpose: Purpose, extra: tuple[int, ...]) -> list[int]:
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return [seed, unit_id, int(purpose), *extra]


def unit_generator(seed: int, unit_id: int, purpose: Purpose, *extra: int) -> np.random.Generator:
    """A NumPy generator (PCG64) for vectorised draws."""
    return np.random.default_rng(_key(seed, unit_id, purpose, extra))


def unit_random(seed: int, unit_id: int, purpose: Purpose, *extra: int) -> random.Random:
    """A ``random.Random`` for scalar draws in loops (much cheaper per call than NumPy's)."""
    state = np.random.SeedSequence(_key(seed, unit_id, purpose, extra)).generate_state(4, np.uint64)
    return random.Random(int.from_bytes(state.tobytes(), "little"))


def corpus_generator(seed: int, stream: CorpusStream) -> np.random.Generator:
    """A NumPy generator for a draw over the whole input (one process reads it all)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng([seed, int(stream)])
