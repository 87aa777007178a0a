"""Fault injection for the tests of what a killed build leaves: ``MLMCORPUS_KILL_AT=POINT:N``.

At the N-th time (from 1) the process passes ``point(POINT)``, it SIGKILLs its process group,
as an OOM killer or a cluster's scheduler would: no handler runs, no file is closed.  Unset
(always, outside those tests) a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["point"]

_AT = os.environ.get("MLMCORPUS_KILL_AT")
_seen: dict[str, int] = {}


def point(name: str) -> None:
    if _AT is None:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _AT == f"{name}:{_seen[name]}":
        os.killpg(os.getpgrp(), signal.SIGKILL)
