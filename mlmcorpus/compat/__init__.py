"""Modes that reproduce another tool's output exactly (``build --compat NAME``).

``google``: the instances of google-research/bert's ``create_pretraining_data.py``,
instance for instance and in its order (:mod:`mlmcorpus.compat.google`).  Such a mode
replaces the unit pipeline as a whole: it follows the other tool's order of random
draws, which ties every instance to the whole corpus, so it runs in one process.
"""

from __future__ import annotations

__all__ = ["NAMES"]

#: ``none`` is mlmcorpus' own streaming build.
NAMES = ("none", "google")
