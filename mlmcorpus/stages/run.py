"""The stage commands as library functions: ``stream | pairs | mask | write`` equals ``build``.

Each function takes typed configs and file objects; the click commands only parse
options, call one of these and print.  A pipeline run with the same options and
seed gives the shards ``build`` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from typing import BinaryIO, TextIO

from mlmcorpus import outdir
from mlmcorpus.config import DEFAULT_SEED, BuildConfig, MaskConfig, OutputConfig, PairConfig, UnitConfig
from mlmcorpus.engines import map_ordered
from mlmcorpus.errors import ConfigError
from mlmcorpus.manifest import Manifest, new_manifest, tokenizer_record, write_manifest
from mlmcorpus.masking import MaskVocab
from mlmcorpus.objective import carries_word_starts, check_tokenizer, instances_of, mask_unit
from mlmcorpus.pipeline import PairJob, SegmentJob, plan, write_shards
from mlmcorpus.readers import ReaderConfig, ReadStats, Source, iter_plan_documents, plan_splits
from mlmcorpus.stages.stream import (
    TRAILER_UNIT,
    StageHeader,
    StageWriter,
    masked_from,
    paired_from,
    read_stage,
    segmented_from,
)
from mlmcorpus.tokenizers import TokenizerSpec
from mlmcorpus.units import BuildStats, MaskedUnit, iter_units
from mlmcorpus.word_splitter import load_word_splitter

__all__ = ["run_stream", "run_pairs", "run_mask", "run_write"]


def run_stream(
    sources: list[Source],
    reader: ReaderConfig,
    sink: TextIO,
    stats: ReadStats | None = None,
    on_progress: Callable[[int], None] | None = None,
    split_mb: int = UnitConfig().split_mb,
) -> ReadStats:
    """Write the documents of ``sources`` as JSON Lines (``{"id", "sentences", "split"}``) to ``sink``.

    The documents are those of the build's plan (``split_mb`` as there), each with its split,
    so that `pairs` reading this stream cuts the units `build` cuts.
    """
    stats = stats if stats is not None else ReadStats()
    write = sink.write
    splits = plan_splits(sources, reader, split_mb << 20)
    for doc in iter_plan_documents(splits, reader, stats, parts=False, on_progress=on_progress):
        write(doc.to_json())
        write("\n")
    sink.flush()
    return stats


def run_pairs(
    sources: list[Source],
    sink: BinaryIO,
    *,
    tokenizer: TokenizerSpec,
    reader: ReaderConfig,
    pairs: PairConfig,
    units: UnitConfig,
    seed: int | None = None,
    workers: int = 1,
    stats: ReadStats | None = None,
) -> ReadStats:
    """Tokenise ``sources`` into a stage stream on ``sink``, one batch per work unit.

    Without ``seed`` the stream holds the segments and :func:`run_mask` draws pairs and
    masks (so the pipeline equals ``build --seed S``); with it, the pairs are drawn here.
    """
    stats = stats if stats is not None else ReadStats()
    tok = tokenizer.load()
    if pairs.word_splitter is not None:
        load_word_splitter(pairs.word_splitter)  # a hook that cannot load fails before any work
    config = BuildConfig(pairs=pairs, units=units, seed=DEFAULT_SEED if seed is None else seed)
    header = StageHeader(
        config, asdict(reader), tokenizer_record(tok, tokenizer, False), tokenizer, [s.path for s in sources], seed_given=seed is not None
    )
    # `mask` chooses the policy: carry the word starts whenever a word-level one would need them.
    word_starts = carries_word_starts(tok, config, None)
    out = StageWriter(sink, "segments" if seed is None else "pairs", header, word_starts)
    docs = iter_plan_documents(plan(sources, reader, units), reader, stats)
    if seed is None:
        segments = SegmentJob(tokenizer, tok.sha256, config, word_starts)
        for seg in map_ordered(segments, iter_units(docs, units), workers, segments.warm):
            out.write_segmented(seg)
    else:
        job = PairJob(tokenizer, tok.sha256, config, word_starts)
        for paired in map_ordered(job, iter_units(docs, units), workers, job.warm):
            out.write_paired(paired)
    out.close(stats)
    sink.flush()
    return stats


def run_mask(source: BinaryIO, sink: BinaryIO, *, mask: MaskConfig, seed: int | None = None) -> None:
    """Mask the stage stream of :func:`run_pairs` on ``source`` into a stream for :func:`run_write`.

    ``seed`` defaults to the one given to `pairs`, else the default seed.
    """
    header, batches = read_stage(source, ("pairs", "segments"))
    cfg = header.config
    if seed is None:
        seed = cfg.seed  # the seed given to `pairs`, else the default
    config = replace(cfg, mask=mask, seed=seed)
    spec = header.tokenizer_spec
    tok = spec.load()
    if tok.sha256 != header.tokenizer["sha256"]:
        raise ConfigError(f"{spec.path}: tokenizer changed since `pairs` ran (sha256 differs)")
    check_tokenizer(tok, config)
    vocab = MaskVocab.of(tok)
    # pairs drawn with another seed than the masks: the manifest says so
    pairs_seed = cfg.seed if header.seed_given and cfg.seed != seed else None
    out = StageWriter(sink, "masked", replace(header, config=config, seed_given=True, pairs_seed=pairs_seed))
    for unit, arrays in batches:
        if unit.get("unit_id") == TRAILER_UNIT:
            out.close(unit.get("read", {}))
            break
        if header.stage == "segments":
            paired = instances_of(segmented_from(unit, arrays), config, tok.special_ids)
        else:
            paired = paired_from(unit, arrays)
        out.write_masked(mask_unit(paired, vocab, config.mask, seed))
    sink.flush()


def run_write(source: BinaryIO, out_dir: str, *, output: OutputConfig, overwrite: bool = False) -> Manifest:
    """Write the masked stage stream on ``source`` as shards plus ``manifest.json``; returns the manifest.

    A stream that ends before its end marker (an upstream stage failed) is an error, and
    nothing that looks complete is left behind.
    """
    header, batches = read_stage(source, ("masked",))
    config = replace(header.config, output=output)
    with outdir.lock(out_dir):
        return _write(header, batches, out_dir, config, overwrite)


def _write(header: StageHeader, batches: Iterator, out_dir: str, config: BuildConfig, overwrite: bool) -> Manifest:
    outdir.prepare(out_dir, overwrite)
    stats = BuildStats()
    trailer: dict = {}

    def units() -> Iterator[MaskedUnit]:
        for unit, arrays in batches:
            if unit.get("unit_id") == TRAILER_UNIT:
                trailer.update(unit.get("read", {}))
                continue
            yield masked_from(unit, arrays)

    shards = write_shards(units(), out_dir, config, int(header.tokenizer["vocab_size"]), stats)
    stats.read = ReadStats.from_dict(trailer)
    manifest = new_manifest(
        config, reader=header.reader, sources=header.sources, tokenizer=header.tokenizer, shards=shards,
        stats=stats.as_dict(), pairs_seed=header.pairs_seed,
    )
    write_manifest(out_dir, manifest)
    return manifest
