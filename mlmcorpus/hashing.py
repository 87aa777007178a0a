"""sha256 of files, read in 1 MiB blocks (shards and tokenizers can be large)."""

from __future__ import annotations

import hashlib

__all__ = ["sha256_file", "combined_sha256"]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def combined_sha256(files: list[tuple[str, str]]) -> str:
    """One sha256 for a shard of several files, from ``(file name, its sha256)`` in order
    (the lines ``sha256sum`` would print)."""
    h = hashlib.sha256()
    for name, sha in files:
        h.update(f"{sha}  {name}\n".encode())
    return h.hexdigest()
