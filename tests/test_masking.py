"""Tests of BERT masking (DESIGN.md section 3 step 4, issue 3 "Masking").

Covers ``mlmcorpus.masking`` (``mask_batch``, ``num_to_predict``), ``MaskConfig``
validation and the pipeline wrapper ``mask_unit`` / ``MaskVocab``.

Statistical tests use fixed seeds, so they are deterministic.  Each states the
significance level ALPHA: the probability that a *correct* implementation would
fail for an arbitrary seed.  ``ALPHA = 1e-4`` with the handful of tests here
keeps that risk negligible while the deviations we guard against (a swapped
ratio, a 1-point shift, a biased position) give p-values below 1e-30.
"""

from __future__ import annotations

import math


import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from mlmcorpus.config import MaskConfig
from mlmcorpus.errors import ConfigError, MlmCorpusError
from mlmcorpus.schema import RowLayout


def expand(columns):
    """The shard columns of one unit's compact rows."""
    return RowLayout(columns["input_ids"].shape[1], columns["masked_lm_positions"].shape[1], 30000).expand(columns)
from mlmcorpus.masking import KIND_KEEP, KIND_MASK, KIND_RANDOM, MaskedBatch, mask_batch, num_to_predict
from mlmcorpus.masking import MaskVocab
from mlmcorpus.objective import mask_unit
from mlmcorpus.units import PairedUnit, PairStats
from mlmcorpus.rng import Purpose, unit_generator

from .conftest import SHARED, requires_shared

ALPHA = 1e-4  # significance of every goodness-of-fit test below

# A small fixed vocabulary for the non-hypothesis tests.
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = np.array([PAD, UNK, CLS, SEP, MASK], dtype=np.int32)
RANDOM_IDS = np.arange(5, 105, dtype=np.int32)  # 100 ordinary ids


# ----------------------------------------------------------------------------- helpers


def reference_cap(config: MaskConfig, L: int) -> int:
    """The explicit cap, or the default that follows the row length: ceil(L * prob) with exact
    rational arithmetic (no float rounding to guard against)."""
    from fractions import Fraction

    if config.max_predictions_per_seq is not None:
        return config.max_predictions_per_seq
    return max(1, math.ceil(L * Fraction(str(config.masked_lm_prob))))


def reference_k(length: int, config: MaskConfig, L: int = 10**9) -> int:
    """The reference formula, computed with Python's own ``round`` (half-to-even)."""
    return min(reference_cap(config, L), max(1, round(length * config.masked_lm_prob)))


def run(ids, lengths, config, seed=0, specials=SPECIALS, mask_id=MASK, random_ids=RANDOM_IDS) -> MaskedBatch:
    return mask_batch(
        np.asarray(ids, dtype=np.int32),
        np.asarray(lengths, dtype=np.int64),
        np.asarray(specials, dtype=np.int32),
        mask_id,
        np.asarray(random_ids, dtype=np.int32),
        config,
        np.random.default_rng(seed),
    )


def bert_rows(n: int, L: int, lengths: np.ndarray, rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
    """Rows laid out like real instances: ``[CLS] A [SEP] B [SEP]`` then [PAD]; body ids from ``pool``."""
    ids = np.full((n, L), PAD, dtype=np.int32)
    body = rng.choice(pool, size=(n, L)).astype(np.int32)
    cols = np.arange(L)[None, :]
    inside = cols < lengths[:, None]
    ids[inside] = body[inside]
    ids[:, 0] = CLS
    rows = np.arange(n)
    ids[rows, lengths - 1] = SEP
    a_end = 1 + rng.integers(1, np.maximum(lengths - 2, 2))  # first [SEP] strictly inside
    a_end = np.minimum(a_end, lengths - 2)
    ids[rows, a_end] = SEP
    return ids


def chosen_mask(m: MaskedBatch) -> np.ndarray:
    return m.labels != -100


def check_invariants(ids, lengths, specials, mask_id, random_ids, config, m: MaskedBatch) -> None:
    """Every property of one ``mask_batch`` result that must hold for any random draw."""
    n, L = ids.shape
    P = reference_cap(config, L)
    special_set = set(int(s) for s in specials)
    random_set = set(int(r) for r in random_ids)

    assert m.input_ids.shape == (n, L)
    assert m.labels.shape == (n, L) and m.labels.dtype == np.int64
    assert m.masked_lm_positions.shape == (n, P) and m.masked_lm_positions.dtype == np.int32
    assert m.masked_lm_ids.shape == (n, P) and m.masked_lm_ids.dtype == np.int32
    assert m.counts.shape == (3,)

    chosen = chosen_mask(m)
    total = 0
    n_mask = n_random_sure = n_not_mask = n_same = 0
    for i in range(n):
        length = int(lengths[i])
        row, out, lab = ids[i], m.input_ids[i], m.labels[i]
        candidates = [j for j in range(length) if int(row[j]) not in special_set]
        expected_k = min(reference_k(length, config, L), len(candidates))
        pos = np.flatnonzero(chosen[i])
        k = len(pos)
        total += k

        # count formula, capped by the number of candidates
        assert k == expected_k, (i, length, len(candidates), k, expected_k)
        # only candidates: inside the length, never a special id
        assert set(pos.tolist()) <= set(candidates)
        assert all(int(row[j]) not in special_set for j in pos)
        assert all(j < length for j in pos)
        # labels: the original id at chosen positions, -100 elsewhere
        np.testing.assert_array_equal(lab[pos], row[pos])
        assert np.all(lab[~chosen[i]] == -100)
        # everything that was not chosen is untouched (this includes the padding)
        np.testing.assert_array_equal(out[~chosen[i]], row[~chosen[i]])
        np.testing.assert_array_equal(out[length:], row[length:])
        # a chosen position becomes [MASK], stays, or gets an id from random_ids
        for j in pos:
            v, o = int(out[j]), int(row[j])
            assert v == mask_id or v == o or v in random_set, (i, j, v, o)
        # compact columns: ascending unique positions, then zero padding
        mp, mi = m.masked_lm_positions[i], m.masked_lm_ids[i]
        np.testing.assert_array_equal(mp[:k], pos)  # flatnonzero is ascending and unique
        assert np.all(np.diff(mp[:k]) > 0)
        assert np.all(mp[k:] == 0)
        np.testing.assert_array_equal(mi[:k], row[pos])
        assert np.all(mi[k:] == 0)

        # recount the kinds where the output says so unambiguously.  [MASK] is special,
        # so an original is never [MASK], and random_ids never contain it: v == [MASK]
        # is always a MASK draw.  v not in {[MASK], original} is always a RANDOM draw.
        # v == original is KEEP, or a RANDOM draw that hit the original.
        v, o = out[pos], row[pos]
        n_mask += int(np.sum(v == mask_id))
        n_random_sure += int(np.sum((v != mask_id) & (v != o)))
        n_not_mask += int(np.sum(v != mask_id))
        n_same += int(np.sum(v == o))

    c_mask, c_random, c_keep = (int(c) for c in m.counts)
    assert c_mask + c_random + c_keep == total
    assert c_mask == n_mask
    assert c_random + c_keep == n_not_mask
    assert c_random >= n_random_sure
    assert c_keep <= n_same


# ----------------------------------------------------------------------------- 1. properties


CORNER_RATIOS = [(0.8, 0.1, 0.1), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.3, 0.2)]


@st.composite
def mask_configs(draw) -> MaskConfig:
    prob = draw(st.one_of(st.sampled_from([0.15, 0.1, 0.5, 0.99]), st.floats(0.001, 0.999)))
    max_pred = draw(st.integers(1, 60))
    if draw(st.booleans()):
        ratios = draw(st.sampled_from(CORNER_RATIOS))
    else:
        w = draw(st.lists(st.integers(0, 20), min_size=3, max_size=3).filter(lambda w: sum(w) > 0))
        ratios = tuple(x / sum(w) for x in w)
        assume(abs(sum(ratios) - 1.0) <= 1e-9)
    return MaskConfig(masked_lm_prob=prob, max_predictions_per_seq=max_pred, mask_ratios=ratios)


@st.composite
def random_batches(draw):
    """A vocabulary with [CLS]/[SEP]/[PAD]/[MASK] at random ids plus 0-3 extra specials,
    and n x L rows whose ids inside ``lengths`` mix specials and ordinary ids; the padding
    holds arbitrary ids (ordinary ones too), so only ``lengths`` can protect it."""
    V = draw(st.integers(10, 60))
    perm = draw(st.permutations(list(range(V))))
    cls, sep, pad, mask = perm[:4]
    n_extra = draw(st.integers(0, 3))
    specials = np.array(perm[: 4 + n_extra], dtype=np.int32)
    random_ids = np.array(sorted(perm[4 + n_extra:]), dtype=np.int32)
    n = draw(st.integers(1, 6))
    L = draw(st.integers(1, 48))
    lengths = np.array(draw(st.lists(st.integers(0, L), min_size=n, max_size=n)), dtype=np.int64)
    p_special = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    gen = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ordinary = gen.choice(random_ids, size=(n, L))
    special = gen.choice(specials, size=(n, L))
    ids = np.where(gen.random((n, L)) < p_special, special, ordinary).astype(np.int32)
    for i, length in enumerate(lengths):  # BERT-like frame when there is room
        if length >= 2:
            ids[i, 0], ids[i, length - 1] = cls, sep
    padding = draw(st.sampled_from(["pad", "garbage"]))
    garbage = gen.integers(0, V, size=(n, L)).astype(np.int32)
    beyond = np.arange(L)[None, :] >= lengths[:, None]
    ids[beyond] = pad if padding == "pad" else garbage[beyond]
    config = draw(mask_configs())
    seed = draw(st.integers(0, 2**32 - 1))
    return ids, lengths, specials, int(mask), random_ids, config, seed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_batches())
def test_mask_batch_properties(case):
    ids, lengths, specials, mask_id, random_ids, config, seed = case
    before = ids.copy()
    m = mask_batch(ids, lengths, specials, mask_id, random_ids, config, np.random.default_rng(seed))
    np.testing.assert_array_equal(ids, before)  # the input is not modified in place
    check_invariants(ids, lengths, specials, mask_id, random_ids, config, m)

    chosen = chosen_mask(m)
    out, c = m.input_ids[chosen], m.counts
    # degenerate ratios are exact: no randomness is involved
    if config.mask_ratios == (1.0, 0.0, 0.0):
        assert np.all(out == mask_id) and c[KIND_RANDOM] == c[KIND_KEEP] == 0
    elif config.mask_ratios == (0.0, 1.0, 0.0):
        assert np.all(np.isin(out, random_ids)) and c[KIND_MASK] == c[KIND_KEEP] == 0
    elif config.mask_ratios == (0.0, 0.0, 1.0):
        np.testing.assert_array_equal(m.input_ids, ids)
        assert c[KIND_MASK] == c[KIND_RANDOM] == 0


# ----------------------------------------------------------------------------- 2. determinism


def _big_batch(seed=7, n=64, L=128):
    gen = np.random.default_rng(seed)
    lengths = gen.integers(8, L + 1, size=n)
    return bert_rows(n, L, lengths, gen, RANDOM_IDS), lengths


def test_same_seed_same_arrays_different_seed_different():
    ids, lengths = _big_batch()
    a = run(ids, lengths, MaskConfig(), seed=123)
    b = run(ids, lengths, MaskConfig(), seed=123)
    c = run(ids, lengths, MaskConfig(), seed=124)
    for field in ("input_ids", "labels", "masked_lm_positions", "masked_lm_ids", "counts"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    # 64 rows x ~19 of ~60-125 candidates: two seeds choosing the same positions
    # everywhere has probability far below 1e-100.
    assert not np.array_equal(a.masked_lm_positions, c.masked_lm_positions)
    assert not np.array_equal(a.input_ids, c.input_ids)


def _paired(unit_id: int, ids: np.ndarray, lengths: np.ndarray) -> PairedUnit:
    n = len(ids)
    return PairedUnit(unit_id, ids, lengths.astype(np.int64), np.full(n, 3, dtype=np.int64), np.zeros(n, dtype=np.int8), PairStats())


def test_mask_unit_is_keyed_by_seed_and_unit_id():
    ids, lengths = _big_batch()
    vocab = MaskVocab(SPECIALS, MASK, RANDOM_IDS, vocab_size=1000)
    cfg = MaskConfig()
    a = mask_unit(_paired(5, ids, lengths), vocab, cfg, seed=1)
    b = mask_unit(_paired(5, ids, lengths), vocab, cfg, seed=1)
    other_seed = mask_unit(_paired(5, ids, lengths), vocab, cfg, seed=2)
    other_unit = mask_unit(_paired(6, ids, lengths), vocab, cfg, seed=1)
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=name)
    np.testing.assert_array_equal(a.mask_counts, b.mask_counts)
    assert not np.array_equal(a.columns["masked_lm_positions"], other_seed.columns["masked_lm_positions"])
    assert not np.array_equal(a.columns["masked_lm_positions"], other_unit.columns["masked_lm_positions"])
    # and it is exactly mask_batch with the (seed, unit, MASK) generator
    direct = mask_batch(ids, lengths, SPECIALS, MASK, RANDOM_IDS, cfg, unit_generator(1, 5, Purpose.MASK))
    np.testing.assert_array_equal(a.columns["input_ids"], direct.input_ids)
    np.testing.assert_array_equal(expand(a.columns)["labels"], direct.labels)  # the shard's labels
    np.testing.assert_array_equal(a.columns["masked_lm_positions"], direct.masked_lm_positions)
    np.testing.assert_array_equal(a.columns["masked_lm_ids"], direct.masked_lm_ids)
    np.testing.assert_array_equal(a.mask_counts, direct.counts)


@requires_shared
def test_mask_vocab_of_bert_vocab_protects_specials_and_excludes_them_from_random():
    from mlmcorpus.tokenizers import load_tokenizer

    tok = load_tokenizer(str(SHARED / "tokenizers" / "bert-base-uncased_vocab.txt"))
    vocab = MaskVocab.of(tok)
    sp = tok.special_ids
    assert vocab.mask_id == sp.mask
    # [UNK] stands for real text and is masked like any token (as in the reference); the
    # others are never masked, and no special token is ever a random replacement.
    assert set(vocab.special_ids.tolist()) == {sp.cls, sp.sep, sp.pad, sp.mask}
    assert not np.isin(vocab.random_ids, list(sp.all())).any()
    assert not any(tok.id_to_piece(int(i)).startswith("[unused") for i in vocab.random_ids[:2000])

    gen = np.random.default_rng(3)
    n, L = 200, 64
    lengths = gen.integers(5, L + 1, size=n)
    ids = bert_rows(n, L, lengths, gen, vocab.random_ids)
    ids[ids == CLS], ids[ids == SEP], ids[ids == PAD] = sp.cls, sp.sep, sp.pad
    ids[gen.random((n, L)) < 0.05] = sp.unk
    m = mask_unit(_paired(0, ids, lengths), vocab, MaskConfig(), seed=9)
    chosen = expand(m.columns)["labels"] != -100
    assert chosen.any()
    assert not np.isin(ids[chosen], vocab.special_ids).any()
    assert (ids[chosen] == sp.unk).any()  # about 5% of chosen positions hold [UNK]


# ----------------------------------------------------------------------------- 3. statistics

N_ROWS, SEQ = 20_000, 128
OUTSIDE = 200  # an ordinary id that is not in RANDOM_IDS


def _stat_batch(ratios, seed=2024):
    """20k rows of length 128 whose ordinary ids all equal OUTSIDE (not in RANDOM_IDS),
    so every chosen position's kind can be read off the output exactly."""
    lengths = np.full(N_ROWS, SEQ, dtype=np.int64)
    ids = bert_rows(N_ROWS, SEQ, lengths, np.random.default_rng(1), np.array([OUTSIDE]))
    m = run(ids, lengths, MaskConfig(mask_ratios=ratios), seed=seed)
    chosen = chosen_mask(m)
    out = m.input_ids[chosen]
    observed = np.array([np.sum(out == MASK), np.sum(np.isin(out, RANDOM_IDS)), np.sum(out == OUTSIDE)])
    assert observed.sum() == chosen.sum()  # nothing else can appear
    np.testing.assert_array_equal(m.counts, observed)  # the counts array tells the truth
    return observed


def gof_pvalue(observed, ratios) -> float:
    observed = np.asarray(observed, dtype=float)
    expected = observed.sum() * np.asarray(ratios, dtype=float)
    return float(stats.chisquare(observed, expected).pvalue)


def test_mask_rate_is_the_formula_over_random_lengths():
    # The number of predictions per row is not random (only *which* positions is),
    # so the total must equal the sum of the reference formula exactly: tolerance 0.
    gen = np.random.default_rng(11)
    lengths = gen.integers(8, SEQ + 1, size=N_ROWS)
    ids = bert_rows(N_ROWS, SEQ, lengths, gen, RANDOM_IDS)
    cfg = MaskConfig(max_predictions_per_seq=SEQ)  # no cap: isolates the rounding
    m = run(ids, lengths, cfg, seed=5)
    per_row = chosen_mask(m).sum(axis=1)
    expected = np.array([reference_k(int(x), cfg) for x in lengths])
    np.testing.assert_array_equal(per_row, expected)
    assert int(m.counts.sum()) == int(expected.sum())
    # Against masked_lm_prob itself: |round(x) - x| <= 1/2 per row (len >= 8 gives
    # len * 0.15 >= 1.2, so max(1, .) never lifts a row), hence a hard bound of
    # (N / 2) / sum(len) ~ 0.0074 on |rate - 0.15|.  The fractional parts of len * 0.15
    # cycle symmetrically over 20 values, so the errors average out: the mean error per
    # row has sd <= 0.29 / sqrt(N) ~ 0.002, i.e. ~3e-5 in rate; 0.002 is > 60 sd.
    rate = per_row.sum() / lengths.sum()
    assert abs(rate - 0.15) <= (N_ROWS / 2) / lengths.sum()
    assert abs(rate - 0.15) <= 0.002


def test_default_ratios_pass_80_10_10_goodness_of_fit():
    observed = _stat_batch((0.8, 0.1, 0.1))
    assert observed.sum() == N_ROWS * 19  # round(128 * 0.15) = round(19.2) = 19 per row
    assert gof_pvalue(observed, (0.8, 0.1, 0.1)) > ALPHA


@pytest.mark.parametrize("ratios", [(0.5, 0.3, 0.2), (0.5, 0.25, 0.25)])
def test_custom_ratios_pass_their_own_test_and_fail_the_default_one(ratios):
    observed = _stat_batch(ratios)
    assert gof_pvalue(observed, ratios) > ALPHA
    # power: the same test rejects the default split (p is ~0 with 380k draws)
    assert gof_pvalue(observed, (0.8, 0.1, 0.1)) < ALPHA


def test_goodness_of_fit_detects_a_one_point_shift():
    # 0.8/0.11/0.09 vs 0.8/0.1/0.1 with 380k draws: expected chi-square ~ 3800^2/38000 * 2
    # ~ 760 on 2 dof, p ~ 1e-165 -- the test has power against small mistakes too.
    observed = _stat_batch((0.8, 0.11, 0.09))
    assert gof_pvalue(observed, (0.8, 0.11, 0.09)) > ALPHA
    assert gof_pvalue(observed, (0.8, 0.1, 0.1)) < ALPHA


@pytest.mark.parametrize("max_pred", [20, 64], ids=["argpartition-branch", "kk-equals-L-branch"])
def test_every_candidate_position_is_equally_likely(max_pred):
    # fixed rows of length 40: [CLS]@0, [SEP]@19, [UNK]@7 (special), [SEP]@39 -> 36 candidates.
    # k = round(40 * 0.15) = 6 per row, 20k rows -> 120k picks, ~3333 per position.
    n, L = 20_000, 40
    row = np.arange(5, 5 + L, dtype=np.int32)
    row[0], row[7], row[19], row[39] = CLS, UNK, SEP, SEP
    ids = np.tile(row, (n, 1))
    m = run(ids, np.full(n, L), MaskConfig(max_predictions_per_seq=max_pred), seed=99)
    per_pos = chosen_mask(m).sum(axis=0)
    specials_at = [0, 7, 19, 39]
    assert np.all(per_pos[specials_at] == 0)
    cand = np.setdiff1d(np.arange(L), specials_at)
    assert per_pos.sum() == n * 6
    assert stats.chisquare(per_pos[cand]).pvalue > ALPHA  # 35 dof, uniform expected


def test_chosen_subsets_are_uniform():
    # [CLS] a b c d [SEP]: 4 candidates, k = round(6 * 0.34) = round(2.04) = 2 -> C(4,2) = 6
    # subsets, each with probability 1/6.  Marginal uniformity alone would not catch a
    # sampler that favours, say, adjacent pairs; this test would.
    n = 30_000
    ids = np.tile(np.array([CLS, 10, 11, 12, 13, SEP], dtype=np.int32), (n, 1))
    m = run(ids, np.full(n, 6), MaskConfig(masked_lm_prob=0.34), seed=3)
    pairs = m.masked_lm_positions[:, :2]
    assert np.all(m.masked_lm_positions[:, 2:] == 0)
    code = pairs[:, 0] * 10 + pairs[:, 1]
    subsets = [a * 10 + b for a in range(1, 5) for b in range(a + 1, 5)]
    counts = np.array([np.sum(code == s) for s in subsets])
    assert counts.sum() == n  # every row has exactly one of the 6 subsets
    assert stats.chisquare(counts).pvalue > ALPHA


def test_random_replacements_are_uniform_over_random_ids():
    # ratios (0, 1, 0): every chosen position is a random draw; originals are OUTSIDE,
    # not in RANDOM_IDS.  20k rows x round(64 * 0.15) = 10 -> 200k draws over 100 ids,
    # ~2000 each; chi-square on 99 dof.
    n, L = 20_000, 64
    lengths = np.full(n, L)
    ids = bert_rows(n, L, lengths, np.random.default_rng(4), np.array([OUTSIDE]))
    m = run(ids, lengths, MaskConfig(mask_ratios=(0.0, 1.0, 0.0)), seed=8)
    out = m.input_ids[chosen_mask(m)]
    assert out.size == n * 10
    assert np.all(np.isin(out, RANDOM_IDS))  # never [MASK], a special or the original
    np.testing.assert_array_equal(m.counts, [0, n * 10, 0])
    freq = np.bincount(out - RANDOM_IDS[0], minlength=len(RANDOM_IDS))
    assert len(freq) == len(RANDOM_IDS)
    assert stats.chisquare(freq).pvalue > ALPHA


# ----------------------------------------------------------------------------- 4. rounding


@pytest.mark.parametrize(
    ("length", "prob", "product", "expected"),
    [
        (10, 0.15, 1.5, 2),  # half -> even (up)
        (30, 0.15, 4.5, 4),  # half -> even (down); round-half-up would give 5
        (50, 0.15, 7.5, 8),
        (70, 0.15, 10.5, 10),
        (128, 0.15, 19.2, 19),
        (5, 0.5, 2.5, 2),
        (7, 0.5, 3.5, 4),
        (1, 0.5, 0.5, 1),  # round(0.5) = 0, then max(1, .) = 1
        (0, 0.15, 0.0, 1),  # max(1, .) applies before capping by candidates
    ],
)
def test_num_to_predict_rounds_half_to_even(length, prob, product, expected):
    assert length * prob == product  # the float product really lands on this value
    assert max(1, round(product)) == expected  # and Python's round agrees with the table
    k = num_to_predict(np.array([length]), MaskConfig(masked_lm_prob=prob, max_predictions_per_seq=1000), 2048)
    assert int(k[0]) == expected


def test_num_to_predict_matches_python_round_on_a_grid():
    lengths = np.arange(0, 2049)
    probs = [0.15, 0.1, 0.2, 0.25, 0.3, 0.05, 0.125, 0.35, 0.45, 0.5, 0.65, 0.999, 0.01, 1 / 3, 0.2875]
    for prob in probs:
        for max_pred in (1, 20, 10_000):
            cfg = MaskConfig(masked_lm_prob=prob, max_predictions_per_seq=max_pred)
            got = num_to_predict(lengths, cfg, 2048)
            want = [reference_k(int(x), cfg) for x in lengths]
            np.testing.assert_array_equal(got, want, err_msg=f"prob={prob} max_pred={max_pred}")
    # the grid does contain exact halves in both directions (else the test proves little)
    halves = [x * 0.15 for x in range(2049) if (x * 0.15) % 1 == 0.5]
    assert any(round(h) % 2 == 0 and round(h) < h for h in halves)
    assert any(round(h) > h for h in halves)


# ----------------------------------------------------------------------------- 5. edge cases


def test_row_without_candidates_gets_no_predictions():
    ids = np.array(
        [
            [CLS, SEP, SEP, PAD, PAD, PAD],  # only specials
            [CLS, UNK, SEP, UNK, SEP, PAD],  # only specials ([UNK] is special here)
            [PAD, 50, 51, 52, 53, 54],  # length 0: garbage ordinary ids beyond the length
            [CLS, 10, 11, SEP, 12, SEP],  # a normal row
        ],
        dtype=np.int32,
    )
    lengths = np.array([3, 5, 0, 6])
    m = run(ids, lengths, MaskConfig())
    check_invariants(ids, lengths, SPECIALS, MASK, RANDOM_IDS, MaskConfig(), m)
    np.testing.assert_array_equal(chosen_mask(m).sum(axis=1), [0, 0, 0, 1])
    np.testing.assert_array_equal(m.input_ids[:3], ids[:3])
    assert np.all(m.masked_lm_positions[:3] == 0) and np.all(m.masked_lm_ids[:3] == 0)


def test_batch_without_any_candidate_and_empty_batch():
    ids = np.tile(np.array([CLS, SEP, SEP, PAD], dtype=np.int32), (5, 1))
    m = run(ids, np.full(5, 3), MaskConfig())
    np.testing.assert_array_equal(m.input_ids, ids)
    assert np.all(m.labels == -100)
    np.testing.assert_array_equal(m.counts, [0, 0, 0])

    empty = run(np.zeros((0, 16)), np.zeros(0), MaskConfig())
    assert empty.input_ids.shape == (0, 16) and empty.masked_lm_positions.shape == (0, 3)  # ceil(16 * 0.15)
    np.testing.assert_array_equal(empty.counts, [0, 0, 0])


def test_sequence_shorter_than_max_predictions():
    # L = 8 < max_pred = 20; prob 0.9 -> round(8 * 0.9) = round(7.2) = 7, capped by 5 candidates
    n, L = 50, 8
    ids = np.tile(np.array([CLS, 10, 11, SEP, 12, 13, 14, SEP], dtype=np.int32), (n, 1))
    cfg = MaskConfig(masked_lm_prob=0.9, max_predictions_per_seq=20)
    m = run(ids, np.full(n, L), cfg, seed=1)
    check_invariants(ids, np.full(n, L), SPECIALS, MASK, RANDOM_IDS, cfg, m)
    assert m.masked_lm_positions.shape == (n, 20)
    np.testing.assert_array_equal(m.masked_lm_positions[:, :5], np.tile([1, 2, 4, 5, 6], (n, 1)))
    assert np.all(m.masked_lm_positions[:, 5:] == 0)


def test_max_predictions_one():
    gen = np.random.default_rng(2)
    n, L = 500, 64
    lengths = gen.integers(4, L + 1, size=n)
    ids = bert_rows(n, L, lengths, gen, RANDOM_IDS)
    cfg = MaskConfig(max_predictions_per_seq=1)
    m = run(ids, lengths, cfg, seed=2)
    check_invariants(ids, lengths, SPECIALS, MASK, RANDOM_IDS, cfg, m)
    assert m.masked_lm_positions.shape == (n, 1)
    assert np.all(chosen_mask(m).sum(axis=1) == 1)
    assert np.all(m.masked_lm_positions[:, 0] > 0)


def test_prob_near_one_chooses_every_candidate():
    gen = np.random.default_rng(6)
    n, L = 300, 48
    lengths = gen.integers(3, L + 1, size=n)
    ids = bert_rows(n, L, lengths, gen, RANDOM_IDS)
    cfg = MaskConfig(masked_lm_prob=0.999, max_predictions_per_seq=L)
    m = run(ids, lengths, cfg, seed=6)
    check_invariants(ids, lengths, SPECIALS, MASK, RANDOM_IDS, cfg, m)
    candidates = (np.arange(L)[None, :] < lengths[:, None]) & ~np.isin(ids, SPECIALS)
    np.testing.assert_array_equal(chosen_mask(m), candidates)


# ----------------------------------------------------------------------------- 6. MaskConfig validation


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"masked_lm_prob": 0.0}, "--masked-lm-prob"),
        ({"masked_lm_prob": 1.0}, "--masked-lm-prob"),
        ({"masked_lm_prob": -0.1}, "--masked-lm-prob"),
        ({"masked_lm_prob": 1.5}, "--masked-lm-prob"),
        ({"masked_lm_prob": float("nan")}, "--masked-lm-prob"),
        ({"max_predictions_per_seq": 0}, "--max-predictions-per-seq"),
        ({"max_predictions_per_seq": -3}, "--max-predictions-per-seq"),
        ({"mask_ratios": (0.8, 0.1, 0.2)}, "--mask-ratios"),
        ({"mask_ratios": (0.8, 0.1, 0.0999)}, "--mask-ratios"),
        ({"mask_ratios": (1.1, -0.1, 0.0)}, "--mask-ratios"),
        ({"mask_ratios": (0.5, 0.5)}, "--mask-ratios"),
        ({"mask_ratios": (0.25, 0.25, 0.25, 0.25)}, "--mask-ratios"),
        ({"mask_ratios": (float("inf"), 0.0, 0.0)}, "--mask-ratios"),
    ],
)
def test_mask_config_errors_name_the_option(kwargs, option):
    with pytest.raises(ConfigError, match=option) as exc:
        MaskConfig(**kwargs)
    assert isinstance(exc.value, MlmCorpusError)


def test_mask_config_accepts_and_normalises_valid_values():
    cfg = MaskConfig(masked_lm_prob=0.2, max_predictions_per_seq=1, mask_ratios=[1, 0, 0])
    assert cfg.mask_ratios == (1.0, 0.0, 0.0) and all(type(r) is float for r in cfg.mask_ratios)
    assert 0.7 + 0.2 + 0.1 != 1.0  # float sum is 0.9999999999999999, within the 1e-9 tolerance
    assert MaskConfig(mask_ratios=(0.7, 0.2, 0.1)).mask_ratios == (0.7, 0.2, 0.1)
    assert MaskConfig().mask_ratios == (0.8, 0.1, 0.1)


@pytest.mark.parametrize("ratios", [(float("nan"), 0.5, 0.5), (float("nan"),) * 3, (0.5, float("nan"), 0.5)])
def test_mask_config_rejects_nan_ratios(ratios):
    # Regression: NaN used to slip through (abs(nan - 1) > 1e-9 is False), after which
    # mask_batch silently kept every chosen token unchanged (u < nan is always False).
    # Fixed in 68d8385; `--mask-ratios nan,0.5,0.5` parses as floats, so the CLI reaches this.
    with pytest.raises(ConfigError, match="--mask-ratios"):
        MaskConfig(mask_ratios=ratios)


@pytest.mark.parametrize("max_pred", [20, 200])
def test_choosing_in_row_chunks_gives_the_same_masks(monkeypatch, max_pred):
    """Positions are chosen chunk by chunk (bounded temporaries); the result must not depend on
    the chunk size: the keys are one stream drawn in row order."""
    from mlmcorpus.masking import tokens as masking

    rng = np.random.default_rng(3)
    n, L = 700, 64
    lengths = rng.integers(3, L + 1, size=n)
    ids = bert_rows(n, L, lengths, rng, RANDOM_IDS)
    config = MaskConfig(max_predictions_per_seq=max_pred)
    results = []
    for chunk in (10**9, 256, 7, 1):
        monkeypatch.setattr(masking, "_CHUNK_ROWS", chunk)
        results.append(run(ids, lengths, config, seed=11))
    whole = results[0]
    for m in results[1:]:
        assert np.array_equal(m.input_ids, whole.input_ids)
        assert np.array_equal(m.masked_lm_positions, whole.masked_lm_positions)
        assert np.array_equal(m.masked_lm_ids, whole.masked_lm_ids)
        assert np.array_equal(m.counts, whole.counts) and np.array_equal(m.num_masked, whole.num_masked)


# ----------------------------------------------------------------------------- the max_predictions_per_seq trap


@pytest.mark.parametrize(
    "L,prob,expected",
    [(128, 0.15, 20), (512, 0.15, 77), (64, 0.15, 10), (100, 0.2, 20), (8, 0.01, 1), (32768, 0.999, 32736)],
)
def test_the_default_cap_follows_the_row_length(L, prob, expected):
    from mlmcorpus.config import BuildConfig, PairConfig, default_max_predictions

    assert default_max_predictions(L, prob) == expected == reference_cap(MaskConfig(masked_lm_prob=prob), L)
    config = BuildConfig(pairs=PairConfig(max_seq_length=L), mask=MaskConfig(masked_lm_prob=prob))
    assert config.mask.max_predictions_per_seq == expected  # recorded resolved, never "default"
    explicit = BuildConfig(pairs=PairConfig(max_seq_length=L), mask=MaskConfig(masked_lm_prob=prob, max_predictions_per_seq=7))
    assert explicit.mask.max_predictions_per_seq == 7


def test_with_the_default_cap_no_row_is_cut_short():
    gen = np.random.default_rng(4)
    L = 512
    lengths = gen.integers(5, L + 1, size=2000)
    ids = bert_rows(2000, L, lengths, gen, RANDOM_IDS)
    m = run(ids, lengths, MaskConfig(), seed=2)
    assert m.capped_rows == 0
    np.testing.assert_array_equal(chosen_mask(m).sum(axis=1), [reference_k(int(x), MaskConfig(), L) for x in lengths])
    capped = run(ids, lengths, MaskConfig(max_predictions_per_seq=20), seed=2)
    assert capped.capped_rows == int(np.count_nonzero(np.rint(lengths * 0.15) > 20)) > 1000
