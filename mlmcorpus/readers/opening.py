"""Opening a source as decompressed bytes, and telling when a file is unusable.

Compression is taken from the name, or sniffed from the magic bytes where the name
says nothing (stdin, pipes); a binary file and a corrupt or truncated stream are
reported as the file's fault, not as a crash.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
import zlib
from typing import BinaryIO

from mlmcorpus.errors import InputError
from mlmcorpus.readers.sources import Source, _is_stream

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_SNIFF_BYTES = 8192


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
            if sys.stdin is None or getattr(sys.stdin, "buffer", None) is None:
                raise InputError("stdin: cannot read, stdin is closed")
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


def _sniff_stdin_format(opened: _Opened) -> str:
    """JSON Lines when (decompressed) stdin starts with ``{``, else prose text."""
    stream = opened.stream
    head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    return "jsonl" if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{") else "text"


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


class _FileError(InputError):
    """A whole file is unusable (cannot open, corrupt, binary): fatal when the user
    named it, skipped and counted when it was found by walking a directory or glob."""
