"""What reading skipped and repaired: counted, and warned about once per reason."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("mlmcorpus")


@dataclass
class ReadStats:
    """Counters of what was read, skipped and repaired; warns once per reason.

    ``skipped`` counts records/files dropped by reason; ``repaired`` counts
    problems fixed in place (invalid UTF-8 sequences replaced, NUL bytes removed).
    """

    files: int = 0
    documents: int = 0
    sentences: int = 0
    bytes: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    _warned: set = field(default_factory=set, repr=False)

    def skip(self, reason: str, message: str, n: int = 1) -> None:
        self.skipped[reason] += n
        self._warn_once(reason, message)

    def repair(self, reason: str, message: str, n: int = 1) -> None:
        self.repaired[reason] += n
        self._warn_once(reason, message)

    def _warn_once(self, reason: str, message: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("%s (further cases are counted, not shown)", message)

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "sentences": self.sentences,
            "bytes": self.bytes,
            "skipped": dict(sorted(self.skipped.items())),
            "repaired": dict(sorted(self.repaired.items())),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ReadStats:
        """The inverse of :meth:`as_dict` (missing counts are 0)."""
        return cls(
            files=int(d.get("files", 0)),
            documents=int(d.get("documents", 0)),
            sentences=int(d.get("sentences", 0)),
            bytes=int(d.get("bytes", 0)),
            skipped=Counter(d.get("skipped", {})),
            repaired=Counter(d.get("repaired", {})),
        )

    def merge(self, other: ReadStats) -> None:
        self.files += other.files
        self.documents += other.documents
        self.sentences += other.sentences
        self.bytes += other.bytes
        self.skipped.update(other.skipped)
        self.repaired.update(other.repaired)
