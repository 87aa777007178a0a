"""Where the stages are wired: documents -> units -> pairs -> masks -> shards.

Reading top to bottom::

    iter_documents -> iter_units -> pair_unit (tokenise, split, NSP pairs, shuffle)
                   -> mask_unit (80/10/10) -> ShardWriter.write -> manifest

The input is cut into work units by :func:`iter_units` from the documents and
the configuration alone.  ``pair_unit`` and ``mask_unit`` are pure functions of
(unit, config, seed): every random draw comes from a generator keyed by
``(seed, unit id, purpose)``.  Engines (:mod:`mlmcorpus.engines`) only decide
where units run; results are consumed in unit order, so the shards are the
same bytes for any number of workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from mlmcorpus import outdir
from mlmcorpus.config import BuildConfig, MaskConfig, UnitConfig
from mlmcorpus.errors import InputError, OutputError
from mlmcorpus.masking import mask_batch
from mlmcorpus.pairs import (
    PairStats,
    Segments,
    assemble,
    concat_instances,
    create_instances,
    split_segments,
)
from mlmcorpus.engines.local import LocalPool
from mlmcorpus.runtime import release_memory
from mlmcorpus.readers import Document, ReaderConfig, ReadStats, iter_documents, iter_sentences
from mlmcorpus.rng import Purpose, unit_generator, unit_random
from mlmcorpus.shuffle import SpillUnit, TwoStageShuffle, scatter
from mlmcorpus.tokenizers import SpecialIds, Tokenizer, TrainConfig, load_tokenizer, train_tokenizer
from mlmcorpus import formats
from mlmcorpus.formats.base import SealedShard, finish_shards, shard_rows
from mlmcorpus.manifest import Manifest, ShardEntry, new_manifest, write_manifest
from mlmcorpus.schema import RowLayout

log = logging.getLogger("mlmcorpus")

__all__ = [
    "Unit",
    "PairedUnit",
    "MaskedUnit",
    "TokenizerSpec",
    "BuildStats",
    "iter_units",
    "pair_unit",
    "mask_unit",
    "process_unit",
    "write_shards",
    "build",
]


@dataclass(frozen=True)
class Unit:
    """A work unit: consecutive documents (each a list of sentences) with a stable id.

    ``split_parts`` counts documents cut because they alone exceeded ``unit_chars``.
    """

    id: int
    documents: list[list[str]]
    split_parts: int = 0


def iter_units(documents: Iterable[Document], config: UnitConfig) -> Iterator[Unit]:
    """Cut the document stream into units of at most ``pool_docs`` documents / ``unit_chars`` characters.

    Depends on the documents and ``config`` only, never on the number of workers,
    nor on how the documents are cut into parts (``Document.more``, see
    ``iter_documents(..., parts=True)``): the units are those of the
    whole documents.  A document longer than ``unit_chars`` on its own (a whole
    book) is cut at sentence boundaries into consecutive units as it arrives, so
    what is held here stays about one unit whatever the document sizes.
    """
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


@dataclass(frozen=True)
class TokenizerSpec:
    """How to load the tokenizer (in this process or a worker)."""

    path: str
    lowercase: bool | None = None
    add_special_tokens: bool = False

    def load(self, threads: int = 1) -> Tokenizer:
        return load_tokenizer(self.path, lowercase=self.lowercase, add_special_tokens=self.add_special_tokens, threads=threads)


@dataclass
class PairedUnit:
    """Unmasked rows of one unit, shuffled.

    ``input_ids`` int32[n, L]; ``lengths``/``a_len`` int64[n]; ``next_sentence_label`` int8[n].
    """

    unit_id: int
    input_ids: np.ndarray
    lengths: np.ndarray
    a_len: np.ndarray
    next_sentence_label: np.ndarray
    stats: PairStats


@dataclass
class MaskedUnit:
    """One unit's masked rows as :data:`mlmcorpus.schema.COMPACT` columns, and its counts.

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


def segment_unit(unit: Unit, tokenizer: Tokenizer, config: BuildConfig) -> SegmentedUnit:
    """Tokenise a unit's sentences in one batch and cut them into segments."""
    sentences = [s for doc in unit.documents for s in doc]
    doc_offsets = np.zeros(len(unit.documents) + 1, dtype=np.int64)
    np.cumsum([len(doc) for doc in unit.documents], out=doc_offsets[1:])
    batch = tokenizer.encode_batch(sentences)
    stats = PairStats()
    if unit.split_parts:
        stats.counts["long_documents_split"] += unit.split_parts
    segments = split_segments(batch, doc_offsets, config.pairs.max_num_tokens, stats)
    return SegmentedUnit(unit.id, segments, stats)


def instances_of(seg: SegmentedUnit, config: BuildConfig, special: SpecialIds) -> PairedUnit:
    """``dupe_factor`` passes of the reference algorithm over a segmented unit, shuffled within the unit."""
    pc = config.pairs
    passes = []
    for p in range(pc.dupe_factor):
        rng = unit_random(config.seed, seg.unit_id, Purpose.PAIRS, p)
        passes.append(create_instances(seg.segments, pc, rng, seg.stats))
    inst = concat_instances(passes)
    order = unit_generator(config.seed, seg.unit_id, Purpose.SHUFFLE).permutation(len(inst))
    inst = inst.take(order)
    ids, lengths, a_len = assemble(seg.segments.ids, inst, pc.max_seq_length, special)
    return PairedUnit(seg.unit_id, ids, lengths, a_len, inst.is_random_next, seg.stats)


def pair_unit(unit: Unit, tokenizer: Tokenizer, config: BuildConfig) -> PairedUnit:
    """Tokenise, segment and pair one unit."""
    return instances_of(segment_unit(unit, tokenizer, config), config, tokenizer.special_ids)


@dataclass(frozen=True)
class MaskVocab:
    """What masking needs from the tokenizer: ids never to mask, [MASK], and the replacement pool."""

    special_ids: np.ndarray
    mask_id: int
    random_ids: np.ndarray
    vocab_size: int

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> MaskVocab:
        # Never masked: [CLS], [SEP], [PAD], [MASK] and appended specials.  [UNK] is a real
        # position in the text and is masked like any token, as in the reference.
        sp = tokenizer.special_ids
        never = {sp.cls, sp.sep, sp.pad, sp.mask} | set(range(tokenizer.base_size, tokenizer.vocab_size))
        specials = np.array(sorted(never), dtype=np.int32)
        return cls(specials, tokenizer.special_ids.mask, tokenizer.random_token_ids(), tokenizer.vocab_size)


def mask_unit(paired: PairedUnit, vocab: MaskVocab, mask_config: MaskConfig, seed: int) -> MaskedUnit:
    """Apply BERT masking to a paired unit with the unit's own generator."""
    rng = unit_generator(seed, paired.unit_id, Purpose.MASK)
    m = mask_batch(paired.input_ids, paired.lengths, vocab.special_ids, vocab.mask_id, vocab.random_ids, mask_config, rng)
    layout = RowLayout(paired.input_ids.shape[1], mask_config.max_predictions_per_seq, vocab.vocab_size)
    columns = layout.compact(
        m.input_ids, paired.lengths, paired.a_len, paired.next_sentence_label, m.masked_lm_positions, m.masked_lm_ids
    )
    return MaskedUnit(paired.unit_id, columns, paired.stats, m.counts)


# Per-process state of a worker: the tokenizer is loaded once, not per unit.
_WORKER: dict = {}


def init_worker(spec: TokenizerSpec, config: BuildConfig, spill_dir: str | None = None) -> None:
    """Load the tokenizer once per worker; with ``spill_dir`` units also do the shuffle's stage 1."""
    tok = spec.load(threads=1)
    _WORKER.update(tokenizer=tok, vocab=MaskVocab.of(tok), config=config, spill_dir=spill_dir)


def process_unit(unit: Unit) -> MaskedUnit:
    """The whole per-unit job (runs in a worker after :func:`init_worker`)."""
    tok, vocab, config = _WORKER["tokenizer"], _WORKER["vocab"], _WORKER["config"]
    paired = pair_unit(unit, tok, config)
    masked = mask_unit(paired, vocab, config.mask, config.seed)
    spill_dir = _WORKER.get("spill_dir")
    if spill_dir is not None and masked.columns is not None:
        # Scatter here rather than in the parent: the rows never cross the process boundary.
        o = config.output
        masked.spill = scatter(spill_dir, config.seed, o.shuffle_buckets, unit.id, masked.columns)
        masked.columns = None
    return masked


def pair_only(unit: Unit) -> PairedUnit:
    """The `pairs --seed S` stage's per-unit job."""
    return pair_unit(unit, _WORKER["tokenizer"], _WORKER["config"])


def segment_only(unit: Unit) -> SegmentedUnit:
    """The `pairs` stage's per-unit job when the seed is left to `mask`."""
    return segment_unit(unit, _WORKER["tokenizer"], _WORKER["config"])


# ---------------------------------------------------------------- stats and output


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

    def as_dict(self) -> dict:
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


# Rows a stage-2 task gathers at a time (about 6 MB of compact rows at seq 128).
_STAGE2_READ_ROWS = 16384
# The stage-2 shuffle a worker loaded last (tasks of one build share it).
_STAGE2: dict = {}


@dataclass(frozen=True)
class _ShardTask:
    """Write output shard ``shard`` of the shuffled rows (a stage-2 task)."""

    shard: int
    index: str
    run: str  # unique per stage 2: a process may serve several builds into the same directory
    config: BuildConfig
    out_dir: str
    vocab_size: int
    shard_rows: int
    total_rows: int


def _layout(config: BuildConfig, vocab_size: int) -> RowLayout:
    return RowLayout(config.pairs.max_seq_length, config.mask.max_predictions_per_seq, vocab_size)


def _write_shuffled_shard(task: _ShardTask) -> SealedShard:
    """Output shard ``task.shard``: its slice of the permuted groups, in order, under a temporary name."""
    o = task.config.output
    # What stage 1 (or the last shard) left in this worker goes back to the OS first: a writer
    # then holds its own working set only.  (Not after every unit: at dupe 5 re-faulting a
    # unit's pages cost 2% of a build.)
    release_memory()
    if _STAGE2.get("run") != task.run:
        _STAGE2.update(run=task.run, shuffler=TwoStageShuffle.load(task.index, task.config.seed, o.shuffle_buckets, o.shuffle_mb))
    shuffler: TwoStageShuffle = _STAGE2["shuffler"]
    lo = task.shard * task.shard_rows
    hi = min(lo + task.shard_rows, task.total_rows)
    with formats.get(o.format).writer(task.out_dir, o, _layout(task.config, task.vocab_size), task.shard) as writer:
        step = max(writer.group_rows, _STAGE2_READ_ROWS)  # memory: one slice of rows at a time
        g_lo = 0
        for g, n in enumerate(shuffler.group_rows):
            g_hi = g_lo + n
            if g_lo < hi and g_hi > lo:
                with shuffler.open_group(g) as group:
                    for start in range(max(lo, g_lo), min(hi, g_hi), step):
                        writer.write(group.rows(start - g_lo, min(start + step, hi, g_hi) - g_lo))
            g_lo = g_hi
        (part,) = writer.finish()
    return part


def _write_shuffled(shuffler: TwoStageShuffle, out_dir: str, config: BuildConfig, vocab_size: int, pool: LocalPool) -> list[ShardEntry]:
    """Stage 2: every output shard from its own rows of the permuted groups, on the pool's workers."""
    total = int(shuffler.rows.sum())
    per_shard = shard_rows(config.output, _layout(config, vocab_size))
    index = shuffler.save_index()
    run = os.urandom(8).hex()  # names this stage 2 only; never reaches the output
    tasks = [
        _ShardTask(k, index, run, config, out_dir, vocab_size, per_shard, total) for k in range(-(-total // per_shard))
    ]
    try:
        return finish_shards(out_dir, list(pool.map(_write_shuffled_shard, tasks)))
    finally:
        # When stage 2 ran in this process: unmap the spill files, forget the index.
        if "shuffler" in _STAGE2:
            _STAGE2["shuffler"].close()
        _STAGE2.clear()


def write_shards(
    results: Iterable[MaskedUnit],
    out_dir: str,
    config: BuildConfig,
    vocab_size: int,
    stats: BuildStats,
    on_unit: Callable[[MaskedUnit], None] | None = None,
    pool: LocalPool | None = None,
) -> list[ShardEntry]:
    """Write every unit's rows, in order; temporary files are removed on failure.

    With the shuffle on, units either arrive already scattered (``spill``) or are
    scattered here; the shards are then written by the workers of ``pool`` (the
    ones that made the units), or here without one.
    """
    o = config.output
    writer = formats.get(o.format).writer(out_dir, o, _layout(config, vocab_size))
    shuffler = TwoStageShuffle(out_dir, config.seed, o.shuffle_buckets, o.shuffle_mb) if o.shuffle else None
    try:
        for unit in results:
            if unit.spill is not None:
                assert shuffler is not None  # workers scatter only when the shuffle is on
                shuffler.register(unit.spill)
            elif unit.columns is None:
                pass  # scattered by a worker, but no rows
            elif shuffler is not None:
                shuffler.add(unit.unit_id, unit.columns)
            else:
                writer.write(unit.columns)
            stats.add(unit)
            if on_unit is not None:
                on_unit(unit)
        if shuffler is not None:
            release_memory()  # what stage 1 left in this process
            stage2 = pool if pool is not None else LocalPool(1)
            shards = _write_shuffled(shuffler, out_dir, config, vocab_size, stage2) if shuffler.rows.any() else []
        else:
            shards = finish_shards(out_dir, writer.finish())
    except BaseException as e:
        if hasattr(results, "close"):
            results.close()  # no new units
        if pool is not None:
            pool.close(cancel=True)  # the running tasks finish before we clean up after them
        writer.abort()
        outdir.remove_partial_shards(out_dir)
        if isinstance(e, OSError):
            raise OutputError(f"{out_dir}: cannot write shards ({e.strerror or e})") from None
        raise
    finally:
        if shuffler is not None:
            shuffler.cleanup()
    if not shards:
        raise InputError(
            "no instances were produced: NSP pairs need documents of two or more sentences, or several "
            "documents (check the document boundaries and --input-format)"
        )
    ratio = stats.pairs.random_next / max(stats.pairs.instances, 1)
    if ratio > 0.9:
        log.warning(
            "%.0f%% of instances are random-next: most documents have a single segment "
            "(one sentence per document? check --input-format / --doc-boundary)",
            ratio * 100,
        )
    return shards


# ---------------------------------------------------------------- the whole build


def tokenizer_record(tok: Tokenizer, spec: TokenizerSpec, trained: bool, out_dir: str | None = None) -> dict:
    """The manifest's tokenizer entry; the path is relative to ``out_dir`` when the file lives there."""
    info = tok.info()
    path = os.path.abspath(tok.path)
    if out_dir is not None and os.path.dirname(path) == os.path.abspath(out_dir):
        info["path"] = os.path.basename(path)
    else:
        info["path"] = path
    info["trained_by_build"] = trained
    if spec.lowercase is not None:
        info["lowercase_option"] = spec.lowercase
    return info


def build(
    sources: list,
    out_dir: str,
    *,
    reader: ReaderConfig,
    config: BuildConfig,
    tokenizer: TokenizerSpec | None,
    train: TrainConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_unit: Callable[[MaskedUnit], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> Manifest:
    """Read ``sources``, (train a tokenizer if none is given), pair, mask, write shards and the manifest.

    Returns the manifest.  ``on_progress(n)`` gets raw input bytes consumed,
    ``on_unit`` each finished unit, ``on_phase`` a short name when a phase starts.
    """
    outdir.prepare(out_dir, overwrite)
    trained = tokenizer is None
    if tokenizer is None:
        if on_phase:
            on_phase("training tokenizer")
        prefix = outdir.tokenizer_prefix(out_dir)
        train_tokenizer(
            lambda: iter_sentences(iter_documents(sources, reader, ReadStats(), parts=True)),
            prefix,
            train or TrainConfig(),
            record={"sources": [s.path for s in sources], "reader": asdict(reader)},
        )
        tokenizer = TokenizerSpec(prefix + ".model")
    tok = tokenizer.load()
    stats = BuildStats()
    if on_phase:
        on_phase("building")
    spill_dir = outdir.spill_dir(out_dir) if config.output.shuffle else None

    with LocalPool(workers, init_worker, (tokenizer, config, spill_dir)) as pool:
        # The workers also clean and split the text (split_map): this process only reads.
        split_map = pool.map if pool.parallel else None
        documents = iter_documents(sources, reader, stats.read, on_progress=on_progress, split_map=split_map, parts=True)
        results = pool.map(process_unit, iter_units(documents, config.units))
        shards = write_shards(results, out_dir, config, tok.vocab_size, stats, on_unit=on_unit, pool=pool)
    manifest = new_manifest(
        config,
        reader=asdict(reader),
        sources=[s.path for s in sources],
        tokenizer=tokenizer_record(tok, tokenizer, trained, out_dir),
        shards=shards,
        stats=stats.as_dict(),
    )
    write_manifest(out_dir, manifest)
    return manifest
