"""sha256 of files, read in 1 MiB blocks (shards and tokenizers can be large)."""

from __future__ import annotations

import hashlib

__all__ = ["sha256_file"]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
