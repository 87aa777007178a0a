"""Stream documents out of raw text files.

``iter_documents(sources, config, stats)`` is the first stage of every pipeline:
it expands paths, directories and globs (:mod:`.sources`), opens and decompresses
each file (:mod:`.opening`), reads it line by line with a cap on line length,
repairs and normalises the text and splits prose into sentences (:mod:`.cleaning`)
and yields one :class:`Document` at a time (:mod:`.records`; with ``parts=True``,
a long document in parts, so that what the reader holds is bounded by characters
whatever the document sizes: a book, a whole file).  :mod:`.splits` plans the
sources as splits (byte ranges of large files) and reads one split on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from mlmcorpus.errors import InputError
from mlmcorpus.readers.config import ReaderConfig
from mlmcorpus.readers.opening import (
    _check_text_file,
    _FileError,
    _read_error,
    _sniff_stdin_format,
    open_source,
)
from mlmcorpus.readers.records import Document, _DocumentReader
from mlmcorpus.readers.sources import COMPRESSIONS, FORMATS, Source, detect_format, resolve_sources
from mlmcorpus.readers.stats import ReadStats

__all__ = [
    "Split",
    "can_split",
    "iter_split_documents",
    "plan_splits",
    "iter_plan_documents",
    "no_documents_message",
    "FORMATS",
    "COMPRESSIONS",
    "Document",
    "ReaderConfig",
    "ReadStats",
    "Source",
    "resolve_sources",
    "detect_format",
    "iter_documents",
    "iter_sentences",
    "open_source",
]


def iter_documents(
    sources: Iterable[Source],
    config: ReaderConfig | None = None,
    stats: ReadStats | None = None,
    on_progress: Callable[[int], None] | None = None,
    require_documents: bool = True,
    split_map: Callable | None = None,
    parts: bool = False,
) -> Iterator[Document]:
    """Yield the documents of every source, in order.

    With ``parts`` a long document comes as consecutive parts, each with
    ``more`` set when the next item continues the same document: documents read
    from the BERT layout or plain text are handed on in parts of about
    ``_PART_CHARS`` characters, so the reader and the batches in flight hold a
    bounded amount of text however long a document is.  Without it the parts are
    joined here, which holds one document whole; consumers that can take parts
    (the unit cutting, tokenizer training) should ask for them.

    ``split_map(fn, batches)``, an ordered map on other processes (see
    :func:`mlmcorpus.engines.local.map_ordered`), takes over cleaning and
    splitting JSON Lines and Parquet texts; the documents are the same.

    ``on_progress(n)`` is called with the number of raw (on-disk) bytes consumed
    since the previous call, for progress bars.  Raises :class:`InputError` on
    problems that make a named file unusable (a file found by walking a
    directory is skipped and counted instead), and when no document at all was
    found (unless ``require_documents`` is False); per-record problems are
    skipped and counted in ``stats`` (or raised with ``config.strict``).
    """
    items = _read_parts(sources, config, stats, on_progress, require_documents, split_map)
    return items if parts else _joined(items)


def _joined(parts: Iterable[Document]) -> Iterator[Document]:
    doc: Document | None = None
    for part in parts:
        if doc is None:
            doc = part
        else:
            doc.sentences.extend(part.sentences)
        if not part.more:
            doc.more = False
            yield doc
            doc = None


def _read_parts(
    sources: Iterable[Source],
    config: ReaderConfig | None,
    stats: ReadStats | None,
    on_progress: Callable[[int], None] | None,
    require_documents: bool,
    split_map: Callable | None,
) -> Iterator[Document]:
    config = config or ReaderConfig()
    stats = stats if stats is not None else ReadStats()
    reader = _DocumentReader(config, stats, split_map)
    names = []
    for index, source in enumerate(sources):
        names.append(source.name)
        stats.files += 1
        reader.split = index  # each file is a split of its own (see units.iter_units)
        try:
            yield from _read_source(reader, source, stats, on_progress)
        except _FileError as e:
            if source.explicit:
                raise InputError(str(e)) from None
            stats.skip("unreadable_file", f"{e}; skipped")
    if require_documents and stats.documents == 0:
        raise InputError(no_documents_message(names, stats))


def _read_source(
    reader: _DocumentReader, source: Source, stats: ReadStats, on_progress: Callable[[int], None] | None
) -> Iterator[Document]:
    fmt = source.format
    if fmt == "parquet":
        size = os.path.getsize(source.path) if source.path != "-" else 0
        for doc in reader.resolve(reader.read_parquet(source)):
            stats.documents += not doc.more
            stats.sentences += len(doc.sentences)
            yield doc
        if on_progress:
            on_progress(size)
        return
    try:
        opened = open_source(source)
    except InputError as e:
        raise _FileError(str(e)) from None
    if fmt is None:
        fmt = _sniff_stdin_format(opened)
    try:
        why = _check_text_file(opened)
    except InputError as e:
        opened.close()
        raise _FileError(str(e)) from None
    if why is not None:
        opened.close()
        if source.explicit:
            raise _FileError(f"{source.name}: looks like a binary file ({why}), not UTF-8 text")
        stats.skip("binary_file", f"{source.name}: looks like a binary file ({why}), skipped")
        return
    if not opened.is_stream:
        opened.close()
        opened = open_source(source)
    last = 0
    try:
        for doc in reader.resolve(reader.read(source, opened.stream, fmt)):
            stats.documents += not doc.more
            stats.sentences += len(doc.sentences)
            if on_progress is not None:
                pos = opened.position()
                if pos > last:
                    on_progress(pos - last)
                    last = pos
            yield doc
    except Exception as e:
        why = _read_error(e, source.name, opened.compression)
        if why is None:
            raise
        raise _FileError(why) from None
    finally:
        if on_progress is not None:
            pos = opened.position()
            if pos > last:
                on_progress(pos - last)
        opened.close()


from mlmcorpus.readers.splits import (  # noqa: E402  (uses _read_source)
    Split,
    can_split,
    iter_plan_documents,
    iter_split_documents,
    no_documents_message,
    plan_splits,
)


def iter_sentences(documents: Iterable[Document]) -> Iterator[str]:
    """Every sentence of every document (or document part), in order (the tokenizer trainer's input)."""
    for doc in documents:
        yield from doc.sentences
