"""``manifest.json``: what a build wrote, written last and atomically, read back as untrusted input.

A directory without a manifest is an incomplete build.  :func:`write_manifest`
is the only writer; :func:`read_manifest` the only reader (``inspect``, the
Python read API and resume go through it).  A manifest read back is untrusted: its
shard names must stay inside the output directory, its sizes are bounded before
anything is allocated from them, nothing is unpickled, and every malformed value
is a one-line :class:`~mlmcorpus.errors.InputError`.  What the manifest *claims*
(totals, per-shard rows and checksums) is checked against the shards by
``inspect --verify``, not here.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

from mlmcorpus import __version__, formats, outdir
from mlmcorpus.config import MAX_PREDICTIONS, MAX_SEQ_LENGTH, MIN_SEQ_LENGTH, BuildConfig
from mlmcorpus.errors import ConfigError, InputError, OutputError
from mlmcorpus.schema import FORMAT_VERSION, RowLayout

if TYPE_CHECKING:
    from mlmcorpus.tokenizers import Tokenizer, TokenizerSpec
    from mlmcorpus.units import StatsRecord

__all__ = ["Manifest", "ShardEntry", "Totals", "write_manifest", "read_manifest", "safe_join", "object_or_empty", "library_versions", "tokenizer_record"]

SPECIAL_ROLES = ("pad", "cls", "sep", "mask")
REQUIRED_MASK_KEYS = ("masked_lm_prob", "mask_ratios")


class Totals(TypedDict):
    """The manifest's claimed sums over its shards (``inspect --verify`` checks them)."""

    shards: int
    rows: int
    tokens: int
    bytes: int


@dataclass
class ShardEntry:
    """One shard as the manifest lists it; a manifest read back may lack any of the counts."""

    file: str
    rows: int | None
    tokens: int | None
    bytes: int | None = 0
    sha256: str | None = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"file": self.file}
        for key in ("rows", "tokens", "bytes", "sha256"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.files:
            d["files"] = self.files
        return d


@dataclass
class Manifest:
    """A built corpus: configuration, tokenizer, shards and statistics.

    ``config`` is the build's configuration; ``reader`` the reader options as recorded
    (None when the input came through a stage stream without them).  ``tokenizer`` is
    the tokenizer's record (kind, path, vocab_size, special_ids, sha256, …); ``stats``
    what the build counted (:meth:`mlmcorpus.units.BuildStats.as_dict`); ``totals``
    the claimed sums over the shards.
    """

    config: BuildConfig
    reader: dict[str, Any] | None
    sources: list[str]
    tokenizer: dict[str, Any]
    shards: list[ShardEntry]
    stats: StatsRecord
    totals: Totals
    versions: dict[str, str] = field(default_factory=dict)
    pairs_seed: int | None = None
    format_version: int = FORMAT_VERSION
    created_by: str = f"mlmcorpus {__version__}"
    #: The JSON object as read (None for a manifest made in this process): what it says, verbatim.
    raw: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer["vocab_size"])

    @property
    def special_ids(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.tokenizer["special_ids"].items()}

    @property
    def layout(self) -> RowLayout:
        return RowLayout.of(self.config, self.vocab_size)

    @property
    def format(self) -> str:
        return self.config.output.format

    def as_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order they have always been written."""
        d: dict[str, Any] = {"format_version": self.format_version, "created_by": self.created_by, "seed": self.seed}
        if self.pairs_seed is not None:
            d["pairs_seed"] = self.pairs_seed
        d.update(
            config={**self.config.as_dict(), "reader": self.reader},
            sources=self.sources,
            tokenizer=self.tokenizer,
            columns=self.layout.manifest_columns(),
            shards=[s.as_dict() for s in self.shards],
            totals=self.totals,
            stats=self.stats,
            versions=self.versions,
        )
        return d


def new_manifest(
    config: BuildConfig,
    *,
    reader: dict[str, Any] | None,
    sources: list[str],
    tokenizer: dict[str, Any],
    shards: list[ShardEntry],
    stats: StatsRecord,
    pairs_seed: int | None = None,
) -> Manifest:
    """The manifest of a build that just wrote ``shards``: totals and library versions filled in."""
    totals: Totals = {
        "shards": len(shards),
        "rows": sum(s.rows or 0 for s in shards),
        "tokens": sum(s.tokens or 0 for s in shards),
        "bytes": sum(s.bytes or 0 for s in shards),
    }
    return Manifest(config, reader, sources, tokenizer, shards, stats, totals, library_versions(), pairs_seed)


def tokenizer_record(tok: Tokenizer, spec: TokenizerSpec, trained: bool, out_dir: str | None = None) -> dict[str, Any]:
    """The manifest's tokenizer entry; the path is relative to ``out_dir`` when the file lives there."""
    info = tok.info()
    path = os.path.abspath(tok.path)
    if out_dir is not None and os.path.dirname(path) == os.path.abspath(out_dir):
        info["path"] = os.path.basename(path)
    else:
        info["path"] = path
    info["trained_by_build"] = trained
    if spec.lowercase is not None:
        info["lowercase_option"] = spec.lowercase
    return info


def write_manifest(out_dir: str, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically: the last file of a build.  If it cannot be written
    (a full disk), the shards it lists are removed too: without their manifest they are no build."""
    data = (json.dumps(manifest.as_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        outdir.atomic_write(outdir.manifest_path(out_dir), data)
    except OSError as e:
        for shard in manifest.shards:
            outdir.remove(os.path.join(out_dir, shard.file))
        raise OutputError(f"{out_dir}: cannot write {outdir.MANIFEST} ({e.strerror or e})") from None


def library_versions() -> dict[str, str]:
    import numpy as np
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


# ---------------------------------------------------------------- reading (untrusted)


def safe_join(out_dir: str, name: object) -> str:
    """A shard path from an (untrusted) manifest: a plain relative name inside ``out_dir``."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or "\\" in name:
        raise InputError(f"manifest.json: shard path {name!r} is not a relative path inside the output directory")
    parts = name.split("/")
    if ".." in parts:
        raise InputError(f"manifest.json: shard path {name!r} leaves the output directory")
    if any(p in ("", ".") for p in parts):
        raise InputError(f"manifest.json: shard path {name!r} is not a plain relative path")
    path = os.path.join(out_dir, name)
    real_dir = os.path.realpath(out_dir)
    if os.path.exists(path) and os.path.commonpath([os.path.realpath(path), real_dir]) != real_dir:
        raise InputError(f"manifest.json: shard path {name!r} points outside the output directory")
    return path


def _int(x: object, name: str, lo: int, hi: int) -> int:
    if type(x) is not int or not lo <= x <= hi:
        raise InputError(f"manifest.json: {name} is {x!r}, expected an integer in [{lo}, {hi}]")
    return x


def object_or_empty(x: object) -> dict[str, Any]:
    """``x`` when the manifest has an object there, else an empty one (a claim to check, not to trust)."""
    return x if isinstance(x, dict) else {}


def read_manifest(out_dir: str) -> Manifest:
    """Read and check ``out_dir/manifest.json``; every problem is a one-line :class:`InputError`."""
    path = outdir.manifest_path(out_dir)
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{out_dir}: no manifest.json (not an mlmcorpus output, or an incomplete build)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{path}: unreadable manifest ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(m, dict) or not isinstance(m.get("shards"), list):
        raise InputError(f"{path}: not an mlmcorpus manifest (no shard list)")
    version = m.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise InputError(f"{path}: format version {version!r}; this mlmcorpus reads version {FORMAT_VERSION}")
    for key in ("config", "tokenizer", "totals", "stats", "versions"):
        if key in m and not isinstance(m[key], dict):
            raise InputError(f"{path}: {key!r} is {type(m[key]).__name__}, not an object")
    for key in ("pairs", "mask", "units", "output"):
        if not isinstance((m.get("config") or {}).get(key), dict):
            raise InputError(f"{path}: config.{key} is missing or not an object")
    shards = [_shard_entry(path, out_dir, e) for e in m["shards"]]
    seen: set[str] = set()
    for s in shards:
        if s.file in seen:
            raise InputError(f"{path}: shard {s.file!r} is listed twice")
        seen.add(s.file)
    config, tokenizer = _config(m, path)
    pairs_seed = m.get("pairs_seed")
    return Manifest(
        config=config,
        reader=m["config"].get("reader") if isinstance(m["config"].get("reader"), dict) else None,
        sources=[s for s in m.get("sources", []) if isinstance(s, str)] if isinstance(m.get("sources"), list) else [],
        tokenizer=tokenizer,
        shards=shards,
        # Claims to check, not to trust: their shape is whatever the file holds.
        stats=cast("StatsRecord", object_or_empty(m.get("stats"))),
        totals=cast(Totals, object_or_empty(m.get("totals"))),
        versions=object_or_empty(m.get("versions")),
        pairs_seed=pairs_seed if type(pairs_seed) is int else None,
        format_version=version,
        created_by=str(m.get("created_by", "")),
        raw=m,
    )


def _shard_entry(path: str, out_dir: str, entry: object) -> ShardEntry:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: malformed shard entry {str(entry)[:80]!r}")
    name = entry.get("file")
    safe_join(out_dir, name)
    assert isinstance(name, str)
    for key in ("rows", "tokens", "bytes"):
        if key in entry and type(entry[key]) is not int:
            raise InputError(f"{path}: shard {name!r}: {key} is not an integer")
    sha = entry.get("sha256")
    return ShardEntry(
        file=name,
        rows=entry.get("rows"),
        tokens=entry.get("tokens"),
        bytes=entry.get("bytes"),
        sha256=sha if isinstance(sha, str) else (None if sha is None else str(sha)),
        files=object_or_empty(entry.get("files")),
    )


def _config(m: dict[str, Any], path: str) -> tuple[BuildConfig, dict[str, Any]]:
    """The build configuration and tokenizer record, sizes bounded before anything trusts them."""
    try:
        cfg, tok = m["config"], m["tokenizer"]
        _int(cfg["pairs"]["max_seq_length"], "config.pairs.max_seq_length", MIN_SEQ_LENGTH, MAX_SEQ_LENGTH)
        _int(cfg["mask"]["max_predictions_per_seq"], "config.mask.max_predictions_per_seq", 1, MAX_PREDICTIONS)
        for key in REQUIRED_MASK_KEYS:  # what --verify checks against: never a default
            if key not in cfg["mask"]:
                raise InputError(f"{path}: config.mask.{key} is missing")
        vocab = _int(tok["vocab_size"], "tokenizer.vocab_size", 6, 2**31 - 1)
        for role in SPECIAL_ROLES:
            _int(tok["special_ids"][role], f"tokenizer.special_ids.{role}", 0, vocab - 1)
        fmt = cfg["output"].get("format", formats.NAMES[0])
        if fmt not in formats.NAMES:
            raise InputError(f"{path}: unknown output format {fmt!r}")
        try:
            # Keys this version does not know are left out (a newer writer); values it knows are checked.
            config = BuildConfig.from_dict({**cfg, "seed": m.get("seed", cfg.get("seed", 0))}, ignore_unknown=True)
        except ConfigError as e:
            raise InputError(f"manifest.json: config: {e}") from None
        return config, tok
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise InputError(f"manifest.json: missing or malformed configuration ({type(e).__name__}: {e})") from None
