"""Scanning one shard: counts and distributions, batch by batch in bounded memory.

A scan never raises for bad data: a corrupt or truncated file is a finding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from mlmcorpus import formats
from mlmcorpus.formats.base import ShardFormat
from mlmcorpus.manifest import ShardEntry
from mlmcorpus.report.corpus import CorpusParams
from mlmcorpus.report.verify import Rows, check_rows, check_schema

__all__ = ["ShardScan", "scan_shard", "MAX_FINDINGS_PER_CHECK"]

MAX_FINDINGS_PER_CHECK = 5


@dataclass
class ShardScan:
    """Counts and findings of one shard."""

    file: str
    rows: int = 0
    tokens: int = 0
    bytes: int = 0
    sha256: str = ""
    checksum: str = "not checked"  # "ok", "mismatch", "missing", "unreadable"
    length_hist: list[int] = field(default_factory=list)
    predictions_hist: list[int] = field(default_factory=list)
    nsp: list[int] = field(default_factory=lambda: [0, 0])
    kinds: list[int] = field(default_factory=lambda: [0, 0, 0])  # [MASK], random, unchanged
    candidates: int = 0
    run_tokens: int = 0  # masked pieces, counted in runs of adjacent ones (for grouped draws)
    run_sq: int = 0  # sum over those runs of their length squared
    findings: list[str] = field(default_factory=list)
    problems: dict[str, int] = field(default_factory=dict)

    def fail(self, check: str, message: str, rows: np.ndarray | None = None, offset: int = 0) -> None:
        """Record a violation; ``rows`` (indices within the batch) name where."""
        n = 1 if rows is None else int(len(rows))
        if n == 0:
            return
        before = self.problems.get(check, 0)
        self.problems[check] = before + n
        if rows is None:
            if before < MAX_FINDINGS_PER_CHECK:
                self.findings.append(f"{self.file}: {message}")
            return
        for r in rows[: max(0, MAX_FINDINGS_PER_CHECK - before)]:
            self.findings.append(f"{self.file}: row {offset + int(r)}: {message}")


def _shard_files(scan: ShardScan, out_dir: str, path: str, fmt: ShardFormat, columns: tuple[str, ...]) -> list[str] | None:
    """The regular files of a shard, all inside ``out_dir``; None (with a finding) when unusable."""
    import stat

    real_dir = os.path.realpath(out_dir)

    def regular_inside(f: str) -> bool:
        try:
            mode = os.stat(f).st_mode
        except OSError:
            return False
        return stat.S_ISREG(mode) and os.path.commonpath([os.path.realpath(f), real_dir]) == real_dir

    if not fmt.is_directory:
        if not regular_inside(path):
            scan.fail("unreadable", "not a regular file inside the output directory")
            return None
        return [path]
    if not os.path.isdir(path):
        scan.fail("unreadable", f"not a shard directory ({fmt.looks_like})")
        return None
    files = fmt.members(path, columns)
    bad = [os.path.basename(f) for f in files if not regular_inside(f)]
    if bad:
        scan.fail("unreadable", f"{', '.join(bad)}: missing, not a regular file, or outside the output directory")
        return None
    extra = sorted(set(os.listdir(path)) - {os.path.basename(f) for f in files})
    if extra:
        scan.fail("stray", f"unexpected files in the shard: {', '.join(extra)}")
    return files


def scan_shard(args: tuple[str, str, ShardEntry, CorpusParams, bool]) -> ShardScan:
    """Count and (with ``verify``) check one shard; never raises for bad data."""
    out_dir, fmt_name, entry, p, verify = args
    fmt = formats.get(fmt_name)
    name = entry.file
    path = os.path.join(out_dir, name)
    scan = ShardScan(name)
    scan.length_hist = [0] * (p.max_seq_length + 1)
    scan.predictions_hist = [0] * (p.max_predictions + 1)
    if not os.path.lexists(path):
        scan.checksum = "missing"
        scan.fail("missing", "listed in the manifest but missing")
        return scan
    files = _shard_files(scan, out_dir, path, fmt, p.columns)
    if files is None:
        scan.checksum = "unreadable"
        return scan
    try:
        scan.bytes = sum(os.path.getsize(f) for f in files)
        if verify:
            for key in ("sha256", "rows", "bytes"):
                if getattr(entry, key) is None:
                    scan.fail("manifest", f"the manifest gives no {key} for this shard")
        if verify or entry.sha256 is not None:
            _, scan.sha256, _ = fmt.checksum(path, p.columns)
            if entry.sha256 is not None:
                scan.checksum = "ok" if scan.sha256 == entry.sha256 else "mismatch"
                if scan.checksum == "mismatch":
                    scan.fail("checksum", f"sha256 {scan.sha256[:12]}… differs from the manifest's {entry.sha256[:12]}…")
            if entry.bytes is not None and entry.bytes != scan.bytes:
                scan.fail("bytes", f"{scan.bytes} bytes on disk, the manifest says {entry.bytes}")
        if verify and not check_schema(scan, path, fmt, p):
            return scan
        offset = 0
        batch_rows = max(64, (1 << 20) // p.max_seq_length)  # about 1M ids per column and batch
        for batch in fmt.iter_batches(path, p.columns, batch_rows):
            _scan_batch(scan, batch, p, verify, offset)
            offset += len(batch["input_ids"])
    except Exception as e:  # a corrupt or truncated file is a finding, not a traceback
        scan.checksum = "unreadable" if scan.checksum != "mismatch" else scan.checksum
        scan.fail("unreadable", f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        return scan
    if entry.rows is not None and entry.rows != scan.rows:
        scan.fail("rows", f"{scan.rows} rows, the manifest says {entry.rows}")
    if verify and entry.tokens is not None and entry.tokens != scan.tokens:
        scan.fail("tokens", f"{scan.tokens} tokens, the manifest says {entry.tokens}")
    return scan


def _scan_batch(scan: ShardScan, b: dict[str, np.ndarray], p: CorpusParams, verify: bool, offset: int) -> None:
    """Count one batch into ``scan``; with ``verify``, check its rows too."""
    if not p.masked:  # rows without predictions read as rows where nothing was chosen
        n, L = b["input_ids"].shape
        b = {**b, "labels": np.full((n, L), -100, dtype=np.int64),
             "masked_lm_positions": np.zeros((n, p.max_predictions), dtype=np.int32),
             "masked_lm_ids": np.zeros((n, p.max_predictions), dtype=np.int32)}
    ids = b["input_ids"].astype(np.int64)
    labels = b["labels"].astype(np.int64)
    am = b["attention_mask"].astype(np.int64)
    n, L = ids.shape
    if L != p.max_seq_length or b["masked_lm_positions"].shape[1] != p.max_predictions:
        raise ValueError(f"rows are {L} tokens / {b['masked_lm_positions'].shape[1]} predictions, "
                         f"the configuration says {p.max_seq_length} / {p.max_predictions}")
    lengths = am.sum(axis=1)
    masked = labels != -100
    k = masked.sum(axis=1)
    scan.rows += n
    scan.tokens += int(lengths.sum())
    scan.length_hist = (np.asarray(scan.length_hist) + np.bincount(np.clip(lengths, 0, p.max_seq_length), minlength=p.max_seq_length + 1)).tolist()
    scan.predictions_hist = (np.asarray(scan.predictions_hist) + np.bincount(np.clip(k, 0, p.max_predictions), minlength=p.max_predictions + 1)).tolist()
    nsp = b[p.label].astype(np.int64) if p.label is not None else np.zeros(n, dtype=np.int64)  # packed: no pair
    scan.nsp[0] += int((nsp == 0).sum())
    scan.nsp[1] += int((nsp == 1).sum())
    if p.known_specials:
        inp, orig = ids[masked], labels[masked]
        is_mask = (inp == p.mask) & (orig != p.mask)
        is_keep = (inp == orig) & ~is_mask
        scan.kinds[0] += int(is_mask.sum())
        scan.kinds[2] += int(is_keep.sum())
        scan.kinds[1] += int(len(inp) - is_mask.sum() - is_keep.sum())
    original = np.where(masked, labels, ids)
    cols = np.arange(L)[None, :]
    inside = cols < lengths[:, None]
    candidate = inside & ~np.isin(original, p.never_masked)
    scan.candidates += int(candidate.sum())
    if p.replace_per == "word":
        run_lengths = _run_lengths(masked)
        scan.run_tokens += int(run_lengths.sum())
        scan.run_sq += int((run_lengths**2).sum())
    if verify:
        check_rows(scan, b, Rows(ids, labels, am, lengths, masked, k, nsp, original, inside, candidate), p, offset)


def _run_lengths(masked: np.ndarray) -> np.ndarray:
    """Lengths of the runs of adjacent True values in each row of ``masked`` (bool[n, L])."""
    padded = np.zeros((masked.shape[0], masked.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = masked
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return (ends[1] - starts[1]).astype(np.int64)  # np.nonzero is row-major: starts and ends pair up
