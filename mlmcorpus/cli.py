"""Command-line interface: parse options, build configs, call the library.

Library errors (:class:`~mlmcorpus.errors.MlmCorpusError`) become a one-line
``Error: ...`` on stderr and exit status 1; data goes to stdout only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from mlmcorpus import __version__
from mlmcorpus.errors import ConfigError, MlmCorpusError
from mlmcorpus.progress import ByteProgress, human_bytes, setup_logging, stderr_console
from mlmcorpus.readers import FORMATS, ReaderConfig, ReadStats, Source, iter_documents, iter_sentences, resolve_sources

__all__ = ["cli", "main"]


class _Group(click.Group):
    """A click group that maps library errors and broken pipes to clean exits."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlmCorpusError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:
            # `mlmcorpus stream ... | head`: the reader went away; that is not an error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)


def _parse_size(value: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    v = value.strip().upper().rstrip("B")
    unit = v[-1] if v and v[-1] in "KMG" else ""
    number = v[:-1] if unit else v
    try:
        n = int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"expected a size such as 16M or 1048576, got {value!r}") from None
    return n


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
        click.option("--lowercase", "lower_text", is_flag=True, help="Lower-case the text."),
        click.option("--keep-control", is_flag=True, help="Keep control characters (default: stripped)."),
        click.option(
            "--max-line-bytes",
            default="16M",
            show_default=True,
            help="Longer lines are skipped and counted (bounds memory).",
        ),
        click.option("--strict", is_flag=True, help="Make malformed records an error (file:line) instead of a counted skip."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


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
@quiet_option
def stream(sources: tuple[str, ...], quiet: bool, **kw: Any) -> None:
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
    setup_logging(quiet)
    config = _reader_config(kw)
    srcs = resolve_sources(sources, config.input_format)
    stats = ReadStats()
    out = sys.stdout
    with ByteProgress(_total_size(srcs), "stream", enabled=None if not quiet else False) as bar:
        write = out.write
        for doc in iter_documents(srcs, config, stats, on_progress=bar.advance):
            write(doc.to_json())
            write("\n")
        out.flush()
    if not quiet:
        stderr_console().print(_summary(stats, bar.elapsed))


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
@click.option("--model-type", type=click.Choice(["unigram", "bpe"]), default="unigram", show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=7), default=32000, show_default=True,
              help="Reduced, with a warning, when the corpus is too small for it.")
@click.option("--character-coverage", type=click.FloatRange(0, 1, min_open=True), default=0.9995, show_default=True,
              help="Share of characters covered by the vocabulary (0.9995 suits Korean/CJK; 1.0 for small alphabets).")
@click.option("--input-sentence-size", type=click.IntRange(min=0), default=2_000_000, show_default=True,
              help="Train on a seeded random sample of this many sentences (0 = all); bounds memory.")
@click.option("--seed", type=int, default=12345, show_default=True, help="Seed of the sentence sampling.")
@click.option("--normalization", type=click.Choice(["nfkc_hangul", "nmt_nfkc", "nfkc", "identity"]),
              default="nfkc_hangul", show_default=True,
              help="sentencepiece normalisation; nfkc_hangul is NFKC that keeps Hangul jamo as written.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Training threads [default: all cores].")
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
    from mlmcorpus.tokenizer import TrainConfig, train_tokenizer

    setup_logging(quiet)
    reader = _reader_config(kw)
    train = TrainConfig(
        model_type=kw["model_type"],
        vocab_size=kw["vocab_size"],
        character_coverage=kw["character_coverage"],
        input_sentence_size=kw["input_sentence_size"],
        seed=kw["seed"],
        normalization=kw["normalization"],
        **({"threads": kw["threads"]} if kw["threads"] else {}),
    )
    srcs = resolve_sources(sources, reader.input_format)
    if any(s.path == "-" for s in srcs):
        raise ConfigError("tokenizer train cannot read stdin: it may need a second pass; pass files")
    stats = ReadStats()
    total = _total_size(srcs)
    started = time.perf_counter()

    def sentences() -> Iterator[str]:
        nonlocal stats
        stats = ReadStats()  # a retry with a smaller vocabulary counts afresh
        bar = ByteProgress(total, "reading", enabled=None if not quiet else False)
        with bar:
            yield from iter_sentences(iter_documents(srcs, reader, stats, on_progress=bar.advance))

    record = {"sources": [s.path for s in srcs], "reader": {k: v for k, v in vars(reader).items()}}
    with stderr_console().status("training sentencepiece…") if (sys.stderr.isatty() and not quiet) else _null():
        tok, info = train_tokenizer(sentences, prefix, train, record=record)
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
    from mlmcorpus.tokenizer import load_tokenizer

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
    from mlmcorpus.tokenizer import load_tokenizer

    tok = load_tokenizer(path, lowercase=lowercase, add_special_tokens=add_special_tokens)
    out = sys.stdout

    def flush(batch: list[str]) -> None:
        enc = tok.encode_batch(batch)
        for i in range(len(enc)):
            ids = enc[i].tolist()
            if output == "ids":
                out.write(" ".join(map(str, ids)))
            elif output == "pieces":
                out.write(" ".join(tok.id_to_piece(j) for j in ids))
            else:
                out.write(json.dumps({"ids": ids, "pieces": [tok.id_to_piece(j) for j in ids]}, ensure_ascii=False))
            out.write("\n")

    batch: list[str] = []
    for raw in sys.stdin.buffer:
        batch.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if len(batch) >= batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    out.flush()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mlmcorpus")

