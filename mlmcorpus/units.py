"""Work units, and what each step makes of one: the values that travel between processes and stages.

:func:`iter_units` cuts the document stream into units from the documents and the
configuration alone (never the number of workers); every later step is a pure
function of (unit, config, seed), so a unit's id is all its randomness is keyed by.
Stats are mergeable, summed in unit order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import groupby
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from mlmcorpus.config import UnitConfig
from mlmcorpus.readers import Document, ReadStats

if TYPE_CHECKING:
    from mlmcorpus.segments import Segments
    from mlmcorpus.shuffle import SpillUnit

__all__ = ["Unit", "UNIT_BITS", "unit_id", "iter_units", "PairStats", "SegmentedUnit", "PairedUnit", "MaskedUnit", "BuildStats", "StatsRecord"]


@dataclass(frozen=True)
class Unit:
    """A work unit: consecutive documents (each a list of sentences) with a stable id.

    ``split_parts`` counts documents cut because they alone exceeded ``unit_chars``.
    """

    id: int
    documents: list[list[str]]
    split_parts: int = 0


#: A unit's id is ``split << UNIT_BITS | k`` for the k-th unit of its split.
UNIT_BITS = 32


def unit_id(split: int, k: int) -> int:
    """The id of the ``k``-th unit of split ``split``: what every random draw of the unit is keyed by."""
    if not (0 <= split < 1 << 30 and 0 <= k < 1 << UNIT_BITS):
        raise ValueError(f"unit {k} of split {split} is out of range")
    return split << UNIT_BITS | k


def iter_units(documents: Iterable[Document], config: UnitConfig) -> Iterator[Unit]:
    """Cut the document stream into units of at most ``pool_docs`` documents / ``unit_chars`` characters.

    A unit never spans two splits (``Document.split``): each split is cut on its own, and
    its units get the ids :func:`unit_id` ``(split, 0), (split, 1), ...``, so a split's
    units are the same whoever reads it and whatever was read before.  Depends on the
    documents and ``config`` only, never on the number of workers, nor on how the
    documents are cut into parts (``Document.more``, see ``iter_documents(..., parts=True)``):
    the units are those of the whole documents.  A document longer than ``unit_chars`` on
    its own (a whole book) is cut at sentence boundaries into consecutive units as it
    arrives, so what is held here stays about one unit whatever the document sizes.
    """
    seen: dict[int, int] = {}  # split -> units so far (a split met again continues its count)
    for split, docs in groupby(documents, key=lambda d: d.split):
        first = seen.get(split, 0)
        k = first
        for unit in _cut(docs, config):
            yield Unit(unit_id(split, k), unit.documents, unit.split_parts)
            k += 1
        seen[split] = k


def _cut(documents: Iterable[Document], config: UnitConfig) -> Iterator[Unit]:
    """The units of one split, numbered from 0."""
    limit = config.unit_chars
    batch: list[list[str]] = []  # whole documents of the next unit
    chars = 0
    unit_id = 0
    held: list[str] = []  # the document being read, while it may still fit in a unit
    held_chars = 0
    piece: list[str] | None = None  # not None while cutting a document longer than a unit
    acc = 0
    for doc in documents:
        if piece is None:
            if held:
                held.extend(doc.sentences)
            else:
                held = list(doc.sentences) if doc.more else doc.sentences
            held_chars += sum(map(len, doc.sentences))
            if held_chars <= limit:
                if doc.more:
                    continue
                batch.append(held)
                chars += held_chars
                held, held_chars = [], 0
                if len(batch) >= config.pool_docs or chars >= limit:
                    yield Unit(unit_id, batch)
                    unit_id += 1
                    batch, chars = [], 0
                continue
            # Longer than a unit: the units so far go first, then the document's own.
            if batch:
                yield Unit(unit_id, batch)
                unit_id += 1
                batch, chars = [], 0
            piece, acc, sentences = [], 0, held
            held, held_chars = [], 0
        else:
            sentences = doc.sentences
        for sentence in sentences:
            piece.append(sentence)
            acc += len(sentence)
            if acc >= limit:
                yield Unit(unit_id, [piece], split_parts=1)
                unit_id += 1
                piece, acc = [], 0
        if not doc.more:
            if piece:
                yield Unit(unit_id, [piece], split_parts=1)
                unit_id += 1
            piece = None
    if piece:  # (a stream that ends inside a document)
        yield Unit(unit_id, [piece], split_parts=1)
        unit_id += 1
    elif held:
        batch.append(held)
    if batch:
        yield Unit(unit_id, batch)


@dataclass
class PairStats:
    """Counts from pairing one unit (summed over units by the pipeline)."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    instances: int = 0
    random_next: int = 0
    counts: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"documents": self.documents, "sentences": self.sentences, "tokens": self.tokens,
                "instances": self.instances, "random_next": self.random_next, "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, d: dict) -> PairStats:
        """Inverse of :meth:`as_dict`, for counts read back (stage streams, completion records)."""
        return cls(int(d["documents"]), int(d["sentences"]), int(d["tokens"]), int(d["instances"]),
                   int(d["random_next"]), Counter({str(k): int(v) for k, v in d["counts"].items()}))

    def merge(self, other: PairStats) -> None:
        self.documents += other.documents
        self.sentences += other.sentences
        self.tokens += other.tokens
        self.instances += other.instances
        self.random_next += other.random_next
        self.counts.update(other.counts)


@dataclass
class PairedUnit:
    """Unmasked rows of one unit, shuffled.

    ``input_ids`` int32[n, L]; ``lengths``/``a_len`` int64[n]; ``next_sentence_label`` int8[n];
    ``word_starts`` bool[n, L] (which positions start a word) when the segments carried them.
    """

    unit_id: int
    input_ids: np.ndarray
    lengths: np.ndarray
    a_len: np.ndarray
    next_sentence_label: np.ndarray
    stats: PairStats
    word_starts: np.ndarray | None = None


@dataclass
class MaskedUnit:
    """One unit's masked rows as compact columns (``RowLayout.compact_types``), and its counts.

    When the worker already scattered the rows for the shuffle, ``columns`` is
    None and ``spill`` says where they went.
    """

    unit_id: int
    columns: dict[str, np.ndarray] | None
    pair_stats: PairStats
    mask_counts: np.ndarray
    spill: SpillUnit | None = None


@dataclass
class SegmentedUnit:
    """A unit tokenised and cut into segments (no randomness yet)."""

    unit_id: int
    segments: Segments
    stats: PairStats



class InputRecord(TypedDict):
    files: int
    documents: int
    sentences: int
    bytes: int


class NspRecord(TypedDict):
    random_next: int
    actual_next: int
    random_ratio: float | None


class MaskedRecord(TypedDict):
    total: int
    mask: int
    random: int
    keep: int
    per_instance: float | None


class StatsRecord(TypedDict):
    """The manifest's ``stats``: :meth:`BuildStats.as_dict`."""

    input: InputRecord
    documents: int
    sentences: int
    tokens: int
    units: int
    instances: int
    nsp: NspRecord
    masked_positions: MaskedRecord
    skipped: dict[str, int]
    repaired: dict[str, int]
    counts: dict[str, int]


@dataclass
class BuildStats:
    """Everything counted during a build; worker-count independent."""

    read: ReadStats = field(default_factory=ReadStats)
    pairs: PairStats = field(default_factory=PairStats)
    masked: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    units: int = 0

    def add(self, unit: MaskedUnit) -> None:
        self.pairs.merge(unit.pair_stats)
        self.masked += unit.mask_counts
        self.units += 1

    def as_dict(self) -> StatsRecord:
        p = self.pairs
        mask, rand, keep = (int(x) for x in self.masked)
        total = mask + rand + keep
        read = self.read.as_dict()
        return {
            "input": {
                "files": read["files"],
                "documents": read["documents"],
                "sentences": read["sentences"],
                "bytes": read["bytes"],
            },
            "documents": p.documents,
            "sentences": p.sentences,
            "tokens": p.tokens,
            "units": self.units,
            "instances": p.instances,
            "nsp": {
                "random_next": p.random_next,
                "actual_next": p.instances - p.random_next,
                "random_ratio": round(p.random_next / p.instances, 6) if p.instances else None,
            },
            "masked_positions": {
                "total": total,
                "mask": mask,
                "random": rand,
                "keep": keep,
                "per_instance": round(total / p.instances, 4) if p.instances else None,
            },
            "skipped": read["skipped"],
            "repaired": read["repaired"],
            "counts": dict(sorted(p.counts.items())),
        }
