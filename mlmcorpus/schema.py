"""What a row is: the one owner of column names, dtypes, shapes and Arrow schemas.

A row travels in two forms.  The *compact* columns (:meth:`RowLayout.compact_types`) go between
workers, the shuffle's spill files and the stage streams; the *shard* columns
(:data:`COLUMNS`) are what trainers read, and follow from the compact ones
(:meth:`RowLayout.expand`) at five times the bytes.  Writers, stages, the
manifest and ``inspect --verify`` ask a :class:`RowLayout`; nobody else spells a
column or a dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from mlmcorpus.config import BuildConfig

__all__ = [
    "FORMAT_VERSION",
    "COLUMNS",
    "PAIR_LABELS",
    "column_names",
    "RowLayout",
    "ColumnType",
    "id_dtype",
    "labels_at",
    "row_count",
    "token_type_ids",
    "attention_mask",
    "segments_schema",
    "WORD_STARTS",
]

#: The version of the shard layout (columns, dtypes, manifest) a reader must understand.
FORMAT_VERSION = 1

#: The pair-label columns a shard may have (one): NSP (0 = B follows A, 1 = random) or SOP
#: (0 = in order, 1 = swapped).  The compact columns call it ``next_sentence_label`` either way.
PAIR_LABELS = ("next_sentence_label", "sentence_order_label")


def column_names(label: str | None = PAIR_LABELS[0], masked: bool = True) -> tuple[str, ...]:
    """Column order of a shard.  Row-wise shapes: L = max_seq_length, P = max_predictions_per_seq.

    Unmasked rows (``--masking none``, for masking at train time) have no labels or
    predictions but a ``special_tokens_mask`` (int8[L]: 1 on [CLS], [SEP] and padding).
    """
    pair = (label,) if label is not None else ()  # packed rows (no pair) have no label
    if not masked:
        return ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", *pair)
    return (
        "input_ids",  # ids[L]
        "token_type_ids",  # int8[L]
        "attention_mask",  # int8[L]
        "labels",  # int64[L]: original id at masked positions, -100 elsewhere
        *pair,  # int64: the pair label
        "masked_lm_positions",  # int32[P], ascending, 0-padded
        "masked_lm_ids",  # ids[P], 0-padded
    )


#: The stage streams' column of per-piece word starts (only when rows carry them; never in shards).
WORD_STARTS = "word_starts"

#: The columns of a default (NSP) shard.
COLUMNS = column_names()

#: Labels at positions that are not predicted (the value PyTorch's cross-entropy ignores).
IGNORE_LABEL = -100


@dataclass(frozen=True)
class ColumnType:
    """One column: element dtype and row width (0 = one value per row)."""

    dtype: np.dtype
    width: int

    def arrow(self) -> pa.DataType:
        t = pa.from_numpy_dtype(self.dtype)
        return pa.list_(t, self.width) if self.width else t

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.width) if self.width else (rows,)

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * max(self.width, 1)


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


_I8, _I32, _I64 = np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.int64)


@dataclass(frozen=True)
class RowLayout:
    """The columns of one corpus: ``max_seq_length`` tokens, ``max_predictions`` predictions,
    ids of a ``vocab_size`` vocabulary."""

    max_seq_length: int
    max_predictions: int
    vocab_size: int
    label: str | None = PAIR_LABELS[0]
    masked: bool = True

    @classmethod
    def of(cls, config: BuildConfig, vocab_size: int) -> RowLayout:
        """The columns a build with ``config`` writes with a vocabulary of ``vocab_size``."""
        from mlmcorpus import masking, tasks

        L = config.pairs.max_seq_length
        label = tasks.get(config.pairs.task).label
        return cls(L, config.mask.predictions_for(L), vocab_size, label, masking.get(config.mask.masking).masks)

    @property
    def column_names(self) -> tuple[str, ...]:
        return column_names(self.label, self.masked)

    @property
    def ids(self) -> np.dtype:
        return id_dtype(self.vocab_size)

    # -- shard columns
    def columns(self) -> dict[str, ColumnType]:
        """The shard columns, in :data:`COLUMNS` order."""
        L, P, ids = self.max_seq_length, self.max_predictions, self.ids
        types = {
            "input_ids": ColumnType(ids, L),
            "token_type_ids": ColumnType(_I8, L),
            "attention_mask": ColumnType(_I8, L),
            "labels": ColumnType(_I64, L),
            "masked_lm_positions": ColumnType(_I32, P),
            "masked_lm_ids": ColumnType(ids, P),
            "special_tokens_mask": ColumnType(_I8, L),
        }
        if self.label is not None:
            types[self.label] = ColumnType(_I64, 0)
        return {name: types[name] for name in self.column_names}

    @property
    def row_bytes(self) -> int:
        """Uncompressed bytes of one shard row."""
        return sum(c.row_bytes for c in self.columns().values())

    def shard_schema(self) -> pa.Schema:
        """The explicit Arrow schema of a shard (never inferred from data)."""
        fields = [pa.field(name, c.arrow(), nullable=False) for name, c in self.columns().items()]
        return pa.schema(fields, metadata={b"mlmcorpus.format_version": str(FORMAT_VERSION).encode()})

    def manifest_columns(self) -> dict[str, dict[str, object]]:
        """The manifest's ``columns`` entry: dtype name and row shape of each shard column."""
        return {name: {"dtype": c.dtype.name, "shape": [c.width] if c.width else []} for name, c in self.columns().items()}

    # -- compact columns
    def compact_types(self) -> dict[str, ColumnType]:
        """The compact columns, as workers, stage streams and the shuffle carry them (``a_len``: the
        length of segment A; ``next_sentence_label``: the pair label, whatever the task calls it)."""
        L, P, ids = self.max_seq_length, self.max_predictions, self.ids
        head = {
            "input_ids": ColumnType(ids, L),
            "lengths": ColumnType(_I32, 0),
            "a_len": ColumnType(_I32, 0),
            "next_sentence_label": ColumnType(_I8, 0),
        }
        if not self.masked:
            return {**head, "special_tokens_mask": ColumnType(_I8, L)}
        return {**head, "masked_lm_positions": ColumnType(_I32, P), "masked_lm_ids": ColumnType(ids, P)}

    def compact(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        a_len: np.ndarray,
        next_sentence_label: np.ndarray,
        masked_lm_positions: np.ndarray | None,
        masked_lm_ids: np.ndarray | None,
        special_tokens_mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """One unit's rows as compact columns, in their dtypes (predictions, or the special-tokens
        mask of unmasked rows)."""
        tail = (masked_lm_positions, masked_lm_ids) if self.masked else (special_tokens_mask,)
        arrays = (input_ids, lengths, a_len, next_sentence_label, *tail)
        return {name: arr.astype(t.dtype, copy=False) for (name, t), arr in zip(self.compact_types().items(), arrays)}

    def expand(self, compact: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The shard columns (in their dtypes), plus ``lengths`` (int64), from the compact ones.

        ``labels`` hold ``masked_lm_ids`` at ``masked_lm_positions`` (position 0, the
        [CLS], marks padding) and -100 elsewhere; ``token_type_ids`` are 1 from the
        token after the first [SEP] (at ``a_len + 1``) to the end; ``attention_mask``
        is 1 on the first ``lengths`` tokens.
        """
        ids = compact["input_ids"]
        L = ids.shape[1]
        lengths = compact["lengths"].astype(np.int64)
        a_len = compact["a_len"].astype(np.int64)
        cols = {
            "input_ids": ids,
            "token_type_ids": token_type_ids(lengths, a_len, L),
            "attention_mask": attention_mask(lengths, L),
        }
        if self.label is not None:
            cols[self.label] = compact["next_sentence_label"]
        if self.masked:
            pos = compact["masked_lm_positions"].astype(np.int64)
            cols["labels"] = labels_at(pos, compact["masked_lm_ids"], pos > 0, L)
            cols["masked_lm_positions"] = compact["masked_lm_positions"]
            cols["masked_lm_ids"] = compact["masked_lm_ids"]
        else:
            cols["special_tokens_mask"] = compact["special_tokens_mask"]
        out = {name: cols[name].astype(t.dtype, copy=False) for name, t in self.columns().items()}
        out["lengths"] = lengths
        return out

    # -- stage streams
    def masked_stream_schema(self) -> pa.Schema:
        """The `mask` stage's stream: the compact columns (`write` expands them)."""
        return pa.schema([pa.field(name, t.arrow(), nullable=False) for name, t in self.compact_types().items()])

    def paired_types(self, word_starts: bool = False) -> dict[str, ColumnType]:
        """The `pairs` stage's unmasked rows (int32 ids: the vocabulary is not narrowed yet), and
        with ``word_starts`` which positions start a word (int8[L], 0/1)."""
        types = {
            "input_ids": ColumnType(_I32, self.max_seq_length),
            "lengths": ColumnType(_I32, 0),
            "a_len": ColumnType(_I32, 0),
            "next_sentence_label": ColumnType(_I8, 0),
        }
        if word_starts:
            types[WORD_STARTS] = ColumnType(_I8, self.max_seq_length)
        return types

    def paired_stream_schema(self, word_starts: bool = False) -> pa.Schema:
        return pa.schema([pa.field(name, t.arrow(), nullable=False) for name, t in self.paired_types(word_starts).items()])


def row_count(columns: dict[str, np.ndarray]) -> int:
    """Rows in a batch of columns (compact or shard: every column has one entry per row)."""
    return len(next(iter(columns.values()))) if columns else 0


def segments_schema(word_starts: bool = False) -> pa.Schema:
    """The `pairs` stage's stream when the seed is left to `mask`: token ids per segment, and its
    document; with ``word_starts``, which of the segment's pieces start a word (0/1)."""
    fields = [pa.field("ids", pa.list_(pa.int32()), nullable=False), pa.field("doc", pa.int32(), nullable=False)]
    if word_starts:
        fields.append(pa.field(WORD_STARTS, pa.list_(pa.int8()), nullable=False))
    return pa.schema(fields)


def labels_at(positions: np.ndarray, ids: np.ndarray, valid: np.ndarray, max_seq_length: int) -> np.ndarray:
    """int64[n, L] labels: ``ids`` at the ``valid`` entries of ``positions`` (int[n, P]), -100 elsewhere."""
    n = len(positions)
    labels = np.full((n, max_seq_length), IGNORE_LABEL, dtype=np.int64)
    rows = np.broadcast_to(np.arange(n)[:, None], positions.shape)
    labels[rows[valid], positions[valid]] = ids[valid]
    return labels


def token_type_ids(lengths: np.ndarray, a_len: np.ndarray, max_seq_length: int) -> np.ndarray:
    """int8[n, L]: 1 for B and the final [SEP], 0 elsewhere (including padding)."""
    cols = np.arange(max_seq_length)[None, :]
    return ((cols >= a_len[:, None] + 2) & (cols < lengths[:, None])).astype(np.int8)


def attention_mask(lengths: np.ndarray, max_seq_length: int) -> np.ndarray:
    """int8[n, L]: 1 on real tokens, 0 on padding."""
    return (np.arange(max_seq_length)[None, :] < lengths[:, None]).astype(np.int8)
