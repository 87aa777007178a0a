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

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from mlmcorpus import __version__
from mlmcorpus.config import BuildConfig, MaskConfig, UnitConfig
from mlmcorpus.errors import OutputError
from mlmcorpus.masking import mask_batch
from mlmcorpus.pairs import (
    PairStats,
    assemble,
    attention_mask,
    concat_instances,
    create_instances,
    split_segments,
    token_type_ids,
)
from mlmcorpus.engines.local import map_ordered
from mlmcorpus.readers import Document, ReaderConfig, ReadStats, iter_documents, iter_sentences
from mlmcorpus.rng import Purpose, unit_generator, unit_random
from mlmcorpus.tokenizer import Tokenizer, TrainConfig, load_tokenizer, train_tokenizer
from mlmcorpus.writers import FORMAT_VERSION, ShardInfo, make_writer

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
    "prepare_output_dir",
    "write_shards",
    "write_manifest",
    "build",
]


@dataclass(frozen=True)
class Unit:
    """A work unit: consecutive documents (each a list of sentences) with a stable id."""

    id: int
    documents: list[list[str]]


def iter_units(documents: Iterable[Document], config: UnitConfig) -> Iterator[Unit]:
    """Cut the document stream into units of at most ``pool_docs`` documents / ``unit_chars`` characters.

    Depends on the documents and ``config`` only, never on the number of workers.
    """
    batch: list[list[str]] = []
    chars = 0
    unit_id = 0
    for doc in documents:
        batch.append(doc.sentences)
        chars += sum(map(len, doc.sentences))
        if len(batch) >= config.pool_docs or chars >= config.unit_chars:
            yield Unit(unit_id, batch)
            unit_id += 1
            batch, chars = [], 0
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
    """Trainer-ready columns of one unit (see :data:`mlmcorpus.writers.COLUMNS`) and its counts."""

    unit_id: int
    columns: dict[str, np.ndarray]
    pair_stats: PairStats
    mask_counts: np.ndarray


def pair_unit(unit: Unit, tokenizer: Tokenizer, config: BuildConfig) -> PairedUnit:
    """Tokenise a unit's sentences in one batch, build ``dupe_factor`` passes of instances, shuffle."""
    pc = config.pairs
    sentences = [s for doc in unit.documents for s in doc]
    doc_offsets = np.zeros(len(unit.documents) + 1, dtype=np.int64)
    np.cumsum([len(doc) for doc in unit.documents], out=doc_offsets[1:])
    batch = tokenizer.encode_batch(sentences)
    stats = PairStats()
    segments = split_segments(batch, doc_offsets, pc.max_num_tokens, stats)
    passes = []
    for p in range(pc.dupe_factor):
        rng = unit_random(config.seed, unit.id, Purpose.PAIRS, p)
        passes.append(create_instances(segments, pc, rng, stats))
    inst = concat_instances(passes)
    order = unit_generator(config.seed, unit.id, Purpose.SHUFFLE).permutation(len(inst))
    inst = inst.take(order)
    ids, lengths, a_len = assemble(segments.ids, inst, pc.max_seq_length, tokenizer.special_ids)
    return PairedUnit(unit.id, ids, lengths, a_len, inst.is_random_next, stats)


@dataclass(frozen=True)
class MaskVocab:
    """What masking needs from the tokenizer: ids never to mask, [MASK], and the replacement pool."""

    special_ids: np.ndarray
    mask_id: int
    random_ids: np.ndarray

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> MaskVocab:
        specials = np.array(sorted(set(tokenizer.special_ids.all()) | set(range(tokenizer.base_size, tokenizer.vocab_size))), dtype=np.int32)
        return cls(specials, tokenizer.special_ids.mask, tokenizer.random_token_ids())


def mask_unit(paired: PairedUnit, vocab: MaskVocab, mask_config: MaskConfig, seed: int, max_seq_length: int) -> MaskedUnit:
    """Apply BERT masking to a paired unit with the unit's own generator."""
    rng = unit_generator(seed, paired.unit_id, Purpose.MASK)
    m = mask_batch(paired.input_ids, paired.lengths, vocab.special_ids, vocab.mask_id, vocab.random_ids, mask_config, rng)
    columns = {
        "input_ids": m.input_ids,
        "token_type_ids": token_type_ids(paired.lengths, paired.a_len, max_seq_length),
        "attention_mask": attention_mask(paired.lengths, max_seq_length),
        "labels": m.labels,
        "next_sentence_label": paired.next_sentence_label.astype(np.int64),
        "masked_lm_positions": m.masked_lm_positions,
        "masked_lm_ids": m.masked_lm_ids,
        "lengths": paired.lengths,
    }
    return MaskedUnit(paired.unit_id, columns, paired.stats, m.counts)


# Per-process state of a worker: the tokenizer is loaded once, not per unit.
_WORKER: dict = {}


def init_worker(spec: TokenizerSpec, config: BuildConfig) -> None:
    tok = spec.load(threads=1)
    _WORKER.update(tokenizer=tok, vocab=MaskVocab.of(tok), config=config)


def process_unit(unit: Unit) -> MaskedUnit:
    """The whole per-unit job (runs in a worker after :func:`init_worker`)."""
    tok, vocab, config = _WORKER["tokenizer"], _WORKER["vocab"], _WORKER["config"]
    paired = pair_unit(unit, tok, config)
    return mask_unit(paired, vocab, config.mask, config.seed, config.pairs.max_seq_length)


def pair_only(unit: Unit) -> PairedUnit:
    """The `pairs` stage's per-unit job."""
    return pair_unit(unit, _WORKER["tokenizer"], _WORKER["config"])


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


def prepare_output_dir(out_dir: str, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite`` (then clear what a build writes)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"{out_dir}: exists and is not a directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise OutputError(f"{out_dir}: output directory is not empty; pass --overwrite to replace it")
        manifest = os.path.join(out_dir, "manifest.json")
        if os.path.exists(manifest):
            os.unlink(manifest)  # first: a directory without a manifest is an incomplete build
        for name in os.listdir(out_dir):
            path = os.path.join(out_dir, name)
            if name.startswith(("train-", ".tmp-train-", "tokenizer.")):
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot create output directory ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"{out_dir}: output directory is not writable")


def write_shards(
    results: Iterable[MaskedUnit],
    out_dir: str,
    config: BuildConfig,
    vocab_size: int,
    stats: BuildStats,
    on_unit: Callable[[MaskedUnit], None] | None = None,
) -> list[ShardInfo]:
    """Write every unit's rows, in order; temporary files are removed on failure."""
    writer = make_writer(out_dir, config.output, config.pairs.max_seq_length, config.mask.max_predictions_per_seq, vocab_size)
    try:
        for unit in results:
            writer.write(unit.columns)
            stats.add(unit)
            if on_unit is not None:
                on_unit(unit)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def library_versions() -> dict[str, str]:
    import platform

    import pyarrow
    import sentencepiece

    versions = {
        "mlmcorpus": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "sentencepiece": sentencepiece.__version__,
    }
    try:
        import tokenizers

        versions["tokenizers"] = tokenizers.__version__
    except ImportError:
        pass
    return versions


def write_manifest(
    out_dir: str,
    *,
    config: BuildConfig,
    reader: dict | None,
    sources: list[str],
    tokenizer: dict,
    shards: list[ShardInfo],
    stats: BuildStats,
) -> dict:
    """Write ``manifest.json`` last and atomically; returns it."""
    from mlmcorpus.writers import _column_types

    types = _column_types(config.pairs.max_seq_length, config.mask.max_predictions_per_seq, tokenizer["vocab_size"])
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": f"mlmcorpus {__version__}",
        "seed": config.seed,
        "config": {**config.as_dict(), "reader": reader},
        "sources": sources,
        "tokenizer": tokenizer,
        "columns": {
            name: {"dtype": dt.name, "shape": [w] if w else []} for name, (dt, w) in types.items()
        },
        "shards": [s.as_dict() for s in shards],
        "totals": {
            "shards": len(shards),
            "rows": sum(s.rows for s in shards),
            "tokens": sum(s.tokens for s in shards),
            "bytes": sum(s.bytes for s in shards),
        },
        "stats": stats.as_dict(),
        "versions": library_versions(),
    }
    path = os.path.join(out_dir, "manifest.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return manifest


# ---------------------------------------------------------------- the whole build


def tokenizer_record(tok: Tokenizer, spec: TokenizerSpec, trained: bool) -> dict:
    info = tok.info()
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
) -> dict:
    """Read ``sources``, (train a tokenizer if none is given), pair, mask, write shards and the manifest.

    Returns the manifest.  ``on_progress(n)`` gets raw input bytes consumed,
    ``on_unit`` each finished unit, ``on_phase`` a short name when a phase starts.
    """
    prepare_output_dir(out_dir, overwrite)
    trained = tokenizer is None
    if tokenizer is None:
        if on_phase:
            on_phase("training tokenizer")
        prefix = os.path.join(out_dir, "tokenizer")
        train_tokenizer(
            lambda: iter_sentences(iter_documents(sources, reader, ReadStats())),
            prefix,
            train or TrainConfig(),
            record={"sources": [s.path for s in sources], "reader": asdict(reader)},
        )
        tokenizer = TokenizerSpec(prefix + ".model")
    tok = tokenizer.load()
    stats = BuildStats()
    if on_phase:
        on_phase("building")
    documents = iter_documents(sources, reader, stats.read, on_progress=on_progress)
    results = map_ordered(process_unit, iter_units(documents, config.units), workers, init_worker, (tokenizer, config))
    shards = write_shards(results, out_dir, config, tok.vocab_size, stats, on_unit=on_unit)
    return write_manifest(
        out_dir,
        config=config,
        reader=asdict(reader),
        sources=[s.path for s in sources],
        tokenizer=tokenizer_record(tok, tokenizer, trained),
        shards=shards,
        stats=stats,
    )
