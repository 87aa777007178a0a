"""``inspect --verify``: per-row invariants, the corpus against its manifest, and the mask-split test.

The corpus-wide [MASK]/random/unchanged split is tested with a chi-square
goodness-of-fit test at :data:`ALPHA`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmcorpus import outdir
from mlmcorpus.formats.base import ShardFormat
from mlmcorpus.hashing import sha256_file as _sha256
from mlmcorpus.manifest import object_or_empty
from mlmcorpus.report.corpus import Corpus, CorpusParams

if TYPE_CHECKING:
    from mlmcorpus.report.scan import ShardScan

__all__ = ["ALPHA", "Rows", "check_rows", "check_schema", "chi_square", "expected_kinds", "corpus_checks", "verdict"]

#: Significance of the statistical checks: a clean corpus fails with probability 1e-4.
ALPHA = 1e-4


def check_schema(scan: ShardScan, path: str, fmt: ShardFormat, p: CorpusParams) -> bool:
    """Whether the shard's columns have the types of the manifest's layout."""
    if p.vocab_size is None:
        return True
    problems = fmt.schema_problems(path, p.layout)
    for problem in problems:
        scan.fail("schema", problem)
    return not problems


@dataclass(frozen=True)
class Rows:
    """What the scan derived from a batch (int64 copies), shared with the checks."""

    ids: np.ndarray
    labels: np.ndarray
    attention_mask: np.ndarray
    lengths: np.ndarray
    masked: np.ndarray
    k: np.ndarray
    nsp: np.ndarray
    original: np.ndarray
    inside: np.ndarray
    candidate: np.ndarray


def check_rows(scan: ShardScan, b: dict[str, np.ndarray], r: Rows, p: CorpusParams, offset: int) -> None:
    """Every per-row invariant of the layout and the masking policy; violations go to ``scan``."""
    ids, labels, am, lengths, masked, k, nsp = r.ids, r.labels, r.attention_mask, r.lengths, r.masked, r.k, r.nsp
    original, inside, candidate = r.original, r.inside, r.candidate
    n, L = ids.shape
    cols = np.arange(L)[None, :]


    def rows_where(bad: np.ndarray | np.bool_) -> np.ndarray:
        return np.flatnonzero(bad)

    scan.fail("attention_mask", "attention_mask is not 1 on the tokens and 0 on the padding",
              rows_where((am != inside).any(axis=1)), offset)
    packed = p.label is None  # --pair-task none: [CLS] x [SEP], separators between documents
    if packed:
        scan.fail("length", "fewer than 3 tokens ([CLS] x [SEP])", rows_where(lengths < 3), offset)
    else:
        scan.fail("length", "fewer than 5 tokens ([CLS] A [SEP] B [SEP])", rows_where(lengths < 5), offset)
    if p.vocab_size is not None:
        scan.fail("vocab", f"token id >= vocab size {p.vocab_size}", rows_where((ids >= p.vocab_size).any(axis=1) | (ids < 0).any(axis=1)), offset)
        scan.fail("vocab", f"label id >= vocab size {p.vocab_size}", rows_where((masked & ((labels >= p.vocab_size) | (labels < 0))).any(axis=1)), offset)
    rows = np.arange(n)
    last = np.clip(lengths - 1, 0, L - 1)
    scan.fail("layout", "does not start with [CLS]", rows_where(original[:, 0] != p.cls), offset)
    scan.fail("layout", "does not end with [SEP]", rows_where(original[rows, last] != p.sep), offset)
    seps = (original == p.sep) & inside
    if not packed:
        scan.fail("layout", "not exactly two [SEP] ([CLS] A [SEP] B [SEP])", rows_where(seps.sum(axis=1) != 2), offset)
    elif p.packing == "doc-sentences":
        scan.fail("layout", "a [SEP] inside a row that may not cross documents", rows_where(seps.sum(axis=1) != 1), offset)
    scan.fail("layout", "padding is not [PAD]", rows_where(((ids != p.pad) & ~inside).any(axis=1)), offset)
    first_sep = np.where(seps.any(axis=1), seps.argmax(axis=1), 0)
    # The input itself: [CLS]/[SEP]/[PAD] only where the layout puts them, [MASK] only where masked.
    if packed:  # the separators between documents are layout tokens too
        layout = (cols == 0) | (cols == last[:, None]) | seps
    else:
        layout = (cols == 0) | (cols == first_sep[:, None]) | (cols == last[:, None])
    # (--compat google: a random replacement may be any id, these three included.)
    replaced = masked if p.compat == "google" else np.zeros_like(masked)
    scan.fail("input_ids", "[CLS], [SEP] or [PAD] inside the text",
              rows_where((inside & ~layout & ~replaced & np.isin(ids, [p.cls, p.sep, p.pad])).any(axis=1)), offset)
    scan.fail("input_ids", "[MASK] at a position that is not masked", rows_where((~masked & (ids == p.mask)).any(axis=1)), offset)
    scan.fail("input_ids", "a layout token ([CLS]/[SEP]) was replaced", rows_where((layout & inside & (ids != original)).any(axis=1)), offset)
    if packed:
        scan.fail("token_type_ids", "token_type_ids are not all 0 (a packed row has one segment)",
                  rows_where(b["token_type_ids"].astype(bool).any(axis=1)), offset)
    else:
        scan.fail("layout", "segment A or B is empty", rows_where((first_sep < 2) | (first_sep > lengths - 3)), offset)
        expected_tt = (cols > first_sep[:, None]) & inside
        scan.fail("token_type_ids", "token_type_ids are not 0 through the first [SEP] and 1 for B",
                  rows_where((b["token_type_ids"].astype(np.int64) != expected_tt).any(axis=1)), offset)
    scan.fail("labels", "a label outside the text (padding) is not -100", rows_where((masked & ~inside).any(axis=1)), offset)
    scan.fail("labels", "a special token ([CLS]/[SEP]/[PAD]/[MASK]) is masked",
              rows_where((masked & np.isin(original, p.never_masked)).any(axis=1)), offset)
    predicted = np.minimum(p.max_predictions, np.maximum(1, np.rint(lengths * p.masked_lm_prob).astype(np.int64)))
    if not p.masked:
        expected_stm = ~inside | np.isin(ids, [p.cls, p.sep, p.pad])
        scan.fail("special_tokens_mask", "special_tokens_mask is not 1 exactly on [CLS], [SEP] and padding",
                  rows_where((b["special_tokens_mask"].astype(bool) != expected_stm).any(axis=1)), offset)
    elif p.masking == "token":
        predicted = np.minimum(predicted, candidate.sum(axis=1))
        scan.fail("predictions", "number of masked positions does not follow min(max_pred, max(1, round(len * prob)))",
                  rows_where(k != predicted), offset)
    else:  # whole words, n-grams, spans: never cut to fill the budget, so at most it
        scan.fail("predictions", "more masked positions than min(max_pred, max(1, round(len * prob)))",
                  rows_where(k > predicted), offset)
        if p.word_start is not None:
            ws = p.word_start[np.clip(original, 0, len(p.word_start) - 1)]
            budget_rows = np.ones(n, dtype=bool)
            if p.compat == "google" and p.label is not None:
                # The reference's do_whole_word_mask adds a B that starts with a continuation piece
                # to A's last word, across the [SEP]: such rows' groups are not the words seen here.
                b_first = np.clip(first_sep + 1, 0, L - 1)
                budget_rows = ws[rows, b_first] | (b_first >= lengths - 1)
            # Two neighbouring pieces of one word are masked together or not at all.
            same_word = candidate[:, 1:] & candidate[:, :-1] & ~ws[:, 1:]
            scan.fail("words", f"a word is partly masked ({p.masking} masking keeps words whole)",
                      rows_where((same_word & (masked[:, 1:] != masked[:, :-1])).any(axis=1)), offset)
            scan.fail("budget", f"a word that fits the unfilled budget was left unmasked ({p.masking} masking "
                                "tries every word)", rows_where(budget_rows & _unfilled(candidate, ws, masked, predicted - k, p.max_group)),
                      offset)
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
    if p.label is not None:
        scan.fail(p.label, f"{p.label} is not 0 or 1", rows_where((nsp != 0) & (nsp != 1)), offset)


def _unfilled(candidate: np.ndarray, ws: np.ndarray, masked: np.ndarray, shortfall: np.ndarray, max_group: int) -> np.ndarray:
    """Rows where the word-level greedy stopped early: an unmasked word no longer than the
    shortfall, with no masked word among the next ``max_group - 1`` (which could have made its
    group overlap).  Every word is tried as a group start, shortened to fit, so none exists."""
    from mlmcorpus.masking.words import word_index

    n, L = candidate.shape
    wid, words, size = word_index(candidate, ws)
    flat = (np.arange(n)[:, None] * L + wid)[candidate]
    taken = np.bincount(flat, weights=masked[candidate], minlength=n * L).reshape(n, L) > 0
    fits = (np.arange(L)[None, :] < words[:, None]) & ~taken & (size <= shortfall[:, None])
    near = np.zeros_like(fits)
    for j in range(1, min(max_group, L)):
        near[:, : L - j] |= taken[:, j:]
    return np.asarray((fits & ~near).any(axis=1))


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
    return stat, df, chi_square_p(stat, df)


def chi_square_p(stat: float, df: int) -> float:
    """P(X >= stat) for X ~ chi-square(df): exact for df 1 and 2."""
    if df == 1:
        return math.erfc(math.sqrt(stat / 2))
    if df == 2:
        return math.exp(-stat / 2)
    # Wilson-Hilferty for larger df (not needed for three categories).
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def expected_kinds(p: CorpusParams) -> list[float]:
    """P([MASK]), P(random), P(unchanged) as seen in the data: a random draw equal to the
    original token looks unchanged (about 1 / vocabulary size of the random share)."""
    r_mask, r_random, r_keep = p.mask_ratios
    if p.compat == "google":  # drawn from the whole vocabulary: [MASK] itself too
        q = 1.0 / max(p.vocab_size or 30000, 1)
        return [r_mask + r_random * q, r_random * (1 - 2 * q), r_keep + r_random * q]
    q = 1.0 / max((p.vocab_size or 30000) - 5, 1)
    return [r_mask, r_random * (1 - q), r_keep + r_random * q]


def corpus_checks(corpus: Corpus, scans: list[ShardScan], merged: dict, findings: list[str], problems: dict) -> None:
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
    nsp = object_or_empty(stats.get("nsp"))
    masked = object_or_empty(stats.get("masked_positions"))
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
    }
    if corpus.params.compat != "google":  # (there a random draw may be [MASK] and look masked)
        # A random draw can hit the original token and then looks unchanged: compare the sum.
        found[("stats.masked_positions", "mask")] = int(kinds[0])
        found[("stats.masked_positions", "random+keep")] = int(kinds[1] + kinds[2])
    sections = {"totals": totals, "stats": stats, "stats.nsp": nsp, "stats.masked_positions": masked}
    for (section, key), value in found.items():
        d = sections[section]
        claimed = d.get("random", 0) + d.get("keep", 0) if key == "random+keep" and "random" in d else d.get(key)
        if claimed is None:
            fail("manifest", f"manifest.json: {section}.{key} is missing")
        elif claimed != value:
            fail("manifest", f"manifest.json: {section}.{key} is {claimed}, the shards hold {value}")
    candidate = corpus.tokenizer_file()
    if candidate is not None and _sha256(candidate) != m.tokenizer.get("sha256"):
        fail("tokenizer", f"{candidate}: the tokenizer file differs from the one the corpus was built with (sha256)")


def _sop_balance(corpus: Corpus, merged: dict, findings: list[str], problems: dict[str, int]) -> None:
    """Sentence order: apart from one-segment chunks (always 1), a row is swapped with
    probability 0.5; a two-sided binomial (normal) test at :data:`ALPHA`."""
    assert corpus.manifest is not None
    from mlmcorpus.tasks.nsp import SOP_ONE_SEGMENT

    one = int(object_or_empty(corpus.manifest.stats.get("counts")).get(SOP_ONE_SEGMENT, 0))
    n = int(merged["nsp"].sum()) - one
    swapped = int(merged["nsp"][1]) - one
    if n <= 0:
        return
    z = (swapped - n / 2) / math.sqrt(n / 4)
    p_value = math.erfc(abs(z) / math.sqrt(2))
    if p_value < ALPHA:
        problems["sop_balance"] = 1
        findings.append(f"corpus: {swapped:,} of {n:,} two-segment rows swapped ({swapped / n:.1%}); SOP swaps half "
                        f"(z = {z:.1f}, p = {p_value:.2g} < {ALPHA:g})")


def _rescaled(stat: float, df: int, design_effect: float) -> tuple[float, int, float]:
    if df <= 0 or not math.isfinite(stat):
        return stat, df, 0.0 if not math.isfinite(stat) else 1.0
    stat = stat / design_effect
    return stat, df, chi_square_p(stat, df)


def verdict(corpus: Corpus, scans: list[ShardScan], merged: dict) -> dict[str, Any]:
    """The report's ``verify`` section: every finding of the scans, the corpus checks and the
    mask-split test; ``passed`` when there is none."""
    p = corpus.params
    kinds = merged["kinds"].tolist()
    masked_total = int(sum(kinds))
    stat, df, pvalue = chi_square(kinds, expected_kinds(p))
    if p.replace_per == "word" and merged["run_tokens"]:
        # One draw decides a whole group: its pieces are not independent observations. Divide by
        # the design effect of clusters = runs of adjacent masked pieces (two touching groups make
        # one run, which overstates it: conservative).
        design_effect = max(1.0, merged["run_sq"] / merged["run_tokens"])
        stat, df, pvalue = _rescaled(stat, df, design_effect)
    findings: list[str] = []
    problems: dict[str, int] = {}
    for s in scans:
        findings.extend(s.findings)
        for key, n in s.problems.items():
            problems[key] = problems.get(key, 0) + n
    if corpus.only_shard is None:
        corpus_checks(corpus, scans, merged, findings, problems)
    if p.label == "sentence_order_label":
        _sop_balance(corpus, merged, findings, problems)
    ratio_ok = pvalue >= ALPHA
    if not ratio_ok:
        problems["mask_ratios"] = 1
        observed = ", ".join(f"{x / masked_total:.4f}" for x in kinds) if masked_total else "-"
        findings.append(
            f"corpus: [MASK]/random/unchanged split {observed} does not fit the configured "
            f"{'/'.join(f'{r:g}' for r in p.mask_ratios)} (chi-square {stat:.1f}, df {df}, p = {pvalue:.2g} < {ALPHA:g})"
        )
    return {
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
