"""Word-level masking (issue 11): whole-word, ngram (ALBERT) and span (SpanBERT).

Rows are built over a synthetic vocabulary whose word starts are known: ids 5..204 start a
word, 205..404 continue one; 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK].
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcorpus.cli import cli
from mlmcorpus.config import MaskConfig
from mlmcorpus.masking import MaskVocab
from mlmcorpus.masking import words as wm
from mlmcorpus.report.verify import ALPHA, chi_square

from .conftest import ROOT, SAMPLE

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
V = 405
WORD_START = np.zeros(V, dtype=bool)
WORD_START[:205] = True  # specials count as starts, like Tokenizer.word_start_mask
VOCAB = MaskVocab(np.array([PAD, CLS, SEP, MASK], dtype=np.int32), MASK, np.arange(5, V, dtype=np.int32), V, WORD_START)
POLICIES = ("whole-word", "ngram", "span")


def rows(n: int, L: int, gen: np.random.Generator, max_pieces: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] words [SEP] words [SEP] [PAD]...; each word 1..max_pieces pieces."""
    ids = np.full((n, L), PAD, dtype=np.int32)
    lengths = gen.integers(8, L + 1, size=n)
    for i in range(n):
        row = [CLS]
        while len(row) < lengths[i] - 1:
            row.append(int(gen.integers(5, 205)))
            row.extend(int(x) for x in gen.integers(205, V, size=int(gen.integers(0, max_pieces))))
        row = row[: lengths[i] - 1]
        row[len(row) // 2] = SEP
        row.append(SEP)
        ids[i, : len(row)] = row
    return ids, lengths


def word_index(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Word index per position (-1 off words), computed independently of the module."""
    out = np.full(ids.shape, -1, dtype=np.int64)
    for i in range(len(ids)):
        w, prev_word = -1, False
        for j in range(int(lengths[i])):
            t = int(ids[i, j])
            if t in (PAD, CLS, SEP, MASK):
                prev_word = False
                continue
            if WORD_START[t] or not prev_word:
                w += 1
            out[i, j] = w
            prev_word = True
    return out


def mask(ids, lengths, config, seed=0):
    return wm.mask_words(ids, lengths, VOCAB, config, np.random.default_rng(seed))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), policy=st.sampled_from(POLICIES), per=st.sampled_from(["piece", "word"]),
       prob=st.sampled_from([0.15, 0.3, 0.6]))
def test_words_are_never_split_and_the_budget_is_kept(seed, policy, per, prob):
    gen = np.random.default_rng(seed)
    ids, lengths = rows(30, 48, gen)
    cfg = MaskConfig(masking=policy, replace_per=per, masked_lm_prob=prob, max_predictions_per_seq=12)
    m = mask(ids, lengths, cfg, seed)
    chosen = m.labels != -100
    wid = word_index(ids, lengths)
    for i in range(len(ids)):
        for w in range(wid[i].max() + 1):
            sel = chosen[i][wid[i] == w]
            assert sel.all() or not sel.any(), (i, w)
    assert not chosen[np.isin(ids, [PAD, CLS, SEP, MASK])].any()
    budget = np.minimum(12, np.maximum(1, np.rint(lengths * prob)))
    assert (chosen.sum(axis=1) <= budget).all()
    np.testing.assert_array_equal(m.labels[chosen], ids[chosen])
    # positions and ids: the chosen positions ascending, then zeros
    for i in range(len(ids)):
        pos = np.flatnonzero(chosen[i])
        np.testing.assert_array_equal(m.masked_lm_positions[i, : len(pos)], pos)
        assert not m.masked_lm_positions[i, len(pos) :].any()
        np.testing.assert_array_equal(m.masked_lm_ids[i, : len(pos)], ids[i, pos])
    assert int(m.counts.sum()) == int(chosen.sum())


def test_one_piece_words_fill_the_budget_exactly():
    """With every word one piece, the greedy never has to skip: the count is the token formula."""
    gen = np.random.default_rng(1)
    ids, lengths = rows(300, 64, gen, max_pieces=1)
    for policy in POLICIES:
        m = mask(ids, lengths, MaskConfig(masking=policy), 3)
        cand = (np.arange(64)[None, :] < lengths[:, None]) & ~np.isin(ids, [PAD, CLS, SEP, MASK])
        want = np.minimum(np.minimum(10, np.maximum(1, np.rint(lengths * 0.15))), cand.sum(axis=1))
        np.testing.assert_array_equal((m.labels != -100).sum(axis=1), want, err_msg=policy)


def first_group_lengths(policy: str, n: int, pmf_config: MaskConfig | None = None) -> np.ndarray:
    """Length in words of each row's rank-0 group, among rows where it could not be clipped."""
    gen = np.random.default_rng(7)
    L = 256
    ids = np.full((n, L), PAD, dtype=np.int32)
    ids[:, 0], ids[:, L - 1] = CLS, SEP
    ids[:, 1 : L - 1] = gen.integers(5, 205, size=(n, L - 2))  # one-piece words: no shortening needed
    lengths = np.full(n, L)
    cfg = MaskConfig(masking=policy, max_predictions_per_seq=64)  # budget 38 >= any group
    pmf = wm.group_length_pmf(pmf_config or cfg)
    streams = np.random.default_rng(11).spawn(4)
    chosen, _, group = wm.choose_groups(ids, lengths, VOCAB, cfg, 64, pmf, streams)
    first = group == 0
    start = np.argmax(first, axis=1)
    size = first.sum(axis=1)
    room = (L - 1) - start  # words from the start to the row's end
    return size[room >= len(pmf)]


def _expected_pmf(policy: str) -> np.ndarray:
    """The laws of the issue, written out here rather than taken from the module."""
    n = np.arange(1, 4) if policy == "ngram" else np.arange(1, 11)
    w = 1.0 / n if policy == "ngram" else 0.2 * 0.8 ** (n - 1)  # ALBERT: 1/n on 1..3; SpanBERT: Geo(0.2) on 1..10
    return w / w.sum()


@pytest.mark.parametrize("policy", ["ngram", "span"])
def test_group_lengths_follow_their_distribution(policy):
    """Chi-square of the first group's length in words against p(n) ∝ 1/n (ngram) or the
    truncated geometric (span), on ~20k rows; the mean within 5 standard errors; and the other
    law fails the same test (planted)."""
    sizes = first_group_lengths(policy, 20_000)
    pmf = _expected_pmf(policy)
    np.testing.assert_allclose(wm.group_length_pmf(MaskConfig(masking=policy)), pmf)
    observed = np.bincount(sizes, minlength=len(pmf) + 1)[1:]
    assert observed.sum() > 19_000 and len(observed) == len(pmf)
    _, _, p = chi_square(observed.tolist(), pmf.tolist())
    assert p > ALPHA, (observed, pmf * observed.sum())
    n = np.arange(1, len(pmf) + 1)
    mean, sd = float((n * pmf).sum()), float(np.sqrt((n**2 * pmf).sum() - (n * pmf).sum() ** 2))
    assert abs(sizes.mean() - mean) < 5 * sd / np.sqrt(len(sizes))
    # Planted error: the same lengths tested against the other policy's distribution fail.
    other = wm.group_length_pmf(MaskConfig(masking="span" if policy == "ngram" else "ngram"))
    k = min(len(other), len(observed))
    _, _, p_wrong = chi_square(observed[:k].tolist(), (other[:k] / other[:k].sum()).tolist())
    assert p_wrong < ALPHA


def test_whole_word_groups_are_single_words():
    sizes = first_group_lengths("whole-word", 2000)
    assert (sizes == 1).all()


def test_replace_per_word_gives_a_group_one_fate():
    gen = np.random.default_rng(5)
    ids, lengths = rows(400, 64, gen)
    for per, shared in (("word", True), ("piece", False)):
        cfg = MaskConfig(masking="span", replace_per=per)
        streams = np.random.default_rng(2).spawn(4)
        chosen, kind, group = wm.choose_groups(ids, lengths, VOCAB, cfg, 10, wm.group_length_pmf(cfg), streams)
        mixed = 0
        for i in range(len(ids)):
            for g in set(group[i][group[i] >= 0].tolist()):
                kinds = set(kind[i][group[i] == g].tolist())
                mixed += len(kinds) > 1
        assert (mixed == 0) if shared else (mixed > 50)


def test_the_masks_do_not_depend_on_the_chunk_size(monkeypatch):
    gen = np.random.default_rng(9)
    ids, lengths = rows(300, 48, gen)
    whole = mask(ids, lengths, MaskConfig(masking="span"), 4)
    monkeypatch.setattr(wm, "_CHUNK_ROWS", 7)
    chunked = mask(ids, lengths, MaskConfig(masking="span"), 4)
    np.testing.assert_array_equal(whole.input_ids, chunked.input_ids)
    np.testing.assert_array_equal(whole.masked_lm_positions, chunked.masked_lm_positions)


def test_the_split_follows_the_ratios():
    """80/10/10 per piece over many pieces (chi-square at ALPHA); and a planted 50/25/25 fails."""
    gen = np.random.default_rng(3)
    ids, lengths = rows(3000, 64, gen)
    m = mask(ids, lengths, MaskConfig(masking="whole-word"), 8)
    chosen = m.labels != -100
    is_mask = (m.input_ids == MASK) & chosen
    same = (m.input_ids == ids) & chosen
    observed = [int(is_mask.sum()), int(chosen.sum() - is_mask.sum() - same.sum()), int(same.sum())]
    q = 1 / (V - 5)
    expected = [0.8, 0.1 * (1 - q), 0.1 + 0.1 * q]
    assert chi_square(observed, expected)[2] > ALPHA
    assert chi_square(observed, [0.5, 0.25, 0.25])[2] < ALPHA
    assert sum(observed) > 15_000 and (m.input_ids[chosen & ~is_mask & ~same] >= 5).all()


def test_run_lengths():
    from mlmcorpus.report.scan import _run_lengths

    masked = np.array([[0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    assert _run_lengths(masked).tolist() == [2, 1, 5]


# ------------------------------------------------------------------ through build and inspect


WORDPIECE = ROOT / "tests" / "golden" / "sample-wordpiece-3k.vocab.txt"


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_builds_the_same_for_any_workers_and_verifies(runner, tmp_path, policy):
    vocab = WORDPIECE
    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        result = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(vocab), "--masking", policy,
                                     "-j", workers, "-q", "--pool-docs", "25"])
        assert result.exit_code == 0, result.output
        m = json.loads((out / "manifest.json").read_text())
        digests.append([s["sha256"] for s in m["shards"]])
    assert digests[0] == digests[1]
    assert m["config"]["mask"]["masking"] == policy
    report = runner.invoke(cli, ["inspect", str(tmp_path / "w1"), "--verify", "--json"])
    assert report.exit_code == 0, report.stdout
    v = json.loads(report.stdout)["verify"]
    assert v["passed"] and v["word_check"].startswith("checked with")


def test_verify_catches_split_words(runner, tmp_path):
    """Planted break: a token-masked corpus whose manifest claims whole-word masking."""
    vocab = WORDPIECE
    out = tmp_path / "tok"
    assert runner.invoke(cli, ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(vocab), "-q"]).exit_code == 0
    m = json.loads((out / "manifest.json").read_text())
    m["config"]["mask"]["masking"] = "whole-word"
    (out / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(cli, ["inspect", str(out), "--verify", "--json"])
    v = json.loads(result.stdout)["verify"]
    assert result.exit_code == 1 and "words" in v["problems"] and not v["passed"]
    assert any("a word is partly masked" in f for f in v["findings"])



# ------------------------------------------------------------------ --masking none (dynamic masking)


def _rows_of(out):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlmcorpus.formats.arrow import to_numpy

    table = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("train-*.parquet"))])
    return {name: to_numpy(table.column(name)) for name in table.column_names}


def test_unmasked_rows_are_the_token_builds_rows_before_masking(runner, tmp_path):
    base = ["build", str(SAMPLE), "--tokenizer", str(WORDPIECE), "-q"]
    assert runner.invoke(cli, [*base, "-o", str(tmp_path / "token")]).exit_code == 0
    for workers in ("1", "2"):
        result = runner.invoke(cli, [*base, "-o", str(tmp_path / f"none{workers}"), "--masking", "none", "-j", workers])
        assert result.exit_code == 0, result.output
    none, none2, token = _rows_of(tmp_path / "none1"), _rows_of(tmp_path / "none2"), _rows_of(tmp_path / "token")
    assert list(none) == ["input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "next_sentence_label"]
    for name in none:
        np.testing.assert_array_equal(none[name], none2[name], err_msg=name)  # any --workers
    original = np.where(token["labels"] != -100, token["labels"], token["input_ids"])
    np.testing.assert_array_equal(none["input_ids"], original)  # the same pairs, nothing replaced
    for name in ("token_type_ids", "attention_mask", "next_sentence_label"):
        np.testing.assert_array_equal(none[name], token[name], err_msg=name)
    # special_tokens_mask: 1 exactly on [CLS], [SEP] and padding
    m = json.loads((tmp_path / "none1" / "manifest.json").read_text())
    sp = m["tokenizer"]["special_ids"]
    expected = (none["attention_mask"] == 0) | np.isin(none["input_ids"], [sp["cls"], sp["sep"]])
    np.testing.assert_array_equal(none["special_tokens_mask"].astype(bool), expected)
    assert m["stats"]["masked_positions"]["total"] == 0 and m["config"]["mask"]["masking"] == "none"
    assert runner.invoke(cli, ["inspect", str(tmp_path / "none1"), "--verify"]).exit_code == 0


def test_verify_catches_a_wrong_special_tokens_mask(runner, tmp_path):
    out = tmp_path / "np"
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(WORDPIECE), "-q", "--masking", "none", "--format", "numpy"]
    assert runner.invoke(cli, args).exit_code == 0
    m = json.loads((out / "manifest.json").read_text())
    stm = np.load(out / m["shards"][0]["file"] / "special_tokens_mask.npy", mmap_mode="r+")
    stm[3, 5] = 1 - stm[3, 5]  # planted: one position flipped
    stm.flush()
    del stm
    v = json.loads(runner.invoke(cli, ["inspect", str(out), "--verify", "--json"]).stdout)["verify"]
    assert not v["passed"] and v["problems"].get("special_tokens_mask") == 1
    assert any("row 3: special_tokens_mask is not 1 exactly" in f for f in v["findings"])


@pytest.mark.parametrize("policy", ["none", "span"])
def test_the_stage_pipeline_equals_build_for_other_policies(tmp_path, policy):
    import os
    import subprocess
    import sys

    mc = f"{sys.executable} -m mlmcorpus"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{mc} stream -q {SAMPLE} | {mc} pairs --tokenizer {WORDPIECE} -q "
         f"| {mc} mask --masking {policy} | {mc} write {tmp_path / 'piped'} -q"],
        capture_output=True, env=env, cwd=ROOT,
    )
    assert piped.returncode == 0, piped.stderr.decode()
    built = subprocess.run([*mc.split(), "build", str(SAMPLE), "-o", str(tmp_path / "built"), "--tokenizer", str(WORDPIECE),
                            "--masking", policy, "-q"], capture_output=True, env=env, cwd=ROOT)
    assert built.returncode == 0, built.stderr.decode()
    digest = [[s["sha256"] for s in json.loads((tmp_path / d / "manifest.json").read_text())["shards"]] for d in ("piped", "built")]
    assert digest[0] == digest[1]


def test_verify_catches_a_word_masker_that_stops_early(runner, tmp_path, monkeypatch):
    """Planted: the masker fills only a third of each row's budget; verify's completeness check
    (an unmasked word that fits the unfilled budget) must fail the corpus."""
    real = wm.wanted_predictions
    monkeypatch.setattr(wm, "wanted_predictions", lambda lengths, config: np.maximum(1, real(lengths, config) // 3))
    out = tmp_path / "short"
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(WORDPIECE), "-q", "--masking", "whole-word", "-j", "1"]
    assert runner.invoke(cli, args).exit_code == 0
    monkeypatch.undo()
    v = json.loads(runner.invoke(cli, ["inspect", str(out), "--verify", "--json"]).stdout)["verify"]
    assert not v["passed"] and v["problems"].get("budget", 0) > 100


def test_word_masking_refuses_a_tokenizer_without_word_continuations(runner, tmp_path):
    """A word-level vocabulary (no ## or ▁ pieces) would make every piece a word: refused, not
    silently per-piece."""
    tokenizers = pytest.importorskip("tokenizers")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "sat", "."]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({t: i for i, t in enumerate(pieces)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "words.json"))
    args = ["build", str(SAMPLE), "-o", str(tmp_path / "out"), "--tokenizer", str(tmp_path / "words.json"), "-q"]
    result = runner.invoke(cli, [*args, "--masking", "whole-word"])
    assert result.exit_code == 2 and "marks no word continuations" in result.stderr
    assert not list((tmp_path / "out").glob("train-*")) and not (tmp_path / "out" / "manifest.json").exists()
    assert runner.invoke(cli, [*args, "--masking", "token", "--overwrite"]).exit_code == 0  # token masking is fine


#: sha256 of mask_words' output (every array's dtype, shape and bytes, and capped_rows) on fixed
#: rows, configurations and chunk sizes, computed by the implementation before the speed-ups of
#: the words-speed branch (61ce50e): a faster mask_words must give the same bytes.
PINNED = [
    ("whole-word", {}, 1024,
     "4455f43a90a4b4c8782c6b21ab2fccd6f16b6a8b78432de2fe374840702d2993"),
    ("whole-word", {"replace_per": "word", "masked_lm_prob": 0.4}, 7,
     "c6ef12da7a33a801b01f4bc4d58861e3fbbcaa37c99a040ca5c682cd57cf1b1d"),
    ("ngram", {}, 1024,
     "ddd8b0dd6f793596b45f26f413994359849b89858610840a55bb2f48c33e0ec9"),
    ("ngram", {"max_ngram": 6, "replace_per": "word", "max_predictions_per_seq": 30}, 64,
     "8aae5a15e84eb2a1953985af76ca0f732fff4713b52a9537fefbdd475629824a"),
    ("span", {}, 1024,
     "5b7eb690198f07da76f085212296f1dc0c1a4c949e85aa7ba9eb5169a88a1dac"),
    ("span", {"replace_per": "piece", "max_span": 4, "span_p": 0.5}, 7,
     "19127cbe9cf2018fc57e4f9161abe27f3034fa7d80abd3c630efda4291444713"),
    ("span", {"max_predictions_per_seq": 4, "mask_ratios": (0.5, 0.3, 0.2)}, 100,
     "afd67cd683fd88896b3468f7ae21d3fc916cc9289ae5b6ea3d2a41dba2ddf54e"),
    ("span", {"max_span": 64, "span_p": 0.05, "masked_lm_prob": 0.6, "max_predictions_per_seq": 90}, 1024,
     "bcf2ff125237e9fcef8a943d410877dd8c9322c8f5b88ab355e5f77ff40920b0"),
]


def masked_digest(m) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in (m.input_ids, m.masked_lm_positions, m.masked_lm_ids, m.counts, m.num_masked):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(str(m.capped_rows).encode())
    return h.hexdigest()


@pytest.mark.parametrize("policy, options, chunk, digest", PINNED)
def test_the_masked_bytes_are_pinned(policy, options, chunk, digest, monkeypatch):
    gen = np.random.default_rng(len(options) * 31 + chunk)
    ids, lengths = rows(500, 100, gen, max_pieces=5)
    monkeypatch.setattr(wm, "_CHUNK_ROWS", chunk)
    assert masked_digest(mask(ids, lengths, MaskConfig(masking=policy, **options), 17)) == digest
