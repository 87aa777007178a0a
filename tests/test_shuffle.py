"""The seeded two-stage shuffle: a permutation, mixed across units, deterministic, memory-bounded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import pyarrow.parquet as pq

from mlmcorpus.cli import cli
from mlmcorpus.outdir import SPILL_DIR
from mlmcorpus.shuffle import TwoStageShuffle

from .conftest import SAMPLE


def unit_columns(unit_id: int, n: int) -> dict[str, np.ndarray]:
    """Rows that say where they came from: (unit, index) in a 2-column array."""
    return {
        "origin": np.stack([np.full(n, unit_id), np.arange(n)], axis=1).astype(np.int64),
        "next_sentence_label": np.zeros(n, dtype=np.int64),
    }


def read_rows(sh: TwoStageShuffle, g: int, start: int, stop: int) -> dict[str, np.ndarray]:
    with sh.open_group(g) as group:
        return group.rows(start, stop)


def drain(sh: TwoStageShuffle):
    """Stage 2 in this process: every group, permuted, in order (the sequential reference)."""
    for g, n in enumerate(sh.group_rows):
        yield read_rows(sh, g, 0, n)


def run(tmp_path, seed=1, buckets=16, memory_mb=1.0, units=20, n=500, sizes=None):
    sh = TwoStageShuffle(str(tmp_path), seed, buckets, memory_mb)
    for u in range(units):
        sh.add(u, unit_columns(u, n))
    if sizes is not None:
        sizes.extend(sh.bytes.tolist())
    groups = [g["origin"] for g in drain(sh)]
    sh.cleanup()
    return groups


def test_output_is_a_permutation_mixed_across_units(tmp_path):
    groups = run(tmp_path / "a")
    rows = np.concatenate(groups)
    assert sorted(map(tuple, rows.tolist())) == [(u, i) for u in range(20) for i in range(500)]
    # Each group of buckets holds rows of every unit, not of one source.
    assert all(len(np.unique(g[:, 0])) == 20 for g in groups)
    # and within a group the order is shuffled: unit ids are not sorted
    assert not all(np.all(np.diff(g[:, 0]) >= 0) for g in groups)
    assert not (tmp_path / "a" / SPILL_DIR).exists()


def test_deterministic_and_seeded(tmp_path):
    a = np.concatenate(run(tmp_path / "a", seed=3))
    b = np.concatenate(run(tmp_path / "b", seed=3))
    c = np.concatenate(run(tmp_path / "c", seed=4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_memory_budget_splits_into_groups(tmp_path):
    # 20 units x 500 rows x 24 bytes = 240 kB; a 0.05 MB budget forces several groups, each within it
    sizes: list = []
    groups = run(tmp_path, buckets=16, memory_mb=0.05, sizes=sizes)
    assert len(groups) >= 4
    # A group stays within the budget unless one bucket alone exceeds it.
    assert all(len(g) * 24 <= max(0.05e6, max(sizes)) for g in groups)
    one = run(tmp_path / "big", buckets=16, memory_mb=100)
    assert len(one) == 1


def test_build_shuffles_by_default_and_keeps_order_on_request(runner, spm_model, tmp_path):
    base = ["build", str(SAMPLE), "--tokenizer", str(spm_model), "-q", "--pool-docs", "20", "--shard-size", "200"]
    assert runner.invoke(cli, [*base, "-o", str(tmp_path / "mixed")]).exit_code == 0
    assert runner.invoke(cli, [*base, "-o", str(tmp_path / "ordered"), "--no-shuffle"]).exit_code == 0

    def rows(out):
        """Original token ids (masking undone with the labels), shard after shard."""
        t = pq.read_table(sorted(out.glob("train-*.parquet")))
        ids, labels = (t.column(c).combine_chunks() for c in ("input_ids", "labels"))
        ids = ids.flatten().to_numpy().reshape(len(ids), -1).astype(np.int64)
        labels = labels.flatten().to_numpy().reshape(len(labels), -1)
        return np.where(labels != -100, labels, ids)

    mixed, ordered = rows(tmp_path / "mixed"), rows(tmp_path / "ordered")
    assert sorted(map(bytes, mixed)) == sorted(map(bytes, ordered))  # same rows
    assert not np.array_equal(mixed, ordered)
    m = json.loads((tmp_path / "mixed" / "manifest.json").read_text())
    assert m["config"]["output"]["shuffle"] is True and m["config"]["output"]["shuffle_buckets"] == 256
    assert not any(name.startswith(".tmp") for name in os.listdir(tmp_path / "mixed"))
    # sample_data is read English first, Korean last: in input order the first shard is English
    # only; shuffled, it holds Korean rows in about the corpus-wide share.
    from mlmcorpus.tokenizers import load_tokenizer

    tok = load_tokenizer(str(spm_model))
    hangul = np.array([any("\uac00" <= ch <= "\ud7a3" for ch in tok.id_to_piece(i)) for i in range(tok.vocab_size)])

    def korean_share(r):
        return float(hangul[r].any(axis=1).mean())

    assert korean_share(ordered[:200]) == 0.0
    overall = korean_share(ordered)
    assert 0.3 < overall < 0.8
    assert abs(korean_share(mixed[:200]) - overall) < 0.15


def test_read_rows_slices_and_a_reloaded_index_give_the_same_rows(tmp_path):
    sh = TwoStageShuffle(str(tmp_path), 5, 16, 0.02)
    for u in range(12):
        sh.add(u, unit_columns(u, 300))
    again = TwoStageShuffle.load(sh.save_index(), 5, 16, 0.02)
    assert len(sh.groups) >= 3 and again.groups == sh.groups
    for g, n in enumerate(sh.group_rows):
        whole = read_rows(sh, g, 0, n)["origin"]
        # independent of read_rows: read every spill file whole, take the group's buckets
        # bucket by bucket and unit by unit, then apply the group's permutation
        parts = []
        for b in sh.groups[g]:
            for spill in sh._units:
                # the file's raw layout: the unit's "origin" block (int64[rows, 2]) comes first
                rows = np.fromfile(spill.path, dtype="<i8", count=spill.rows * 2, offset=spill.start).reshape(-1, 2)
                parts.append(rows[spill.offsets[b] : spill.offsets[b + 1]])
        assert np.array_equal(whole, np.concatenate(parts)[sh.permutation(g)])
        cuts = [0, 1, n // 3, n // 3 + 7, n - 1, n]
        pieces = [read_rows(again, g, a, b)["origin"] for a, b in zip(cuts, cuts[1:])]
        assert np.array_equal(np.concatenate(pieces), whole)
        assert len(np.unique(whole[:, 0])) == 12  # every unit reaches every group
    sh.cleanup()


def _compact_rows(unit: int, n: int, L: int = 16, P: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(unit)
    lengths = rng.integers(6, L + 1, size=n)
    a_len = rng.integers(1, lengths - 3)
    positions = np.sort(rng.integers(1, 6, size=(n, P)), axis=1).astype(np.int32)
    return {
        "input_ids": rng.integers(5, 100, size=(n, L)).astype(np.uint16),
        "lengths": lengths.astype(np.int32),
        "a_len": a_len.astype(np.int32),
        "next_sentence_label": rng.integers(0, 2, size=n).astype(np.int8),
        "masked_lm_positions": positions,
        "masked_lm_ids": rng.integers(5, 100, size=(n, P)).astype(np.uint16),
    }


@pytest.mark.parametrize("fmt", ["parquet", "numpy"])
def test_parallel_stage_two_writes_what_one_sequential_writer_would(tmp_path, monkeypatch, fmt):
    """Shards written by two workers, each gathering its own rows in small slices, equal the
    shards one writer makes from the permuted groups in order (shards straddle groups)."""
    import mlmcorpus.pipeline as pl
    from mlmcorpus.config import BuildConfig, MaskConfig, OutputConfig, PairConfig
    from mlmcorpus.engines.local import LocalPool
    from mlmcorpus.units import BuildStats, MaskedUnit, PairStats
    from mlmcorpus import formats
    from mlmcorpus.formats.base import finish_shards
    from mlmcorpus.schema import RowLayout

    monkeypatch.setattr(pl, "_STAGE2_READ_ROWS", 7)
    output = OutputConfig(format=fmt, shard_rows=130, row_group_rows=5, shuffle_buckets=16, shuffle_mb=0.02)
    config = BuildConfig(pairs=PairConfig(max_seq_length=16), mask=MaskConfig(max_predictions_per_seq=3), output=output, seed=9)
    units = [MaskedUnit(u, _compact_rows(u, 40 + 3 * u), PairStats(), np.zeros(3, np.int64)) for u in range(12)]

    par = tmp_path / "parallel"
    par.mkdir()
    with LocalPool(2) as pool:
        shards = pl.write_shards(iter(units), str(par), config, 100, BuildStats(), pool=pool)

    seq = tmp_path / "sequential"
    seq.mkdir()
    sh = TwoStageShuffle(str(seq), 9, 16, 0.02)
    for u in units:
        sh.add(u.unit_id, u.columns)
    assert len(sh.groups) >= 3
    with formats.get(fmt).writer(str(seq), output, RowLayout(16, 3, 100)) as writer:
        for cols in drain(sh):
            writer.write(cols)
        expected = finish_shards(str(seq), writer.finish())
    sh.cleanup()

    assert len(shards) == len(expected) == -(-sum(40 + 3 * u for u in range(12)) // 130)
    assert [(s.file, s.rows, s.tokens, s.sha256) for s in shards] == [(s.file, s.rows, s.tokens, s.sha256) for s in expected]
    assert sorted(p.name for p in par.iterdir()) == sorted(s.file for s in shards)  # nothing else left behind


def _spill_name_in_a_child(_: object) -> str:
    from mlmcorpus.shuffle import _spill_name

    return _spill_name()


def test_spill_files_are_one_per_process_and_not_named_by_pid(tmp_path):
    """A forked worker draws its own random name (pids repeat across machines sharing OUT)."""
    import re

    from mlmcorpus.engines.local import LocalPool
    from mlmcorpus.shuffle import _spill_name, scatter

    a = scatter(str(tmp_path), 1, 4, 0, unit_columns(0, 10))
    b = scatter(str(tmp_path), 1, 4, 1, unit_columns(1, 10))
    assert a is not None and b is not None and a.path == b.path and b.start >= a.end  # one file, appended
    assert re.fullmatch(r"spill-[0-9a-f]{16}\.bin", os.path.basename(a.path))
    with LocalPool(2) as pool:
        children = set(pool.map(_spill_name_in_a_child, range(8)))
    assert _spill_name() not in children and all(re.fullmatch(r"spill-[0-9a-f]{16}\.bin", n) for n in children)


def test_threads_of_one_process_append_to_files_of_their_own(tmp_path):
    """A Dask worker may run several units at once, in threads: their appends must not interleave."""
    import threading

    from mlmcorpus.shuffle import _spill_name, scatter

    names: list[str] = []
    thread = threading.Thread(target=lambda: names.append(_spill_name()))
    thread.start()
    thread.join()
    assert names[0] != _spill_name() == _spill_name()
    spills = []
    both = threading.Barrier(2)  # alive at once (an ended thread's id may be reused)

    def spill(u: int) -> None:
        both.wait()
        spills.append(scatter(str(tmp_path), 1, 4, u, unit_columns(u, 10)))
        both.wait()

    threads = [threading.Thread(target=spill, args=(u,)) for u in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s.path for s in spills}) == 2 and all(s.start == 0 for s in spills)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="RLIMIT_NOFILE as on Linux")
def test_stage_two_maps_a_few_files_whatever_the_number_of_units(spm_model, tmp_path):
    """Hundreds of units under a 128-descriptor limit: every mapped spill file holds a
    descriptor, so they must not grow with the units (per-unit files ran out here)."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE / "ko_wiki.jsonl"), str(SAMPLE / "en_gutenberg.txt"),
            "-o", str(out), "--tokenizer", str(spm_model), "--pool-docs", "1", "--unit-chars", "300", "-j", "2", "-q"]
    proc = subprocess.run(argv, preexec_fn=limit, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["units"] > 200  # more than the descriptors
