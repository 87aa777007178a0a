"""What `mlmcorpus inspect` shows and checks about a built corpus.

:func:`inspect_corpus` reads ``manifest.json`` (untrusted input: paths must
stay inside the output directory, nothing is unpickled), then scans every
shard batch by batch in bounded memory — in parallel with ``workers`` — and
gathers distributions (sequence lengths, predictions per row, NSP labels,
[MASK]/random/unchanged) and, with ``verify``, every violation of the layout
and the masking policy, by shard and row.  The corpus-wide 80/10/10 split is
tested with a chi-square goodness-of-fit test at :data:`ALPHA`.
:func:`render` draws the report with rich; :func:`render_samples` decodes rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlmcorpus import formats, outdir
from mlmcorpus.errors import InputError
from mlmcorpus.formats.base import ShardFormat
from mlmcorpus.hashing import sha256_file as _sha256
from mlmcorpus.manifest import Manifest, ShardEntry, read_manifest
from mlmcorpus.schema import COLUMNS, RowLayout

__all__ = [
    "ALPHA",
    "CorpusParams",
    "ShardScan",
    "open_corpus",
    "scan_shard",
    "inspect_corpus",
    "chi_square",
    "render",
    "render_samples",
]

#: Significance of the statistical checks: a clean corpus fails with probability 1e-4.
ALPHA = 1e-4
MAX_FINDINGS_PER_CHECK = 5


@dataclass(frozen=True)
class CorpusParams:
    """Everything a shard scan needs to know, taken from the manifest (or the shard's schema)."""

    max_seq_length: int
    max_predictions: int
    vocab_size: int | None
    pad: int = 0
    cls: int = 2
    sep: int = 3
    mask: int = 4
    masked_lm_prob: float = 0.15
    mask_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    random_next_prob: float = 0.5
    known_specials: bool = True  # False for a lone shard without a manifest

    @property
    def never_masked(self) -> list[int]:
        return [self.pad, self.cls, self.sep, self.mask]


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


# ---------------------------------------------------------------- opening a corpus


@dataclass
class Corpus:
    """An output directory (or one shard) opened for inspection."""

    out_dir: str
    manifest: Manifest | None
    shards: list[ShardEntry]
    format: ShardFormat
    params: CorpusParams
    only_shard: str | None = None


def _params_from_manifest(m: Manifest) -> CorpusParams:
    """What a scan checks against, from a manifest :func:`read_manifest` has bounded."""
    c, sp = m.config, m.special_ids
    return CorpusParams(
        max_seq_length=c.pairs.max_seq_length,
        max_predictions=c.mask.max_predictions_per_seq,
        vocab_size=m.vocab_size,
        pad=sp["pad"],
        cls=sp["cls"],
        sep=sp["sep"],
        mask=sp["mask"],
        masked_lm_prob=c.mask.masked_lm_prob,
        mask_ratios=c.mask.mask_ratios,
        random_next_prob=c.pairs.random_next_prob,
    )


def open_corpus(path: str) -> Corpus:
    """Open an output directory, or a lone shard of any format."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    if os.path.isdir(path) and os.path.exists(outdir.manifest_path(path)):
        m = read_manifest(path)
        return Corpus(path, m, m.shards, formats.get(m.format), _params_from_manifest(m))
    # A single shard: use the manifest next to it when it lists the shard.
    shard_dir, name = os.path.split(os.path.normpath(path))
    fmt = formats.detect(path)
    if fmt is None:
        raise InputError(f"{path}: not an output directory (no manifest.json) nor a shard ({', '.join(formats.NAMES)})")
    shard_dir = shard_dir or "."
    if os.path.exists(outdir.manifest_path(shard_dir)):
        m = read_manifest(shard_dir)
        entries = [e for e in m.shards if e.file == name]
        if entries:
            return Corpus(shard_dir, m, entries, fmt, _params_from_manifest(m), only_shard=name)
    return Corpus(shard_dir, None, [ShardEntry(name, None, None, None, None)], fmt, _params_from_schema(path, fmt), only_shard=name)


def _params_from_schema(path: str, fmt: ShardFormat) -> CorpusParams:
    try:
        L, P = fmt.sizes(path)
    except Exception as e:
        raise InputError(f"{path}: not a readable mlmcorpus shard ({e})") from None
    if not (8 <= int(L) <= 32768 and 1 <= int(P) <= 32768):
        raise InputError(f"{path}: not an mlmcorpus shard (row length {L}, predictions {P})")
    return CorpusParams(max_seq_length=int(L), max_predictions=int(P), vocab_size=None, known_specials=False)


# ---------------------------------------------------------------- scanning a shard


def _check_schema(scan: ShardScan, path: str, fmt: ShardFormat, p: CorpusParams) -> bool:
    """Whether the shard's columns have the types of the manifest's layout."""
    if p.vocab_size is None:
        return True
    problems = fmt.schema_problems(path, RowLayout(p.max_seq_length, p.max_predictions, p.vocab_size))
    for problem in problems:
        scan.fail("schema", problem)
    return not problems


def _shard_files(scan: ShardScan, out_dir: str, path: str, fmt: ShardFormat) -> list[str] | None:
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
        scan.fail("unreadable", f"not a {fmt.name} shard directory")
        return None
    files = fmt.members(path)
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
    files = _shard_files(scan, out_dir, path, fmt)
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
            _, scan.sha256, _ = fmt.checksum(path)
            if entry.sha256 is not None:
                scan.checksum = "ok" if scan.sha256 == entry.sha256 else "mismatch"
                if scan.checksum == "mismatch":
                    scan.fail("checksum", f"sha256 {scan.sha256[:12]}… differs from the manifest's {entry.sha256[:12]}…")
            if entry.bytes is not None and entry.bytes != scan.bytes:
                scan.fail("bytes", f"{scan.bytes} bytes on disk, the manifest says {entry.bytes}")
        if verify and not _check_schema(scan, path, fmt, p):
            return scan
        offset = 0
        batch_rows = max(64, (1 << 20) // p.max_seq_length)  # about 1M ids per column and batch
        for batch in fmt.iter_batches(path, COLUMNS, batch_rows):
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
    nsp = b["next_sentence_label"].astype(np.int64)
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
    if not verify:
        return

    def rows_where(bad: np.ndarray | np.bool_) -> np.ndarray:
        return np.flatnonzero(bad)

    scan.fail("attention_mask", "attention_mask is not 1 on the tokens and 0 on the padding",
              rows_where((am != inside).any(axis=1)), offset)
    scan.fail("length", "fewer than 5 tokens ([CLS] A [SEP] B [SEP])", rows_where(lengths < 5), offset)
    if p.vocab_size is not None:
        scan.fail("vocab", f"token id >= vocab size {p.vocab_size}", rows_where((ids >= p.vocab_size).any(axis=1) | (ids < 0).any(axis=1)), offset)
        scan.fail("vocab", f"label id >= vocab size {p.vocab_size}", rows_where((masked & ((labels >= p.vocab_size) | (labels < 0))).any(axis=1)), offset)
    rows = np.arange(n)
    last = np.clip(lengths - 1, 0, L - 1)
    scan.fail("layout", "does not start with [CLS]", rows_where(original[:, 0] != p.cls), offset)
    scan.fail("layout", "does not end with [SEP]", rows_where(original[rows, last] != p.sep), offset)
    seps = (original == p.sep) & inside
    scan.fail("layout", "not exactly two [SEP] ([CLS] A [SEP] B [SEP])", rows_where(seps.sum(axis=1) != 2), offset)
    scan.fail("layout", "padding is not [PAD]", rows_where(((ids != p.pad) & ~inside).any(axis=1)), offset)
    first_sep = np.where(seps.any(axis=1), seps.argmax(axis=1), 0)
    # The input itself: [CLS]/[SEP]/[PAD] only where the layout puts them, [MASK] only where masked.
    layout = (cols == 0) | (cols == first_sep[:, None]) | (cols == last[:, None])
    scan.fail("input_ids", "[CLS], [SEP] or [PAD] inside the text",
              rows_where((inside & ~layout & np.isin(ids, [p.cls, p.sep, p.pad])).any(axis=1)), offset)
    scan.fail("input_ids", "[MASK] at a position that is not masked", rows_where((~masked & (ids == p.mask)).any(axis=1)), offset)
    scan.fail("input_ids", "a layout token ([CLS]/[SEP]) was replaced", rows_where((layout & inside & (ids != original)).any(axis=1)), offset)
    scan.fail("layout", "segment A or B is empty", rows_where((first_sep < 2) | (first_sep > lengths - 3)), offset)
    expected_tt = (cols > first_sep[:, None]) & inside
    scan.fail("token_type_ids", "token_type_ids are not 0 through the first [SEP] and 1 for B",
              rows_where((b["token_type_ids"].astype(np.int64) != expected_tt).any(axis=1)), offset)
    scan.fail("labels", "a label outside the text (padding) is not -100", rows_where((masked & ~inside).any(axis=1)), offset)
    scan.fail("labels", "a special token ([CLS]/[SEP]/[PAD]/[MASK]) is masked",
              rows_where((masked & np.isin(original, p.never_masked)).any(axis=1)), offset)
    predicted = np.minimum(p.max_predictions, np.maximum(1, np.rint(lengths * p.masked_lm_prob).astype(np.int64)))
    predicted = np.minimum(predicted, candidate.sum(axis=1))
    scan.fail("predictions", "number of masked positions does not follow min(max_pred, max(1, round(len * prob)))",
              rows_where(k != predicted), offset)
    # Positions and ids: the masked positions in ascending order, then zeros.
    P = p.max_predictions
    expected_pos = np.sort(np.where(masked, cols, L), axis=1)[:, :P] if L >= P else np.pad(np.sort(np.where(masked, cols, L), axis=1), ((0, 0), (0, P - L)), constant_values=L)
    valid = expected_pos < L
    pos = b["masked_lm_positions"].astype(np.int64)
    expected_pos_out = np.where(valid, expected_pos, 0)
    scan.fail("masked_lm_positions", "masked_lm_positions do not list the masked positions",
              rows_where((pos != expected_pos_out).any(axis=1)), offset)
    gathered = np.where(valid, np.take_along_axis(labels, np.clip(expected_pos, 0, L - 1), axis=1), 0)
    scan.fail("masked_lm_ids", "masked_lm_ids are not the original ids at those positions",
              rows_where((b["masked_lm_ids"].astype(np.int64) != gathered).any(axis=1)), offset)
    scan.fail("next_sentence_label", "next_sentence_label is not 0 or 1", rows_where((nsp != 0) & (nsp != 1)), offset)


# ---------------------------------------------------------------- the whole corpus


def chi_square(observed: list[int], probabilities: list[float]) -> tuple[float, int, float]:
    """Goodness of fit: (statistic, degrees of freedom, p-value), exact for df 1 and 2.

    Categories with probability 0 must be empty (else p = 0).
    """
    total = sum(observed)
    if total == 0:
        return 0.0, 0, 1.0
    stat, df = 0.0, -1
    for o, pr in zip(observed, probabilities):
        if pr <= 0:
            if o:
                return math.inf, 0, 0.0
            continue
        e = total * pr
        stat += (o - e) ** 2 / e
        df += 1
    if total == 0 or df <= 0:
        return 0.0, max(df, 0), 1.0
    if df == 1:
        return stat, 1, math.erfc(math.sqrt(stat / 2))
    if df == 2:
        return stat, 2, math.exp(-stat / 2)
    # Wilson-Hilferty for larger df (not needed for three categories).
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return stat, df, 0.5 * math.erfc(z / math.sqrt(2))


def _expected_kinds(p: CorpusParams) -> list[float]:
    """P([MASK]), P(random), P(unchanged) as seen in the data: a random draw equal to the
    original token looks unchanged (about 1 / vocabulary size of the random share)."""
    r_mask, r_random, r_keep = p.mask_ratios
    q = 1.0 / max((p.vocab_size or 30000) - 5, 1)
    return [r_mask, r_random * (1 - q), r_keep + r_random * q]


def _merge(scans: list[ShardScan], p: CorpusParams) -> dict:
    length = np.zeros(p.max_seq_length + 1, dtype=np.int64)
    preds = np.zeros(p.max_predictions + 1, dtype=np.int64)
    nsp = np.zeros(2, dtype=np.int64)
    kinds = np.zeros(3, dtype=np.int64)
    for s in scans:
        if s.length_hist:
            length += np.asarray(s.length_hist)
            preds += np.asarray(s.predictions_hist)
        nsp += np.asarray(s.nsp)
        kinds += np.asarray(s.kinds)
    return {"length": length, "predictions": preds, "nsp": nsp, "kinds": kinds}


def inspect_corpus(path: str, verify: bool = False, workers: int = 1) -> dict:
    """Scan (and verify) a corpus; returns the report as a JSON-able dict.

    ``report["verify"]["passed"]`` is the verdict when ``verify`` is set.
    """
    from mlmcorpus.engines.local import map_ordered

    corpus = open_corpus(path)
    if verify and corpus.manifest is None:
        raise InputError(f"{path}: --verify needs the manifest.json the shard was built with (special ids, vocabulary)")
    p = corpus.params
    jobs = [(corpus.out_dir, corpus.format.name, e, p, verify) for e in corpus.shards]
    scans = list(map_ordered(scan_shard, jobs, min(workers, max(len(jobs), 1))))
    merged = _merge(scans, p)
    rows = int(sum(s.rows for s in scans))
    kinds = merged["kinds"].tolist()
    masked_total = int(sum(kinds))
    candidates = int(sum(s.candidates for s in scans))
    expected = _expected_kinds(p)
    stat, df, pvalue = chi_square(kinds, expected)
    m = corpus.manifest.as_dict() if corpus.manifest is not None else {}
    report: dict[str, Any] = {
        "path": path,
        "manifest": corpus.manifest is not None,
        "format": corpus.format.name,
        "summary": {
            "shards": len(scans),
            "rows": rows,
            "tokens": int(sum(s.tokens for s in scans)),
            "bytes_on_disk": int(sum(s.bytes for s in scans)),
        },
        "seed": m.get("seed"),
        "config": m.get("config"),
        "tokenizer": m.get("tokenizer"),
        "versions": m.get("versions"),
        "stats": m.get("stats"),
        "distributions": {
            "sequence_length": _sparse(merged["length"]),
            "masked_per_sequence": _sparse(merged["predictions"]),
            "nsp": {"actual_next": int(merged["nsp"][0]), "random_next": int(merged["nsp"][1]),
                    "random_ratio": round(float(merged["nsp"][1]) / rows, 6) if rows else None,
                    "expected_random_ratio": p.random_next_prob},
            "masked": {
                "total": masked_total,
                "mask": kinds[0], "random": kinds[1], "keep": kinds[2],
                "observed_ratios": [round(x / masked_total, 6) for x in kinds] if masked_total else None,
                "expected_ratios": list(p.mask_ratios),
                "mask_rate": round(masked_total / candidates, 6) if candidates else None,
                "masked_lm_prob": p.masked_lm_prob,
            },
        },
        "shards": [
            {"file": s.file, "rows": s.rows, "tokens": s.tokens, "bytes": s.bytes, "checksum": s.checksum}
            for s in scans
        ],
    }
    if verify:
        findings: list[str] = []
        problems: dict[str, int] = {}
        for s in scans:
            findings.extend(s.findings)
            for key, n in s.problems.items():
                problems[key] = problems.get(key, 0) + n
        if corpus.only_shard is None:
            _corpus_checks(corpus, scans, merged, findings, problems)
        ratio_ok = pvalue >= ALPHA
        if not ratio_ok:
            problems["mask_ratios"] = 1
            observed = ", ".join(f"{x / masked_total:.4f}" for x in kinds) if masked_total else "-"
            findings.append(
                f"corpus: [MASK]/random/unchanged split {observed} does not fit the configured "
                f"{'/'.join(f'{r:g}' for r in p.mask_ratios)} (chi-square {stat:.1f}, df {df}, p = {pvalue:.2g} < {ALPHA:g})"
            )
        report["verify"] = {
            "passed": not problems,
            "problems": problems,
            "findings": findings,
            "mask_ratio_test": {
                "chi_square": round(stat, 4) if math.isfinite(stat) else None,
                "df": df,
                "p_value": pvalue,
                "alpha": ALPHA,
                "passed": ratio_ok,
            },
        }
    return report


def _sparse(hist: np.ndarray) -> dict[str, int]:
    return {str(i): int(c) for i, c in enumerate(hist) if c}


def _dict(x: object) -> dict:
    """``x`` when the (untrusted) manifest has an object there, else an empty one."""
    return x if isinstance(x, dict) else {}


def _corpus_checks(corpus: Corpus, scans: list[ShardScan], merged: dict, findings: list[str], problems: dict) -> None:
    """Stray files and the manifest's totals and stats against what the shards hold."""

    def fail(key: str, message: str) -> None:
        problems[key] = problems.get(key, 0) + 1
        findings.append(message)

    assert corpus.manifest is not None
    listed = {e.file for e in corpus.shards}
    for name in sorted(os.listdir(corpus.out_dir)):
        if outdir.written_by_a_build(name) and name not in listed:
            fail("stray", f"{name}: shard or temporary file not listed in the manifest")
    m = corpus.manifest
    totals = m.totals
    stats = m.stats
    nsp = _dict(stats.get("nsp"))
    masked = _dict(stats.get("masked_positions"))
    kinds = merged["kinds"]
    found = {
        ("totals", "shards"): len(scans),
        ("totals", "rows"): sum(s.rows for s in scans),
        ("totals", "tokens"): sum(s.tokens for s in scans),
        ("totals", "bytes"): sum(s.bytes for s in scans),
        ("stats", "instances"): sum(s.rows for s in scans),
        ("stats.nsp", "random_next"): int(merged["nsp"][1]),
        ("stats.nsp", "actual_next"): int(merged["nsp"][0]),
        ("stats.masked_positions", "total"): int(kinds.sum()),
        ("stats.masked_positions", "mask"): int(kinds[0]),
        # A random draw can hit the original token and then looks unchanged: compare the sum.
        ("stats.masked_positions", "random+keep"): int(kinds[1] + kinds[2]),
    }
    sections = {"totals": totals, "stats": stats, "stats.nsp": nsp, "stats.masked_positions": masked}
    for (section, key), value in found.items():
        d = sections[section]
        claimed = d.get("random", 0) + d.get("keep", 0) if key == "random+keep" and "random" in d else d.get(key)
        if claimed is None:
            fail("manifest", f"manifest.json: {section}.{key} is missing")
        elif claimed != value:
            fail("manifest", f"manifest.json: {section}.{key} is {claimed}, the shards hold {value}")
    tok = m.tokenizer
    path = tok.get("path")
    if isinstance(path, str):
        for candidate in (os.path.join(corpus.out_dir, path), path):
            if os.path.isfile(candidate):
                if _sha256(candidate) != tok.get("sha256"):
                    fail("tokenizer", f"{candidate}: the tokenizer file differs from the one the corpus was built with (sha256)")
                break


# ---------------------------------------------------------------- rendering


def _bar(value: float, peak: float, width: int = 40) -> str:
    if peak <= 0:
        return ""
    full = value / peak * width
    blocks = " ▏▎▍▌▋▊▉█"
    whole = int(full)
    part = int((full - whole) * 8)
    return "█" * whole + (blocks[part] if part and whole < width else "")


def _histogram(console: Any, title: str, hist: dict[str, int], buckets: int = 16) -> None:
    from rich.table import Table

    items = sorted((int(k), v) for k, v in hist.items())
    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    if not items:
        console.print(table)
        return
    lo, hi = items[0][0], items[-1][0]
    if hi - lo + 1 <= buckets * 1.5:
        rows = [(str(i), hist.get(str(i), 0)) for i in range(lo, hi + 1)]
    else:
        step = math.ceil((hi - lo + 1) / buckets)
        rows = []
        for start in range(lo, hi + 1, step):
            rows.append((f"{start}–{min(start + step - 1, hi)}", sum(v for k, v in items if start <= k < start + step)))
    peak = max(c for _, c in rows)
    for label, count in rows:
        table.add_row(label, f"[cyan]{_bar(count, peak)}[/]", f"{count:,}")
    console.print(table)


def _share_table(console: Any, title: str, first: str, colour: str, rows: list[tuple[str, int, float]]) -> None:
    """label | bar | count | observed share | expected share."""
    from rich.table import Table

    total = sum(count for _, count, _ in rows) or 1
    t = Table(title=title, box=None, padding=(0, 1))
    t.add_column(first)
    t.add_column("")
    for col in ("count", "share", "expected"):
        t.add_column(col, justify="right")
    for label, count, expected in rows:
        t.add_row(label, f"[{colour}]{_bar(count, total, 30)}[/]", f"{count:,}", f"{count / total:.1%}", f"{expected:.0%}")
    console.print(t)


def render(report: dict, console: Any) -> None:
    """Draw the report on a rich console (stderr or stdout)."""
    from rich.panel import Panel
    from rich.table import Table

    s = report["summary"]
    cfg = report.get("config") or {}
    tok = report.get("tokenizer") or {}
    lines = [
        f"[bold]{report['path']}[/]  {s['shards']} shard(s), {s['rows']:,} rows, {s['tokens']:,} tokens, "
        f"{s['bytes_on_disk'] / 1e6:,.1f} MB on disk ({report['format']})",
    ]
    if report.get("manifest"):
        pairs, mask, units = cfg.get("pairs", {}), cfg.get("mask", {}), cfg.get("units", {})
        lines.append(
            f"seed {report.get('seed')} · max_seq_length {pairs.get('max_seq_length')} · dupe_factor {pairs.get('dupe_factor')} · "
            f"short_seq_prob {pairs.get('short_seq_prob')} · masked_lm_prob {mask.get('masked_lm_prob')} · "
            f"max_predictions {mask.get('max_predictions_per_seq')} · ratios {mask.get('mask_ratios')} · pool_docs {units.get('pool_docs')}"
        )
        lines.append(
            f"tokenizer {tok.get('kind')} {tok.get('path')} · vocab {tok.get('vocab_size'):,} · sha256 {str(tok.get('sha256'))[:16]}…"
        )
        versions = report.get("versions") or {}
        lines.append("versions " + " · ".join(f"{k} {v}" for k, v in versions.items()))
    else:
        lines.append("[yellow]no manifest: configuration unknown; checks limited to the shard itself[/]")
    console.print(Panel("\n".join(lines), title="mlmcorpus corpus", expand=False))

    d = report["distributions"]
    _histogram(console, "sequence length (tokens)", d["sequence_length"])
    _histogram(console, "masked positions per sequence", d["masked_per_sequence"])
    nsp = d["nsp"]
    exp_random = nsp.get("expected_random_ratio", 0.5)
    _share_table(console, "next sentence label", "label", "green",
                 [("0 actual next", nsp["actual_next"], 1 - exp_random), ("1 random", nsp["random_next"], exp_random)])
    mk = d["masked"]
    if not report.get("manifest"):
        console.print(f"masked positions: {sum(int(k) * v for k, v in d['masked_per_sequence'].items()):,} "
                      "(split into [MASK]/random/unchanged unknown without the manifest's special ids)")
    _share_table(console, "masked positions", "becomes", "magenta",
                 list(zip(("[MASK]", "random token", "unchanged"), (mk["mask"], mk["random"], mk["keep"]), mk["expected_ratios"])))
    if mk.get("mask_rate") is not None:
        console.print(f"mask rate {mk['mask_rate']:.2%} of maskable tokens (masked_lm_prob {mk['masked_lm_prob']}, "
                      "capped by max_predictions_per_seq)")

    t = Table(title="shards")
    for col in ("file", "rows", "tokens", "size", "checksum"):
        t.add_column(col, justify="right" if col in ("rows", "tokens", "size") else "left")
    style = {"ok": "[green]ok[/]", "mismatch": "[red]MISMATCH[/]", "missing": "[red]MISSING[/]", "unreadable": "[red]UNREADABLE[/]"}
    for sh in report["shards"]:
        t.add_row(sh["file"], f"{sh['rows']:,}", f"{sh['tokens']:,}", f"{sh['bytes'] / 1e6:,.1f} MB",
                  style.get(sh["checksum"], sh["checksum"]))
    console.print(t)
    v = report.get("verify")
    if v is not None:
        test = v["mask_ratio_test"]
        chi = "inf" if test["chi_square"] is None else f"{test['chi_square']:.2f}"
        console.print(f"mask split chi-square {chi} (df {test['df']}), p = {test['p_value']:.3g}, "
                      f"alpha {test['alpha']:g}: {'ok' if test['passed'] else 'FAIL'}")
        if v["passed"]:
            console.print("[bold green]verify: PASSED[/] — checksums, schema, every row and the corpus statistics")
        else:
            console.print(f"[bold red]verify: FAILED[/] — {', '.join(f'{k} {n:,}' for k, n in sorted(v['problems'].items()))}")
            for f in v["findings"]:
                console.print(f"  {f}", markup=False, highlight=False, soft_wrap=True)


def render_samples(corpus_path: str, n: int, shard_index: int, console: Any, tokenizer_path: str | None = None) -> None:
    """Print ``n`` decoded rows of shard ``shard_index``: A and B told apart, masked tokens as ⟦original→replacement⟧."""
    from rich.text import Text

    from mlmcorpus.tokenizers import load_tokenizer

    corpus = open_corpus(corpus_path)
    if not 0 <= shard_index < len(corpus.shards):
        raise InputError(f"--shard {shard_index}: the corpus has {len(corpus.shards)} shard(s) (0..{len(corpus.shards) - 1})")
    tok = None
    tok_info = corpus.manifest.tokenizer if corpus.manifest is not None else {}
    candidates = [tokenizer_path] if tokenizer_path else []
    if tok_info.get("path"):
        candidates += [os.path.join(corpus.out_dir, tok_info["path"]), tok_info["path"]]
    for c in candidates:
        if isinstance(c, str) and os.path.isfile(c):
            tok = load_tokenizer(c, add_special_tokens=bool(tok_info.get("added_special_tokens")))
            break
    if tok is None:
        raise InputError("cannot find the corpus's tokenizer; pass --tokenizer PATH to decode samples")
    if tok_info.get("sha256") and tok.sha256 != tok_info.get("sha256"):
        raise InputError(f"{tok.path}: not the tokenizer this corpus was built with (sha256 differs from the manifest)")
    if corpus.params.vocab_size is not None and tok.vocab_size < corpus.params.vocab_size:
        raise InputError(f"{tok.path}: vocabulary of {tok.vocab_size} is smaller than the corpus's {corpus.params.vocab_size}")
    p = corpus.params
    path = os.path.join(corpus.out_dir, corpus.shards[shard_index].file)
    shown = 0
    starts = tok.word_start_mask()
    try:
        batches = list(_iter_first(path, corpus.format, n))
    except Exception as e:
        raise InputError(f"{path}: cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    for batch in batches:
        for r in range(len(batch["input_ids"])):
            if shown >= n:
                return
            ids = batch["input_ids"][r].astype(np.int64)
            labels = batch["labels"][r].astype(np.int64)
            tt = batch["token_type_ids"][r]
            length = int(batch["attention_mask"][r].sum())
            nsp = int(batch["next_sentence_label"][r])
            text = Text()
            text.append(f"#{shown} shard {shard_index} row {r} · {'random next' if nsp else 'actual next'} · "
                        f"{length} tokens · {int((labels != -100).sum())} masked\n", style="bold")
            after_special = False
            for j in range(length):
                i = int(ids[j])
                if i in (p.cls, p.sep):
                    text.append(" [CLS]" if i == p.cls else " [SEP]", style="dim")
                    after_special = True
                    continue
                original = int(labels[j]) if labels[j] != -100 else i
                piece = _display_piece(tok.id_to_piece(original))
                space = " " if (after_special or original >= len(starts) or starts[original]) else ""
                after_special = False
                seg_style = "cyan" if tt[j] == 0 else "yellow"
                if labels[j] != -100:
                    new = "[MASK]" if i == p.mask else (_display_piece(tok.id_to_piece(i)) or "\u2581")
                    text.append(space)
                    # A lone word-start piece is invisible as text: show the marker itself.
                    text.append(f"⟦{piece or chr(0x2581)}→{new}⟧", style=f"bold reverse {seg_style}")
                else:
                    text.append(space + piece, style=seg_style)
            console.print(text)
            shown += 1


def _iter_first(path: str, fmt: ShardFormat, n: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches holding at least the first ``n`` rows of a shard."""
    got = 0
    for batch in fmt.iter_batches(path, COLUMNS, max(n, 1)):
        yield batch
        got += len(batch["input_ids"])
        if got >= n:
            return


def _display_piece(piece: str) -> str:
    if piece.startswith("##"):
        return piece[2:]
    return piece.replace("\u2581", "")
