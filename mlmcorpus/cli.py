"""Command-line interface: parse options, build configs, call the library.

Library errors (:class:`~mlmcorpus.errors.MlmCorpusError`) become a one-line
``Error: ...`` on stderr and exit status 1; data goes to stdout only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from mlmcorpus import __version__
from mlmcorpus import formats, masking, tasks
from mlmcorpus.config import DEFAULT_SEED, MAX_PREDICTIONS, MAX_SEQ_LENGTH, MIN_SEQ_LENGTH, MaskConfig, OutputConfig, PairConfig, UnitConfig
from mlmcorpus.errors import ConfigError, InputError, MlmCorpusError
from mlmcorpus.progress import ByteProgress, human_bytes, setup_logging, stderr_console
from mlmcorpus.readers import (
    FORMATS,
    ReaderConfig,
    ReadStats,
    Source,
    resolve_sources,
)

if TYPE_CHECKING:
    from mlmcorpus.manifest import Manifest

__all__ = ["cli", "main"]


class _OneLineUsageError(click.ClickException):
    exit_code = 2


class _Group(click.Group):
    """A click group that maps library errors and broken pipes to clean exits."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            raise _OneLineUsageError(str(e)) from None  # a bad option value: usage error, exit 2
        except MlmCorpusError as e:
            raise click.ClickException(str(e)) from None
        except click.UsageError as e:
            # One line, like every other error: "Error: Invalid value for '--x': ... (see --help)".
            hint = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
            raise _OneLineUsageError(e.format_message() + hint) from None
        except BrokenPipeError:
            # `mlmcorpus stream ... | head`: the reader went away; that is not an error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except KeyboardInterrupt as e:
            hint = "; run the same command with --resume to continue" if ctx.invoked_subcommand == "build" else ""
            click.echo(f"Error: {'terminated' if isinstance(e, _Terminated) else 'interrupted'}{hint}", err=True)
            ctx.exit(143 if isinstance(e, _Terminated) else 130)


def _parse_size(value: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    v = value.strip().upper().rstrip("B")
    unit = v[-1] if v and v[-1] in "KMG" else ""
    number = v[:-1] if unit else v
    try:
        n = int(float(number) * units[unit])
    except ValueError:
        raise ConfigError(f"--max-line-bytes: expected a size such as 16M or 1048576, got {value!r}") from None
    return n


def _apply(options: list[Callable], f: Callable) -> Callable:
    """Decorate ``f`` with a group of click options, first option first in --help."""
    for option in reversed(options):
        f = option(f)
    return f


def reader_options(f: Callable) -> Callable:
    """Options shared by every command that reads raw text."""
    options = [
        click.option(
            "--input-format",
            type=click.Choice(FORMATS),
            default=None,
            help="Input layout; default: from the file extension (.jsonl, .parquet, .txt = text, .bert.txt = bert).",
        ),
        click.option("--text-field", default="text", show_default=True, help="JSONL field holding the document text."),
        click.option("--text-column", default="text", show_default=True, help="Parquet column holding the document text."),
        click.option("--id-field", default="id", show_default=True, help="JSONL field / Parquet column used as document id."),
        click.option(
            "--doc-boundary",
            type=click.Choice(["blank", "file"]),
            default="blank",
            show_default=True,
            help="For text input: a blank line ends a document, or each file is one document.",
        ),
        click.option(
            "--splitter",
            default="rules",
            show_default=True,
            help="Sentence splitter: rules, none (a paragraph is a sentence) or module:function.",
        ),
        click.option(
            "--normalize",
            type=click.Choice(["nfc", "nfkc", "none"], case_sensitive=False),
            default="nfc",
            show_default=True,
            help="Unicode normal form applied to the text.",
        ),
        click.option("--lowercase-text", "lower_text", is_flag=True, help="Lower-case the text (the reader; see --lowercase for WordPiece)."),
        click.option("--keep-control", is_flag=True, help="Keep control characters (default: stripped)."),
        click.option(
            "--max-line-bytes",
            default="16M",
            show_default=True,
            help="Longer lines are skipped and counted (bounds memory).",
        ),
        click.option(
            "--max-doc-sentences",
            type=click.IntRange(min=1),
            default=100_000,
            show_default=True,
            help="Longer documents are cut into consecutive ones (bounds memory), counted.",
        ),
        click.option("--strict", is_flag=True, help="Make malformed records an error (file:line) instead of a counted skip."),
    ]
    return _apply(options, f)


def _reader_config(kw: dict) -> ReaderConfig:
    return ReaderConfig(
        input_format=kw.pop("input_format"),
        text_field=kw.pop("text_field"),
        text_column=kw.pop("text_column"),
        id_field=kw.pop("id_field"),
        doc_boundary=kw.pop("doc_boundary"),
        splitter=kw.pop("splitter"),
        normalize=kw.pop("normalize").lower(),
        lowercase=kw.pop("lower_text"),
        strip_control=not kw.pop("keep_control"),
        max_line_bytes=_parse_size(kw.pop("max_line_bytes")),
        max_doc_sentences=kw.pop("max_doc_sentences"),
        strict=kw.pop("strict"),
    )


def quiet_option(f: Callable) -> Callable:
    return click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary, errors only.")(f)


def _total_size(sources: list[Source]) -> int | None:
    if any(s.path == "-" for s in sources):
        return None
    return sum(os.path.getsize(s.path) for s in sources)


def _summary(stats: ReadStats, seconds: float) -> str:
    mb_s = stats.bytes / 1e6 / seconds if seconds > 0 else 0.0
    text = (
        f"{stats.documents:,} documents, {stats.sentences:,} sentences, {human_bytes(stats.bytes)} of text "
        f"from {stats.files:,} file(s) in {seconds:.1f} s ({mb_s:.1f} MB/s)"
    )
    if stats.skipped:
        text += "; skipped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items()))
    if stats.repaired:
        text += "; repaired: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats.repaired.items()))
    return text


def train_options(f: Callable) -> Callable:
    """sentencepiece training options (`tokenizer train`, and `build` without --tokenizer)."""
    options = [
        click.option("--model-type", type=click.Choice(["unigram", "bpe"]), default="unigram", show_default=True,
                     help="sentencepiece model type."),
        click.option("--vocab-size", type=click.IntRange(min=7), default=32000, show_default=True,
                     help="Reduced, with a warning, when the corpus is too small for it."),
        click.option("--character-coverage", type=click.FloatRange(0, 1, min_open=True), default=0.9995,
                     show_default=True,
                     help="Share of characters the vocabulary covers (0.9995 suits Korean/CJK; 1.0 small alphabets)."),
        click.option("--input-sentence-size", type=click.IntRange(min=0), default=2_000_000, show_default=True,
                     help="Train on a seeded random sample of this many sentences (0 = all); bounds memory."),
        click.option("--normalization", type=click.Choice(["nfkc_hangul", "nmt_nfkc", "nfkc", "identity"]),
                     default="nfkc_hangul", show_default=True,
                     help="sentencepiece normalisation; nfkc_hangul is NFKC that keeps Hangul jamo as written."),
    ]
    return _apply(options, f)


def _train_config(kw: dict, seed: int, threads: int | None = None) -> Any:
    from mlmcorpus.tokenizers import TrainConfig

    return TrainConfig(
        model_type=kw.pop("model_type"),
        vocab_size=kw.pop("vocab_size"),
        character_coverage=kw.pop("character_coverage"),
        input_sentence_size=kw.pop("input_sentence_size"),
        seed=seed,
        normalization=kw.pop("normalization"),
        **({"threads": threads} if threads else {}),
    )


def pair_options(f: Callable) -> Callable:
    """Instance (NSP pair) options and work-unit options."""
    options = [
        click.option("--max-seq-length", type=click.IntRange(MIN_SEQ_LENGTH, MAX_SEQ_LENGTH), default=128, show_default=True,
                     help="Tokens per row, [CLS] A [SEP] B [SEP] included."),
        click.option("--short-seq-prob", type=click.FloatRange(0, 1), default=0.1, show_default=True,
                     help="Probability of a shorter target length (reference: 0.1)."),
        click.option("--dupe-factor", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Passes over the data; each redraws pairs and masks."),
        click.option("--pair-task", type=click.Choice(tasks.NAMES), default=tasks.NAMES[0], show_default=True,
                     help="nsp: next sentence prediction (BERT); sop: sentence order, A and B swapped half "
                          "of the time (ALBERT), column sentence_order_label; none: [CLS] x [SEP] rows packed "
                          "with sentences, no pair label (RoBERTa)."),
        click.option("--packing", type=click.Choice(["full-sentences", "doc-sentences"]), default="full-sentences",
                     show_default=True,
                     help="--pair-task none: rows may run on into the next document, a [SEP] between them "
                          "(full-sentences), or end with each document (doc-sentences)."),
        click.option("--word-splitter", default=None, metavar="MODULE:FUNCTION",
                     help="Words for --masking whole-word/ngram/span from your segmenter (Chinese, Japanese): a "
                          "function taking a sentence and returning its words (str) [default: the tokenizer's words]."),
        click.option("--pool-docs", type=click.IntRange(min=1), default=1000, show_default=True,
                     help="Documents per work unit: the pool random next sentences come from."),
        click.option("--unit-chars", type=click.IntRange(min=1), default=2_000_000, show_default=True,
                     help="A work unit also closes at this many characters of text."),
        split_mb_option,
    ]
    return _apply(options, f)


split_mb_option = click.option(
    "--split-mb", type=click.IntRange(1, 1 << 20), default=64, show_default=True,
    help="Plan an uncompressed file larger than this as byte ranges of this size, each cut into work units "
         "on its own and read by a worker of its own (part of the output's identity: recorded).")


def _pair_unit_configs(kw: dict) -> tuple[PairConfig, UnitConfig]:
    pairs = PairConfig(
        max_seq_length=kw.pop("max_seq_length"),
        short_seq_prob=kw.pop("short_seq_prob"),
        dupe_factor=kw.pop("dupe_factor"),
        task=kw.pop("pair_task"),
        packing=kw.pop("packing"),
        word_splitter=kw.pop("word_splitter"),
    )
    return pairs, UnitConfig(pool_docs=kw.pop("pool_docs"), unit_chars=kw.pop("unit_chars"), split_mb=kw.pop("split_mb"))


def _parse_ratios(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three numbers like 0.8,0.1,0.1, got {value!r}") from None
    if len(parts) != 3:
        raise click.BadParameter(f"expected three numbers ([MASK],random,keep), got {value!r}")
    return parts


def mask_options(f: Callable) -> Callable:
    options = [
        click.option("--masked-lm-prob", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.15,
                     show_default=True, help="Share of tokens to predict."),
        click.option("--max-predictions-per-seq", type=click.IntRange(1, MAX_PREDICTIONS), default=None,
                     help="At most this many predictions per row [default: ceil(max-seq-length × masked-lm-prob), "
                          "20 at 128]. A smaller value caps the mask rate (warned about)."),
        click.option("--mask-ratios", default="0.8,0.1,0.1", show_default=True, callback=_parse_ratios,
                     help="What chosen tokens become: [MASK],random,unchanged."),
        click.option("--masking", type=click.Choice(masking.NAMES), default=masking.NAMES[0], show_default=True,
                     help="token: any pieces (BERT); whole-word: whole words (Google); ngram: 1..--max-ngram "
                          "words, p(n) ~ 1/n (ALBERT); span: geometric spans of words (SpanBERT)."),
        click.option("--max-ngram", type=click.IntRange(1, 16), default=3, show_default=True,
                     help="ngram masking: longest n-gram, in words."),
        click.option("--span-p", type=click.FloatRange(0, 1, min_open=True), default=0.2, show_default=True,
                     help="span masking: p of the geometric span length (mean about 3.8 words at 0.2)."),
        click.option("--max-span", type=click.IntRange(1, 64), default=10, show_default=True,
                     help="span masking: longest span, in words."),
        click.option("--replace-per", type=click.Choice(["piece", "word"]), default=None,
                     help="One [MASK]/random/unchanged draw per piece, or per word group [default: word for "
                          "span (SpanBERT), piece otherwise (Google, ALBERT)]."),
    ]
    return _apply(options, f)


def _mask_config(kw: dict) -> MaskConfig:
    return MaskConfig(
        masked_lm_prob=kw.pop("masked_lm_prob"),
        max_predictions_per_seq=kw.pop("max_predictions_per_seq"),
        mask_ratios=kw.pop("mask_ratios"),
        masking=kw.pop("masking"),
        max_ngram=kw.pop("max_ngram"),
        span_p=kw.pop("span_p"),
        max_span=kw.pop("max_span"),
        replace_per=kw.pop("replace_per"),
    )


def _parse_shard_size(value: str) -> tuple[int, float | None]:
    """'100000' -> rows; '256MB', '1.5GB', '64M' -> megabytes (uncompressed row bytes)."""
    v = value.strip().upper()
    for suffix, scale in (("GB", 1000.0), ("G", 1000.0), ("MB", 1.0), ("M", 1.0)):
        if v.endswith(suffix):
            try:
                return 100_000, float(v[: -len(suffix)]) * scale
            except ValueError:
                break
    try:
        return int(v), None
    except ValueError:
        raise click.BadParameter(f"expected rows (100000) or a size (256MB), got {value!r}", param_hint="--shard-size") from None


def output_options(f: Callable) -> Callable:
    options = [
        click.option("--format", "output_format", type=click.Choice(formats.NAMES), default="parquet",
                     show_default=True, help="Shard format."),
        click.option("--shard-size", default="100000", show_default=True,
                     help="Rows per shard, or a size such as 256MB (uncompressed)."),
        click.option("--shuffle/--no-shuffle", default=True, show_default=True,
                     help="Mix rows across the whole corpus (seeded two-stage shuffle), or keep input order."),
        click.option("--shuffle-buckets", type=click.IntRange(1, 4096), default=256, show_default=True,
                     help="Spill buckets of the shuffle (part of the output's identity: recorded)."),
        click.option("--shuffle-mb", type=click.FloatRange(0, min_open=True), default=128.0, show_default=True,
                     help="Memory for one shuffle group of buckets (uncompressed rows)."),
        click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty output directory."),
    ]
    return _apply(options, f)


def _output_config(kw: dict) -> OutputConfig:
    rows, mb = _parse_shard_size(kw.pop("shard_size"))
    return OutputConfig(format=kw.pop("output_format"), shard_rows=rows, shard_mb=mb, shuffle=kw.pop("shuffle"),
                        shuffle_buckets=kw.pop("shuffle_buckets"), shuffle_mb=kw.pop("shuffle_mb"))


def workers_option(f: Callable) -> Callable:
    return click.option(
        "-j", "--workers", type=click.IntRange(min=1), default=None,
        help="Worker processes [default: all cores]. Output is identical for any value.",
    )(f)


def seed_option(f: Callable) -> Callable:
    return click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True,
                        help="Seed of every random choice.")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlmcorpus")
def cli() -> None:
    """Turn raw text into masked-language-model (BERT) pretraining corpora.

    Stage commands compose in shell pipelines; every command reads files,
    directories, globs or - (stdin) and writes data to stdout only.

    \b
    Example:
        mlmcorpus stream sample_data/ | head -n 2
        mlmcorpus tokenizer train sample_data/ -o tok/spm --vocab-size 2000
    """


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@reader_options
@split_mb_option
@quiet_option
def stream(sources: tuple[str, ...], quiet: bool, split_mb: int, **kw: Any) -> None:
    """Read raw text and write documents as JSON Lines on stdout.

    SOURCES are files, directories (recursive), globs or - for stdin;
    .gz/.bz2/.xz/.zst files are decompressed. Each output line is
    {"id": ..., "sentences": [...]}. Counts go to stderr at the end.

    \b
    Example:
        mlmcorpus stream sample_data/en_wiki.bert.txt | head -n 1 | jq .
        mlmcorpus stream corpus.jsonl.gz --text-field body > docs.jsonl
        cat book.txt | mlmcorpus stream - --input-format text --doc-boundary file
    """
    from mlmcorpus.stages import run_stream

    setup_logging(quiet)
    config = _reader_config(kw)
    srcs = resolve_sources(sources, config.input_format)
    with ByteProgress(_total_size(srcs), "stream", enabled=None if not quiet else False) as bar:
        stats = run_stream(srcs, config, sys.stdout, on_progress=bar.advance, split_mb=split_mb)
    if not quiet:
        stderr_console().print(_summary(stats, bar.elapsed))


def tokenizer_load_options(f: Callable) -> Callable:
    f = click.option(
        "--lowercase/--no-lowercase",
        "lowercase",
        default=None,
        help="WordPiece vocab.txt only: lower-case input [default: yes when the vocab has no upper-case tokens].",
    )(f)
    f = click.option(
        "--add-special-tokens",
        is_flag=True,
        help="Append [PAD]/[UNK]/[CLS]/[SEP]/[MASK] when the tokenizer lacks them (instead of an error).",
    )(f)
    return f


def _tokenizer_spec(path: str | None, kw: dict, check: bool = True) -> Any:
    """The TokenizerSpec of --tokenizer, or None to train one; ``check`` loads it now, to fail
    early with the loader's message before any work."""
    from mlmcorpus.tokenizers import TokenizerSpec

    lowercase, add = kw.pop("lowercase"), kw.pop("add_special_tokens")
    if path is None:
        if lowercase is not None or add:
            raise ConfigError("--lowercase/--add-special-tokens apply to a --tokenizer you pass, not to a trained one")
        return None
    spec = TokenizerSpec(path, lowercase, add)
    if check:
        spec.load()
    return spec


def _build_summary(manifest: Manifest, out_dir: str, seconds: float) -> str:
    st = manifest.stats
    m = st["masked_positions"]
    total = m["total"] or 1
    ratio = st["nsp"]["random_ratio"]
    mb = st["input"]["bytes"] / 1e6
    text = (
        f"Wrote {st['instances']:,} instances ({manifest.totals['tokens']:,} tokens) in "
        f"{manifest.totals['shards']} shard(s) to {out_dir} in {seconds:.1f} s ({mb / seconds if seconds else 0:.1f} MB/s): "
        f"{st['documents']:,} documents, {st['sentences']:,} sentences; NSP random "
        f"{(ratio or 0) * 100:.1f}%; masked {m['total']:,} "
        f"({m['mask'] / total * 100:.1f}% [MASK], {m['random'] / total * 100:.1f}% random, "
        f"{m['keep'] / total * 100:.1f}% unchanged)"
    )
    skipped = {**st["skipped"], **st["counts"]}
    if skipped:
        text += "; " + ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items()))
    return text


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", "out_dir", required=True, help="Output directory (shards, manifest.json, trained tokenizer).")
@click.option("--tokenizer", "tokenizer_path", default=None,
              help="sentencepiece .model, WordPiece vocab.txt or tokenizer.json; default: train one on the input.")
@tokenizer_load_options
@train_options
@pair_options
@mask_options
@output_options
@seed_option
@workers_option
@click.option("--resume", is_flag=True,
              help="Continue a build of the same input and options that was killed or interrupted: the units it "
                   "finished are kept, the rest is redone; the result is the same bytes. Refused (naming the "
                   "difference) if the input, options or tokenizer changed.")
@click.option("--compat", type=click.Choice(["none", "google"]), default="none", show_default=True,
              help="google: the instances of Google's create_pretraining_data.py, one for one and in its order, "
                   "from the BERT layout and a vocab.txt; options left unset take its defaults (--dupe-factor 10, "
                   "--max-predictions-per-seq 20, --lowercase). Holds the corpus in memory and runs in one "
                   "process, as the reference does; reader options do not apply (lines are read as they are).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default=None,
              help="Where units run: local worker processes, or a Dask cluster (a LocalCluster of --workers "
                   "processes, or the one of --scheduler) [default: local, dask with --scheduler]. The output "
                   "is the same.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786): build on its workers (implies "
                   "--engine dask). The output directory must be a path every worker can see.")
@reader_options
@quiet_option
def build(sources: tuple[str, ...], out_dir: str, tokenizer_path: str | None, seed: int, workers: int | None,
          quiet: bool, compat: str, engine: str | None, scheduler: str | None, **kw: Any) -> None:
    """Build a masked-LM pretraining corpus: text in, trainer-ready shards out.

    Reads SOURCES, tokenises with --tokenizer (or trains a sentencepiece
    model on the input first and saves it in OUT), builds next-sentence pairs
    as Google's create_pretraining_data.py does, masks 15% of tokens
    (80% [MASK], 10% random, 10% unchanged) and writes zstd Parquet (or
    NumPy) shards plus manifest.json. Same input + options + seed = the same
    bytes, for any --workers.

    \b
    Example:
        mlmcorpus build sample_data/ -o out/ --vocab-size 8000
        mlmcorpus build wiki.jsonl.gz -o wiki/ --tokenizer bert-base-uncased_vocab.txt --dupe-factor 5
        mlmcorpus build books/ -o books/ --input-format text --doc-boundary file --format numpy
        mlmcorpus build wiki.txt -o wiki/ --tokenizer vocab.txt --compat google --seed 12345
        mlmcorpus build wiki.jsonl.gz -o wiki/ --tokenizer vocab.txt --dupe-factor 5 --resume
        mlmcorpus build wiki.jsonl.gz -o /shared/wiki/ --tokenizer vocab.txt --scheduler tcp://10.0.0.5:8786
    """
    from mlmcorpus.config import BuildConfig
    from mlmcorpus.engines.local import default_workers
    from mlmcorpus.pipeline import build as run_build

    _tune_gc()

    setup_logging(quiet)
    make_engine = _engine_factory(engine, scheduler, workers, compat, quiet)
    if compat == "google":
        _reference_defaults(kw, workers)
    reader = _reader_config(kw)
    if tokenizer_path is not None:
        _refuse_training_options()
    spec = _tokenizer_spec(tokenizer_path, kw, check=compat == "none")
    train = _train_config(kw, seed)
    pairs, units = _pair_unit_configs(kw)
    config = BuildConfig(pairs=pairs, mask=_mask_config(kw), units=units, output=_output_config(kw), seed=seed,
                         compat=compat)
    srcs = resolve_sources(sources, reader.input_format)
    if spec is None and any(s.path == "-" for s in srcs):
        raise ConfigError("training a tokenizer needs files, not stdin: pass --tokenizer or file paths")
    started = time.perf_counter()
    counts = {"docs": 0, "inst": 0}
    with ByteProgress(_total_size(srcs), "build", enabled=None if not quiet else False, info=True) as bar:

        def on_unit(unit: Any) -> None:
            counts["docs"] += unit.pair_stats.documents
            counts["inst"] += unit.pair_stats.instances
            bar.set_info(f"{counts['docs']:,} docs · {counts['inst']:,} instances")

        manifest = run_build(
            srcs, out_dir, reader=reader, config=config, tokenizer=spec, train=train,
            workers=workers or default_workers(), overwrite=kw.pop("overwrite"), resume_build=kw.pop("resume"),
            on_progress=bar.advance, on_unit=on_unit, on_phase=bar.set_label,
            engine=make_engine,
        )
    if not quiet:
        stderr_console().print(_build_summary(manifest, out_dir, time.perf_counter() - started))


def _engine_factory(engine: str | None, scheduler: str | None, workers: int | None, compat: str,
                    quiet: bool) -> Callable:
    """``build``'s engine factory ``(workers, warm) -> Engine`` from --engine/--scheduler."""
    from mlmcorpus.engines import LocalPool

    if scheduler is not None and engine == "local":
        raise ConfigError("--scheduler attaches to a Dask cluster: it cannot go with --engine local")
    if engine != "dask" and scheduler is None:
        return LocalPool
    if compat == "google":
        raise ConfigError("--compat google runs in one process, as the reference: it takes no --engine dask or --scheduler")
    import functools

    from mlmcorpus.engines.dask import DaskEngine, require_distributed

    require_distributed()
    if scheduler is not None and workers is not None:
        logging.getLogger("mlmcorpus").warning("--workers %d is not used with --scheduler: the cluster's workers run the build", workers)
    # Dask's own warnings (a lost worker, a rescheduled task) go to stderr; -q leaves errors only.
    logging.getLogger("distributed").setLevel(logging.ERROR if quiet else logging.WARNING)
    return functools.partial(DaskEngine, scheduler=scheduler)


_TRAINING_OPTIONS = ("model_type", "vocab_size", "character_coverage", "input_sentence_size", "normalization")


def _refuse_training_options() -> None:
    """Training options given with --tokenizer would be ignored: say so instead (as --lowercase
    with a sentencepiece model is refused)."""
    ctx = click.get_current_context()
    given = [f"--{name.replace('_', '-')}" for name in _TRAINING_OPTIONS
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise ConfigError(f"{', '.join(given)}: options for training a tokenizer, which build does only without "
                          "--tokenizer (or use `mlmcorpus tokenizer train`)")


def _reference_defaults(kw: dict, workers: int | None) -> None:
    """``--compat google``: options left at mlmcorpus' defaults take the reference's instead, and
    the shuffle is the reference's own."""
    from mlmcorpus.compat.google import REFERENCE_DEFAULTS

    ctx = click.get_current_context()
    for name, value in REFERENCE_DEFAULTS.items():
        if ctx.get_parameter_source(name) in (click.core.ParameterSource.DEFAULT, None):
            kw[name] = value
    if ctx.get_parameter_source("shuffle") == click.core.ParameterSource.COMMANDLINE and kw["shuffle"]:
        raise ConfigError("--compat google: rows come in the reference's own shuffled order; --shuffle does not apply")
    kw["shuffle"] = False
    if workers is not None and workers > 1:
        logging.getLogger("mlmcorpus").warning("--compat google runs in one process, as the reference; --workers %d is not used", workers)


def _stdin(command: str) -> Any:
    """stdin's bytes, or a one-line error when the process was started with stdin closed."""
    if sys.stdin is None or getattr(sys.stdin, "buffer", None) is None:
        raise InputError(f"{command} reads its input on stdin, and stdin is closed")
    return sys.stdin.buffer


def _refuse_terminal_stdout(command: str) -> None:
    if sys.stdout.isatty():
        raise ConfigError(f"{command} writes a binary Arrow stream: pipe it into the next stage or redirect it to a file")


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--tokenizer", "tokenizer_path", required=True, help="sentencepiece .model, WordPiece vocab.txt or tokenizer.json.")
@tokenizer_load_options
@pair_options
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Draw the pairs here with this seed [default: leave the draws to `mask` and its --seed].")
@workers_option
@reader_options
@quiet_option
def pairs(sources: tuple[str, ...], tokenizer_path: str, seed: int | None, workers: int | None, quiet: bool,
          **kw: Any) -> None:
    """Tokenise documents for NSP pairs (stage 2 of a shell pipeline).

    Reads documents (the JSON Lines of `mlmcorpus stream`, or any raw input;
    default: stdin) and writes an Arrow IPC stream on stdout, one record batch
    per work unit, for `mlmcorpus mask`. Without --seed it writes the tokenised
    segments and `mask --seed S` draws pairs and masks, so the pipeline equals
    `build --seed S`; with --seed it draws the pairs itself.

    \b
    Example:
        mlmcorpus stream corpus/ | mlmcorpus pairs --tokenizer vocab.txt | mlmcorpus mask --seed 7 | mlmcorpus write out/
    """
    from mlmcorpus.engines import default_workers
    from mlmcorpus.stages import run_pairs
    _tune_gc()

    setup_logging(quiet)
    _refuse_terminal_stdout("pairs")
    reader = _reader_config(kw)
    spec = _tokenizer_spec(tokenizer_path, kw, check=False)  # run_pairs loads it first thing
    pair_cfg, units = _pair_unit_configs(kw)
    srcs = resolve_sources(sources or ("-",), reader.input_format)
    stats = run_pairs(srcs, sys.stdout.buffer, tokenizer=spec, reader=reader, pairs=pair_cfg, units=units, seed=seed,
                      workers=workers or default_workers())
    if not quiet:
        stderr_console().print("pairs: " + _summary(stats, 0.0).split(" in ")[0])


@cli.command()
@mask_options
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the draws [default: the seed given to `pairs`, else 12345].")
@quiet_option
def mask(seed: int | None, quiet: bool, **kw: Any) -> None:
    """Draw NSP pairs if needed and apply BERT masking (stage 3 of a shell pipeline).

    Reads the Arrow stream of `mlmcorpus pairs`, masks each unit with a
    generator keyed by (seed, unit), and writes the trainer-ready columns as an
    Arrow stream for `mlmcorpus write`.

    \b
    Example:
        mlmcorpus pairs docs.jsonl --tokenizer spm.model | mlmcorpus mask --seed 7 | mlmcorpus write out/
    """
    from mlmcorpus.stages import run_mask
    _tune_gc()

    setup_logging(quiet)
    _refuse_terminal_stdout("mask")
    run_mask(_stdin("mask"), sys.stdout.buffer, mask=_mask_config(kw), seed=seed)


@cli.command()
@click.argument("out_dir")
@output_options
@quiet_option
def write(out_dir: str, quiet: bool, **kw: Any) -> None:
    """Write the masked instances on stdin as shards plus manifest.json (last stage of a pipeline).

    Refuses a stream that ends before its end marker (an upstream stage failed):
    nothing that looks complete is left behind.

    \b
    Example:
        mlmcorpus stream corpus/ | mlmcorpus pairs --tokenizer spm.model | mlmcorpus mask | mlmcorpus write out/
    """
    from mlmcorpus.stages import run_write
    _tune_gc()

    setup_logging(quiet)
    started = time.perf_counter()
    manifest = run_write(_stdin("write"), out_dir, output=_output_config(kw), overwrite=kw.pop("overwrite"))
    if not quiet:
        stderr_console().print(_build_summary(manifest, out_dir, time.perf_counter() - started))


@cli.command()
@click.argument("path")
@click.option("--verify", is_flag=True, help="Check checksums, schema, every row and the masking statistics; exit 1 on failure.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout (nothing else).")
@click.option("--samples", type=click.IntRange(min=0), default=0, help="Decode this many rows, masked tokens highlighted.")
@click.option("--shard", type=click.IntRange(min=0), default=0, show_default=True, help="Shard to take --samples from.")
@click.option("--tokenizer", "tokenizer_path", default=None, help="Tokenizer for --samples [default: the manifest's].")
@click.option("--plot", "plot_path", default=None, help="Also draw the distributions to this PNG (needs matplotlib).")
@workers_option
@quiet_option
def inspect(path: str, verify: bool, as_json: bool, samples: int, shard: int, tokenizer_path: str | None,
            plot_path: str | None, workers: int | None, quiet: bool) -> None:
    """Show what a built corpus holds and, with --verify, prove it intact and on policy.

    PATH is an output directory (with manifest.json) or a single shard.

    \b
    Example:
        mlmcorpus inspect out/
        mlmcorpus inspect out/ --verify -j 4
        mlmcorpus inspect out/ --samples 3 --shard 1
        mlmcorpus inspect out/ --json | jq .distributions.nsp
    """
    from rich.console import Console

    from mlmcorpus.engines.local import default_workers
    from mlmcorpus.report import inspect_corpus, render, render_samples

    setup_logging(quiet)
    if samples and as_json:
        raise ConfigError("--samples prints decoded text; it cannot be combined with --json")
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError("--plot needs matplotlib: pip install 'mlmcorpus[plot]'") from None
        if not plot_path.lower().endswith(".png"):
            raise ConfigError(f"--plot: {plot_path!r} should end in .png")
        if not os.path.isdir(os.path.dirname(os.path.abspath(plot_path))):
            raise ConfigError(f"--plot: directory of {plot_path!r} does not exist")
    with stderr_console().status("scanning shards…") if (sys.stderr.isatty() and not quiet and not as_json) else _null():
        report = inspect_corpus(path, verify=verify, workers=workers or default_workers())
    if report["summary"]["shards"] == 0:
        raise InputError(f"{path}: the manifest lists no shards")
    if plot_path is not None:
        from mlmcorpus.report.plot import plot_report

        plot_report(report, plot_path)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        console = Console(highlight=False, soft_wrap=False)
        render(report, console)
        if samples:
            render_samples(path, samples, shard, console, tokenizer_path)
    if verify and not report["verify"]["passed"]:
        sys.exit(1)


@cli.group(cls=_Group)
def tokenizer() -> None:
    """Train, inspect and use tokenizers (sentencepiece, WordPiece vocab.txt, tokenizer.json).

    \b
    Example:
        mlmcorpus tokenizer train sample_data/ -o tok/spm --vocab-size 2000
        mlmcorpus tokenizer info tok/spm.model
        echo "Hello world" | mlmcorpus tokenizer encode tok/spm.model --pieces
    """


@tokenizer.command("train")
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", "prefix", required=True, help="Output prefix: writes PREFIX.model, PREFIX.vocab, PREFIX.json.")
@train_options
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Seed of the sentence sampling.")
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True,
              help="Training threads; sentencepiece's result depends on it, so it is fixed and recorded.")
@reader_options
@quiet_option
def tokenizer_train(sources: tuple[str, ...], prefix: str, quiet: bool, **kw: Any) -> None:
    """Train a sentencepiece tokenizer on raw text.

    The text is streamed through the same reader as `stream` (same options),
    so the model sees exactly the sentences the corpus will contain. The model
    reserves [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; PREFIX.json records how
    it was trained.

    \b
    Example:
        mlmcorpus tokenizer train sample_data/ -o tok/spm --vocab-size 4000
        mlmcorpus tokenizer train wiki.jsonl.gz -o tok/wiki32k --model-type bpe
    """
    from mlmcorpus.stages import run_tokenizer_train

    setup_logging(quiet)
    reader = _reader_config(kw)
    train = _train_config(kw, kw.pop("seed"), kw.pop("threads"))
    srcs = resolve_sources(sources, reader.input_format)
    total = _total_size(srcs)
    started = time.perf_counter()
    bars: list[ByteProgress] = []

    def new_pass() -> None:  # one bar per pass over the input (a retry reads it again)
        if bars:
            bars[-1].__exit__(None, None, None)
        bars.append(ByteProgress(total, "reading", enabled=None if not quiet else False))
        bars[-1].__enter__()

    try:
        with stderr_console().status("training sentencepiece…") if (sys.stderr.isatty() and not quiet) else _null():
            result = run_tokenizer_train(srcs, prefix, reader=reader, train=train,
                                         on_progress=lambda n: bars[-1].advance(n), on_pass=new_pass)
    finally:
        if bars:
            bars[-1].__exit__(None, None, None)
    tok, info, stats = result.tokenizer, result.info, result.read
    if not quiet:
        used = min(info["sentences_seen"], train.input_sentence_size or info["sentences_seen"])
        stderr_console().print(
            f"Trained {train.model_type} model, vocab {tok.vocab_size:,}, on {used:,} of {info['sentences_seen']:,} "
            f"sentences ({stats.documents:,} documents, {human_bytes(stats.bytes)}) in "
            f"{time.perf_counter() - started:.1f} s -> {prefix}.model"
        )
        if stats.skipped or stats.repaired:
            stderr_console().print(_summary(stats, time.perf_counter() - started))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


@tokenizer.command("info")
@click.argument("path")
@tokenizer_load_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def tokenizer_info(path: str, lowercase: bool | None, add_special_tokens: bool, as_json: bool) -> None:
    """Show a tokenizer's kind, vocabulary size, special ids and sha256.

    \b
    Example:
        mlmcorpus tokenizer info bert-base-uncased_vocab.txt
        mlmcorpus tokenizer info tok/spm.model --json | jq .special_ids
    """
    from mlmcorpus.tokenizers import load_tokenizer

    tok = load_tokenizer(path, lowercase=lowercase, add_special_tokens=add_special_tokens)
    info = tok.info()
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
        return
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        click.echo(f"{key:<{width}}  {value}")


@tokenizer.command("encode")
@click.argument("path")
@tokenizer_load_options
@click.option("--pieces", "output", flag_value="pieces", help="Print pieces instead of ids.")
@click.option("--ids", "output", flag_value="ids", default=True, help="Print space-separated ids (default).")
@click.option("--json", "output", flag_value="json", help="Print {\"ids\": [...], \"pieces\": [...]} per line.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
def tokenizer_encode(
    path: str, lowercase: bool | None, add_special_tokens: bool, output: str, batch_size: int
) -> None:
    """Encode text lines from stdin, one output line per input line.

    \b
    Example:
        echo "The quick brown fox." | mlmcorpus tokenizer encode vocab.txt --pieces
        mlmcorpus tokenizer encode tok/spm.model < sentences.txt > ids.txt
    """
    from mlmcorpus.stages import run_tokenizer_encode
    from mlmcorpus.tokenizers import load_tokenizer

    tok = load_tokenizer(path, lowercase=lowercase, add_special_tokens=add_special_tokens)
    bad = run_tokenizer_encode(tok, _stdin("tokenizer encode"), sys.stdout, output=output, batch_size=batch_size)
    if bad:
        click.echo(f"Warning: {bad:,} input line(s) had invalid UTF-8, replaced by U+FFFD", err=True)


class _Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C (workers stopped, temporary shards removed), exit 143."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


#: Set by :func:`main`: the process is ours (not a caller's running the commands in-process).
_OWN_PROCESS = False


def _tune_gc() -> None:
    """Tune the collector of the CLI's own process, after a command's imports (so they are frozen too)."""
    if _OWN_PROCESS:
        from mlmcorpus.runtime import tune_gc

        tune_gc()


def main() -> None:
    """Console-script entry point."""
    import signal

    global _OWN_PROCESS
    _OWN_PROCESS = True
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="mlmcorpus")

