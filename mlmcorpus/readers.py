"""Stream documents out of raw text files.

``iter_documents(sources, config, stats)`` is the first stage of every pipeline:
it expands paths, directories and globs, opens (and decompresses) each file,
reads it line by line with a cap on line length, repairs what can be repaired
(invalid UTF-8, NUL bytes, control characters), normalises Unicode, splits
prose into sentences and yields one :class:`Document` at a time (with
``parts=True``, a long document in parts of about ``_PART_CHARS`` characters,
so that what the reader holds is bounded by characters whatever the document
sizes: a book, a whole file).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import json
import logging
import lzma
import os
import re
import sys
import unicodedata
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, BinaryIO, Literal

from mlmcorpus.errors import ConfigError, InputError
from mlmcorpus.sentences import get_splitter, is_abbreviation, split_none, split_rules

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = [
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

log = logging.getLogger("mlmcorpus")

FORMATS = ("bert", "jsonl", "parquet", "text")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
    ".bert": "bert",
}
_SNIFF_BYTES = 8192
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = {type(None): "null", list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_GLOB_CHARS = set("*?[")

# Control characters (Unicode category Cc) other than tab/newline/CR, plus the
# byte-order mark, are deleted; tabs become spaces.  Built once: str.translate
# with a dict is the fastest pure-Python way to delete a set of characters.
_CONTROL_TABLE: dict[int, str | None] = {
    c: None for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"
}  # exactly Unicode category Cc (checked in the tests)
_CONTROL_TABLE[0xFEFF] = None
for _c in "\t\x0b\x0c\x1c\x1d\x1e\x1f\x85":  # whitespace controls separate words: keep a space
    _CONTROL_TABLE[ord(_c)] = " "
_CONTROL_CHAR = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_CONTROL_TABLE)) + "]")


@dataclass(slots=True)
class Document:
    """One document: an id, its sentences (stripped, non-empty) and where it came from.

    ``more`` is True for a part of a longer document (``iter_documents(..., parts=True)``):
    the next item continues it, with the same id.
    """

    id: str
    sentences: list[str]
    source: str = ""
    more: bool = False

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "sentences": self.sentences}, ensure_ascii=False)


@dataclass(frozen=True)
class ReaderConfig:
    """How raw files are read, normalised and split.

    ``input_format`` None means: by file extension (and by content for stdin).
    ``normalize`` is a Unicode normal form (``NFC``/``NFKC``) or ``none``.
    ``max_line_bytes`` caps one physical line (and one prose paragraph); longer
    lines are skipped and counted so a 50 MB line cannot exhaust memory.
    ``max_doc_sentences`` caps a document: a longer one (a file without blank
    lines, a book read with ``doc_boundary="file"``) is cut into consecutive
    documents, counted, so memory stays bounded whatever the layout.
    """

    input_format: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    text_column: str = "text"
    doc_boundary: str = "blank"
    splitter: str = "rules"
    normalize: str = "nfc"
    lowercase: bool = False
    strip_control: bool = True
    max_line_bytes: int = 16 * 1024 * 1024
    max_doc_sentences: int = 100_000
    strict: bool = False

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format not in FORMATS:
            raise ConfigError(f"--input-format: unknown format {self.input_format!r} (choose from {', '.join(FORMATS)})")
        if self.doc_boundary not in ("blank", "file"):
            raise ConfigError(f"--doc-boundary: expected 'blank' or 'file', got {self.doc_boundary!r}")
        if self.normalize.lower() not in ("nfc", "nfkc", "none"):
            raise ConfigError(f"--normalize: expected nfc, nfkc or none, got {self.normalize!r}")
        if self.max_line_bytes < 1024:
            raise ConfigError(f"--max-line-bytes: must be at least 1024, got {self.max_line_bytes}")
        if self.max_doc_sentences < 1:
            raise ConfigError(f"--max-doc-sentences: must be at least 1, got {self.max_doc_sentences}")
        try:
            get_splitter(self.splitter)
        except ValueError as e:
            raise ConfigError(f"--splitter: {e}") from None


@dataclass
class ReadStats:
    """Counters of what was read, skipped and repaired; warns once per reason.

    ``skipped`` counts records/files dropped by reason; ``repaired`` counts
    problems fixed in place (invalid UTF-8 sequences replaced, NUL bytes removed).
    """

    files: int = 0
    documents: int = 0
    sentences: int = 0
    bytes: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    _warned: set = field(default_factory=set, repr=False)

    def skip(self, reason: str, message: str, n: int = 1) -> None:
        self.skipped[reason] += n
        self._warn_once(reason, message)

    def repair(self, reason: str, message: str, n: int = 1) -> None:
        self.repaired[reason] += n
        self._warn_once(reason, message)

    def _warn_once(self, reason: str, message: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("%s (further cases are counted, not shown)", message)

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "sentences": self.sentences,
            "bytes": self.bytes,
            "skipped": dict(sorted(self.skipped.items())),
            "repaired": dict(sorted(self.repaired.items())),
        }

    def merge(self, other: ReadStats) -> None:
        self.files += other.files
        self.documents += other.documents
        self.sentences += other.sentences
        self.bytes += other.bytes
        self.skipped.update(other.skipped)
        self.repaired.update(other.repaired)


@dataclass(frozen=True)
class Source:
    """One input: a path (``-`` is stdin), its format and compression.

    ``explicit`` is True when the user named the file itself (not found by
    walking a directory or a glob): a bad explicit file is an error, a bad file
    found while walking is skipped and counted.
    """

    path: str
    format: str | None
    compression: str | None
    explicit: bool = True

    @property
    def name(self) -> str:
        return "stdin" if self.path == "-" else self.path


def _split_ext(path: str) -> tuple[str | None, str | None]:
    """Return (format, compression) from a file name, either None when unknown."""
    name = os.path.basename(path).lower()
    compression = None
    for ext, comp in COMPRESSIONS.items():
        if name.endswith(ext):
            compression = comp
            name = name[: -len(ext)]
            break
    if name.endswith(".bert.txt"):
        return "bert", compression
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1])
    return fmt, compression


def detect_format(path: str) -> str | None:
    """The input format implied by a file name (``a.jsonl.gz`` -> ``jsonl``), or None."""
    return _split_ext(path)[0]


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split(os.sep) if part not in (".", ".."))


def resolve_sources(specs: Iterable[str], input_format: str | None = None) -> list[Source]:
    """Expand files, directories (recursive, sorted, hidden skipped), globs and ``-``.

    Raises :class:`InputError` for a missing path, a glob or directory with no
    readable files, or a file whose format cannot be told from its name.
    """
    sources: list[Source] = []
    specs = list(specs)
    if not specs:
        raise InputError("no input given (pass files, directories, globs or - for stdin)")
    for spec in specs:
        if spec == "-":
            sources.append(Source("-", input_format, None, True))
            continue
        if os.path.isdir(spec):
            found = []
            for root, dirs, files in os.walk(spec):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if f.startswith("."):
                        continue
                    path = os.path.join(root, f)
                    fmt, comp = _split_ext(path)
                    if input_format is None and fmt is None:
                        continue
                    found.append(Source(path, input_format or fmt, comp, False))
            if not found:
                raise InputError(f"{spec}: directory has no input files (looked for {', '.join(sorted(_EXTENSIONS))}, optionally compressed)")
            sources.extend(sorted(found, key=lambda s: s.path))
            continue
        if os.path.lexists(spec):
            if not os.path.exists(spec):
                raise InputError(f"{spec}: broken symbolic link")
            if not os.path.isfile(spec) and not _is_stream(spec):
                raise InputError(f"{spec}: not a regular file or directory")
            fmt, comp = _split_ext(spec)
            fmt = input_format or fmt
            if fmt is None:
                raise InputError(
                    f"{spec}: cannot tell the input format from the file name; pass --input-format ({', '.join(FORMATS)})"
                )
            sources.append(Source(spec, fmt, comp, True))
            continue
        if _GLOB_CHARS & set(spec):
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"{spec}: pattern matches no files")
            for path in matches:
                fmt, comp = _split_ext(path)
                if input_format is None and fmt is None:
                    continue
                sources.append(Source(path, input_format or fmt, comp, False))
            continue
        raise InputError(f"{spec}: no such file or directory")
    return sources


def _is_stream(path: str) -> bool:
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _open_raw(path: str) -> BinaryIO:
    return open(path, "rb")


def _wrap_compression(raw: BinaryIO, compression: str | None) -> BinaryIO:
    if compression is None:
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "bz2":
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InputError("reading .zst files needs the zstandard package: pip install 'mlmcorpus[zstd]'") from None
        return io.BufferedReader(_ZstdRaw(raw, zstandard), buffer_size=1 << 20)
    raise InputError(f"unknown compression {compression!r}")


class _ZstdRaw(io.RawIOBase):
    """Decompresses a (multi-frame) zstd stream and, unlike ``zstandard.stream_reader``,
    raises ``EOFError`` when the input ends inside a frame (a truncated file)."""

    def __init__(self, raw: BinaryIO, zstandard: object):
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()  # type: ignore[attr-defined]
        self._d = self._dctx.decompressobj()
        self._buf = memoryview(b"")
        self._in_frame = False
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not len(self._buf) and not self._done:
            chunk = self._raw.read(1 << 17)
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd data ends inside a frame")
                self._done = True
                break
            out = self._d.decompress(chunk)
            self._in_frame = True
            while self._d.eof:
                rest = self._d.unused_data
                self._d = self._dctx.decompressobj()
                self._in_frame = bool(rest)
                if not rest:
                    break
                out += self._d.decompress(rest)
            self._buf = memoryview(out)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _sniff_compression(head: bytes) -> str | None:
    for magic, comp in _MAGIC:
        if head.startswith(magic):
            return comp
    return None


class _Opened:
    """An open source: ``stream`` is the decompressed bytes, ``raw`` the file for progress."""

    def __init__(self, source: Source):
        self.source = source
        self.is_stream = source.path == "-" or _is_stream(source.path)
        if source.path == "-":
            raw = sys.stdin.buffer
            if not hasattr(raw, "peek"):  # e.g. a BytesIO standing in for stdin
                raw = io.BufferedReader(raw)
            head = raw.peek(8)
            compression = _sniff_compression(head[:8])
        elif self.is_stream:  # a named pipe (<(...), /dev/stdin): read once, peek instead of reopening
            try:
                raw = _open_raw(source.path)
            except OSError as e:
                raise InputError(f"{source.path}: cannot open ({e.strerror or e})") from None
            head = raw.peek(8)  # type: ignore[attr-defined]
            compression = source.compression or _sniff_compression(head[:8])
        else:
            try:
                raw = _open_raw(source.path)
            except PermissionError:
                raise InputError(f"{source.path}: permission denied") from None
            except IsADirectoryError:
                raise InputError(f"{source.path}: is a directory") from None
            except OSError as e:
                raise InputError(f"{source.path}: cannot open ({e.strerror or e})") from None
            compression = source.compression
        self.raw = raw
        self.compression = compression
        self.stream = _wrap_compression(raw, compression)

    def position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self.source.path != "-":
            try:
                self.stream.close()
            finally:
                self.raw.close()


def open_source(source: Source) -> _Opened:
    """Open ``source`` for reading decompressed bytes (see :class:`_Opened`)."""
    return _Opened(source)


def _looks_binary(head: bytes) -> str | None:
    """Why ``head`` (the first bytes of a file) is not text, or None if it looks like text."""
    if not head:
        return None
    nul = head.count(b"\x00")
    if nul > max(2, len(head) // 1000):
        return f"{nul} NUL bytes in the first {len(head)} bytes"
    text = head.decode("utf-8", "replace")
    bad = text.count("\ufffd") - head.count(b"\xef\xbf\xbd")
    if bad > max(4, len(text) // 10):
        return "mostly not UTF-8 text"
    return None


def _check_text_file(opened: _Opened) -> str | None:
    """Return a reason when the start of an open text-format source is binary."""
    stream = opened.stream
    try:
        if opened.is_stream:
            head = stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(stream, "peek") else b""
        else:
            head = stream.read(_SNIFF_BYTES)  # the caller reopens: not every stream can seek back
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise InputError(f"{opened.source.name}: corrupt or truncated {opened.compression} data ({e})") from None
    except Exception as e:  # zstandard raises its own ZstdError
        raise InputError(f"{opened.source.name}: cannot decompress ({e})") from None
    return _looks_binary(head)


_NORMAL_FORMS: dict[str, Literal["NFC", "NFKC"] | None] = {"nfc": "NFC", "nfkc": "NFKC", "none": None}


class _TextCleaner:
    """Decode, repair and normalise text; counts what it repairs."""

    def __init__(self, config: ReaderConfig, stats: ReadStats):
        self.stats = stats
        self.form = _NORMAL_FORMS[config.normalize.lower()]
        self.lowercase = config.lowercase
        self.strict = config.strict
        self.table = _CONTROL_TABLE if config.strip_control else None

    def fix_surrogates(self, text: str, where: str) -> str:
        """JSON escapes can encode lone surrogates (``\\ud800``), which are not text: replace and count."""
        if not _SURROGATE.search(text):
            return text
        if self.strict:
            raise InputError(f"{where}: lone surrogate escape in JSON string")
        fixed, n = _SURROGATE.subn("\ufffd", text)
        self.stats.repair("invalid_utf8", f"{where}: lone surrogate replaced by U+FFFD", n)
        return fixed

    def decode(self, raw: bytes, where: str) -> str:
        if b"\x00" in raw:
            if self.strict:
                raise InputError(f"{where}: NUL byte in text")
            n = raw.count(b"\x00")
            raw = raw.replace(b"\x00", b"")
            self.stats.repair("nul_bytes", f"{where}: removed NUL bytes", n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if self.strict:
                raise InputError(f"{where}: invalid UTF-8 at byte {e.start}") from None
            text = raw.decode("utf-8", "replace")
            n = text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
            self.stats.repair("invalid_utf8", f"{where}: invalid UTF-8 replaced by U+FFFD", max(n, 1))
            return text

    def clean(self, text: str) -> str:
        # Control characters are not printable: most text skips the search (itself 5x faster than translate).
        if self.table is not None and not text.isprintable() and _CONTROL_CHAR.search(text) is not None:
            text = text.translate(self.table)
        if self.form is not None and not unicodedata.is_normalized(self.form, text):
            text = unicodedata.normalize(self.form, text)
        if self.lowercase:
            text = text.lower()
        return text


def _iter_lines(
    stream: BinaryIO, cap: int, stats: ReadStats, name: str, strict: bool = False
) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) with the newline kept; None for a line over ``cap`` bytes.

    A UTF-8 byte-order mark at the start of the file is dropped.
    """
    lineno = 0
    readline = stream.readline
    while True:
        line = readline(cap + 1)
        if not line:
            return
        lineno += 1
        stats.bytes += len(line)
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if len(line) > cap and not line.endswith(b"\n"):
            while True:  # drain the rest of the long line in bounded chunks
                chunk = readline(1 << 20)
                stats.bytes += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            if strict:
                raise InputError(f"{name}:{lineno}: line longer than {cap} bytes (--max-line-bytes)")
            stats.skip(
                "line_too_long",
                f"{name}:{lineno}: line longer than {cap} bytes skipped (raise --max-line-bytes to keep such lines)",
            )
            yield lineno, None
            continue
        yield lineno, line


# Hard-wrapped prose: which line breaks continue a sentence (see _wrapped).  A line ending a
# sentence, or a colon (a list, a formula or code follows), never continues; a semicolon does.
# A closing quote or bracket is final when what it closes is ('said.”'), not after a comma
# ('“tarried,”').
_FINAL = frozenset(".!?:\u2026")
_CLOSERS = "\"')]}\u00bb\u201d\u2019\u203a"
_OPENERS = "\"'([{\u00ab\u201c\u2018\u2039"
# Prose is hard-wrapped at 60-80 columns: a block whose longest line is outside this range is
# one paragraph per line (longer) or verse, a list, headings (shorter).
_WRAP_COLUMNS = range(55, 101)


def _wrapped(line: str, nxt: str, width: int) -> bool:
    """Whether ``line`` (stripped, not empty) continues on the next line ``nxt`` of its block.

    Never after sentence-final punctuation (but ``Mr.`` or ``approx.`` does not end a sentence).
    Onto a lowercase letter (after any opening quote or bracket), always.  Onto a capital or a
    digit, only in a block that looks hard-wrapped (``width``,
    its longest line, is in _WRAP_COLUMNS) and when the next word would not have fitted
    on the line: a greedy wrapper broke it there, which a heading, a list item or a line of
    verse is not.  Scripts without letter case (Hangul, CJK,
    Devanagari, Arabic, Thai, ...) are therefore never joined: one paragraph per line.
    """
    core = line.rstrip(_CLOSERS)
    if not core:
        return False
    if core[-1] in _FINAL and not (len(core) == len(line) and is_abbreviation(line[line.rfind(" ") + 1 :])):
        return False
    first = nxt.lstrip(_OPENERS)[:1]
    if first.islower():
        return True
    # The wrap width is a little under the longest line (a wrapper's width is not always reached
    # exactly, and a few lines run over it): a tenth of slack.
    wrappable = first.isupper() or first.isdigit()
    return wrappable and width in _WRAP_COLUMNS and len(line) + 1 + len(nxt.split(maxsplit=1)[0]) > width - width // 10


@dataclass(frozen=True)
class _Pending:
    """A document whose text still has to be cleaned and split into sentences (perhaps by a worker)."""

    doc_id: str
    text: str
    source: Source
    where: str


# A batch sent to a worker at a time: big enough to amortise the round trip.  It closes at
# _BATCH_CHARS characters of text, pending or already split, so that what waits in the
# batches in flight is bounded by characters whatever the format.
_BATCH_CHARS = 1 << 20
_BATCH_ITEMS = 512
# A document read from the BERT layout or plain text is handed on in parts of about this many
# characters: the reader never holds a whole book (or a whole file read as one document).
_PART_CHARS = 1 << 20
_SPLITTERS: dict[ReaderConfig, _DocumentReader] = {}


def split_texts(config: ReaderConfig, texts: list[str]) -> list[list[str]]:
    """Clean and split each text into sentences (what a worker does for :func:`iter_documents`)."""
    reader = _SPLITTERS.get(config)
    if reader is None:
        reader = _SPLITTERS[config] = _DocumentReader(config, ReadStats())
    return [reader.text_sentences(t) for t in texts]


def _read_error(e: BaseException, name: str, compression: str | None) -> str | None:
    """What to say of a file whose reading raised ``e``, or None when ``e`` is not the file's fault.

    A read error (truncated, corrupt, unreadable) skips a file found by walking a directory.
    """
    if isinstance(e, (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)):
        return f"{name}: corrupt or truncated {compression} data ({e})"
    if isinstance(e, OSError):
        return f"{name}: read error ({e})"
    if type(e).__name__ == "ZstdError":  # zstandard's own
        return f"{name}: corrupt zstd data ({e})"
    return None


def _is_read_error(e: BaseException) -> bool:
    return _read_error(e, "", None) is not None


class _PartedDocument:
    """Document ``n`` of a source as it is read: handed on in parts of about _PART_CHARS characters."""

    def __init__(self, source: Source):
        self.source = source
        self.n = 0  # documents of the source ended so far
        self.count = 0  # sentences of this document so far, handed on or not
        self._held: list[str] = []  # the part not handed on yet
        self._chars = 0  # in ``_held``

    def add(self, sentences: list[str]) -> Iterator[Document]:
        """Add sentences; yields the part held before one that would make it exceed _PART_CHARS.

        A part is handed on only when another sentence follows, so the last part is never empty.
        """
        for sentence in sentences:
            if self._chars >= _PART_CHARS:
                yield Document(f"{self.source.name}:{self.n}", self._held, self.source.name, more=True)
                self._held, self._chars = [], 0
            self._held.append(sentence)
            self._chars += len(sentence)
            self.count += 1

    def end(self) -> Document:
        """The document's last part; the next sentences start document ``n + 1``."""
        last = Document(f"{self.source.name}:{self.n}", self._held, self.source.name)
        self.n += 1
        self.count, self._held, self._chars = 0, [], 0
        return last


class _DocumentReader:
    """Turns one open source into documents according to its format.

    With ``split_map`` (an ordered map on worker processes) the cleaning and
    sentence splitting of JSON Lines and Parquet texts runs there in batches; the
    documents, their order and the counts are the same either way.
    """

    def __init__(self, config: ReaderConfig, stats: ReadStats, split_map: Callable | None = None):
        self.config = config
        self.stats = stats
        self.cleaner = _TextCleaner(config, stats)
        self.split = get_splitter(config.splitter)
        # The built-in splitters return stripped, non-empty slices of the paragraph.
        self._slices = self.split in (split_rules, split_none)
        self.split_map = split_map

    def resolve(self, items: Iterable[Document | _Pending]) -> Iterator[Document]:
        """Documents in order, pending texts split in batches by ``split_map`` (or here)."""
        split_map = self.split_map or map
        in_flight: deque[list] = deque()
        failed: list[Exception] = []

        def batches() -> Iterator[list[str]]:
            batch: list = []
            size = 0
            try:
                for item in items:
                    batch.append(item)
                    size += len(item.text) if isinstance(item, _Pending) else sum(map(len, item.sentences))
                    if size >= _BATCH_CHARS or len(batch) >= _BATCH_ITEMS:
                        in_flight.append(batch)
                        yield [p.text for p in batch if isinstance(p, _Pending)]
                        batch, size = [], 0
            except Exception as e:
                # A read error (a truncated file): the documents read before it still count, as
                # they do without workers; the error is raised after them.
                failed.append(e)
            if batch:
                in_flight.append(batch)
                yield [p.text for p in batch if isinstance(p, _Pending)]

        for results in split_map(partial(split_texts, self.config), batches()):
            split = iter(results)
            for item in in_flight.popleft():
                if isinstance(item, _Pending):
                    yield from self._finish(item.doc_id, next(split), item.source, item.where)
                else:
                    yield item
        if failed:
            raise failed[0]

    def _finish(self, doc_id: str, sentences: list[str], source: Source, where: str) -> Iterator[Document]:
        """A document's sentences as documents (split at the cap), or a counted skip when there are none."""
        if not sentences:
            self.stats.skip("empty_document", f"{where}: empty document skipped")
            return
        yield from self._capped(doc_id, sentences, source)

    def paragraph_sentences(self, paragraph: str) -> list[str]:
        text = self.cleaner.clean(paragraph)
        if self._slices and "  " not in text and text.isprintable():
            # Single spaces are the only whitespace: the sentences are already normalised.
            return self.split(text)
        out = []
        for s in self.split(text):
            s = " ".join(s.split())
            if s:
                out.append(s)
        return out

    def text_sentences(self, text: str) -> list[str]:
        """Sentences of a multi-paragraph text: the one paragraph rule of every prose format.

        A blank line always ends a paragraph.  Within a block of lines between blank lines,
        a line is a paragraph (WikiExtractor writes one per line; a heading; a list item)
        unless it is hard-wrapped prose that continues on the next line (:func:`_wrapped`).
        """
        out: list[str] = []
        block: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                block.append(line)
            elif block:
                out.extend(self._block_sentences(block))
                block = []
        if block:
            out.extend(self._block_sentences(block))
        return out

    def _block_sentences(self, lines: list[str]) -> list[str]:
        width = max(map(len, lines))
        out: list[str] = []
        para: list[str] = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            para.append(line)
            if i < last and _wrapped(line, lines[i + 1], width):
                continue
            out.extend(self.paragraph_sentences(" ".join(para)))
            para = []
        return out

    def read(self, source: Source, stream: BinaryIO, fmt: str) -> Iterator[Document | _Pending]:
        if fmt == "bert":
            yield from self._read_bert(source, stream)
        elif fmt == "jsonl":
            yield from self._read_jsonl(source, stream)
        elif fmt == "text":
            yield from self._read_text(source, stream)
        else:  # pragma: no cover - guarded by ReaderConfig/resolve_sources
            raise InputError(f"{source.name}: unknown format {fmt!r}")

    def _read_bert(self, source: Source, stream: BinaryIO) -> Iterator[Document]:
        doc = _PartedDocument(source)
        try:
            for lineno, raw in _iter_lines(stream, self.config.max_line_bytes, self.stats, source.name, self.config.strict):
                if raw is None:
                    continue
                # Without the line break, a clean line is printable and clean() skips its search.
                line = self.cleaner.clean(self.cleaner.decode(raw.rstrip(b"\r\n"), f"{source.name}:{lineno}"))
                line = " ".join(line.split())
                if line:
                    yield from doc.add([line])
                    if doc.count >= self.config.max_doc_sentences:
                        self._count_doc_split(source, doc.n)
                        yield doc.end()
                elif doc.count:
                    yield doc.end()
        except Exception as e:
            # A read error (a truncated file): the document ends where the file broke, whatever
            # of it was handed on already (so what is kept does not depend on the part size).
            if _is_read_error(e) and doc.count:
                yield doc.end()
            raise
        if doc.count:
            yield doc.end()

    def _read_text(self, source: Source, stream: BinaryIO) -> Iterator[Document]:
        cap = self.config.max_line_bytes
        per_file = self.config.doc_boundary == "file"
        para: list[str] = []
        para_bytes = 0
        doc = _PartedDocument(source)

        def flush_para() -> Iterator[Document]:
            """The lines up to a blank line, into paragraphs by the one rule of text_sentences."""
            nonlocal para, para_bytes
            if para:
                yield from doc.add(self.text_sentences("".join(para)))
            para, para_bytes = [], 0

        try:
            for lineno, raw in _iter_lines(stream, cap, self.stats, source.name, self.config.strict):
                if raw is None:
                    continue
                line = self.cleaner.decode(raw, f"{source.name}:{lineno}")
                if line.strip():
                    para.append(line)
                    para_bytes += len(raw)
                    if para_bytes > cap:  # a paragraph without blank lines: split what we have
                        yield from flush_para()
                    continue
                yield from flush_para()
                if doc.count and (not per_file or doc.count >= self.config.max_doc_sentences):
                    if per_file:
                        self._count_doc_split(source, doc.n)
                    yield doc.end()
        except Exception as e:
            # A read error: the document ends where the file broke (see _read_bert).
            if _is_read_error(e):
                yield from flush_para()
                if doc.count:
                    yield doc.end()
            raise
        yield from flush_para()
        if doc.count:
            yield doc.end()

    def _capped(self, doc_id: str, sentences: list[str], source: Source) -> Iterator[Document]:
        """One document, or consecutive parts of at most ``max_doc_sentences`` sentences."""
        cap = self.config.max_doc_sentences
        if len(sentences) <= cap:
            yield Document(doc_id, sentences, source.name)
            return
        for k in range(0, len(sentences), cap):
            if k:
                self._count_doc_split(source, doc_id)
            yield Document(f"{doc_id}#{k // cap}", sentences[k : k + cap], source.name)

    def _count_doc_split(self, source: Source, n: int | str) -> None:
        self.stats.skip(
            "long_documents_split",
            f"{source.name}: document {n} reached --max-doc-sentences {self.config.max_doc_sentences}; "
            "continuing it as a new document (is the document boundary right?)",
        )

    def _read_jsonl(self, source: Source, stream: BinaryIO) -> Iterator[Document | _Pending]:
        cfg = self.config
        field_name = cfg.text_field
        for lineno, raw in _iter_lines(stream, cfg.max_line_bytes, self.stats, source.name, cfg.strict):
            if raw is None:
                continue
            if not raw.strip():
                continue
            where = f"{source.name}:{lineno}"
            line = self.cleaner.decode(raw, where)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if cfg.strict:
                    raise InputError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
                self.stats.skip("malformed_json", f"{where}: malformed JSON line skipped ({e.msg}); --strict makes this an error")
                continue
            if not isinstance(record, dict):
                kind = _JSON_TYPES.get(type(record), type(record).__name__)
                if cfg.strict:
                    raise InputError(f"{where}: expected a JSON object, got {kind}")
                self.stats.skip("malformed_json", f"{where}: JSON line is {kind}, not an object, skipped")
                continue
            escaped = b"\\ud" in raw or b"\\uD" in raw  # only then can json.loads produce a lone surrogate
            text = record.get(field_name)
            if text is None and field_name not in record and isinstance(record.get("sentences"), list):
                # Our own `stream` output: already split into sentences.
                sentences = [
                    " ".join(self.cleaner.clean(self.cleaner.fix_surrogates(s, where) if escaped else s).split())
                    for s in record["sentences"]
                    if isinstance(s, str)
                ]
                sentences = [s for s in sentences if s]
            elif field_name not in record:
                keys = ", ".join(sorted(map(str, record))[:10])
                if cfg.strict:
                    raise InputError(f"{where}: no field {field_name!r} (fields: {keys}); set --text-field")
                self.stats.skip(
                    "missing_text_field",
                    f"{where}: record has no field {field_name!r}, skipped. Is --text-field correct? Available fields: {keys}",
                )
                continue
            elif not isinstance(text, str):
                if cfg.strict:
                    raise InputError(f"{where}: field {field_name!r} is {type(text).__name__}, not a string")
                self.stats.skip("non_string_text", f"{where}: field {field_name!r} is not a string, skipped")
                continue
            rid = record.get(cfg.id_field)
            doc_id = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else where
            if text is not None:
                yield _Pending(doc_id, self.cleaner.fix_surrogates(text, where) if escaped else text, source, where)
                continue
            yield from self._finish(doc_id, sentences, source, where)

    def read_parquet(self, source: Source) -> Iterator[Document | _Pending]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cfg = self.config
        if source.path == "-":
            raise InputError("parquet input cannot be read from stdin; pass the file path")
        if source.compression:
            raise InputError(f"{source.path}: parquet files are compressed inside; remove the {source.compression} layer")
        try:
            pf = pq.ParquetFile(source.path)
        except (pa.ArrowInvalid, OSError) as e:
            raise _FileError(f"{source.path}: not a readable Parquet file ({e})") from None
        names = pf.schema_arrow.names
        if cfg.text_column not in names:
            raise InputError(f"{source.path}: no column {cfg.text_column!r} (columns: {', '.join(names)}); set --text-column")
        columns = [cfg.text_column] + ([cfg.id_field] if cfg.id_field in names and cfg.id_field != cfg.text_column else [])
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=_parquet_batch_rows(pf.metadata, cfg.text_column), columns=columns):
                texts = batch.column(0).to_pylist()
                ids = batch.column(1).to_pylist() if batch.num_columns > 1 else [None] * len(texts)
                for text, rid in zip(texts, ids):
                    where = f"{source.path}:row {row}"
                    row += 1
                    if not isinstance(text, str):
                        if cfg.strict:
                            raise InputError(f"{where}: column {cfg.text_column!r} is not a string")
                        self.stats.skip("non_string_text", f"{where}: {cfg.text_column!r} is not a string, skipped")
                        continue
                    size = len(text.encode("utf-8"))
                    self.stats.bytes += size
                    if size > cfg.max_line_bytes:
                        if cfg.strict:
                            raise InputError(f"{where}: text longer than {cfg.max_line_bytes} bytes (--max-line-bytes)")
                        self.stats.skip("line_too_long", f"{where}: text longer than {cfg.max_line_bytes} bytes skipped")
                        continue
                    yield _Pending(str(rid) if rid is not None else where, text, source, where)
        except (pa.ArrowInvalid, OSError) as e:
            raise _FileError(f"{source.path}: corrupt Parquet data ({e})") from None


def _parquet_batch_rows(metadata: pq.FileMetaData, column: str) -> int:
    """Rows per Parquet read batch: about _BATCH_CHARS bytes of ``column`` on average (at most 256 rows).

    A fixed row count would hold 256 whole books at a time in a file of books.
    """
    size = rows = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        rows += group.num_rows
        for j in range(group.num_columns):
            if group.column(j).path_in_schema == column:
                size += group.column(j).total_uncompressed_size
    return max(1, min(256, rows * _BATCH_CHARS // max(size, 1)))


class _FileError(InputError):
    """A whole file is unusable (cannot open, corrupt, binary): fatal when the user
    named it, skipped and counted when it was found by walking a directory or glob."""


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
    for source in sources:
        names.append(source.name)
        stats.files += 1
        try:
            yield from _read_source(reader, source, stats, on_progress)
        except _FileError as e:
            if source.explicit:
                raise InputError(str(e)) from None
            stats.skip("unreadable_file", f"{e}; skipped")
    if require_documents and stats.documents == 0:
        skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items()))
        where = names[0] if len(names) == 1 else f"{len(names)} files"
        raise InputError(f"{where}: no documents found" + (f" (skipped: {skipped})" if skipped else " (the input is empty)"))


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


def _sniff_stdin_format(opened: _Opened) -> str:
    """JSON Lines when (decompressed) stdin starts with ``{``, else prose text."""
    stream = opened.stream
    head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    return "jsonl" if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{") else "text"


def iter_sentences(documents: Iterable[Document]) -> Iterator[str]:
    """Every sentence of every document (or document part), in order (the tokenizer trainer's input)."""
    for doc in documents:
        yield from doc.sentences
