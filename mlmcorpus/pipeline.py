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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace

from mlmcorpus import faults, formats, outdir, resume
from mlmcorpus.config import BuildConfig, OutputConfig, UnitConfig, default_max_predictions
from mlmcorpus.engines import Engine, LocalPool
from mlmcorpus.errors import ConfigError, InputError, MlmCorpusError, OutputError, TokenizerError
from mlmcorpus.formats.base import SealedShard, finish_shards, shard_rows
from mlmcorpus.manifest import Manifest, ShardEntry, new_manifest, tokenizer_record, write_manifest
from mlmcorpus.masking import MaskVocab
from mlmcorpus.objective import CAPPED_ROWS, carries_word_starts, check_tokenizer, pair_unit, unit_rows
from mlmcorpus.schema import RowLayout
from mlmcorpus.readers import (
    ReaderConfig,
    ReadStats,
    Source,
    Split,
    iter_documents,
    iter_plan_documents,
    iter_sentences,
    iter_split_documents,
    no_documents_message,
    plan_splits,
)
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
    """The whole per-unit job of a build: pair, mask and, with ``out_dir``, the spill (the
    shuffle's stage 1) and the unit's completion record.

    Picklable and self-contained (``tokenizer_sha256`` pins the file), so any engine can run
    it anywhere.  ``word_starts``: the rows carry per-piece word starts
    (:func:`~mlmcorpus.objective.carries_word_starts`).  A unit finished before an
    interruption arrives as its record (a :class:`MaskedUnit`) and is handed back as it is.
    """

    tokenizer: TokenizerSpec
    tokenizer_sha256: str
    config: BuildConfig
    out_dir: str | None = None
    word_starts: bool = False
    build_id: str = ""  # written into the completion records

    def warm(self) -> None:
        """Load the tokenizer before the first unit (an engine's per-process start)."""
        _loaded(self.tokenizer, self.tokenizer_sha256)

    def __call__(self, item: Unit | MaskedUnit) -> MaskedUnit:
        if isinstance(item, MaskedUnit):
            return item
        tok, vocab = _loaded(self.tokenizer, self.tokenizer_sha256)
        masked = unit_rows(item, tok, vocab, self.config, self.word_starts)
        if self.out_dir is not None:
            # Spilled here rather than in the parent: the rows never cross the process boundary.
            _spill_and_record(masked, self.out_dir, self.config, self.build_id)
        return masked


def _spill_and_record(masked: MaskedUnit, out_dir: str, config: BuildConfig, build_id: str) -> None:
    """Spill a unit's rows (durably), then record it as finished."""
    if masked.columns is not None:
        spill_dir = outdir.spill_dir(out_dir)
        masked.spill = scatter(spill_dir, config.seed, spill_buckets(config.output), masked.unit_id, masked.columns, durable=True)
        masked.columns = None
    resume.write_unit_record(out_dir, masked, build_id)


@dataclass
class SplitResult:
    """What a worker sends back for one split: its units (rows already spilled) and what it read."""

    split: int
    units: list[MaskedUnit]
    read: ReadStats
    bytes: int  # on-disk bytes of the split, for progress
    name: str = ""  # of its file, when the split starts it (for the no-documents error)

    @classmethod
    def of(cls, split: Split, units: list[MaskedUnit], read: ReadStats) -> SplitResult:
        return cls(split.index, units, read, _split_bytes(split), split.source.name if split.start == 0 else "")


@dataclass(frozen=True)
class SplitJob:
    """A split read, cut into units, paired, masked and spilled by the worker that runs it.

    The units and their ids are the split's own (``units.iter_units``), so the rows are those
    the client would make reading the split itself.  Rows always go to spill files (with
    ``--no-shuffle`` in one bucket, kept in order), so what comes back is small whatever the
    split's size.
    """

    tokenizer: TokenizerSpec
    tokenizer_sha256: str
    config: BuildConfig
    reader: ReaderConfig
    out_dir: str
    word_starts: bool = False
    build_id: str = ""  # written into the completion records
    #: With build --resume: look for the records of units finished before the interruption,
    #: whose spills must hold this.
    expected: resume.Expected | None = None

    def warm(self) -> None:
        _loaded(self.tokenizer, self.tokenizer_sha256)

    def __call__(self, item: Split | SplitResult) -> SplitResult:
        if isinstance(item, SplitResult):  # read to its end before an interruption
            return item
        split = item
        tok, vocab = _loaded(self.tokenizer, self.tokenizer_sha256)
        config = self.config
        read = ReadStats()
        units = []
        for unit in iter_units(iter_split_documents(split, self.reader, read), config.units):
            done = resume.read_unit_record(self.out_dir, unit.id, self.expected) if self.expected else None
            if done is not None:
                units.append(done)
                continue
            masked = unit_rows(unit, tok, vocab, config, self.word_starts)
            _spill_and_record(masked, self.out_dir, config, self.build_id)
            units.append(masked)
        resume.write_split_record(self.out_dir, split.index, read, [u.unit_id for u in units], self.build_id)
        return SplitResult.of(split, units, read)


def plan(sources: list[Source], reader: ReaderConfig, units: UnitConfig) -> list[Split]:
    """The splits of a build's input: a function of the sources and the options alone."""
    return plan_splits(sources, reader, units.split_mb << 20)


def _split_bytes(split: Split) -> int:
    """The on-disk bytes of a split, for progress."""
    if split.size is None:
        return 0
    return (split.size if split.end is None else split.end) - split.start


#: Read the splits in the workers when there are at least this many per worker (else the
#: client reads and ships units, which keeps every worker busy on one big file).
_SPLITS_PER_WORKER = 2


def _reads_in_workers(splits: list[Split], workers: int, parallel: bool, read: str) -> bool:
    if read != "auto":
        return read == "workers"
    streams = any(s.size is None for s in splits)  # stdin, a pipe: read once, here
    return parallel and not streams and len(splits) >= _SPLITS_PER_WORKER * workers


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
    buckets: int


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
    shuffler = _shuffled_groups(task.index, task.run, task.config.seed, task.buckets, o.shuffle_mb)
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
    faults.point("shard")
    return part


def _write_shuffled(shuffler: TwoStageShuffle, out_dir: str, config: BuildConfig, vocab_size: int, pool: Engine) -> list[ShardEntry]:
    """Stage 2: every output shard from its own rows of the permuted groups, on the pool's workers."""
    total = int(shuffler.rows.sum())
    per_shard = shard_rows(config.output, RowLayout.of(config, vocab_size))
    # Absolute paths: a task may run on a worker whose working directory is another.
    index = os.path.abspath(shuffler.save_index())
    run = os.urandom(8).hex()  # names this stage 2 only; never reaches the output
    tasks = [
        _ShardTask(k, index, run, config, os.path.abspath(out_dir), vocab_size, per_shard, total, shuffler.buckets)
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
    resumable: bool = False,
) -> list[ShardEntry]:
    """Write every unit's rows, in order; temporary files are removed on failure.

    Units either arrive already spilled (``spill``, by the worker that made them) or are
    spilled here; the shards are then written by the workers of ``pool``, or here without
    one.  Without the shuffle the spill is one bucket kept in unit order (:func:`spill_buckets`),
    so that shards are written the same way whoever made the rows.  ``resumable``: after a
    failure the spill stays, for ``build --resume`` (completion records point into it).
    """
    o = config.output
    shuffler = TwoStageShuffle(out_dir, config.seed, spill_buckets(o), o.shuffle_mb, permute=o.shuffle)
    keep_spill = False
    try:
        for unit in results:
            if unit.spill is not None:
                shuffler.register(unit.spill)
            elif unit.columns is not None:
                shuffler.add(unit.unit_id, unit.columns)
            stats.add(unit)
            faults.point("unit")
            if on_unit is not None:
                on_unit(unit)
        faults.point("stage2")
        release_memory()  # what stage 1 left in this process
        stage2 = pool if pool is not None else LocalPool(1)
        shards = _write_shuffled(shuffler, out_dir, config, vocab_size, stage2) if shuffler.rows.any() else []
    except BaseException as e:
        if hasattr(results, "close"):
            results.close()  # no new units
        if pool is not None:
            pool.close(cancel=True)  # the running tasks finish before we clean up after them
        outdir.remove_partial_shards(out_dir)
        keep_spill = resumable
        if isinstance(e, OSError):
            raise OutputError(f"{out_dir}: cannot write shards ({e.strerror or e})") from None
        raise
    finally:
        if keep_spill:
            shuffler.close()
        else:
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


def spill_buckets(o: OutputConfig) -> int:
    """Buckets of the spill: the shuffle's, or one kept in unit order without it."""
    return o.shuffle_buckets if o.shuffle else 1


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


def _units_of(results: Iterable[SplitResult], stats: BuildStats, on_progress: Callable[[int], None] | None) -> Iterator[MaskedUnit]:
    """The units of the splits' results, in plan order; what the workers read goes to ``stats``.
    No document in any split is the reader's error, as when one process reads everything."""
    names = []
    for result in results:
        stats.read.merge(result.read)
        if result.name:
            names.append(result.name)
        if on_progress is not None:
            on_progress(result.bytes)
        yield from result.units
    if stats.read.documents == 0:
        raise InputError(no_documents_message(names, stats.read))


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
    resume_build: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_unit: Callable[[MaskedUnit], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    engine: Callable[[int, Callable[[], None]], Engine] = LocalPool,
    read: str = "auto",
) -> Manifest:
    """Read ``sources``, (train a tokenizer if none is given), pair, mask, write shards and the manifest.

    Returns the manifest.  ``on_progress(n)`` gets raw input bytes consumed,
    ``on_unit`` each finished unit, ``on_phase`` a short name when a phase starts.
    ``engine(workers, warm)`` makes the engine that runs the units (default: the local
    process pool); the output does not depend on it, nor on ``read``: ``workers`` reads each
    split in the worker that processes it, ``client`` reads here and ships units, ``auto``
    reads in the workers when there are enough splits.  ``resume_build``: skip the units an
    interrupted build of the same input, options and tokenizer finished (:mod:`mlmcorpus.resume`);
    the result is the same bytes.  The output directory is locked for the whole build.  With
    ``config.compat == "google"`` the build is :func:`mlmcorpus.compat.google.build` (one
    process; ``workers``, ``engine`` and ``resume_build`` unused).
    """
    if config.compat == "google":
        from mlmcorpus.compat import google

        if tokenizer is None:
            raise ConfigError("--compat google: pass the reference's vocab.txt as --tokenizer (it trains none)")
        if resume_build:
            raise ConfigError("--compat google cannot --resume: like the reference, it makes every instance in one pass")
        with outdir.lock(out_dir):
            return google.build(sources, out_dir, config=config, tokenizer=tokenizer, overwrite=overwrite,
                                on_progress=on_progress, on_unit=on_unit, on_phase=on_phase)
    with outdir.lock(out_dir):
        return _build(sources, out_dir, reader, config, tokenizer, train, workers, overwrite, resume_build,
                      on_progress, on_unit, on_phase, engine, read)


def _build(
    sources: list[Source], out_dir: str, reader: ReaderConfig, config: BuildConfig, tokenizer: TokenizerSpec | None,
    train: TrainConfig | None, workers: int, overwrite: bool, resume_build: bool,
    on_progress: Callable[[int], None] | None, on_unit: Callable[[MaskedUnit], None] | None,
    on_phase: Callable[[str], None] | None, engine: Callable[[int, Callable[[], None]], Engine], read: str,
) -> Manifest:
    resuming = outdir.prepare(out_dir, overwrite, resume_build)
    prior = resume.read_build_record(out_dir) if resuming else None
    trained = tokenizer is None
    if tokenizer is None:
        kept = resume.trained_tokenizer(out_dir, prior)
        if kept is not None:  # trained by the interrupted build
            tokenizer = TokenizerSpec(kept)
        else:
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
    record = resume.build_record(config.as_dict(), asdict(reader), sources, tok.sha256, tok.path, trained)
    if resuming and not resume.check_build_record(out_dir, prior, record):
        resuming = False  # killed before it recorded what it was: nothing of it can be trusted
    if resuming:
        build_id = str((prior or {}).get("build_id", ""))
    else:
        resume.clear(out_dir)
        build_id = record["build_id"] = os.urandom(8).hex()
        resume.write_build_record(out_dir, record)
    faults.point("start")
    expected = resume.expected_spill(spill_buckets(config.output), RowLayout.of(config, tok.vocab_size), build_id)
    done = resume.load_records(out_dir, expected) if resuming else resume.Records({}, {})
    if resuming:
        log.info("resuming: %d units and %d splits finished before", len(done.units), len(done.splits))
    try:
        return _run(sources, out_dir, reader, config, tokenizer, tok, trained, workers, done, build_id,
                    expected if resuming else None, on_progress, on_unit, on_phase, engine, read)
    except MlmCorpusError:
        # An error of this build removes what it wrote.  An interruption (Ctrl-C, SIGTERM; a
        # SIGKILL never gets here) keeps the records and the spill for --resume, and so does a
        # refusal to start (a non-empty directory, a resume of another build): nothing is lost.
        resume.clear(out_dir)
        raise


def _run(
    sources: list[Source], out_dir: str, reader: ReaderConfig, config: BuildConfig, tokenizer: TokenizerSpec,
    tok: Tokenizer, trained: bool, workers: int, done: resume.Records, build_id: str, expected: resume.Expected | None,
    on_progress: Callable[[int], None] | None, on_unit: Callable[[MaskedUnit], None] | None,
    on_phase: Callable[[str], None] | None, engine: Callable[[int, Callable[[], None]], Engine], read: str,
) -> Manifest:
    """The build proper, once the directory, the tokenizer and the records are settled
    (``expected``: what this build's records say, when it resumes)."""
    stats = BuildStats()
    if on_phase:
        on_phase("building")

    word_starts = carries_word_starts(tok, config, config.mask.masking)
    splits = plan(sources, reader, config.units)
    # The jobs' paths are absolute: they may run on a worker whose working directory is another.
    job_tokenizer = replace(tokenizer, path=os.path.abspath(tokenizer.path))
    job_out = os.path.abspath(out_dir)
    job = UnitJob(job_tokenizer, tok.sha256, config, job_out, word_starts, build_id)
    with engine(workers, job.warm) as pool:
        results: Iterator[MaskedUnit]
        if _reads_in_workers(splits, workers, pool.parallel, read):
            # Each worker reads its own splits: this process only plans and collects.
            split_job = SplitJob(job_tokenizer, tok.sha256, config, reader, job_out, word_starts, build_id, expected)
            items = (_finished_split(split, done) or split for split in splits)
            results = _units_of(pool.map(split_job, items), stats, on_progress)
        else:
            # This process reads; the workers also clean and split the text (split_map).
            split_map = pool.map if pool.parallel else None
            documents = iter_plan_documents(splits, reader, stats.read, split_map=split_map, on_progress=on_progress)
            units = (done.units.get(unit.id, unit) for unit in iter_units(documents, config.units))
            results = pool.map(job, units)
        shards = write_shards(results, out_dir, config, tok.vocab_size, stats, on_unit=on_unit, pool=pool, resumable=True)
    manifest = new_manifest(
        config,
        reader=asdict(reader),
        sources=[s.path for s in sources],
        tokenizer=tokenizer_record(tok, tokenizer, trained, out_dir),
        shards=shards,
        stats=stats.as_dict(),
    )
    resume.clear(out_dir)  # before the manifest: a directory with one holds nothing else of ours
    faults.point("manifest")
    write_manifest(out_dir, manifest)
    return manifest


def _finished_split(split: Split, done: resume.Records) -> SplitResult | None:
    """A split an interrupted build read to its end, from its records."""
    if split.index not in done.splits:
        return None
    read, ids = done.splits[split.index]
    return SplitResult.of(split, [done.units[u] for u in ids], read)
