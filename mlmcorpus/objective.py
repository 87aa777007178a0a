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

__all__ = ["CAPPED_ROWS", "check_tokenizer", "instances_of", "pair_unit", "mask_unit", "unit_rows"]


def check_tokenizer(tokenizer: Tokenizer, config: BuildConfig) -> None:
    """Refuse a word-level policy with a tokenizer that marks no word continuations: every piece
    would be a word, and whole-word masking silently per-piece masking."""
    policy = masking.get(config.mask.masking)
    if policy.masks and config.mask.masking != "token":
        starts = tokenizer.word_start_mask()[: tokenizer.base_size]
        if starts.all():
            raise ConfigError(
                f"--masking {config.mask.masking}: {tokenizer.path} marks no word continuations (no ## or "
                "\u2581 pieces), so every piece would be a word of its own; use --masking token"
            )


def instances_of(seg: SegmentedUnit, config: BuildConfig, special: SpecialIds) -> PairedUnit:
    """The unmasked rows of a segmented unit, by the configured task."""
    return tasks.get(config.pairs.task).instances(seg, config, special)


def pair_unit(unit: Unit, tokenizer: Tokenizer, config: BuildConfig) -> PairedUnit:
    """Tokenise, segment and pair one unit."""
    return instances_of(segment_unit(unit, tokenizer, config), config, tokenizer.special_ids)


def mask_unit(paired: PairedUnit, vocab: MaskVocab, mask_config: MaskConfig, seed: int) -> MaskedUnit:
    """Mask a paired unit by the configured policy, with the unit's own generator."""
    rng = unit_generator(seed, paired.unit_id, Purpose.MASK)
    policy = masking.get(mask_config.masking)
    m = policy.mask(paired.input_ids, paired.lengths, vocab, mask_config, rng)
    L = paired.input_ids.shape[1]
    if m.capped_rows:
        paired.stats.counts[CAPPED_ROWS] += m.capped_rows
    layout = RowLayout(L, mask_config.predictions_for(L), vocab.vocab_size, masked=policy.masks)
    columns = layout.compact(
        m.input_ids, paired.lengths, paired.a_len, paired.next_sentence_label, m.masked_lm_positions, m.masked_lm_ids,
        m.special_tokens_mask,
    )
    return MaskedUnit(paired.unit_id, columns, paired.stats, m.counts)


def unit_rows(unit: Unit, tokenizer: Tokenizer, vocab: MaskVocab, config: BuildConfig) -> MaskedUnit:
    """One unit's finished rows: tokenise, segment, pair, mask."""
    return mask_unit(pair_unit(unit, tokenizer, config), vocab, config.mask, config.seed)
