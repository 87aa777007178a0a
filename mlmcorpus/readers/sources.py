"""Which files to read: paths, directories, globs and stdin expanded into sources.

Format and compression are told from the file name before anything is opened, so a
missing file or a name that says nothing fails before a long build starts.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass

from mlmcorpus.errors import InputError

FORMATS = ("bert", "jsonl", "parquet", "text")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
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
_GLOB_CHARS = set("*?[")


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
