"""An objective: a pair task + a masking policy + the row layout they imply, applied to one unit.

The one place that combines the registries of :mod:`mlmcorpus.tasks` and
:mod:`mlmcorpus.masking` (chosen by ``PairConfig.task`` and ``MaskConfig.masking``) with
:class:`~mlmcorpus.schema.RowLayout`.  Pure functions of (unit, config, seed).
"""

from __future__ import annotations

from mlmcorpus import masking, tasks
from mlmcorpus.config import BuildConfig, MaskConfig
from mlmcorpus.errors import ConfigError
from mlmcorpus.masking import MaskVocab
from mlmcorpus.rng import Purpose, unit_generator
from mlmcorpus.schema import RowLayout
from mlmcorpus.segments import segment_unit
from mlmcorpus.tokenizers import SpecialIds, Tokenizer
from mlmcorpus.units import MaskedUnit, PairedUnit, SegmentedUnit, Unit

#: The count of rows whose predictions the cap cut short (in the manifest's stats.counts).
CAPPED_ROWS = "rows_capped_by_max_predictions"

__all__ = ["CAPPED_ROWS", "check_tokenizer", "carries_word_starts", "instances_of", "pair_unit", "mask_unit", "unit_rows"]


def check_tokenizer(tokenizer: Tokenizer, config: BuildConfig) -> None:
    """Refuse a word-level policy with a tokenizer that marks no word continuations (every piece
    would be a word, and whole-word masking silently per-piece masking), and a word splitter
    without a word-level policy (its words would be ignored)."""
    word_level = config.mask.masking in masking.WORD_LEVEL
    splitter = config.pairs.word_splitter
    if splitter is not None and not word_level:
        raise ConfigError(
            f"--word-splitter {splitter}: word boundaries are for word-level masking (--masking whole-word, "
            f"ngram or span), not --masking {config.mask.masking}"
        )
    if word_level and splitter is None and not tokenizer.marks_word_continuations():
        raise ConfigError(
            f"--masking {config.mask.masking}: {tokenizer.path} marks no word continuations (no ## or "
            "\u2581 pieces), so every piece would be a word of its own; use --masking token or a --word-splitter"
        )


def carries_word_starts(tokenizer: Tokenizer, config: BuildConfig, masking_name: str | None) -> bool:
    """Whether the rows carry per-piece word starts: when a word-level policy masks them
    (``masking_name``; None: not known yet, the `pairs` stage) and the vocabulary alone cannot
    tell where words start (a ``--word-splitter``, or a tokenizer.json's pre-tokenizer).  Else
    masking looks the pieces up in ``MaskVocab.word_start`` and nothing extra is made."""
    if masking_name is not None and masking_name not in masking.WORD_LEVEL:
        return False
    return config.pairs.word_splitter is not None or tokenizer.word_starts_per_token


def instances_of(seg: SegmentedUnit, config: BuildConfig, special: SpecialIds) -> PairedUnit:
    """The unmasked rows of a segmented unit, by the configured task."""
    return tasks.get(config.pairs.task).instances(seg, config, special)


def pair_unit(unit: Unit, tokenizer: Tokenizer, config: BuildConfig, word_starts: bool = False) -> PairedUnit:
    """Tokenise, segment and pair one unit (``word_starts``: see :func:`carries_word_starts`)."""
    return instances_of(segment_unit(unit, tokenizer, config, word_starts), config, tokenizer.special_ids)


def mask_unit(paired: PairedUnit, vocab: MaskVocab, mask_config: MaskConfig, seed: int) -> MaskedUnit:
    """Mask a paired unit by the configured policy, with the unit's own generator."""
    rng = unit_generator(seed, paired.unit_id, Purpose.MASK)
    policy = masking.get(mask_config.masking)
    m = policy.mask(paired.input_ids, paired.lengths, vocab, mask_config, rng, paired.word_starts)
    L = paired.input_ids.shape[1]
    if m.capped_rows:
        paired.stats.counts[CAPPED_ROWS] += m.capped_rows
    layout = RowLayout(L, mask_config.predictions_for(L), vocab.vocab_size, masked=policy.masks)
    columns = layout.compact(
        m.input_ids, paired.lengths, paired.a_len, paired.next_sentence_label, m.masked_lm_positions, m.masked_lm_ids,
        m.special_tokens_mask,
    )
    return MaskedUnit(paired.unit_id, columns, paired.stats, m.counts)


def unit_rows(unit: Unit, tokenizer: Tokenizer, vocab: MaskVocab, config: BuildConfig, word_starts: bool = False) -> MaskedUnit:
    """One unit's finished rows: tokenise, segment, pair, mask."""
    return mask_unit(pair_unit(unit, tokenizer, config, word_starts), vocab, config.mask, config.seed)
