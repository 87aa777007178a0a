"""The output directory: every name in it, preparing it, cleaning up after a failure, atomic writes.

::

    OUT/
      manifest.json                 written last (atomic_write): a directory without it is incomplete
      train-00000-of-00012.parquet  the shards (for --format numpy, directories of .npy files)
      tokenizer.model .vocab .json  a tokenizer trained by the build
      .tmp-train-00000.parquet      a shard being written, renamed when every shard is sealed
      .tmp-shuffle/                 the shuffle's spill files and index, removed at the end
      .tmp-units/                   completion records of units and splits (mlmcorpus.resume)
      .tmp-lock                     held (flock) by the build writing here
      .tmp-manifest.json-1a2b3c4d   a file being written by atomic_write

The spill area's own files (one per worker, an index) are the shuffle's to name.  Everything
temporary starts with ``.tmp-``; ``--overwrite`` removes it with the shards and the
manifest, and keeps anything else (a tokenizer the new build may be reading).

(Named ``outdir`` rather than ``layout``: the row layout is another contract.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Iterator

from mlmcorpus.errors import ConfigError, OutputError

__all__ = [
    "MANIFEST",
    "atomic_write",
    "fsync_file",
    "lock",
    "manifest_path",
    "prepare",
    "remove",
    "remove_partial_shards",
    "shard_name",
    "spill_dir",
    "tmp_shard_path",
    "tmp_shard_suffix",
    "tokenizer_prefix",
    "units_dir",
    "written_by_a_build",
]

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"  # the prefix of a tokenizer trained by the build (.model, .vocab, .json)
SHARD_PREFIX = "train-"
TMP_PREFIX = ".tmp-"
TMP_SHARD_PREFIX = TMP_PREFIX + "train-"
SPILL_DIR = TMP_PREFIX + "shuffle"
UNITS_DIR = TMP_PREFIX + "units"
LOCK = TMP_PREFIX + "lock"


def manifest_path(out_dir: str) -> str:
    return os.path.join(out_dir, MANIFEST)


def tokenizer_prefix(out_dir: str) -> str:
    return os.path.join(out_dir, TOKENIZER)


def shard_name(index: int, total: int, suffix: str) -> str:
    """``train-00003-of-00012.parquet`` (``suffix`` "" for a NumPy shard directory)."""
    return f"{SHARD_PREFIX}{index:05d}-of-{total:05d}{suffix}"


def tmp_shard_path(out_dir: str, index: int, suffix: str) -> str:
    """Where shard ``index`` is written before it is sealed and renamed to its :func:`shard_name`."""
    return os.path.join(out_dir, f"{TMP_SHARD_PREFIX}{index:05d}{suffix}")


def tmp_shard_suffix(tmp_path: str) -> str:
    """The suffix a :func:`tmp_shard_path` was made with (after its index, of five digits or more)."""
    rest = os.path.basename(tmp_path)[len(TMP_SHARD_PREFIX) :]
    return rest[len(rest) - len(rest.lstrip("0123456789")) :]


def spill_dir(out_dir: str) -> str:
    return os.path.join(out_dir, SPILL_DIR)


def units_dir(out_dir: str) -> str:
    return os.path.join(out_dir, UNITS_DIR)


_SHARD_NAME = re.compile(r"train-\d{5}-of-\d{5}(\.[a-z]+)?$")


def _left_by_a_killed_build(name: str) -> bool:
    """What a build killed before its first record can leave: temporaries, shards by their exact
    names, the tokenizer it trained."""
    return written_by_a_build(name) or name.startswith(TOKENIZER + ".")


def written_by_a_build(name: str) -> bool:
    """Whether an entry of the output directory is a shard (by its exact name) or a temporary of ours."""
    return name.startswith(TMP_PREFIX) or bool(_SHARD_NAME.match(name))


def prepare(out_dir: str, overwrite: bool, resume: bool = False) -> bool:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite`` (then clear what a build
    writes) or ``resume``.  Returns whether an interrupted build's records are there to resume
    (its shards, finished or not, and its manifest are removed; its records and spill stay).

    ``resume`` without records goes ahead only where a killed build left nothing but its own
    leftovers (temporaries, shards without a manifest, its trained tokenizer): anything else
    is refused as a plain build refuses it.
    """
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other: --resume keeps an interrupted build's work, "
                          "--overwrite throws it away")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"{out_dir}: exists and is not a directory")
    entries = [n for n in os.listdir(out_dir) if n != LOCK] if os.path.isdir(out_dir) else []
    finished = os.path.exists(manifest_path(out_dir))
    resuming = resume and os.path.isdir(units_dir(out_dir))
    keep: tuple[str, ...] = (UNITS_DIR, SPILL_DIR, LOCK) if resuming else (LOCK,)
    if entries and not resuming and not overwrite:
        if resume and finished:
            raise OutputError(f"{out_dir}: holds a finished build, nothing to resume; pass --overwrite to rebuild it")
        leftovers = not finished and all(_left_by_a_killed_build(n) for n in entries)
        if not (resume and leftovers):
            hint = ("an interrupted build's work is there: pass --resume to continue it, or --overwrite to start over"
                    if leftovers else "pass --overwrite to replace it")
            raise OutputError(f"{out_dir}: output directory is not empty; {hint}")
    if entries:
        manifest = manifest_path(out_dir)
        if os.path.exists(manifest):
            os.unlink(manifest)  # first: a directory without a manifest is an incomplete build
        for name in os.listdir(out_dir):
            # Shards and temporaries only: a tokenizer trained by an earlier build may be the
            # --tokenizer of this one.
            if written_by_a_build(name) and name not in keep:
                try:
                    remove(os.path.join(out_dir, name), strict=True)
                except OSError as e:
                    raise OutputError(f"{out_dir}: cannot remove {name} for --overwrite ({e.strerror or e})") from None
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot create output directory ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"{out_dir}: output directory is not writable")
    return resuming


@contextlib.contextmanager
def lock(out_dir: str) -> Iterator[None]:
    """Hold ``OUT/.tmp-lock`` for the whole build: a second build into the same directory is
    refused with a one-line error.  An ``flock``, so the kernel releases it however the holder
    ends (SIGKILL included): a lock left by a dead build is never in the way."""
    import fcntl

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"{out_dir}: exists and is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot create output directory or its lock ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The holder before us may have removed the file between our open and our flock.
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise OutputError(f"{out_dir}: another build ({holder}) is writing there; wait for it or choose "
                              "another output directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        try:
            yield
        finally:
            try:
                os.unlink(path)  # before the unlock: a build opening it next gets a fresh file
            except OSError:
                pass
    finally:
        os.close(fd)


def remove(path: str, strict: bool = False) -> None:
    """A file or a directory (a NumPy shard, the spill area); gone already is fine.

    A directory that cannot be removed raises OSError with ``strict`` (--overwrite must not
    leave an old shard behind), and is left as it is otherwise (cleanup after a failure).
    """
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=not strict)
    elif os.path.lexists(path):
        os.unlink(path)


def remove_partial_shards(out_dir: str) -> None:
    """Delete every shard still under its temporary name (after a failure)."""
    for name in os.listdir(out_dir):
        if name.startswith(TMP_SHARD_PREFIX):
            remove(os.path.join(out_dir, name))


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a temporary beside it, fsync, rename.

    The temporary (``.tmp-NAME-HEX``) is removed on any failure; OSError propagates for the
    caller to name what it was writing.
    """
    tmp = os.path.join(os.path.dirname(path), f"{TMP_PREFIX}{os.path.basename(path)}-{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
