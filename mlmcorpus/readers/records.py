"""The record formats (BERT layout, plain text, JSON Lines, Parquet) read into documents.

Long documents are handed on in parts and pending texts are split in batches, both
bounded by characters, so that what the reader holds does not grow with document size.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, BinaryIO

from mlmcorpus.errors import InputError
from mlmcorpus.readers.cleaning import _iter_lines, _ProseSplitter
from mlmcorpus.readers.config import ReaderConfig
from mlmcorpus.readers.opening import _FileError, _is_read_error
from mlmcorpus.readers.sources import Source
from mlmcorpus.readers.stats import ReadStats

if TYPE_CHECKING:
    import pyarrow.parquet as pq

_JSON_TYPES = {type(None): "null", list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


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
    #: The split of the input plan it was read from: work units never span two splits.
    split: int = 0

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "sentences": self.sentences, "split": self.split}, ensure_ascii=False)


@dataclass(frozen=True)
class _Pending:
    """A document whose text still has to be cleaned and split into sentences (perhaps by a worker)."""

    doc_id: str
    text: str
    source: Source
    where: str
    split: int = 0


# A batch sent to a worker at a time: big enough to amortise the round trip.  It closes at
# _BATCH_CHARS characters of text, pending or already split, so that what waits in the
# batches in flight is bounded by characters whatever the format.
_BATCH_CHARS = 1 << 20
_BATCH_ITEMS = 512
# A document read from the BERT layout or plain text is handed on in parts of about this many
# characters: the reader never holds a whole book (or a whole file read as one document).
_PART_CHARS = 1 << 20


def split_texts(config: ReaderConfig, texts: list[str]) -> list[list[str]]:
    """Clean and split each text into sentences (what a worker does for :func:`iter_documents`)."""
    prose = _prose_splitter(config)
    return [prose.text_sentences(t) for t in texts]


@lru_cache(maxsize=8)
def _prose_splitter(config: ReaderConfig) -> _ProseSplitter:
    """One splitter per configuration and process: a plug-in splitter is loaded once."""
    return _ProseSplitter(config, ReadStats())


class _PartedDocument:
    """Document ``n`` of a source as it is read: handed on in parts of about _PART_CHARS characters."""

    def __init__(self, source: Source, prefix: str | None = None, split: int = 0):
        self.source = source
        self.prefix = f"{source.name}:" if prefix is None else prefix  # the id is prefix + n
        self.split = split
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
                yield Document(f"{self.prefix}{self.n}", self._held, self.source.name, more=True, split=self.split)
                self._held, self._chars = [], 0
            self._held.append(sentence)
            self._chars += len(sentence)
            self.count += 1

    def end(self) -> Document:
        """The document's last part; the next sentences start document ``n + 1``."""
        last = Document(f"{self.prefix}{self.n}", self._held, self.source.name, split=self.split)
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
        self.prose = _ProseSplitter(config, stats)
        self.cleaner = self.prose.cleaner
        self.split_map = split_map
        #: The split of the input plan being read (its documents' ``split``).
        self.split = 0

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
                    yield from self._finish(item.doc_id, next(split), item.source, item.where, item.split)
                else:
                    yield item
        if failed:
            raise failed[0]

    def _finish(self, doc_id: str, sentences: list[str], source: Source, where: str, split: int) -> Iterator[Document]:
        """A document's sentences as documents (split at the cap), or a counted skip when there are none."""
        if not sentences:
            self.stats.skip("empty_document", f"{where}: empty document skipped")
            return
        yield from self._capped(doc_id, sentences, source, split)

    def read(self, source: Source, stream: BinaryIO, fmt: str) -> Iterator[Document | _Pending]:
        lines = _iter_lines(stream, self.config.max_line_bytes, self.stats, source.name, self.config.strict)
        return self.read_lines(source, lines, fmt)

    def read_lines(
        self, source: Source, lines: Iterable[tuple[int, bytes | None]], fmt: str, at: str | None = None, doc_prefix: str | None = None
    ) -> Iterator[Document | _Pending]:
        """The documents of ``lines``, (n, bytes or None for a line over the cap), as :func:`_iter_lines` yields them.

        A line is named ``at + n`` in messages (by default ``name:lineno``) and a document of the
        BERT layout or plain text is ``doc_prefix + k`` (by default ``name:k``).  Reading a byte
        range of a file (:mod:`.splits`) passes byte offsets and its own prefixes.
        """
        at = f"{source.name}:" if at is None else at
        if fmt == "bert":
            yield from self._read_bert(source, lines, at, _PartedDocument(source, doc_prefix, self.split))
        elif fmt == "jsonl":
            yield from self._read_jsonl(source, lines, at)
        elif fmt == "text":
            yield from self._read_text(source, lines, at, _PartedDocument(source, doc_prefix, self.split))
        else:  # pragma: no cover - guarded by ReaderConfig/resolve_sources
            raise InputError(f"{source.name}: unknown format {fmt!r}")

    def bert_line(self, raw: bytes, where: str) -> str:
        """A line of the BERT layout as its reader takes it: decoded, cleaned, spaces collapsed ('' is blank)."""
        # Without the line break, a clean line is printable and clean() skips its search.
        return " ".join(self.cleaner.clean(self.cleaner.decode(raw.rstrip(b"\r\n"), where)).split())

    def is_blank(self, fmt: str, raw: bytes) -> bool:
        """Whether ``raw`` (a line within the cap, the BOM dropped at byte 0) is blank to the reader of ``fmt``.

        The very tests of ``_read_bert`` and ``_read_text``: a blank line ends a document there.
        """
        if fmt == "bert":
            return not self.bert_line(raw, "")
        return not self.cleaner.decode(raw, "").strip()

    def _read_bert(self, source: Source, lines: Iterable[tuple[int, bytes | None]], at: str, doc: _PartedDocument) -> Iterator[Document]:
        try:
            for lineno, raw in lines:
                if raw is None:
                    continue
                line = self.bert_line(raw, f"{at}{lineno}")
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

    def _read_text(self, source: Source, lines: Iterable[tuple[int, bytes | None]], at: str, doc: _PartedDocument) -> Iterator[Document]:
        cap = self.config.max_line_bytes
        per_file = self.config.doc_boundary == "file"
        para: list[str] = []
        para_bytes = 0


        def flush_para() -> Iterator[Document]:
            """The lines up to a blank line, into paragraphs by the one rule of text_sentences."""
            nonlocal para, para_bytes
            if para:
                yield from doc.add(self.prose.text_sentences("".join(para)))
            para, para_bytes = [], 0

        try:
            for lineno, raw in lines:
                if raw is None:
                    continue
                line = self.cleaner.decode(raw, f"{at}{lineno}")
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

    def _capped(self, doc_id: str, sentences: list[str], source: Source, split: int) -> Iterator[Document]:
        """One document, or consecutive parts of at most ``max_doc_sentences`` sentences."""
        cap = self.config.max_doc_sentences
        if len(sentences) <= cap:
            yield Document(doc_id, sentences, source.name, split=split)
            return
        for k in range(0, len(sentences), cap):
            if k:
                self._count_doc_split(source, doc_id)
            yield Document(f"{doc_id}#{k // cap}", sentences[k : k + cap], source.name, split=split)

    def _count_doc_split(self, source: Source, n: int | str) -> None:
        self.stats.skip(
            "long_documents_split",
            f"{source.name}: document {n} reached --max-doc-sentences {self.config.max_doc_sentences}; "
            "continuing it as a new document (is the document boundary right?)",
        )

    def _read_jsonl(self, source: Source, lines: Iterable[tuple[int, bytes | None]], at: str) -> Iterator[Document | _Pending]:
        cfg = self.config
        field_name = cfg.text_field
        for lineno, raw in lines:
            if raw is None:
                continue
            if not raw.strip():
                continue
            where = f"{at}{lineno}"
            line = self.cleaner.decode(raw, where)
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as e:
                # Also what json cannot hold: an integer over Python's digit limit, nesting deeper
                # than the recursion limit.
                why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else (
                    "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:120])
                if cfg.strict:
                    raise InputError(f"{where}: malformed JSON ({why})") from None
                self.stats.skip("malformed_json", f"{where}: malformed JSON line skipped ({why}); --strict makes this an error")
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
                yield _Pending(doc_id, self.cleaner.fix_surrogates(text, where) if escaped else text, source, where, self.split)
                continue
            # Our own `stream` output keeps the split it was read from, so that `stream | pairs`
            # cuts the units `build` cuts.
            split = record.get("split")
            yield from self._finish(doc_id, sentences, source, where,
                                    split if type(split) is int and 0 <= split < 1 << 30 else self.split)

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
                    yield _Pending(str(rid) if rid is not None else where, text, source, where, self.split)
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
