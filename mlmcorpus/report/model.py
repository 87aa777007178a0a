"""The inspect report's shape (what ``inspect --json`` prints)."""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["Report"]


class _ReportBase(TypedDict):
    path: str
    manifest: bool
    format: str
    summary: dict[str, int]
    seed: int | None
    config: dict[str, Any] | None
    tokenizer: dict[str, Any] | None
    versions: dict[str, Any] | None
    stats: dict[str, Any] | None
    distributions: dict[str, Any]
    shards: list[dict[str, Any]]


class Report(_ReportBase, total=False):
    """What ``inspect --json`` prints: a JSON object (``verify`` only with ``--verify``)."""

    verify: dict[str, Any]
