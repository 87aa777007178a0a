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

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from mlmcorpus import formats, outdir
from mlmcorpus.config import BuildConfig, default_max_predictions
from mlmcorpus.engines import Engine, LocalPool
from mlmcorpus.errors import ConfigError, InputError, OutputError, TokenizerError
from mlmcorpus.formats.base import SealedShard, finish_shards, shard_rows
from mlmcorpus.manifest import Manifest, ShardEntry, new_manifest, tokenizer_record, write_manifest
from mlmcorpus.masking import MaskVocab
from mlmcorpus.objective import CAPPED_ROWS, carries_word_starts, check_tokenizer, pair_unit, unit_rows
from mlmcorpus.schema import RowLayout
from mlmcorpus.readers import ReaderConfig, ReadStats, iter_documents, iter_sentences
from mlmcorpus.runtime import release_memory
from mlmcorpus.segments import segment_unit
from mlmcorpus.shuffle import TwoStageShuffle, scatter
from mlmcorpus.tokenizers import Tokenizer, TokenizerSpec, TrainConfig, train_tokenizer
from mlmcorpus.units import BuildStats, MaskedUnit, PairedUnit, SegmentedUnit, Unit, iter_units
from mlmcorpus.word_splitter import load_word_splitter

log = logging.getLogger("mlmcorpus")

__all__ = ["UnitJob", "SegmentJob", "PairJob", "write_shards", "build"]


@functools.lru_cache(maxsize=4)
def _loaded(spec: TokenizerSpec, sha256: str) -> tuple[Tokenizer, MaskVocab]:
    """This process's tokenizer for ``spec`` (loaded once per process, not per unit).

    Keyed by the file's sha256 as the build's parent saw it, so a file changed in place
    between two builds of one process is loaded afresh, and one changed during a build is
    an error rather than rows made with another tokenizer than the manifest names.
    """
    tok = spec.load(threads=1)
    if tok.sha256 != sha256:
        raise TokenizerError(f"{spec.path}: the tokenizer file changed while the build was running (sha256 differs)")
    return tok, MaskVocab.of(tok)


@dataclass(frozen=True)
class UnitJob:
    """The whole per-unit job of a build: pair, mask and, with ``spill_dir``, the shuffle's stage 1.

    Picklable and self-contained (``tokenizer_sha256`` pins the file), so any engine can run
    it anywhere.  ``word_starts``: the rows carry per-piece word starts
    (:func:`~mlmcorpus.objective.carries_word_starts`).
    """

    tokenizer: TokenizerSpec
    tokenizer_sha256: str
    config: BuildConfig
    spill_dir: str | None = None
    word_starts: bool = False

    def warm(self) -> None:
        """Load the tokenizer before the first unit (an engine's per-process start)."""
        _loaded(self.tokenizer, self.tokenizer_sha256)

    def __call__(self, unit: Unit) -> MaskedUnit:
        tok, vocab = _loaded(self.tokenizer, self.tokenizer_sha256)
        config = self.config
        masked = unit_rows(unit, tok, vocab, config, self.word_starts)
        if self.spill_dir is not None and masked.columns is not None:
            # Scatter here rather than in the parent: the rows never cross the process boundary.
            o = config.output
            masked.spill = scatter(self.spill_dir, config.seed, o.shuffle_buckets, unit.id, masked.columns)
            masked.columns = None
        return masked


@dataclass(frozen=True)
class _StageJob:
    tokenizer: TokenizerSpec
    tokenizer_sha256: str
    config: BuildConfig
    word_starts: bool = False

    def warm(self) -> None:
        _loaded(self.tokenizer, self.tokenizer_sha256)

    def _tokenizer(self) -> Tokenizer:
        return _loaded(self.tokenizer, self.tokenizer_sha256)[0]


class SegmentJob(_StageJob):
    """The `pairs` stage's per-unit job when the seed is left to `mask`: tokenised segments only."""

    def __call__(self, unit: Unit) -> SegmentedUnit:
        return segment_unit(unit, self._tokenizer(), self.config, self.word_starts)


class PairJob(_StageJob):
    """The `pairs --seed S` stage's per-unit job: unmasked NSP pairs."""

    def __call__(self, unit: Unit) -> PairedUnit:
        return pair_unit(unit, self._tokenizer(), self.config, self.word_starts)


# Rows a stage-2 task gathers at a time (about 6 MB of compact rows at seq 128).
_STAGE2_READ_ROWS = 16384


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


# The stage-2 shuffle a thread last loaded, as ((index, run), shuffle): the tasks of one stage 2
# share it.  Per thread, as a Dask worker may write several shards at once (a shuffle keeps the
# permutation it last drew and its maps).
_STAGE2 = threading.local()


def _shuffled_groups(index: str, run: str, seed: int, buckets: int, memory_mb: float) -> TwoStageShuffle:
    """The stage-2 shuffle of run ``run``, loaded once per thread."""
    cached = getattr(_STAGE2, "shuffle", None)
    if cached is None or cached[0] != (index, run):
        cached = _STAGE2.shuffle = ((index, run), TwoStageShuffle.load(index, seed, buckets, memory_mb))
    return cached[1]


def _forget_stage2() -> None:
    _STAGE2.shuffle = None


def _write_shuffled_shard(task: _ShardTask) -> SealedShard:
    """Output shard ``task.shard``: its slice of the permuted groups, in order, under a temporary name."""
    o = task.config.output
    # What stage 1 (or the last shard) left in this worker goes back to the OS first: a writer
    # then holds its own working set only.  (Not after every unit: at dupe 5 re-faulting a
    # unit's pages cost 2% of a build.)
    release_memory()
    shuffler = _shuffled_groups(task.index, task.run, task.config.seed, o.shuffle_buckets, o.shuffle_mb)
    lo = task.shard * task.shard_rows
    hi = min(lo + task.shard_rows, task.total_rows)
    try:
        with formats.get(o.format).writer(task.out_dir, o, RowLayout.of(task.config, task.vocab_size), task.shard) as writer:
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
    finally:
        # Unmap the spill files after every task (the next one maps them again in microseconds):
        # a worker that outlives the build (a Dask worker) would otherwise hold the removed files'
        # disk space, and on NFS keep the spill folder from being removed (.nfs* files).
        shuffler.close()
    return part


def _write_shuffled(shuffler: TwoStageShuffle, out_dir: str, config: BuildConfig, vocab_size: int, pool: Engine) -> list[ShardEntry]:
    """Stage 2: every output shard from its own rows of the permuted groups, on the pool's workers."""
    total = int(shuffler.rows.sum())
    per_shard = shard_rows(config.output, RowLayout.of(config, vocab_size))
    # Absolute paths: a task may run on a worker whose working directory is another.
    index = os.path.abspath(shuffler.save_index())
    run = os.urandom(8).hex()  # names this stage 2 only; never reaches the output
    tasks = [
        _ShardTask(k, index, run, config, os.path.abspath(out_dir), vocab_size, per_shard, total)
        for k in range(-(-total // per_shard))
    ]
    try:
        return finish_shards(out_dir, list(pool.map(_write_shuffled_shard, tasks)))
    finally:
        _forget_stage2()  # when stage 2 ran in this process (its tasks unmapped their files)


def write_shards(
    results: Iterable[MaskedUnit],
    out_dir: str,
    config: BuildConfig,
    vocab_size: int,
    stats: BuildStats,
    on_unit: Callable[[MaskedUnit], None] | None = None,
    pool: Engine | None = None,
) -> list[ShardEntry]:
    """Write every unit's rows, in order; temporary files are removed on failure.

    With the shuffle on, units either arrive already scattered (``spill``) or are
    scattered here; the shards are then written by the workers of ``pool`` (the
    ones that made the units), or here without one.
    """
    o = config.output
    writer = formats.get(o.format).writer(out_dir, o, RowLayout.of(config, vocab_size))
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
    _warn_if_capped(stats, config)
    return shards


#: Above this share of rows cut short by the predictions cap, the build warns.
CAPPED_WARN_SHARE = 0.02


def _warn_if_capped(stats: BuildStats, config: BuildConfig) -> None:
    capped, rows = stats.pairs.counts.get(CAPPED_ROWS, 0), stats.pairs.instances
    if rows and capped / rows > CAPPED_WARN_SHARE:
        m = config.mask
        log.warning(
            "--max-predictions-per-seq %d binds on %.0f%% of rows: they get fewer predictions than "
            "--masked-lm-prob %g asks (at --max-seq-length %d it would take %d); raise it, or leave it "
            "unset to follow the row length",
            m.predictions_for(config.pairs.max_seq_length), capped / rows * 100, m.masked_lm_prob,
            config.pairs.max_seq_length, default_max_predictions(config.pairs.max_seq_length, m.masked_lm_prob),
        )


# ---------------------------------------------------------------- the whole build


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
    engine: Callable[[int, Callable[[], None]], Engine] = LocalPool,
) -> Manifest:
    """Read ``sources``, (train a tokenizer if none is given), pair, mask, write shards and the manifest.

    Returns the manifest.  ``on_progress(n)`` gets raw input bytes consumed,
    ``on_unit`` each finished unit, ``on_phase`` a short name when a phase starts.
    ``engine(workers, warm)`` makes the engine that runs the units (default: the local
    process pool); the output does not depend on it.  With ``config.compat == "google"`` the
    build is :func:`mlmcorpus.compat.google.build` (one process; ``workers`` and ``engine`` unused).
    """
    if config.compat == "google":
        from mlmcorpus.compat import google

        if tokenizer is None:
            raise ConfigError("--compat google: pass the reference's vocab.txt as --tokenizer (it trains none)")
        return google.build(sources, out_dir, config=config, tokenizer=tokenizer, overwrite=overwrite,
                            on_progress=on_progress, on_unit=on_unit, on_phase=on_phase)
    outdir.prepare(out_dir, overwrite)
    trained = tokenizer is None
    if tokenizer is None:
        if on_phase:
            on_phase("training tokenizer")
        trained_tok, _ = train_tokenizer(
            lambda: iter_sentences(iter_documents(sources, reader, ReadStats(), parts=True)),
            outdir.tokenizer_prefix(out_dir),
            train or TrainConfig(),
            record={"sources": [s.path for s in sources], "reader": asdict(reader)},
        )
        tokenizer = TokenizerSpec(trained_tok.path)
    tok = tokenizer.load()
    check_tokenizer(tok, config)
    if config.pairs.word_splitter is not None:
        load_word_splitter(config.pairs.word_splitter)  # a hook that cannot load fails before any work
    formats.get(config.output.format)  # imported before the workers fork, not in each of them
    stats = BuildStats()
    if on_phase:
        on_phase("building")
    # The job's paths are absolute: it may run on a worker whose working directory is another.
    spill_dir = os.path.abspath(outdir.spill_dir(out_dir)) if config.output.shuffle else None
    job_tokenizer = replace(tokenizer, path=os.path.abspath(tokenizer.path))
    job = UnitJob(job_tokenizer, tok.sha256, config, spill_dir, carries_word_starts(tok, config, config.mask.masking))
    with engine(workers, job.warm) as pool:
        # The workers also clean and split the text (split_map): this process only reads.
        split_map = pool.map if pool.parallel else None
        documents = iter_documents(sources, reader, stats.read, on_progress=on_progress, split_map=split_map, parts=True)
        results = pool.map(job, iter_units(documents, config.units))
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
