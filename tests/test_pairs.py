"""NSP instances (mlmcorpus.tasks.nsp) against a port of Google's reference, plus properties.

The reference port lives in ``tests/google_reference.py`` (no masking, one pass,
no document shuffle; see its docstring for where mlmcorpus deliberately differs).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcorpus.config import BuildConfig, PairConfig, UnitConfig
from mlmcorpus.segments import Segments, split_segments
from mlmcorpus.tasks.nsp import Instances, assemble, create_instances
from mlmcorpus.units import PairStats
from mlmcorpus.schema import attention_mask, token_type_ids
from mlmcorpus.objective import pair_unit
from mlmcorpus.units import Unit, iter_units
from mlmcorpus.readers import Document, ReaderConfig, iter_documents, resolve_sources
from mlmcorpus.rng import Purpose, unit_random
from mlmcorpus.tokenizers import EncodedBatch, SpecialIds, load_tokenizer

from . import google_reference as ref
from .conftest import SAMPLE

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)
FIRST_ID = 5  # first non-special id used by the synthetic data


# ------------------------------------------------------------------ helpers


class FakeTokenizer:
    """What ``pair_unit`` needs: ``encode_batch`` and ``special_ids``.  A sentence is "12 13 14"."""

    special_ids = SPECIAL

    def encode_batch(self, sentences: Sequence[str]) -> EncodedBatch:
        return EncodedBatch.from_lists([[int(t) for t in s.split()] for s in sentences])


def random_documents(
    rng: random.Random,
    n_docs: tuple[int, int],
    n_sents: tuple[int, int],
    max_len: int,
    min_len: int = 1,
) -> list[list[list[int]]]:
    """Documents of sentences of token ids; every id is unique (its position + FIRST_ID)."""
    counter = FIRST_ID
    docs = []
    for _ in range(rng.randint(*n_docs)):
        doc = []
        for _ in range(rng.randint(*n_sents)):
            n = rng.randint(min_len, max_len)
            doc.append(list(range(counter, counter + n)))
            counter += n
        docs.append(doc)
    return docs


def run_ours(
    documents: Sequence[Sequence[Sequence[int]]], max_seq_length: int, short_seq_prob: float, seed: int
) -> tuple[Segments, Instances, PairStats]:
    sentences = [s for d in documents for s in d]
    offsets = np.zeros(len(documents) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in documents], out=offsets[1:])
    cfg = PairConfig(max_seq_length=max_seq_length, short_seq_prob=short_seq_prob)
    stats = PairStats()
    segs = split_segments(EncodedBatch.from_lists(sentences), offsets, cfg.max_num_tokens, stats)
    inst = create_instances(segs, cfg, random.Random(seed), stats)
    return segs, inst, stats


def as_lists(segs: Segments, inst: Instances) -> list[tuple[list[int], list[int], bool]]:
    ids = segs.ids
    return [
        (ids[a0 : a0 + la].tolist(), ids[b0 : b0 + lb].tolist(), bool(lab))
        for a0, la, b0, lb, lab in zip(
            inst.a_start.tolist(), inst.a_len.tolist(), inst.b_start.tolist(), inst.b_len.tolist(), inst.is_random_next.tolist()
        )
    ]


def assert_same_instances(ours, theirs) -> None:
    assert len(ours) == len(theirs), f"{len(ours)} instances, reference has {len(theirs)}"
    for k, (o, t) in enumerate(zip(ours, theirs)):
        assert o == t, f"instance {k}: ours {o} != reference {t}"


def doc_token_ranges(segs: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Flat [lo, hi) token range of each document."""
    lo = segs.start[segs.doc_lo]
    hi = segs.start[segs.doc_hi - 1] + segs.length[segs.doc_hi - 1]
    return lo, hi


def segment_ranges(segs: Segments, first: int, last: int) -> tuple[int, int]:
    """Flat [lo, hi) token range of segments first..last (inclusive)."""
    return int(segs.start[first]), int(segs.start[last] + segs.length[last])


# ------------------------------------------------------------------ the port itself


def test_reference_truncate_seq_pair_trims_longer_side_b_on_ties():
    a, b = list(range(10)), list(range(100, 104))
    ref.truncate_seq_pair(a, b, 10, random.Random(0))
    assert len(a) == 6 and len(b) == 4  # only A (longer) was trimmed
    a, b = [1, 2, 3], [4, 5, 6]
    rng = random.Random(1)
    ref.truncate_seq_pair(a, b, 5, rng)
    assert a == [1, 2, 3] and len(b) == 2  # tie -> B


def test_reference_port_is_one_in_order_pass():
    docs = [[[5, 6], [7, 8, 9]], [[10]], [[11, 12, 13], [14], [15, 16]]]
    trace: list = []
    out = ref.create_instances(docs, 16, 0.0, random.Random(3), trace=trace)
    assert [t[0] for t in trace] == sorted(t[0] for t in trace)
    for a, b, _ in out:
        assert a and b and len(a) + len(b) <= 13


# ------------------------------------------------------------------ equivalence with the reference

MAX_SEQ_LENGTHS = (16, 32, 64, 128)
SHORT_SEQ_PROBS = (0.0, 0.1, 0.5)


@pytest.mark.parametrize("max_seq_length", MAX_SEQ_LENGTHS)
@pytest.mark.parametrize("short_seq_prob", SHORT_SEQ_PROBS)
def test_create_instances_equals_reference_multi_document(max_seq_length, short_seq_prob):
    """Seeded random units of 3..8 documents, every sentence shorter than max_num_tokens.

    With >= 3 documents, the reference picks the current document in all of its
    10 tries with probability <= (1/3)**10 < 2e-5 per random-next instance; only
    then would the deliberate same-document difference (see google_reference)
    show up, and the port mirrors it anyway.
    """
    max_num = max_seq_length - 3
    max_len = min(40, max_num - 1)
    n_instances = n_random = 0
    for seed in range(40):
        gen = random.Random(f"docs-{max_seq_length}-{short_seq_prob}-{seed}")
        docs = random_documents(gen, (3, 8), (1, 12), max_len)
        segs, inst, stats = run_ours(docs, max_seq_length, short_seq_prob, seed)
        theirs = ref.create_instances(docs, max_seq_length, short_seq_prob, random.Random(seed), same_document="reference")
        assert_same_instances(as_lists(segs, inst), theirs)
        assert stats.instances == len(inst) and stats.random_next == int(inst.is_random_next.sum())
        assert "long_sentences_split" not in stats.counts
        n_instances += len(inst)
        n_random += stats.random_next
    assert n_instances > 100 and 0 < n_random < n_instances


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    max_seq_length=st.sampled_from(MAX_SEQ_LENGTHS),
    short_seq_prob=st.sampled_from(SHORT_SEQ_PROBS),
    seed=st.integers(0, 2**32 - 1),
)
def test_create_instances_equals_reference_hypothesis(data, max_seq_length, short_seq_prob, seed):
    max_len = min(40, max_seq_length - 4)
    lengths = data.draw(
        st.lists(st.lists(st.integers(1, max_len), min_size=1, max_size=10), min_size=3, max_size=6), label="lengths"
    )
    counter = FIRST_ID
    docs = []
    for doc in lengths:
        docs.append([list(range(counter, counter + n)) for n in doc])
        counter += sum(doc)
    segs, inst, _ = run_ours(docs, max_seq_length, short_seq_prob, seed)
    theirs = ref.create_instances(docs, max_seq_length, short_seq_prob, random.Random(seed), same_document="reference")
    assert_same_instances(as_lists(segs, inst), theirs)


@pytest.mark.parametrize("max_seq_length", (16, 64))
def test_create_instances_equals_reference_with_long_and_empty_sentences(max_seq_length):
    """Ours splits long sentences first; the port with ``split_long=True`` does the same, then agrees."""
    max_num = max_seq_length - 3
    for seed in range(30):
        gen = random.Random(f"long-{max_seq_length}-{seed}")
        docs = random_documents(gen, (3, 6), (0, 8), 3 * max_num + 2, min_len=0)
        docs.insert(gen.randint(0, len(docs)), [])  # an empty document
        docs.insert(gen.randint(0, len(docs)), [[], []])  # a document of empty sentences
        segs, inst, stats = run_ours(docs, max_seq_length, 0.1, seed)
        # "distant": some of these units are left with a single non-empty document.
        theirs = ref.create_instances(docs, max_seq_length, 0.1, random.Random(seed), same_document="distant")
        assert_same_instances(as_lists(segs, inst), theirs)
        n_long = sum(len(s) > max_num for d in docs for s in d)
        assert stats.counts["long_sentences_split"] == n_long


@pytest.mark.parametrize("max_seq_length", (16, 32, 64))
def test_create_instances_equals_port_single_document(max_seq_length):
    """One document in the pool: our deliberate 'distant part' fallback, mirrored by the port."""
    for seed in range(60):
        gen = random.Random(f"single-{max_seq_length}-{seed}")
        docs = random_documents(gen, (1, 1), (1, 40), min(40, max_seq_length - 4))
        segs, inst, stats = run_ours(docs, max_seq_length, 0.1, seed)
        theirs = ref.create_instances(docs, max_seq_length, 0.1, random.Random(seed), same_document="distant")
        assert_same_instances(as_lists(segs, inst), theirs)
        assert stats.counts["random_next_same_document"] == int(inst.is_random_next.sum())


# ------------------------------------------------------------------ properties on real-ish data


@pytest.fixture(scope="module")
def sample_documents() -> list[list[str]]:
    return [d.sentences for d in iter_documents(resolve_sources([str(SAMPLE)]), ReaderConfig())]


@pytest.fixture(scope="module")
def spm_tok(spm_model):
    return load_tokenizer(str(spm_model))


def encode_unit(tok, documents: list[list[str]]) -> tuple[EncodedBatch, np.ndarray]:
    batch = tok.encode_batch([s for d in documents for s in d])
    offsets = np.zeros(len(documents) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in documents], out=offsets[1:])
    return batch, offsets


@pytest.mark.parametrize("max_seq_length,short_seq_prob", [(16, 0.1), (32, 0.5), (64, 0.1), (128, 0.1), (128, 0.0)])
def test_instance_properties_on_sample_data(spm_tok, sample_documents, max_seq_length, short_seq_prob):
    batch, offsets = encode_unit(spm_tok, sample_documents)
    cfg = PairConfig(max_seq_length=max_seq_length, short_seq_prob=short_seq_prob)
    max_num = cfg.max_num_tokens
    stats = PairStats()
    segs = split_segments(batch, offsets, max_num, stats)
    inst = create_instances(segs, cfg, random.Random(max_seq_length), stats)
    n = len(inst)
    assert n > 50 and stats.instances == n

    a0, la, b0, lb, lab = inst.a_start, inst.a_len, inst.b_start, inst.b_len, inst.is_random_next
    assert (la >= 1).all() and (lb >= 1).all()
    assert (la + lb <= max_num).all()

    # Every A and every B lies inside one document.
    d_lo, d_hi = doc_token_ranges(segs)
    doc_a = np.searchsorted(d_lo, a0, side="right") - 1
    doc_b = np.searchsorted(d_lo, b0, side="right") - 1
    assert (a0 + la <= d_hi[doc_a]).all() and (b0 + lb <= d_hi[doc_b]).all()

    # Actual next (label 0): B follows A in the same document.  Only truncation (A's back, B's
    # front) can open a gap, it must contain the segment boundary where A ended, and then the
    # pair was trimmed to exactly max_num tokens.
    boundaries = np.union1d(segs.start, segs.start + segs.length)
    nxt = lab == 0
    assert nxt.any() and (lab == 1).any()
    assert (doc_a[nxt] == doc_b[nxt]).all()
    a_end = a0 + la
    assert (b0[nxt] >= a_end[nxt]).all()
    gap = nxt & (b0 > a_end)
    assert (la[gap] + lb[gap] == max_num).all()
    k = np.searchsorted(boundaries, a_end[nxt], side="left")
    assert (boundaries[np.minimum(k, len(boundaries) - 1)] <= b0[nxt]).all()
    # Random next (label 1): from another document of the pool.
    rnd = lab == 1
    assert (doc_a[rnd] != doc_b[rnd]).all()
    assert "random_next_same_document" not in stats.counts

    # Rows: [CLS] A [SEP] B [SEP] PAD... exactly.
    ids, lengths, a_len = assemble(segs.ids, inst, max_seq_length, spm_tok.special_ids)
    sp = spm_tok.special_ids
    assert ids.shape == (n, max_seq_length) and ids.dtype == np.int32
    assert (lengths == la + lb + 3).all() and (a_len == la).all()
    tt = token_type_ids(lengths, a_len, max_seq_length)
    am = attention_mask(lengths, max_seq_length)
    assert tt.shape == am.shape == (n, max_seq_length)
    flat = segs.ids
    for r in range(n):
        A = flat[a0[r] : a0[r] + la[r]].tolist()
        B = flat[b0[r] : b0[r] + lb[r]].tolist()
        expected = [sp.cls, *A, sp.sep, *B, sp.sep]
        expected += [sp.pad] * (max_seq_length - len(expected))
        assert ids[r].tolist() == expected
        assert tt[r].tolist() == [0] * (len(A) + 2) + [1] * (len(B) + 1) + [0] * (max_seq_length - len(A) - len(B) - 3)
        assert am[r].tolist() == [1] * int(lengths[r]) + [0] * (max_seq_length - int(lengths[r]))


def test_pair_unit_rows_have_bert_layout(spm_tok, sample_documents):
    config = BuildConfig(pairs=PairConfig(max_seq_length=64), seed=5)
    paired = pair_unit(Unit(0, sample_documents), spm_tok, config)
    sp = spm_tok.special_ids
    ids, lengths, a_len = paired.input_ids, paired.lengths, paired.a_len
    n, L = ids.shape
    assert n == paired.stats.instances > 0 and L == 64
    rows = np.arange(n)
    assert (ids[:, 0] == sp.cls).all()
    assert (ids[rows, a_len + 1] == sp.sep).all() and (ids[rows, lengths - 1] == sp.sep).all()
    cols = np.arange(L)[None, :]
    real = cols < lengths[:, None]
    assert (ids[~real] == sp.pad).all()
    body = real & (cols != 0) & (cols != a_len[:, None] + 1) & (cols != lengths[:, None] - 1)
    # Text never yields the control ids ([UNK] is an ordinary outcome of encoding).
    assert not np.isin(ids[body], [sp.pad, sp.cls, sp.sep, sp.mask]).any()
    assert ((lengths - a_len - 3) >= 1).all() and (a_len >= 1).all()
    assert paired.next_sentence_label.dtype == np.int8
    assert int(paired.next_sentence_label.sum()) == paired.stats.random_next


# ------------------------------------------------------------------ NSP ratio


def test_nsp_ratio_half_on_multi_segment_chunks_and_biased_overall():
    """short_seq_prob=0, many-sentence documents.

    Among instances from chunks with >= 2 segments the random-next share is
    Binomial(n, 0.5)/n: we accept |X - n/2| <= 5 * sqrt(n)/2 (5 sigma; a false
    alarm has probability < 1e-6).  One-segment chunks are forced random (the
    reference's known bias), so the overall share is above 0.5.  Chunk sizes come
    from the port's trace after checking that ours and the port agree.
    """
    gen = random.Random("nsp")
    docs = random_documents(gen, (300, 300), (20, 40), 40)
    segs, inst, stats = run_ours(docs, 64, 0.0, 2024)
    trace: list = []
    theirs = ref.create_instances(docs, 64, 0.0, random.Random(2024), same_document="reference", trace=trace)
    assert_same_instances(as_lists(segs, inst), theirs)
    labels = inst.is_random_next.astype(bool)
    chunk_size = np.array([t[2] - t[1] + 1 for t in trace])
    multi = chunk_size >= 2
    n2, x2 = int(multi.sum()), int(labels[multi].sum())
    n1 = int((~multi).sum())
    assert n2 >= 3000
    assert abs(x2 - n2 / 2) <= 5 * math.sqrt(n2) / 2, f"{x2}/{n2} random among multi-segment chunks"
    assert labels[~multi].all(), "one-segment chunks must be random next"
    assert n1 > 0
    overall = stats.random_next / stats.instances
    expected = (n1 + n2 / 2) / (n1 + n2)
    sigma = math.sqrt(n2) / 2 / (n1 + n2)
    print(f"NSP: multi-segment chunks {x2}/{n2} = {x2 / n2:.4f} random; overall {stats.random_next}/{stats.instances} = {overall:.4f} (one-segment chunks {n1})")
    assert abs(overall - expected) <= 5 * sigma
    assert overall > 0.5


# ------------------------------------------------------------------ long / empty sentences


def test_long_sentences_are_split_into_consecutive_pieces():
    max_num = 13
    sentences = [
        list(range(100, 105)),  # short
        list(range(200, 200 + 3 * max_num + 4)),  # 4 pieces
        list(range(300, 300 + max_num)),  # exactly max_num: not split
        list(range(400, 400 + max_num + 1)),  # 2 pieces
    ]
    batch = EncodedBatch.from_lists(sentences)
    stats = PairStats()
    segs = split_segments(batch, [0, 2, 4], max_num, stats)
    pieces = [segs.ids[s : s + n].tolist() for s, n in zip(segs.start.tolist(), segs.length.tolist())]
    assert all(1 <= len(p) <= max_num for p in pieces)
    assert [len(p) for p in pieces] == [5, 13, 13, 13, 4, 13, 13, 1]
    assert sum(pieces, []) == sum(sentences, [])  # nothing lost, order kept
    assert sum(pieces[1:5], []) == sentences[1] and sum(pieces[6:8], []) == sentences[3]
    assert segs.doc_lo.tolist() == [0, 5] and segs.doc_hi.tolist() == [5, 8]
    assert stats.counts["long_sentences_split"] == 2
    assert stats.sentences == 4 and stats.tokens == sum(map(len, sentences)) and stats.documents == 2


def test_long_sentence_instances_stay_within_limits():
    docs = [[list(range(1000 + 100 * d, 1000 + 100 * d + 90))] for d in range(3)]  # one 90-token sentence each
    segs, inst, stats = run_ours(docs, 16, 0.0, 1)
    assert stats.counts["long_sentences_split"] == 3
    assert (inst.a_len + inst.b_len <= 13).all() and (inst.a_len >= 1).all() and (inst.b_len >= 1).all()


def test_empty_sentences_and_documents_are_counted_and_dropped():
    sentences = [[5, 6], [], [7], [], [], [8, 9, 10]]
    # documents: [s0 s1 s2] [s3 s4] (only empty sentences) [] (no sentences) [s5]
    stats = PairStats()
    segs = split_segments(EncodedBatch.from_lists(sentences), [0, 3, 5, 5, 6], 13, stats)
    assert stats.counts["empty_sentences_after_tokenizing"] == 3
    assert stats.counts["empty_documents_after_tokenizing"] == 2
    assert stats.documents == 2 and stats.sentences == 3 and stats.tokens == 6
    assert segs.num_docs == 2 and segs.length.tolist() == [2, 1, 3]
    assert segs.doc_lo.tolist() == [0, 2] and segs.doc_hi.tolist() == [2, 3]


# ------------------------------------------------------------------ single-document unit


def test_single_document_random_next_is_counted_and_from_same_document():
    gen = random.Random("book")
    docs = random_documents(gen, (1, 1), (300, 300), 30)
    segs, inst, stats = run_ours(docs, 64, 0.1, 9)
    n_random = int(inst.is_random_next.sum())
    assert n_random > 30  # enough cases for the counts below to mean something
    assert stats.counts["random_next_same_document"] == n_random
    assert stats.random_next == n_random


def test_single_document_random_next_avoids_chunk_and_following_segment():
    """Random-next B must not take tokens from the current chunk or the segment right after it.

    Chunks come from the port's trace (ours agrees with the port instance for
    instance, see test_create_instances_equals_port_single_document).

    Regression: B used to be drawn by its *start* only; a start before the chunk
    let B collect segments forward into the chunk, so B contained A while labelled
    random next.  B taken before the chunk now stops at the chunk.
    """
    bad = []
    for max_seq_length, seed in ((m, s) for m in (16, 32, 64) for s in range(60)):
        gen = random.Random(f"single-{max_seq_length}-{seed}")
        docs = random_documents(gen, (1, 1), (1, 40), min(40, max_seq_length - 4))
        segs, inst, _ = run_ours(docs, max_seq_length, 0.1, seed)
        trace: list = []
        theirs = ref.create_instances(docs, max_seq_length, 0.1, random.Random(seed), same_document="distant", trace=trace)
        assert_same_instances(as_lists(segs, inst), theirs)
        n_seg = len(segs.start)
        for k, (_, first, last, _, _, _, _) in enumerate(trace):
            if not inst.is_random_next[k]:
                continue
            lo, hi = segment_ranges(segs, max(first - 1, 0), min(last + 1, n_seg - 1))  # with both neighbours
            b0, b1 = int(inst.b_start[k]), int(inst.b_start[k] + inst.b_len[k])
            if b0 < hi and lo < b1:
                bad.append((max_seq_length, seed, k, (lo, hi), (b0, b1)))
    assert not bad, (
        f"{len(bad)} random-next B overlap their chunk/next segment, e.g. "
        f"(max_seq_length, seed, instance, chunk+next token range, B token range) {bad[:3]}"
    )


def test_single_document_chunk_without_distant_part():
    """A one-document unit that fits in one chunk has nowhere distant to take B from.

    With two or more segments the actual next pair is kept (counted as
    random_next_unavailable when random next had been drawn); a lone segment has
    nothing to pair with and is dropped (counted)."""
    outcomes = Counter()
    for seed in range(200):
        segs, inst, stats = run_ours([[[5, 6], [7, 8, 9]]], 16, 0.0, seed)
        assert as_lists(segs, inst) == [([5, 6], [7, 8, 9], False)]
        outcomes["unavailable"] += stats.counts["random_next_unavailable"]
        segs, inst, stats = run_ours([[[5, 6, 7]]], 16, 0.0, seed)
        assert len(inst) == 0 and stats.counts["chunks_without_random_next"] == 1
    # random next is drawn with probability 0.5: 100 +- 5 sd (sd = sqrt(200 * 0.25) ~ 7.1)
    assert abs(outcomes["unavailable"] - 100) < 5 * 7.1


def test_single_document_random_next_minimal_regression():
    """Regression for the bug above: B labelled random next used to contain all of A.

    One document of 4 sentences (3, 6, 8, 2 tokens), max_seq_length=16, short_seq_prob=0,
    random.Random(3): the first chunk (all four sentences) is dropped
    (chunks_without_random_next), the only instance has A = sentence 3 = [35, 36] and
    B = sentences 2+3 = [25..32, 35, 36], labelled random next.
    """
    sentences = [list(range(10 * k + 5, 10 * k + 5 + n)) for k, n in enumerate([3, 6, 8, 2])]
    segs, inst, stats = run_ours([sentences], 16, 0.0, 3)
    overlaps = []
    for A, B, is_random in as_lists(segs, inst):
        if is_random and set(A) & set(B):
            overlaps.append((A, B))
    assert not overlaps, f"random-next B overlaps A: {overlaps}"


# ------------------------------------------------------------------ pair_unit determinism


def synthetic_unit(unit_id: int, seed: str) -> Unit:
    docs = random_documents(random.Random(seed), (4, 6), (5, 15), 30)
    return Unit(unit_id, [[" ".join(map(str, s)) for s in d] for d in docs])


def rows_multiset(ids: np.ndarray) -> Counter:
    return Counter(map(bytes, ids))


def test_pair_unit_is_deterministic():
    tok = FakeTokenizer()
    cfg = BuildConfig(pairs=PairConfig(max_seq_length=32), seed=11)
    unit = synthetic_unit(3, "u")
    p1, p2 = pair_unit(unit, tok, cfg), pair_unit(unit, tok, cfg)
    for name in ("input_ids", "lengths", "a_len", "next_sentence_label"):
        a, b = getattr(p1, name), getattr(p2, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert p1.stats == p2.stats

    other_seed = pair_unit(unit, tok, BuildConfig(pairs=PairConfig(max_seq_length=32), seed=12))
    other_id = pair_unit(Unit(4, unit.documents), tok, cfg)
    for other in (other_seed, other_id):
        assert not (other.input_ids.shape == p1.input_ids.shape and np.array_equal(other.input_ids, p1.input_ids))
        assert rows_multiset(other.input_ids) != rows_multiset(p1.input_ids)  # different instances, not just order


def test_pair_unit_dupe_factor_two_passes():
    tok = FakeTokenizer()
    unit = synthetic_unit(7, "dupe")
    one = pair_unit(unit, tok, BuildConfig(pairs=PairConfig(max_seq_length=32, dupe_factor=1), seed=5))
    two = pair_unit(unit, tok, BuildConfig(pairs=PairConfig(max_seq_length=32, dupe_factor=2), seed=5))

    # Recompute each pass by hand with the documented generator keys.
    pc = PairConfig(max_seq_length=32)
    sentences = [s for d in unit.documents for s in d]
    offsets = np.zeros(len(unit.documents) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in unit.documents], out=offsets[1:])
    segs = split_segments(tok.encode_batch(sentences), offsets, pc.max_num_tokens, PairStats())
    passes = []
    for p in range(2):
        inst = create_instances(segs, pc, unit_random(5, 7, Purpose.PAIRS, p), PairStats())
        passes.append(assemble(segs.ids, inst, 32, SPECIAL)[0])

    assert rows_multiset(one.input_ids) == rows_multiset(passes[0])
    assert rows_multiset(two.input_ids) == rows_multiset(passes[0]) + rows_multiset(passes[1])
    assert len(two.input_ids) == len(passes[0]) + len(passes[1]) == two.stats.instances
    assert rows_multiset(passes[0]) != rows_multiset(passes[1])
    # Document/sentence/token counts are per unit, not per pass.
    assert two.stats.documents == one.stats.documents == len(unit.documents)
    assert two.stats.tokens == one.stats.tokens


# ------------------------------------------------------------------ iter_units


def make_documents(char_sizes: list[list[int]]) -> list[Document]:
    return [
        Document(id=f"doc{i}", sentences=["x" * n for n in sizes], source="mem")
        for i, sizes in enumerate(char_sizes)
    ]


@settings(max_examples=200, deadline=None)
@given(
    char_sizes=st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=5), max_size=40),
    pool_docs=st.integers(1, 8),
    unit_chars=st.integers(1, 300),
)
def test_iter_units_cuts_by_pool_docs_and_unit_chars_only(char_sizes, pool_docs, unit_chars):
    docs = make_documents(char_sizes)
    units = list(iter_units(iter(docs), UnitConfig(pool_docs=pool_docs, unit_chars=unit_chars)))
    assert [u.id for u in units] == list(range(len(units)))
    assert [s for u in units for d in u.documents for s in d] == [s for d in docs for s in d.sentences]  # all, in order
    for k, u in enumerate(units):
        chars = [sum(map(len, d)) for d in u.documents]
        if u.split_parts:
            # A part of a document longer than unit_chars on its own: alone in its unit, and cut
            # at the first sentence that reaches the limit (the last part may be shorter).
            sizes = [len(x) for x in u.documents[0]]
            assert len(u.documents) == 1 and sum(sizes[:-1]) < unit_chars
            continue
        assert 1 <= len(u.documents) <= pool_docs
        assert all(c <= unit_chars for c in chars)  # bigger documents are cut into their own units
        # Never closed later than needed: no proper prefix reached either limit.
        assert sum(chars[:-1]) < unit_chars and len(u.documents) - 1 < pool_docs
        if k < len(units) - 1 and not units[k + 1].split_parts:  # closed because a limit was reached
            assert len(u.documents) == pool_docs or sum(chars) >= unit_chars

    # Nothing else matters: ids, sources and how the text is split into sentences
    # (as long as no document has to be cut, which happens at sentence boundaries).
    if all(sum(sizes) <= unit_chars for sizes in char_sizes):
        assert not any(u.split_parts for u in units)
        regrouped = [
            Document(id=f"other{i}", sentences=["y" * sum(sizes)], source="elsewhere")
            for i, sizes in enumerate(char_sizes)
        ]
        units2 = list(iter_units(regrouped, UnitConfig(pool_docs=pool_docs, unit_chars=unit_chars)))
        assert [len(u.documents) for u in units2] == [len(u.documents) for u in units]
        assert [u.id for u in units2] == [u.id for u in units]


@settings(max_examples=200, deadline=None)
@given(
    char_sizes=st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=5), max_size=30),
    splits=st.lists(st.integers(0, 3), max_size=30),
    pool_docs=st.integers(1, 6),
    unit_chars=st.integers(1, 200),
)
def test_iter_units_never_span_two_splits(char_sizes, splits, pool_docs, unit_chars):
    """Each split is cut on its own, as if it were the whole input, with ids (split, 0), (split, 1), ..."""
    from mlmcorpus.units import unit_id

    docs = make_documents(char_sizes)
    split_of = sorted(splits[: len(docs)] + [3] * (len(docs) - len(splits[: len(docs)])))
    for d, s in zip(docs, split_of):
        d.split = s
    config = UnitConfig(pool_docs=pool_docs, unit_chars=unit_chars)
    units = list(iter_units(iter(docs), config))
    expected = []
    for s in sorted(set(split_of)):
        alone = [Document(d.id, d.sentences, d.source) for d in docs if d.split == s]
        expected += [(unit_id(s, u.id), u.documents, u.split_parts) for u in iter_units(iter(alone), config)]
    assert [(u.id, u.documents, u.split_parts) for u in units] == expected


def test_unit_ids_keep_splits_apart():
    from mlmcorpus.units import unit_id

    assert unit_id(0, 0) == 0 and unit_id(0, 5) == 5
    assert unit_id(1, 0) == 1 << 32 and unit_id(2, 7) == (2 << 32) + 7
    with pytest.raises(ValueError):
        unit_id(0, 1 << 32)


def test_iter_units_cuts_a_document_bigger_than_a_unit():
    docs = make_documents([[10], [40, 40, 40, 40, 5], [10]])
    units = list(iter_units(docs, UnitConfig(pool_docs=10, unit_chars=100)))
    assert [[list(map(len, d)) for d in u.documents] for u in units] == [[[10]], [[40, 40, 40]], [[40, 5]], [[10]]]
    assert [u.split_parts for u in units] == [0, 1, 1, 0]


def as_parts(docs: list[Document], cuts: list[list[int]]) -> list[Document]:
    """Each document handed on in parts: cut before the sentence indices in ``cuts`` (and maybe one empty part)."""
    parts = []
    for doc, where in zip(docs, cuts):
        bounds = [0, *sorted({k for k in where if 0 < k < len(doc.sentences)}), len(doc.sentences)]
        pieces = [doc.sentences[a:b] for a, b in zip(bounds, bounds[1:])]
        if len(where) % 3 == 2:
            pieces.append([])  # a document closed by an empty last part (a read error in the middle of it)
        for k, piece in enumerate(pieces):
            parts.append(Document(doc.id, piece, doc.source, more=k < len(pieces) - 1))
    return parts


@settings(max_examples=300, deadline=None)
@given(
    char_sizes=st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=12), max_size=30),
    cuts=st.lists(st.lists(st.integers(0, 12), max_size=6), min_size=30, max_size=30),
    pool_docs=st.integers(1, 8),
    unit_chars=st.integers(1, 300),
)
def test_iter_units_of_document_parts_are_those_of_the_whole_documents(char_sizes, cuts, pool_docs, unit_chars):
    docs = make_documents(char_sizes)
    config = UnitConfig(pool_docs=pool_docs, unit_chars=unit_chars)
    whole = list(iter_units(make_documents(char_sizes), config))
    parts = as_parts(docs, cuts)
    if parts and len(cuts[-1]) % 2:
        parts[-1].more = True  # a stream that ends inside a document: it ends there
    given = [list(p.sentences) for p in parts]
    parted = list(iter_units(iter(parts), config))
    assert [(u.id, u.documents, u.split_parts) for u in parted] == [(u.id, u.documents, u.split_parts) for u in whole]
    assert [p.sentences for p in parts] == given  # the parts are not changed


def test_iter_units_cut_a_long_document_as_its_parts_arrive():
    """A book in 1,000 parts: its first unit comes out after about one unit of text, not after the book."""
    consumed = 0

    def parts():
        nonlocal consumed
        for k in range(1000):
            consumed += 1
            yield Document("book", ["x" * 10] * 10, "mem", more=k < 999)  # 100 characters a part

    units = iter_units(parts(), UnitConfig(pool_docs=10, unit_chars=1000))
    first = next(units)
    assert first.split_parts == 1 and sum(map(len, first.documents[0])) == 1000
    assert consumed == 11  # the unit's parts and the one that shows the book is longer than a unit
    rest = list(units)
    assert len(rest) == 99 and consumed == 1000


def test_iter_units_examples():
    docs = make_documents([[10], [10], [10], [10], [10]])
    by_docs = list(iter_units(docs, UnitConfig(pool_docs=2, unit_chars=10**6)))
    assert [(u.id, len(u.documents)) for u in by_docs] == [(0, 2), (1, 2), (2, 1)]
    by_chars = list(iter_units(docs, UnitConfig(pool_docs=1000, unit_chars=25)))
    assert [(u.id, len(u.documents)) for u in by_chars] == [(0, 3), (1, 2)]
    assert list(iter_units([], UnitConfig())) == []


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_assemble_matches_a_row_by_row_reference(data):
    """Rows built from windows over the token array, checked against plain list building,
    with A/B at the very start and end of the array and of every length that fits."""
    L = data.draw(st.integers(5, 40), label="max_seq_length")
    total = data.draw(st.integers(1, 120), label="tokens")
    ids = np.arange(10, 10 + total, dtype=np.int32)
    rows = []
    for _ in range(data.draw(st.integers(0, 12), label="rows")):
        la = data.draw(st.integers(1, min(total, L - 4)))
        lb = data.draw(st.integers(1, min(total, L - 3 - la)))
        a0 = data.draw(st.sampled_from([0, total - la, *range(0, total - la + 1)]))
        b0 = data.draw(st.sampled_from([0, total - lb, *range(0, total - lb + 1)]))
        rows.append((a0, la, b0, lb))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    inst = Instances(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], np.zeros(len(rows), dtype=np.int8))
    out, lengths, a_len = assemble(ids, inst, L, SPECIAL)
    assert out.shape == (len(rows), L) and out.dtype == np.int32
    for r, (a0, la, b0, lb) in enumerate(rows):
        expected = [SPECIAL.cls, *ids[a0 : a0 + la].tolist(), SPECIAL.sep, *ids[b0 : b0 + lb].tolist(), SPECIAL.sep]
        assert out[r].tolist() == expected + [SPECIAL.pad] * (L - len(expected))
        assert lengths[r] == la + lb + 3 and a_len[r] == la


# ------------------------------------------------------------------ sentence order (SOP, issue 11)


class _Biased(random.Random):
    """A planted error: random() skewed so that a 0.5 threshold is passed 59% of the time."""

    def random(self) -> float:
        return super().random() ** 1.3


def _sop(seed_rng: random.Random) -> tuple[Segments, Instances, PairStats]:
    docs = random_documents(random.Random("sop"), (300, 300), (20, 40), 40)
    sentences = [s for d in docs for s in d]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    cfg = PairConfig(max_seq_length=64, short_seq_prob=0.0, task="sop")
    stats = PairStats()
    segs = split_segments(EncodedBatch.from_lists(sentences), offsets, cfg.max_num_tokens, stats)
    return segs, create_instances(segs, cfg, seed_rng, stats, sop=True), stats


def _sop_balance(inst: Instances, segs: Segments) -> tuple[int, int]:
    """(swapped, pairs) among the pairs whose A and B come from one document, after checking
    every label against the text order: ids grow through the corpus, so B precedes A iff swapped."""
    lo, hi = doc_token_ranges(segs)
    doc_of = np.searchsorted(hi, np.arange(len(segs.ids)), side="right")
    swapped = pairs = 0
    for a0, la, b0, lb, label in zip(inst.a_start, inst.a_len, inst.b_start, inst.b_len, inst.is_random_next):
        a_ids, b_ids = segs.ids[a0 : a0 + la], segs.ids[b0 : b0 + lb]
        if doc_of[a0] != doc_of[b0]:
            assert label == 1  # a one-segment chunk: B from another document, as ALBERT
            continue
        pairs += 1
        if label == 0:
            assert a_ids.max() < b_ids.min()  # in order
        else:
            assert b_ids.max() < a_ids.min()  # swapped
            swapped += 1
    return swapped, pairs


def test_sop_labels_match_the_swap_and_are_balanced():
    """Among in-document pairs the swapped share is Binomial(n, 0.5)/n: |X - n/2| <= 5 sqrt(n)/2;
    a generator skewed to pass 0.5 59% of the time fails the same check (planted)."""
    segs, inst, stats = _sop(random.Random(7))
    swapped, pairs = _sop_balance(inst, segs)
    assert pairs >= 2000
    assert abs(swapped - pairs / 2) <= 5 * math.sqrt(pairs) / 2, f"{swapped}/{pairs} swapped"
    assert stats.random_next == int(inst.is_random_next.sum())  # label 1 counted
    segs, inst, _ = _sop(_Biased(7))
    swapped, pairs = _sop_balance(inst, segs)
    assert abs(swapped - pairs / 2) > 5 * math.sqrt(pairs) / 2


def test_sop_through_build_names_its_column_and_verifies(runner, spm_model, tmp_path):
    import json

    import pyarrow.parquet as pq

    from mlmcorpus.cli import cli

    from .conftest import SAMPLE

    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "--pair-task", "sop", "-j", workers, "-q"]
        assert runner.invoke(cli, args).exit_code == 0
        m = json.loads((out / "manifest.json").read_text())
        digests.append([s["sha256"] for s in m["shards"]])
    assert digests[0] == digests[1] and m["config"]["pairs"]["task"] == "sop"
    assert "sentence_order_label" in m["columns"] and "next_sentence_label" not in m["columns"]
    names = pq.read_schema(out / m["shards"][0]["file"]).names
    assert "sentence_order_label" in names and "next_sentence_label" not in names
    report = runner.invoke(cli, ["inspect", str(out), "--verify", "--json"])
    assert report.exit_code == 0, report.stdout
    nsp = json.loads(report.stdout)["distributions"]["nsp"]
    assert nsp["label"] == "sentence_order_label" and 0.45 < nsp["random_ratio"] < 0.75
    lone = runner.invoke(cli, ["inspect", str(out / m["shards"][0]["file"]), "--json"])  # no manifest needed
    assert lone.exit_code == 0 and json.loads(lone.stdout)["distributions"]["nsp"]["label"] == "sentence_order_label"


# ------------------------------------------------------------------ packed rows (--pair-task none, issue 11)


def _segments_of(docs) -> Segments:
    sentences = [s for d in docs for s in d]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    return split_segments(EncodedBatch.from_lists(sentences), offsets, 61, PairStats())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cross=st.booleans(), max_tokens=st.sampled_from([62, 126]))
def test_packing_keeps_every_sentence_whole_once_and_separates_documents(seed, cross, max_tokens):
    from mlmcorpus.tasks.packing import pack

    SEPID = SPECIAL.sep
    docs = random_documents(random.Random(seed), (1, 12), (1, 15), 30)
    segs = _segments_of(docs)
    flat, start, length = pack(segs, max_tokens, cross, SEPID)
    assert (length >= 1).all() and (length <= max_tokens).all()
    rows = [flat[a : a + n].tolist() for a, n in zip(start.tolist(), length.tolist())]
    sentence_of = {}  # token id -> (document, sentence): ids are unique and grow through the corpus
    for d, doc in enumerate(docs):
        for s, sent in enumerate(doc):
            for t in sent:
                sentence_of[t] = (d, s)
    seen = []
    for row in rows:
        assert row[0] != SEPID and row[-1] != SEPID  # a separator never starts or ends a row
        tokens = [t for t in row if t != SEPID]
        seen.extend(tokens)
        docs_in_row = [sentence_of[t][0] for t in tokens]
        if not cross:
            assert SEPID not in row and len(set(docs_in_row)) == 1  # doc-sentences never crosses
        else:  # full-sentences: a separator exactly where the document changes
            for x, y in zip(row, row[1:]):
                if x != SEPID and y != SEPID:
                    assert sentence_of[x][0] == sentence_of[y][0]
            for k, t in enumerate(row):
                if t == SEPID:
                    assert sentence_of[row[k - 1]][0] + 1 == sentence_of[row[k + 1]][0]
    assert seen == [t for doc in docs for sent in doc for t in sent]  # all text, once, in order
    # sentences whole: a row boundary falls between sentences
    for row in rows:
        tokens = [t for t in row if t != SEPID]
        first, last = sentence_of[tokens[0]], sentence_of[tokens[-1]]
        assert docs[first[0]][first[1]][0] == tokens[0] and docs[last[0]][last[1]][-1] == tokens[-1]


def test_packed_rows_through_build_verify_and_a_planted_crossing_fails(runner, spm_model, tmp_path):
    import json

    from mlmcorpus.cli import cli

    from .conftest import SAMPLE

    digests = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "--pair-task", "none", "-j", workers,
                "-q", "--format", "numpy"]
        assert runner.invoke(cli, args).exit_code == 0
        m = json.loads((out / "manifest.json").read_text())
        digests.append([s["sha256"] for s in m["shards"]])
    assert digests[0] == digests[1]
    assert list(m["columns"]) == ["input_ids", "token_type_ids", "attention_mask", "labels", "masked_lm_positions", "masked_lm_ids"]
    shard = out / m["shards"][0]["file"]
    assert not np.load(shard / "token_type_ids.npy").any()
    ids, am = np.load(shard / "input_ids.npy"), np.load(shard / "attention_mask.npy")
    sep = m["tokenizer"]["special_ids"]["sep"]
    assert (((ids == sep) & (am == 1)).sum(axis=1) > 1).any()  # full-sentences runs on across documents
    assert runner.invoke(cli, ["inspect", str(out), "--verify"]).exit_code == 0
    m["config"]["pairs"]["packing"] = "doc-sentences"  # planted: the rows do cross documents
    (out / "manifest.json").write_text(json.dumps(m))
    v = json.loads(runner.invoke(cli, ["inspect", str(out), "--verify", "--json"]).stdout)["verify"]
    assert not v["passed"] and v["problems"].get("layout", 0) > 0


def test_verify_tests_the_sop_balance_and_catches_a_corpus_that_never_swaps(runner, spm_model, tmp_path):
    import json

    from mlmcorpus.cli import cli

    from .conftest import SAMPLE

    out = tmp_path / "sop"
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "--pair-task", "sop", "-q", "--format", "numpy"]
    assert runner.invoke(cli, args).exit_code == 0
    m = json.loads((out / "manifest.json").read_text())
    one = m["stats"]["counts"].get("sop_one_segment_chunks", 0)
    assert 0 < one < m["stats"]["instances"] // 4
    assert runner.invoke(cli, ["inspect", str(out), "--verify"]).exit_code == 0
    for shard in m["shards"]:  # planted: every row back in order
        labels = np.load(out / shard["file"] / "sentence_order_label.npy", mmap_mode="r+")
        labels[:] = 0
        labels.flush()
        del labels
    v = json.loads(runner.invoke(cli, ["inspect", str(out), "--verify", "--json"]).stdout)["verify"]
    assert "sop_balance" in v["problems"]
