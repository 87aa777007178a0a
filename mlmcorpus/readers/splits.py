"""Splits: the sources cut into pieces that are read on their own (issue 12: a plan that scales).

:func:`plan_splits` is a pure function of the sources (their sizes) and the options: one split per
file, except that a large uncompressed file in a format whose documents can be found from any
offset is cut into byte ranges of ``split_bytes``.  :func:`iter_split_documents` reads one split
from its own range, as Hadoop's text input does: a split owns the documents that *start* inside
its range, reads on past its end to finish the last of them and skips the tail of one that
started before it.  The splits of a file together give the documents and the counts of reading
the whole file (see :func:`iter_split_documents`).
"""

from __future__ import annotations

import os
import stat as stat_
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from mlmcorpus.errors import ConfigError, InputError
from mlmcorpus.readers.config import ReaderConfig
from mlmcorpus.readers.opening import _check_text_file, _FileError, _read_error, open_source
from mlmcorpus.readers.records import Document, _DocumentReader
from mlmcorpus.readers.sources import Source
from mlmcorpus.readers.stats import ReadStats

__all__ = ["Split", "plan_splits", "iter_split_documents", "iter_plan_documents", "can_split", "no_documents_message"]

_BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 16  # what a look for a line break reads at a time
# Bytes that are not a printable ASCII character: a line with any other byte is not blank in
# either reader (decoding, cleaning, normalising and stripping keep printable ASCII), so most
# lines are told non-blank without decoding them.
_NOT_GRAPHIC = bytes([*range(0x21), *range(0x7F, 0x100)])


@dataclass(frozen=True)
class Split:
    """One piece of the plan: bytes ``[start, end)`` of ``source`` (``end`` None: to the end of the file).

    ``index`` is the split's place in the plan (consecutive over all sources, in source order).
    ``size`` and ``mtime_ns`` are the file's as planned (None for stdin and pipes), so that a resume
    can tell that a file changed; reading a byte range checks them.  A split with ``start == 0``
    and ``end is None`` is the whole file, read exactly as :func:`~mlmcorpus.readers.iter_documents`
    reads it.
    """

    source: Source
    index: int
    start: int = 0
    end: int | None = None
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def whole(self) -> bool:
        """Whether the split is the whole file."""
        return self.start == 0 and self.end is None


def can_split(source: Source, config: ReaderConfig) -> bool:
    """Whether ``source``'s documents can be found from any byte offset: uncompressed JSON Lines,
    BERT layout, or plain text with ``doc_boundary="blank"`` (not stdin, a pipe or Parquet)."""
    if source.path == "-" or source.compression is not None:
        return False
    if source.format not in ("jsonl", "bert", "text"):
        return False
    return not (source.format == "text" and config.doc_boundary == "file")


def plan_splits(sources: list[Source], config: ReaderConfig, split_bytes: int) -> list[Split]:
    """The splits of ``sources``, in order: a pure function of the sources' sizes and the options.

    A regular file larger than ``split_bytes`` that :func:`can_split` is cut into ranges
    ``[0, split_bytes)``, ``[split_bytes, 2 * split_bytes)``, ..., the last one ``[k * split_bytes, None)``;
    every other source (compressed, stdin or a named pipe, Parquet, ``doc_boundary="file"``, a file
    no larger than ``split_bytes``, a file that cannot be stat'ed) is one whole split.
    """
    if split_bytes < 1:
        raise ConfigError(f"split size: must be at least 1 byte, got {split_bytes}")
    splits: list[Split] = []
    for source in sources:
        size = mtime = None
        regular = False
        if source.path != "-":
            try:
                st = os.stat(source.path)
            except OSError:
                pass  # reading it will say why
            else:
                regular = stat_.S_ISREG(st.st_mode)
                if regular:
                    size, mtime = st.st_size, st.st_mtime_ns
        if size is not None and size > split_bytes and regular and can_split(source, config):
            for start in range(0, size, split_bytes):
                end = start + split_bytes if start + split_bytes < size else None
                splits.append(Split(source, len(splits), start, end, size, mtime))
        else:
            splits.append(Split(source, len(splits), 0, None, size, mtime))
    return splits


def iter_split_documents(
    split: Split,
    config: ReaderConfig | None = None,
    stats: ReadStats | None = None,
    parts: bool = True,
    split_map: Callable | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Document]:
    """Yield the documents ``split`` owns, read from its byte range on (parts as in ``iter_documents``).

    A split owns the documents whose first byte lies in ``[start, end)``.  A line is what the
    whole-file reader takes as one (a physical line; a line over ``max_line_bytes`` is skipped);
    a JSON Lines document is one line; a document of the BERT layout or plain text starts at a line
    that is not blank and whose previous line within the cap is blank, or that is the first such
    line of the file (long lines are passed over; blank is decided by the reader's own test,
    ``_DocumentReader.is_blank``).  A document cut at ``max_doc_sentences`` belongs, with all its
    pieces, to the split where it started.

    Each line is read, counted and repaired by exactly one split: the one that owns the document
    it belongs to, or whose documents it follows (blank and over-long lines after a split's last
    document are its own), the first split from byte 0.  So for every file and every split size the
    documents of its splits, in order, are those of ``iter_documents([source], config, parts=...)``
    (sentences, order, parts) and their :class:`ReadStats` merged are the whole file's: the file is
    counted by the split at byte 0, the bytes of the file sum over its splits, a skipped line is
    counted once.  ``on_progress`` receives the same bytes as they are read.

    Ids and names: the split at byte 0 names lines and documents as the whole-file reader does
    (``name:lineno``; documents ``name:k``).  A later split names a line by its byte offset
    (``name:byte 1234``, in messages and as a JSON Lines record's id when it has none) and its
    documents of the BERT layout or plain text ``name@start:k``, document ``k`` of the split that
    starts at byte ``start``: unique and deterministic for a plan.

    A whole file (``split.whole``) is read exactly as ``iter_documents`` reads it.  Whether a file
    is binary is decided from its head by every split alike (an explicit file raises
    :class:`InputError` in every split; one found by walking is counted as skipped by the split at
    byte 0).  A byte range of a file whose size or mtime differs from the plan's raises
    :class:`InputError`.  Unlike ``iter_documents`` no error is raised when a split has no
    documents: a split may own none.
    """
    config = config or ReaderConfig()
    stats = stats if stats is not None else ReadStats()
    items = _read_split(split, config, stats, split_map, on_progress)
    if parts:
        return items
    from mlmcorpus.readers import _joined  # the package imports this module

    return _joined(items)


def _read_split(
    split: Split,
    config: ReaderConfig,
    stats: ReadStats,
    split_map: Callable | None,
    on_progress: Callable[[int], None] | None,
) -> Iterator[Document]:
    from mlmcorpus.readers import _read_source  # the package imports this module

    source = split.source
    if split.start == 0:
        stats.files += 1
    reader = _DocumentReader(config, stats, split_map)
    reader.split = split.index  # the documents' split: work units never span two
    try:
        if split.whole:
            yield from _read_source(reader, source, stats, on_progress)
        else:
            yield from _read_range(reader, split, stats, on_progress)
    except _FileError as e:
        if source.explicit:
            raise InputError(str(e)) from None
        if split.start == 0:
            stats.skip("unreadable_file", f"{e}; skipped")


class _Uncounted(ReadStats):
    """Counts that are thrown away, without warnings: looking at lines another split reads."""

    def _warn_once(self, reason: str, message: str) -> None:
        pass


def _read_range(
    reader: _DocumentReader, split: Split, stats: ReadStats, on_progress: Callable[[int], None] | None
) -> Iterator[Document]:
    source, config = split.source, reader.config
    if not can_split(source, config):
        raise ValueError(f"{source.name}: a {source.format} source cannot be read from a byte range; plan it as one split")
    try:
        opened = open_source(source)
    except InputError as e:
        raise _FileError(str(e)) from None
    try:
        try:
            why = _check_text_file(opened)  # the file's head, in every split alike
        except InputError as e:
            raise _FileError(str(e)) from None
        if why is not None:
            if source.explicit:
                raise _FileError(f"{source.name}: looks like a binary file ({why}), not UTF-8 text")
            if split.start == 0:
                stats.skip("binary_file", f"{source.name}: looks like a binary file ({why}), skipped")
            return
        f = opened.raw
        st = os.fstat(f.fileno())
        if split.size is not None and (st.st_size, st.st_mtime_ns) != (split.size, split.mtime_ns):
            raise InputError(
                f"{source.name}: changed since the splits were planned "
                f"(size {split.size:,} -> {st.st_size:,} bytes, mtime {split.mtime_ns} -> {st.st_mtime_ns})"
            )
        yield from _read_owned(reader, split, f, st.st_size, stats, on_progress)
    except Exception as e:
        why = _read_error(e, source.name, None)
        if why is None:
            raise
        raise _FileError(why) from None
    finally:
        opened.close()


def _read_owned(
    reader: _DocumentReader,
    split: Split,
    f: BinaryIO,
    size: int,
    stats: ReadStats,
    on_progress: Callable[[int], None] | None,
) -> Iterator[Document]:
    source, config = split.source, reader.config
    fmt = source.format
    assert fmt is not None  # can_split
    cap = config.max_line_bytes
    blank: Callable[[bytes], bool] | None = None
    if fmt != "jsonl":
        # The reader's own test of a blank line, on its own counts (decoding repairs are counted by
        # the split that reads the line) and never strict (a line this split does not own).
        looker = _DocumentReader(replace(config, strict=False), _Uncounted())

        def blank(raw: bytes) -> bool:
            return not raw.translate(None, _NOT_GRAPHIC) and looker.is_blank(fmt, raw)

    if split.start == 0:
        first: int | None = 0
    else:
        first = _first_owned(f, split.start, split.end, size, cap, blank)
    if first is None:
        return
    numbered = split.start == 0
    at = f"{source.name}:" if numbered else f"{source.name}:byte "
    lines = _Lines(f, first, split.end, cap, stats, at, numbered, config.strict, blank)
    done = first
    for doc in reader.resolve(reader.read_lines(source, lines, fmt, at, None if numbered else f"{source.name}@{split.start}:")):
        stats.documents += not doc.more
        stats.sentences += len(doc.sentences)
        if on_progress is not None and lines.offset > done:
            on_progress(lines.offset - done)
            done = lines.offset
        yield doc
    if on_progress is not None and lines.offset > done:
        on_progress(lines.offset - done)


class _Lines:
    """The lines of a split as :func:`~mlmcorpus.readers.cleaning._iter_lines` reads a whole file.

    Yields ``(n, bytes)`` from ``first`` on, None for a line over ``cap`` (skipped and counted),
    ``n`` the line number (from byte 0) or the byte offset of the line.  Stops before the first
    line at or after ``end`` that another split owns: any line for JSON Lines (``blank`` None), a
    document's first line otherwise.  ``offset`` is where the lines read so far end.
    """

    def __init__(
        self,
        f: BinaryIO,
        first: int,
        end: int | None,
        cap: int,
        stats: ReadStats,
        at: str,
        numbered: bool,
        strict: bool,
        blank: Callable[[bytes], bool] | None,
    ):
        self.f, self.offset, self.end, self.cap, self.stats = f, first, end, cap, stats
        self.at, self.numbered, self.strict, self.blank = at, numbered, strict, blank

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        f, cap, stats, end, blank = self.f, self.cap, self.stats, self.end, self.blank
        f.seek(self.offset)
        readline = f.readline
        lineno = 0
        prev: bytes | None = None  # the last line within the cap, once past ``end``: is it blank?
        prev_blank: bool | None = None
        while True:
            pos = self.offset
            if end is not None and pos >= end and blank is None:
                return
            line = readline(cap + 1)
            if not line:
                return
            lineno += 1
            n = len(line)
            if pos == 0 and line.startswith(_BOM):
                line = line[3:]
            if len(line) > cap and not line.endswith(b"\n"):
                while True:  # drain the rest of the long line in bounded chunks
                    chunk = readline(1 << 20)
                    n += len(chunk)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                stats.bytes += n
                self.offset += n
                where = f"{self.at}{lineno if self.numbered else pos}"
                if self.strict:
                    raise InputError(f"{where}: line longer than {cap} bytes (--max-line-bytes)")
                stats.skip(
                    "line_too_long",
                    f"{where}: line longer than {cap} bytes skipped (raise --max-line-bytes to keep such lines)",
                )
                yield (lineno if self.numbered else pos), None
                continue
            if blank is not None and end is not None and pos >= end:
                if prev_blank is None:
                    prev_blank = prev is None or blank(prev)
                now_blank = blank(line)
                if prev_blank and not now_blank:
                    return  # the next split's first document
                prev_blank = now_blank
            prev = line
            stats.bytes += n
            self.offset += n
            yield (lineno if self.numbered else pos), line


def _first_owned(
    f: BinaryIO, start: int, end: int | None, size: int, cap: int, blank: Callable[[bytes], bool] | None
) -> int | None:
    """Where the first line (JSON Lines) or document the split ``[start, end)`` owns begins, or None."""
    cut = _bom_cut(f, cap)
    pos = _line_start_at_or_after(f, start, size, cut)
    if pos >= size or (end is not None and pos >= end):
        return None
    if blank is None:
        return pos
    prev_blank = _previous_blank(f, pos, cap, cut, blank)
    for at, raw in _Lines(f, pos, None, cap, _Uncounted(), "", False, False, None):
        if end is not None and at >= end:
            return None
        if raw is None:
            continue
        now_blank = blank(raw)
        if prev_blank and not now_blank:
            return at
        prev_blank = now_blank
    return None


def _bom_cut(f: BinaryIO, cap: int) -> int | None:
    """``cap + 1`` when the whole-file reader cuts the first line there, else None.

    A quirk of ``_iter_lines``: a first line that starts with a BOM and has no line break within
    ``cap + 1`` bytes is taken as two lines, ``[0, cap + 1)`` (the BOM dropped, within the cap) and
    the rest; a split must see the same lines.
    """
    f.seek(0)
    if f.read(3) != _BOM:
        return None
    f.seek(0)
    left = cap + 1
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            return None  # the file ends first: a short file
        if b"\n" in chunk:
            return None
        left -= len(chunk)
    return cap + 1


def _line_start_at_or_after(f: BinaryIO, x: int, size: int, cut: int | None) -> int:
    """The first line start at or after ``x`` (> 0), or ``size`` when there is none."""
    if cut is not None and x <= cut:
        return min(cut, size)
    pos = x - 1
    f.seek(pos)
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return size
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)


def _line_start_before(f: BinaryIO, pos: int, cut: int | None) -> int:
    """The start of the line that ends at line start ``pos`` (> 0), looking back a chunk at a time."""
    if cut is not None and pos == cut:
        return 0
    stop = pos - 1  # the line break that ends that line
    while stop > 0:
        s = max(0, stop - _CHUNK)
        f.seek(s)
        i = f.read(stop - s).rfind(b"\n")
        if i >= 0:
            return s + i + 1
        stop = s
    return cut if cut is not None else 0


def _previous_blank(f: BinaryIO, pos: int, cap: int, cut: int | None, blank: Callable[[bytes], bool]) -> bool:
    """Whether the last line within the cap before ``pos`` is blank (True when there is none).

    Lines over the cap are passed over as the readers pass over them; a line within the cap is
    at most ``cap + 1`` bytes, so what is held is bounded as in the reader.
    """
    while pos > 0:
        s = _line_start_before(f, pos, cut)
        if pos - s <= cap + 1 or (cut is not None and s == 0):
            f.seek(s)
            raw = f.read(pos - s)
            return blank(raw[3:] if s == 0 and raw.startswith(_BOM) else raw)
        pos = s
    return True


def iter_plan_documents(
    splits: Iterable[Split],
    config: ReaderConfig | None = None,
    stats: ReadStats | None = None,
    parts: bool = True,
    split_map: Callable | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Document]:
    """The documents of every split of a plan, in order, read in this process; as
    ``iter_documents`` over the sources, it raises :class:`InputError` when none had any."""
    config = config or ReaderConfig()
    stats = stats if stats is not None else ReadStats()
    names = []
    for split in splits:
        if split.start == 0:
            names.append(split.source.name)
        yield from iter_split_documents(split, config, stats, parts, split_map, on_progress)
    if stats.documents == 0:
        raise InputError(no_documents_message(names, stats))


def no_documents_message(names: list[str], stats: ReadStats) -> str:
    skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items()))
    where = names[0] if len(names) == 1 else f"{len(names)} files"
    return f"{where}: no documents found" + (f" (skipped: {skipped})" if skipped else " (the input is empty)")
