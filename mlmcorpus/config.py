"""Frozen configuration objects for pairing, masking, output and the whole build.

Every field that changes the output bytes lives here and goes into the
manifest; options that only change speed (workers, threads) do not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from mlmcorpus import formats
from mlmcorpus.errors import ConfigError

__all__ = ["BuildConfig", "PairConfig", "MaskConfig", "OutputConfig", "UnitConfig", "DEFAULT_SEED"]

DEFAULT_SEED = 12345
#: Bounds of the row sizes (options, and any manifest read back: allocations follow from them).
MIN_SEQ_LENGTH, MAX_SEQ_LENGTH = 8, 32768
MAX_PREDICTIONS = 32768


@dataclass(frozen=True)
class UnitConfig:
    """How the input is planned and cut into work units (never by worker count).

    A unit closes when it holds ``pool_docs`` documents or ``unit_chars``
    characters of sentence text, whichever comes first.  The unit's documents are the pool
    that random next sentences are drawn from.
    """

    pool_docs: int = 1000
    unit_chars: int = 2_000_000
    #: An uncompressed file larger than this is planned as byte ranges of this size, each cut
    #: into units on its own (``readers.plan_splits``); what a worker reads at a time.
    split_mb: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.split_mb <= 1 << 20:
            raise ConfigError(f"--split-mb: must be between 1 and {1 << 20}, got {self.split_mb}")
        if self.pool_docs < 1:
            raise ConfigError(f"--pool-docs: must be at least 1, got {self.pool_docs}")
        if self.unit_chars < 1:
            raise ConfigError(f"--unit-chars: must be at least 1, got {self.unit_chars}")


PACKINGS = ("full-sentences", "doc-sentences")


@dataclass(frozen=True)
class PairConfig:
    """Options of the reference instance builder (Google ``create_pretraining_data.py``), and how
    the text is cut into words (``word_splitter``: what `pairs` and `build` tokenise with)."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    dupe_factor: int = 1
    random_next_prob: float = 0.5
    #: What an instance is: a name in :mod:`mlmcorpus.tasks`.
    task: str = "nsp"
    #: ``task="none"``: whether a packed row may run on into the next document (RoBERTa).
    packing: str = "full-sentences"
    #: ``"module:function"`` giving a sentence's words (for word-level masking of text without
    #: spaces); None: the tokenizer's words.  Only named here: it is imported where it runs
    #: (:mod:`mlmcorpus.word_splitter`), never when a manifest or a stream header is read.
    word_splitter: str | None = None

    def __post_init__(self) -> None:
        from mlmcorpus import tasks

        if self.task not in tasks.NAMES:
            raise ConfigError(f"--pair-task: expected one of {', '.join(tasks.NAMES)}, got {self.task!r}")
        if self.packing not in PACKINGS:
            raise ConfigError(f"--packing: expected one of {', '.join(PACKINGS)}, got {self.packing!r}")
        if self.word_splitter is not None:
            from mlmcorpus.word_splitter import check_word_splitter_name

            check_word_splitter_name(self.word_splitter)
        if not MIN_SEQ_LENGTH <= self.max_seq_length <= MAX_SEQ_LENGTH:
            raise ConfigError(
                f"--max-seq-length: must be between {MIN_SEQ_LENGTH} and {MAX_SEQ_LENGTH}, got {self.max_seq_length}"
            )
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ConfigError(f"--short-seq-prob: must be in [0, 1], got {self.short_seq_prob}")
        if self.dupe_factor < 1:
            raise ConfigError(f"--dupe-factor: must be at least 1, got {self.dupe_factor}")
        if not 0.0 <= self.random_next_prob <= 1.0:
            raise ConfigError(f"random_next_prob: must be in [0, 1], got {self.random_next_prob}")

    @property
    def max_num_tokens(self) -> int:
        """Room for A and B: ``[CLS] A [SEP] B [SEP]`` takes three specials."""
        return self.max_seq_length - 3


REPLACE_PER = ("piece", "word")


@dataclass(frozen=True)
class MaskConfig:
    """BERT masking: how many positions, and what they become.

    ``mask_ratios`` is (``[MASK]``, random token, unchanged) and sums to 1.
    """

    masked_lm_prob: float = 0.15
    #: None: follow the row length (:func:`default_max_predictions`), 20 at 128 tokens.
    max_predictions_per_seq: int | None = None
    mask_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    #: How positions are chosen: a name in :mod:`mlmcorpus.masking`.
    masking: str = "token"
    #: ``ngram``: n-grams of 1..max_ngram words, p(n) proportional to 1/n (ALBERT).
    max_ngram: int = 3
    #: ``span``: span lengths in words ~ Geometric(span_p) truncated to 1..max_span (SpanBERT).
    span_p: float = 0.2
    max_span: int = 10
    #: What one 80/10/10 draw decides: each ``piece``, or a whole ``word`` group (a word,
    #: n-gram or span).  None: ``word`` for span (SpanBERT), ``piece`` otherwise (Google, ALBERT).
    replace_per: str | None = None

    def __post_init__(self) -> None:
        from mlmcorpus import masking

        if self.masking not in masking.NAMES:
            raise ConfigError(f"--masking: expected one of {', '.join(masking.NAMES)}, got {self.masking!r}")
        if self.replace_per is None:
            object.__setattr__(self, "replace_per", "word" if self.masking == "span" else "piece")
        if self.replace_per not in REPLACE_PER:
            raise ConfigError(f"--replace-per: expected one of {', '.join(REPLACE_PER)}, got {self.replace_per!r}")
        if self.replace_per == "word" and self.masking in ("token", "none"):
            raise ConfigError(f"--replace-per word: needs word groups (--masking whole-word, ngram or span), not {self.masking}")
        if not 1 <= self.max_ngram <= 16:
            raise ConfigError(f"--max-ngram: must be between 1 and 16, got {self.max_ngram}")
        if not 1 <= self.max_span <= 64:
            raise ConfigError(f"--max-span: must be between 1 and 64, got {self.max_span}")
        if not 0.0 < self.span_p <= 1.0:
            raise ConfigError(f"--span-p: must be in (0, 1], got {self.span_p}")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ConfigError(f"--masked-lm-prob: must be in (0, 1), got {self.masked_lm_prob}")
        if self.max_predictions_per_seq is not None and not 1 <= self.max_predictions_per_seq <= MAX_PREDICTIONS:
            raise ConfigError(f"--max-predictions-per-seq: must be between 1 and {MAX_PREDICTIONS}, got {self.max_predictions_per_seq}")
        ratios = tuple(float(r) for r in self.mask_ratios)
        if len(ratios) != 3 or not all(r >= 0 for r in ratios) or not abs(sum(ratios) - 1.0) <= 1e-9:  # NaN fails too
            raise ConfigError(f"--mask-ratios: expected three non-negative numbers summing to 1, got {self.mask_ratios}")
        object.__setattr__(self, "mask_ratios", ratios)

    def predictions_for(self, max_seq_length: int) -> int:
        """The cap on predictions per row of ``max_seq_length`` tokens: the explicit value, or the default."""
        if self.max_predictions_per_seq is not None:
            return self.max_predictions_per_seq
        return default_max_predictions(max_seq_length, self.masked_lm_prob)


def default_max_predictions(max_seq_length: int, masked_lm_prob: float) -> int:
    """``ceil(max_seq_length * masked_lm_prob)``: no row is ever capped below its share.

    The reference's fixed 20 silently caps the mask rate near 4% at 512 tokens
    (google-research/bert#516); this is 20 at 128 tokens and 15%, its setting.
    The product is rounded to 9 places first, so 100 * 0.2 is 20, not 21.
    """
    return max(1, min(MAX_PREDICTIONS, math.ceil(round(max_seq_length * masked_lm_prob, 9))))


@dataclass(frozen=True)
class OutputConfig:
    """Shard layout: format and size (rows, or uncompressed MB when ``shard_mb`` is set).

    ``shuffle`` mixes rows across the whole corpus with a seeded two-stage
    shuffle (see :mod:`mlmcorpus.shuffle`); off keeps input order.
    """

    format: str = "parquet"
    shard_rows: int = 100_000
    shard_mb: float | None = None
    # 4096 rows at seq 128: ~6 MB per row group before compression, the unit a writer holds in
    # memory (8192 cost each writing process ~25 MB more at the same speed).
    row_group_rows: int = 4096
    compression_level: int = 1
    shuffle: bool = True
    shuffle_buckets: int = 256
    shuffle_mb: float = 128.0

    def __post_init__(self) -> None:
        if self.format not in formats.NAMES:
            raise ConfigError(f"--format: expected one of {', '.join(formats.NAMES)}, got {self.format!r}")
        if self.shard_rows < 1:
            raise ConfigError(f"--shard-size: must be at least 1 row, got {self.shard_rows}")
        if not 1 <= self.shuffle_buckets <= 4096:
            raise ConfigError(f"--shuffle-buckets: must be between 1 and 4096, got {self.shuffle_buckets}")
        if not 0 < self.shuffle_mb < float("inf"):
            raise ConfigError(f"--shuffle-mb: must be positive, got {self.shuffle_mb}")
        if self.shard_mb is not None and not (0 < self.shard_mb < float("inf")):
            raise ConfigError(f"--shard-size: must be positive, got {self.shard_mb} MB")


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the output bytes, as recorded in the manifest."""

    pairs: PairConfig = field(default_factory=PairConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    units: UnitConfig = field(default_factory=UnitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = DEFAULT_SEED
    #: ``google``: reproduce ``create_pretraining_data.py`` exactly (:mod:`mlmcorpus.compat`).
    compat: str = "none"

    def __post_init__(self) -> None:
        from mlmcorpus import compat

        if self.compat not in compat.NAMES:
            raise ConfigError(f"--compat: expected one of {', '.join(compat.NAMES)}, got {self.compat!r}")
        # A build records the cap it used, never "default": resolve it against the row length.
        if self.mask.max_predictions_per_seq is None:
            resolved = replace(self.mask, max_predictions_per_seq=self.mask.predictions_for(self.pairs.max_seq_length))
            object.__setattr__(self, "mask", resolved)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, ignore_unknown: bool = False) -> BuildConfig:
        """Inverse of :meth:`as_dict` (extra top-level keys such as ``reader`` are ignored).

        With ``ignore_unknown``, keys a section does not know are dropped too (a manifest
        written by a newer mlmcorpus); missing ones take their defaults either way.
        """

        def section(klass: type, values: dict) -> dict:
            if not ignore_unknown:
                return dict(values)
            known = {f.name for f in fields(klass)}
            return {k: v for k, v in values.items() if k in known}

        mask = section(MaskConfig, d["mask"])
        if "mask_ratios" in mask:
            mask["mask_ratios"] = tuple(mask["mask_ratios"])
        return cls(
            pairs=PairConfig(**section(PairConfig, d["pairs"])),
            mask=MaskConfig(**mask),
            units=UnitConfig(**section(UnitConfig, d["units"])),
            output=OutputConfig(**section(OutputConfig, d["output"])),
            seed=int(d["seed"]),
            compat=str(d.get("compat", "none")),
        )
