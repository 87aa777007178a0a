"""Opening a built corpus for inspection: its manifest (through :mod:`mlmcorpus.manifest`), or a lone shard."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mlmcorpus import formats, outdir
from mlmcorpus.config import MAX_PREDICTIONS, MAX_SEQ_LENGTH, MIN_SEQ_LENGTH
from mlmcorpus.errors import InputError
from mlmcorpus.formats.base import ShardFormat
from mlmcorpus.manifest import Manifest, ShardEntry, read_manifest
from mlmcorpus.schema import PAIR_LABELS, RowLayout, column_names

__all__ = ["CorpusParams", "Corpus", "open_corpus"]


@dataclass(frozen=True)
class CorpusParams:
    """Everything a shard scan needs to know, taken from the manifest (or the shard's schema)."""

    max_seq_length: int
    max_predictions: int
    vocab_size: int | None
    pad: int = 0
    cls: int = 2
    sep: int = 3
    mask: int = 4
    masked_lm_prob: float = 0.15
    mask_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    random_next_prob: float = 0.5
    known_specials: bool = True  # False for a lone shard without a manifest
    masking: str = "token"
    replace_per: str = "piece"
    max_group: int = 1  # the longest word group of the policy (n-gram or span length)
    label: str | None = PAIR_LABELS[0]  # None: packed rows without a pair
    packing: str | None = None  # for packed rows: full-sentences or doc-sentences
    masked: bool = True  # False: --masking none, rows with a special_tokens_mask instead
    #: bool[vocab]: the tokenizer's word starts, when a word-level policy's words are to be checked.
    word_start: np.ndarray | None = None
    #: ``google``: built by ``--compat google``, whose random replacements draw from the whole
    #: vocabulary ([CLS], [SEP], [PAD], [MASK] included) and whose words run on across a [SEP].
    compat: str = "none"

    @property
    def columns(self) -> tuple[str, ...]:
        return column_names(self.label, self.masked)

    @property
    def layout(self) -> RowLayout:
        """The shard columns a scan expects (needs the vocabulary size, hence the manifest)."""
        assert self.vocab_size is not None
        return RowLayout(self.max_seq_length, self.max_predictions, self.vocab_size, self.label, self.masked)

    @property
    def never_masked(self) -> list[int]:
        return [self.pad, self.cls, self.sep, self.mask]


@dataclass
class Corpus:
    """An output directory (or one shard) opened for inspection."""

    out_dir: str
    manifest: Manifest | None
    shards: list[ShardEntry]
    format: ShardFormat
    params: CorpusParams
    only_shard: str | None = None

    def tokenizer_file(self) -> str | None:
        """The tokenizer file the manifest names, if it is there: inside the output directory
        first, else at the path as recorded."""
        path = self.manifest.tokenizer.get("path") if self.manifest is not None else None
        if not isinstance(path, str) or not path:
            return None
        for candidate in (os.path.join(self.out_dir, path), path):
            if os.path.isfile(candidate):
                return candidate
        return None


def _params_from_manifest(m: Manifest) -> CorpusParams:
    """What a scan checks against, from a manifest :func:`read_manifest` has bounded."""
    c, sp = m.config, m.special_ids
    return CorpusParams(
        max_seq_length=c.pairs.max_seq_length,
        max_predictions=c.mask.predictions_for(c.pairs.max_seq_length),
        vocab_size=m.vocab_size,
        pad=sp["pad"],
        cls=sp["cls"],
        sep=sp["sep"],
        mask=sp["mask"],
        masked_lm_prob=c.mask.masked_lm_prob,
        mask_ratios=c.mask.mask_ratios,
        # SOP swaps half of the pairs (one-segment chunks, labelled 1 too, push it a little higher).
        random_next_prob={"sop": 0.5, "none": 0.0}.get(c.pairs.task, c.pairs.random_next_prob),
        masking=c.mask.masking,
        replace_per=c.mask.replace_per or "piece",
        max_group={"ngram": c.mask.max_ngram, "span": c.mask.max_span}.get(c.mask.masking, 1),
        label=m.layout.label,
        packing=c.pairs.packing if m.layout.label is None else None,
        masked=m.layout.masked,
        compat=c.compat,
    )


def open_corpus(path: str) -> Corpus:
    """Open an output directory, or a lone shard of any format."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    if os.path.isdir(path) and os.path.exists(outdir.manifest_path(path)):
        m = read_manifest(path)
        return Corpus(path, m, m.shards, formats.get(m.format), _params_from_manifest(m))
    # A single shard: use the manifest next to it when it lists the shard.
    shard_dir, name = os.path.split(os.path.normpath(path))
    fmt = formats.detect(path)
    if fmt is None:
        kinds = " nor ".join(formats.get(name).looks_like for name in formats.NAMES)
        raise InputError(f"{path}: not an output directory (no manifest.json) nor {kinds}")
    shard_dir = shard_dir or "."
    if os.path.exists(outdir.manifest_path(shard_dir)):
        m = read_manifest(shard_dir)
        entries = [e for e in m.shards if e.file == name]
        if entries:
            return Corpus(shard_dir, m, entries, fmt, _params_from_manifest(m), only_shard=name)
    return Corpus(shard_dir, None, [ShardEntry(name, None, None, None, None)], fmt, _params_from_schema(path, fmt), only_shard=name)


def _params_from_schema(path: str, fmt: ShardFormat) -> CorpusParams:
    try:
        L, P, names = fmt.describe(path)
    except Exception as e:
        raise InputError(f"{path}: not a readable mlmcorpus shard ({e})") from None
    if not (MIN_SEQ_LENGTH <= int(L) <= MAX_SEQ_LENGTH and 1 <= int(P) <= MAX_PREDICTIONS):
        raise InputError(f"{path}: not an mlmcorpus shard (row length {L}, predictions {P})")
    label = next((x for x in PAIR_LABELS if x in names), None)  # none: packed rows
    return CorpusParams(max_seq_length=int(L), max_predictions=int(P), vocab_size=None, known_specials=False, label=label,
                        masked="labels" in names)
