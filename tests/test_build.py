"""`build` end to end: determinism, shards, manifest, pipelines, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlmcorpus.cli import cli
from mlmcorpus.config import BuildConfig, OutputConfig, PairConfig, UnitConfig
from mlmcorpus.errors import OutputError
from mlmcorpus.pipeline import build
from mlmcorpus.tokenizers import TokenizerSpec
from mlmcorpus.readers import ReaderConfig, ReadStats, iter_documents, resolve_sources
from mlmcorpus import formats
from mlmcorpus.formats.base import finish_shards
from mlmcorpus.manifest import read_manifest
from mlmcorpus.schema import COLUMNS, RowLayout

from .conftest import ROOT, SAMPLE

SMALL = ["--pool-docs", "25", "--shard-size", "300"]  # several units and shards from sample_data


def sha_of_shards(out: Path) -> dict[str, str]:
    result = {}
    for p in sorted(out.rglob("train-*")):
        if p.is_file():
            result[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return result


def run_build(runner, out: Path, spm_model, *extra: str):
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "-q", *SMALL, *extra]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory, spm_model):
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("built") / "out"
    manifest = run_build(CliRunner(), out, spm_model, "--workers", "2")
    return out, manifest


# ------------------------------------------------------------------ determinism


def test_workers_1_and_2_give_identical_shards(built, runner, spm_model, tmp_path):
    out2, m2 = built
    m1 = run_build(runner, tmp_path / "w1", spm_model, "--workers", "1")
    assert len(m1["shards"]) >= 3  # the comparison covers several shards and units
    assert m1["stats"]["units"] >= 5
    assert sha_of_shards(tmp_path / "w1") == sha_of_shards(out2)
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    assert m1["stats"] == m2["stats"]


@pytest.mark.parametrize("options", [{}, {"shuffle": False}, {"shuffle": False, "format": "numpy"}], ids=["shuffle", "ordered", "numpy"])
def test_splits_read_by_the_workers_or_by_this_process_give_identical_shards(spm_model, tmp_path, options):
    """Who reads a split (each worker its own, or this process shipping units) never reaches
    the output: same shard bytes and stats, with 1 and 2 workers, shuffled or not."""
    from mlmcorpus.pipeline import plan

    sources = resolve_sources([str(SAMPLE)])
    assert len(plan(sources, ReaderConfig(), UnitConfig())) == 4
    config = BuildConfig(units=UnitConfig(pool_docs=25), output=OutputConfig(shard_rows=300, **options))
    results = {}
    for read, workers in [("client", 1), ("client", 2), ("workers", 1), ("workers", 2)]:
        out = tmp_path / f"{read}-{workers}"
        m = build(sources, str(out), reader=ReaderConfig(), config=config, tokenizer=TokenizerSpec(str(spm_model)),
                  workers=workers, read=read)
        files = {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
                 for f in sorted(out.rglob("*")) if f.is_file() and f.name != "manifest.json"}
        results[read, workers] = (files, m.stats)
        assert not (out / ".tmp-shuffle").exists()
    first = results["client", 1]
    assert len(first[0]) >= 3 and first[1]["units"] >= 8
    for key, value in results.items():
        assert value == first, key


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory) -> Path:
    """A 2.7 MB uncompressed JSON Lines file: three splits at --split-mb 1."""
    path = tmp_path_factory.mktemp("big") / "ko.jsonl"
    text = (SAMPLE / "ko_wiki.jsonl").read_text(encoding="utf-8")
    path.write_text(text * 30, encoding="utf-8")
    return path


def test_byte_range_splits_give_the_same_shards_whoever_reads_them(spm_model, tmp_path, big_jsonl, runner):
    """A file cut into byte ranges: each range is cut into units on its own (so the plan is part
    of the output's identity), and read by this process or by the workers, or through
    stream | pairs | mask | write, the bytes are the same."""
    from mlmcorpus.pipeline import plan

    sources = resolve_sources([str(big_jsonl)])
    units = UnitConfig(pool_docs=50, split_mb=1)
    assert [(s.start, s.end) for s in plan(sources, ReaderConfig(), units)] == [(0, 1 << 20), (1 << 20, 2 << 20), (2 << 20, None)]
    config = BuildConfig(units=units, output=OutputConfig(shard_rows=2000))
    results = {}
    for read, workers in [("client", 1), ("workers", 2), ("client", 2)]:
        out = tmp_path / f"{read}-{workers}"
        m = build(sources, str(out), reader=ReaderConfig(), config=config, tokenizer=TokenizerSpec(str(spm_model)),
                  workers=workers, read=read)
        results[read, workers] = (sha_of_shards(out), m.stats)
    assert len({json.dumps(v, sort_keys=True) for v in results.values()}) == 1
    whole = build(sources, str(tmp_path / "whole"), reader=ReaderConfig(), config=BuildConfig(
        units=UnitConfig(pool_docs=50), output=OutputConfig(shard_rows=2000)), tokenizer=TokenizerSpec(str(spm_model)))
    assert whole.stats["documents"] == results["client", 1][1]["documents"]  # the same documents...
    assert whole.stats["units"] < results["client", 1][1]["units"]  # ...cut into units per range
    # The stage pipeline plans the same splits.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    tok = str(spm_model)
    cmd = (f"{sys.executable} -m mlmcorpus stream {big_jsonl} --split-mb 1 -q | "
           f"{sys.executable} -m mlmcorpus pairs --tokenizer {tok} --pool-docs 50 --split-mb 1 -q | "
           f"{sys.executable} -m mlmcorpus mask -q | {sys.executable} -m mlmcorpus write {tmp_path / 'pipe'} --shard-size 2000 -q")
    subprocess.run(cmd, shell=True, check=True, env=env)
    assert sha_of_shards(tmp_path / "pipe") == results["client", 1][0]


def test_documents_read_in_parts_give_the_same_shards(built, runner, spm_model, tmp_path, monkeypatch):
    """How the reader cuts long documents into parts, and its batches, never reach the output."""
    import mlmcorpus.readers as readers
    import mlmcorpus.readers.records as records

    whole = run_build(runner, tmp_path / "whole", spm_model, "--workers", "2", "--unit-chars", "3000")
    monkeypatch.setattr(records, "_PART_CHARS", 500)
    monkeypatch.setattr(records, "_BATCH_CHARS", 2000)
    parts = list(readers.iter_documents(resolve_sources([str(SAMPLE)]), ReaderConfig(), parts=True))
    assert sum(p.more for p in parts) > 100  # most articles of en_wiki.bert.txt come in parts
    cut = run_build(runner, tmp_path / "parts", spm_model, "--workers", "2", "--unit-chars", "3000")
    assert cut["stats"]["counts"].get("long_documents_split", 0) > 0  # units cut out of documents in parts
    assert sha_of_shards(tmp_path / "parts") == sha_of_shards(tmp_path / "whole")
    assert cut["stats"] == whole["stats"]
    out, m = built
    assert run_build(runner, tmp_path / "default", spm_model, "--workers", "2")["stats"] == m["stats"]
    assert sha_of_shards(tmp_path / "default") == sha_of_shards(out)


def test_rebuilding_into_the_same_directory_in_one_process_is_a_fresh_build(runner, spm_model, tmp_path):
    """Stage 2 state kept by a process (here the CLI runner's own, -j 1) never leaks into the next build."""
    run_build(runner, tmp_path / "out", spm_model, "--workers", "1", "--seed", "1")
    run_build(runner, tmp_path / "out", spm_model, "--workers", "1", "--seed", "2", "--overwrite")
    run_build(runner, tmp_path / "fresh", spm_model, "--workers", "1", "--seed", "2")
    assert sha_of_shards(tmp_path / "out") == sha_of_shards(tmp_path / "fresh")


def test_rerun_is_identical_and_another_seed_differs(built, runner, spm_model, tmp_path):
    out, _ = built
    run_build(runner, tmp_path / "again", spm_model, "--workers", "2")
    assert sha_of_shards(tmp_path / "again") == sha_of_shards(out)
    run_build(runner, tmp_path / "seed7", spm_model, "--seed", "7")
    a = pq.read_table(next(out.glob("train-00000-*.parquet")))
    b = pq.read_table(next((tmp_path / "seed7").glob("train-00000-*.parquet")))
    assert not np.array_equal(labels_of(a), labels_of(b))


def labels_of(table: pa.Table) -> np.ndarray:
    col = table.column("labels").combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), -1)


# ------------------------------------------------------------------ shards and manifest


def read_rows(out: Path) -> dict[str, np.ndarray]:
    tables = [pq.read_table(p) for p in sorted(out.glob("train-*.parquet"))]
    table = pa.concat_tables(tables)
    rows = {}
    for name in COLUMNS:
        col = table.column(name).combine_chunks()
        if isinstance(col.type, pa.FixedSizeListType):
            rows[name] = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
        else:
            rows[name] = col.to_numpy()
    return rows


def test_parquet_schema_and_names(built):
    out, manifest = built
    names = sorted(p.name for p in out.iterdir())
    n = len(manifest["shards"])
    assert [x for x in names if x.startswith("train-")] == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    assert not [x for x in names if x.startswith(".tmp")]
    schema = pq.read_schema(out / manifest["shards"][0]["file"])
    assert schema.names == list(COLUMNS)
    assert schema.field("input_ids").type == pa.list_(pa.uint16(), 128)
    assert schema.field("labels").type == pa.list_(pa.int64(), 128)
    assert schema.field("next_sentence_label").type == pa.int64()
    assert schema.field("masked_lm_positions").type == pa.list_(pa.int32(), 20)
    assert schema.metadata[b"mlmcorpus.format_version"] == b"1"
    meta = pq.read_metadata(out / manifest["shards"][0]["file"])
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_manifest_matches_the_files(built, spm_model):
    out, m = built
    assert m["format_version"] == 1 and m["seed"] == 12345
    assert m["config"]["pairs"] == {"max_seq_length": 128, "short_seq_prob": 0.1, "dupe_factor": 1, "random_next_prob": 0.5, "task": "nsp", "packing": "full-sentences",
                                     "word_splitter": None}
    assert m["config"]["mask"]["masking"] == "token"
    assert m["config"]["units"]["pool_docs"] == 25
    assert m["tokenizer"]["sha256"] == hashlib.sha256(Path(spm_model).read_bytes()).hexdigest()
    assert m["tokenizer"]["vocab_size"] == 2000 and m["tokenizer"]["special_ids"]["mask"] == 4
    assert set(m["versions"]) >= {"mlmcorpus", "numpy", "pyarrow", "sentencepiece"}
    for shard in m["shards"]:
        path = out / shard["file"]
        assert shard["bytes"] == path.stat().st_size
        assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert shard["rows"] == pq.read_metadata(path).num_rows
    rows = read_rows(out)
    st = m["stats"]
    assert st["instances"] == len(rows["input_ids"]) == m["totals"]["rows"]
    assert m["totals"]["tokens"] == int(rows["attention_mask"].sum())
    assert st["nsp"]["random_next"] == int(rows["next_sentence_label"].sum())
    assert st["nsp"]["random_ratio"] == round(st["nsp"]["random_next"] / st["instances"], 6)
    masked = int((rows["labels"] != -100).sum())
    assert st["masked_positions"]["total"] == masked
    assert st["masked_positions"]["mask"] + st["masked_positions"]["random"] + st["masked_positions"]["keep"] == masked
    assert st["masked_positions"]["mask"] == int(((rows["labels"] != -100) & (rows["input_ids"] == 4)).sum())
    assert st["documents"] == 194 and st["input"]["documents"] == 194


def test_rows_follow_the_layout_and_the_policy(built):
    out, m = built
    rows = read_rows(out)
    ids, tt, am, labels = rows["input_ids"].astype(np.int64), rows["token_type_ids"], rows["attention_mask"], rows["labels"]
    n, L = ids.shape
    lengths = am.sum(axis=1)
    assert (am == (np.arange(L)[None, :] < lengths[:, None])).all()
    original = np.where(labels != -100, labels, ids)
    assert (original[:, 0] == 2).all()  # [CLS]
    assert (original[np.arange(n), lengths - 1] == 3).all()  # last [SEP]
    seps = (original == 3) & (am == 1)
    assert (seps.sum(axis=1) == 2).all()
    first_sep = seps.argmax(axis=1)
    expected_tt = (np.arange(L)[None, :] > first_sep[:, None]) & (np.arange(L)[None, :] < lengths[:, None])
    assert (tt == expected_tt).all()
    assert (ids[am == 0] == 0).all()  # [PAD]
    masked = labels != -100
    assert not np.isin(original[masked], [0, 2, 3, 4]).any()  # never a special position
    k = masked.sum(axis=1)
    expected = np.minimum(20, np.maximum(1, np.rint(lengths * 0.15).astype(int)))
    assert (k == expected).all()
    pos = rows["masked_lm_positions"]
    for i in range(0, n, 97):
        assert pos[i, : k[i]].tolist() == np.flatnonzero(masked[i]).tolist()
        assert rows["masked_lm_ids"][i, : k[i]].tolist() == labels[i, masked[i]].tolist()
        assert (pos[i, k[i]:] == 0).all()


def test_numpy_output_loads_with_mmap(runner, spm_model, tmp_path):
    m = run_build(runner, tmp_path / "np", spm_model, "--format", "numpy")
    parquet = run_build(runner, tmp_path / "pq", spm_model)
    rows = read_rows(tmp_path / "pq")
    loaded = {name: [] for name in COLUMNS}
    for shard in m["shards"]:
        d = tmp_path / "np" / shard["file"]
        assert d.is_dir() and sorted(p.name for p in d.iterdir()) == sorted(f"{c}.npy" for c in COLUMNS)
        for name in COLUMNS:
            arr = np.load(d / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            assert arr.shape[0] == shard["rows"]
            assert shard["files"][f"{name}.npy"]["sha256"] == hashlib.sha256((d / f"{name}.npy").read_bytes()).hexdigest()
            loaded[name].append(np.asarray(arr))
    for name in COLUMNS:
        assert np.array_equal(np.concatenate(loaded[name]), rows[name]), name
    assert np.load(tmp_path / "np" / m["shards"][0]["file"] / "input_ids.npy").dtype == np.uint16
    assert [s["rows"] for s in m["shards"]] == [s["rows"] for s in parquet["shards"]]


def test_writer_bytes_do_not_depend_on_batching(tmp_path):
    rng = np.random.default_rng(0)
    n, L, P = 1000, 16, 4
    cols = {
        "input_ids": rng.integers(0, 500, (n, L)).astype(np.uint16),
        "lengths": rng.integers(5, L + 1, n).astype(np.int32),
        "a_len": rng.integers(1, 3, n).astype(np.int32),
        "next_sentence_label": rng.integers(0, 2, n).astype(np.int8),
        "masked_lm_positions": np.sort(rng.integers(0, L, (n, P)), axis=1).astype(np.int32),
        "masked_lm_ids": rng.integers(0, 500, (n, P)).astype(np.uint16),
    }
    digests = []
    for i, cuts in enumerate(([1000], [1, 2, 997], [333, 333, 334], [10] * 100)):
        out = tmp_path / str(i)
        out.mkdir()
        with formats.get("parquet").writer(str(out), OutputConfig(shard_rows=300, row_group_rows=64), RowLayout(L, P, 500)) as w:
            start = 0
            for c in cuts:
                w.write({k: v[start : start + c] for k, v in cols.items()})
                start += c
            infos = finish_shards(str(out), w.finish())
        assert [s.rows for s in infos] == [300, 300, 300, 100]
        digests.append([s.sha256 for s in infos])
    assert all(d == digests[0] for d in digests)


def test_shard_size_in_megabytes(runner, spm_model, tmp_path):
    m = run_build(runner, tmp_path / "mb", spm_model, "--shard-size", "0.1MB")
    row_bytes = 128 * (2 + 1 + 1 + 8) + 8 + 20 * (4 + 2)
    assert m["shards"][0]["rows"] == int(0.1e6 // row_bytes)


def test_int32_ids_for_a_large_vocabulary(tmp_path):
    from mlmcorpus.schema import id_dtype

    assert id_dtype(65536) == np.uint16 and id_dtype(65537) == np.int32
    assert RowLayout(128, 20, 70000).shard_schema().field("input_ids").type == pa.list_(pa.int32(), 128)


# ------------------------------------------------------------------ build without a tokenizer, pipelines


def test_build_trains_a_tokenizer_when_none_is_given(runner, tmp_path):
    out = tmp_path / "auto"
    result = runner.invoke(cli, ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(out), "--vocab-size", "1500"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "manifest.json").read_text())
    assert (out / "tokenizer.model").exists() and (out / "tokenizer.json").exists()
    assert m["tokenizer"]["trained_by_build"] is True and m["tokenizer"]["vocab_size"] == 1500
    assert "Wrote" in result.stderr and "NSP random" in result.stderr and result.stdout == ""


def _sh(cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env, cwd=ROOT)


def test_shell_pipeline_equals_build(built, spm_model, tmp_path):
    out, m = built
    mc = f"{sys.executable} -m mlmcorpus"
    opts = "--pool-docs 25"
    proc = _sh(
        f"{mc} stream -q {SAMPLE} | {mc} pairs --tokenizer {spm_model} {opts} -q | {mc} mask "
        f"| {mc} write {tmp_path / 'piped'} --shard-size 300 -q"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert sha_of_shards(tmp_path / "piped") == sha_of_shards(out)
    piped = json.loads((tmp_path / "piped" / "manifest.json").read_text())
    assert piped["stats"]["instances"] == m["stats"]["instances"]
    assert piped["stats"]["masked_positions"] == m["stats"]["masked_positions"]


def test_pipeline_seed_flows_downstream_and_can_be_overridden(spm_model, tmp_path):
    mc = f"{sys.executable} -m mlmcorpus"
    base = f"{mc} stream -q {SAMPLE / 'ko_wiki.jsonl'} | {mc} pairs --tokenizer {spm_model} --seed 5 -q"
    assert _sh(f"{base} | {mc} mask | {mc} write {tmp_path / 'a'} -q").returncode == 0
    assert _sh(f"{base} | {mc} mask --seed 5 | {mc} write {tmp_path / 'b'} -q").returncode == 0
    assert _sh(f"{base} | {mc} mask --seed 6 | {mc} write {tmp_path / 'c'} -q").returncode == 0
    assert sha_of_shards(tmp_path / "a") == sha_of_shards(tmp_path / "b") != sha_of_shards(tmp_path / "c")
    c = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert c["seed"] == 6 and c["pairs_seed"] == 5  # the manifest says which seed drew what
    assert "pairs_seed" not in json.loads((tmp_path / "a" / "manifest.json").read_text())


def test_issue_pipeline_with_the_seed_given_to_mask_equals_build(spm_model, runner, tmp_path):
    """`stream | pairs --tokenizer T | mask --seed S | write` == `build --tokenizer T --seed S`."""
    mc = f"{sys.executable} -m mlmcorpus"
    src = SAMPLE / "ko_petitions.jsonl.gz"
    proc = _sh(f"{mc} stream -q {src} | {mc} pairs --tokenizer {spm_model} -q | {mc} mask --seed 7 "
               f"| {mc} write {tmp_path / 'p'} -q")
    assert proc.returncode == 0, proc.stderr.decode()
    args = ["build", str(src), "--tokenizer", str(spm_model), "--seed", "7", "-o", str(tmp_path / "b"), "-q"]
    assert runner.invoke(cli, args).exit_code == 0
    assert sha_of_shards(tmp_path / "p") == sha_of_shards(tmp_path / "b") != {}
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["seed"] == 7


# ------------------------------------------------------------------ bad input and safety


def test_non_empty_output_is_refused_unless_overwrite(built, runner, spm_model, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(out), "--tokenizer", str(spm_model), "-q"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}: output directory is not empty; pass --overwrite to replace it\n"
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "manifest.json").exists()


def test_failure_leaves_nothing_that_looks_complete(runner, spm_model, tmp_path):
    import gzip

    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.jsonl").write_bytes((SAMPLE / "ko_wiki.jsonl").read_bytes())
    data = gzip.compress((SAMPLE / "ko_wiki.jsonl").read_bytes() * 20)
    (bad / "b.jsonl.gz").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    result = runner.invoke(cli, ["build", str(bad / "a.jsonl"), str(bad / "b.jsonl.gz"), "-o", str(out),
                                 "--tokenizer", str(spm_model), "--pool-docs", "5", "--shard-size", "50", "-q", "-j", "2"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and "corrupt or truncated gzip" in result.stderr
    assert sorted(os.listdir(out)) == []  # no manifest, no shard, no temporary file


def _first_unit_fails_while_the_next_runs(job, unit):
    """In a worker: unit 0 fails at once; unit 1 is still working (it scatters its rows afterwards)."""
    import time

    from mlmcorpus import pipeline

    if unit.id == 0:
        raise OSError(28, "No space left on device")
    time.sleep(0.5)
    return pipeline._real_unit_job(job, unit)


def _shard_fails_while_others_write(task):
    """Stage 2 in a worker: shard 0 fails at once; shard 1 finishes its (long) write only later."""
    import time

    from mlmcorpus.manifest import ShardEntry

    if task.shard == 0:
        raise OSError(28, "No space left on device")
    time.sleep(0.3)
    path = os.path.join(task.out_dir, f".tmp-train-{task.shard:05d}.parquet")
    with open(path, "wb") as f:  # the end of a shard write that outlived the failure
        f.write(b"PAR1")
    return path, ShardEntry(os.path.basename(path), 1, 1)


@pytest.mark.parametrize("stage", ["units", "shards"])
def test_failure_in_a_worker_leaves_nothing_once_the_others_finish(runner, spm_model, tmp_path, monkeypatch, stage):
    from mlmcorpus import pipeline

    if stage == "units":
        monkeypatch.setattr(pipeline, "_real_unit_job", pipeline.UnitJob.__call__, raising=False)
        monkeypatch.setattr(pipeline.UnitJob, "__call__", _first_unit_fails_while_the_next_runs)
    else:
        monkeypatch.setattr(pipeline, "_real_write_shuffled_shard", pipeline._write_shuffled_shard, raising=False)
        monkeypatch.setattr(pipeline, "_write_shuffled_shard", _shard_fails_while_others_write)
    out = tmp_path / "out"
    # BERT layout: no text splitting on the workers, so the parent sees the failure at once
    result = runner.invoke(cli, ["build", str(SAMPLE / "en_wiki.bert.txt"), "-o", str(out), "--tokenizer",
                                 str(spm_model), "-q", "-j", "2", *SMALL])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}: cannot write shards (No space left on device)\n"
    # the unit/shard still running when the error arrived wrote its files after it: removed too
    assert sorted(os.listdir(out)) == []


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--tokenizer", "nope.model"], "Error: nope.model: no such tokenizer file\n"),
        (["--mask-ratios", "0.5,0.5"], None),
        (["--shard-size", "nanMB"], "Error: --shard-size: must be positive, got nan MB\n"),
        (["--max-seq-length", "4"], None),
        (["--lowercase"], "Error: --lowercase/--add-special-tokens apply to a --tokenizer you pass, not to a trained one\n"),
    ],
)
def test_bad_options(runner, tmp_path, extra, message):
    result = runner.invoke(cli, ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(tmp_path / "o"), *extra],
                           catch_exceptions=False)
    assert result.exit_code != 0 and result.stderr.startswith("Error")
    if message:
        assert result.stderr == message
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_tokenizer_without_specials_is_refused(runner, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    result = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(tmp_path / "o"), "--tokenizer", str(vocab)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {vocab}: tokenizer lacks special tokens [MASK]; pass --add-special-tokens to append them to the vocabulary\n"


def test_stage_commands_reject_wrong_input(runner, spm_model):
    result = runner.invoke(cli, ["mask"], input=b"not arrow at all")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: stdin is not an mlmcorpus stage stream (")
    assert result.stderr.endswith("pipe in the output of `mlmcorpus pairs`\n")
    result = runner.invoke(cli, ["write", "/tmp/x-never"], input=b"")
    assert result.exit_code == 1
    assert result.stderr == "Error: stdin is empty: expected the output of `mlmcorpus mask` (did it fail?)\n"
    assert not os.path.exists("/tmp/x-never")


def test_truncated_or_failed_upstream_never_looks_complete(spm_model, tmp_path):
    mc = f"{sys.executable} -m mlmcorpus"
    full = _sh(f"{mc} stream -q {SAMPLE} | {mc} pairs --tokenizer {spm_model} --pool-docs 20 -q > {tmp_path / 's.arrow'}")
    assert full.returncode == 0
    data = (tmp_path / "s.arrow").read_bytes()
    # Cut exactly at a batch boundary: every batch read is whole, only the end marker is missing.
    import pyarrow as pa

    reader = pa.ipc.open_stream(data)
    sizes = []
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, reader.schema) as w:
        for _ in range(2):
            batch, meta = reader.read_next_batch_with_custom_metadata()
            w.write_batch(batch, custom_metadata=meta)
            sizes.append(sink.tell())
    cut = sink.getvalue().to_pybytes()[: sizes[-1]]  # two whole batches, no end-of-stream, no trailer
    (tmp_path / "cut.arrow").write_bytes(cut)
    for stage_input in (tmp_path / "cut.arrow",):
        proc = _sh(f"{mc} mask < {stage_input} | {mc} write {tmp_path / 'out'} -q")
        assert proc.returncode == 1
        assert b"ended early: mlmcorpus pairs failed or was stopped" in proc.stderr
        assert not (tmp_path / "out" / "manifest.json").exists()
    # An upstream failure (strict reader error) stops the whole pipeline with no manifest.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "One. Two."}\n{broken\n')
    proc = _sh(f"{mc} pairs {bad} --strict --tokenizer {spm_model} -q | {mc} mask | {mc} write {tmp_path / 'o2'} -q")
    assert proc.returncode == 1 and not (tmp_path / "o2" / "manifest.json").exists()


def test_overwrite_keeps_the_tokenizer_it_builds_with(runner, tmp_path):
    out = tmp_path / "reuse"
    base = ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(out), "-q"]
    assert runner.invoke(cli, [*base, "--vocab-size", "1500"]).exit_code == 0
    again = runner.invoke(cli, [*base, "--tokenizer", str(out / "tokenizer.model"), "--overwrite"])
    assert again.exit_code == 0, again.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["tokenizer"]["path"] == "tokenizer.model" and (out / "tokenizer.model").exists()


def test_degenerate_input_is_an_error_not_an_empty_corpus(runner, spm_model, tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "Hello world."}\n')
    result = runner.invoke(cli, ["build", str(one), "-o", str(tmp_path / "o"), "--tokenizer", str(spm_model)])
    assert result.exit_code == 1 and result.stderr.startswith("Error: no instances were produced")
    assert not (tmp_path / "o" / "manifest.json").exists()
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"text": f"Sentence number {i} alone."}) + "\n" for i in range(300)))
    result = runner.invoke(cli, ["build", str(many), "-o", str(tmp_path / "m"), "--tokenizer", str(spm_model)])
    assert result.exit_code == 0
    assert "Warning: 100% of instances are random-next" in result.stderr


def test_unk_is_masked_like_any_token(tmp_path):
    from mlmcorpus.masking import MaskVocab
    from mlmcorpus.tokenizers import load_tokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    mv = MaskVocab.of(load_tokenizer(str(vocab)))
    assert mv.special_ids.tolist() == [0, 2, 3, 4] and mv.random_ids.tolist() == [5]


def test_output_dir_that_is_a_file(tmp_path, spm_model):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        build(resolve_sources([str(SAMPLE / "ko_wiki.jsonl")]), str(f), reader=ReaderConfig(),
              config=BuildConfig(), tokenizer=TokenizerSpec(str(spm_model)))


def test_library_build_api(tmp_path, spm_model):
    config = BuildConfig(pairs=PairConfig(max_seq_length=64, dupe_factor=2), units=UnitConfig(pool_docs=10))
    m = build(resolve_sources([str(SAMPLE / "ko_wiki.jsonl")]), str(tmp_path / "lib"), reader=ReaderConfig(),
              config=config, tokenizer=TokenizerSpec(str(spm_model)), workers=1)
    rows = read_rows(tmp_path / "lib")
    assert rows["input_ids"].shape[1] == 64 and m.config.pairs.dupe_factor == 2
    assert m.stats["units"] == 4
    assert m == read_manifest(str(tmp_path / "lib"))  # what was written reads back the same


def test_hugging_face_datasets_reads_the_shards(built, tmp_path):
    datasets = pytest.importorskip("datasets")
    out, m = built
    ds = datasets.load_dataset("parquet", data_files=str(out / "train-*.parquet"), split="train", cache_dir=str(tmp_path))
    assert ds.num_rows == m["totals"]["rows"]
    assert ds.column_names == list(COLUMNS)
    row = ds.with_format("numpy")[0]
    assert row["input_ids"].shape == (128,) and row["masked_lm_positions"].shape == (20,)
    assert np.array_equal(row["labels"], read_rows(out)["labels"][0])


def test_a_job_carries_its_context_into_a_fresh_process(spm_model):
    """Engines may run a job anywhere: in a spawned interpreter (no inherited state) it gives the
    same unit as here."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from mlmcorpus.config import BuildConfig
    from mlmcorpus.pipeline import UnitJob
    from mlmcorpus.units import iter_units

    config = BuildConfig(units=UnitConfig(pool_docs=10))
    docs = iter_documents(resolve_sources([str(SAMPLE / "en_wiki.bert.txt")]), ReaderConfig(), ReadStats(), parts=True)
    unit = next(iter(iter_units(docs, config.units)))
    spec = TokenizerSpec(str(spm_model))
    job = UnitJob(spec, spec.load().sha256, config)
    here = job(unit)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        there = ex.submit(job, unit).result()
    assert here.columns is not None and there.columns is not None and len(here.columns["input_ids"]) > 0
    for name, col in here.columns.items():
        np.testing.assert_array_equal(col, there.columns[name], err_msg=name)
    np.testing.assert_array_equal(here.mask_counts, there.mask_counts)


def test_library_stage_functions_equal_build(tmp_path, spm_model):
    """The public API: run_stream | run_pairs | run_mask | run_write, in memory, gives build's shards."""
    import io

    import mlmcorpus

    sources = mlmcorpus.resolve_sources([str(SAMPLE / "ko_wiki.jsonl"), str(SAMPLE / "en_wiki.bert.txt")])
    reader, spec = mlmcorpus.ReaderConfig(), mlmcorpus.TokenizerSpec(str(spm_model))
    pairs, units = mlmcorpus.PairConfig(max_seq_length=64), mlmcorpus.UnitConfig(pool_docs=10)
    output = mlmcorpus.OutputConfig(shard_rows=200)
    config = mlmcorpus.BuildConfig(pairs=pairs, units=units, output=output, seed=3)
    built = mlmcorpus.build(sources, str(tmp_path / "built"), reader=reader, config=config, tokenizer=spec)

    docs = io.StringIO()
    mlmcorpus.run_stream(sources, reader, docs)
    (tmp_path / "docs.jsonl").write_text(docs.getvalue())
    streamed = mlmcorpus.resolve_sources([str(tmp_path / "docs.jsonl")])
    paired, masked = io.BytesIO(), io.BytesIO()
    read = mlmcorpus.run_pairs(streamed, paired, tokenizer=spec, reader=reader, pairs=pairs, units=units)
    assert read.documents == built.stats["input"]["documents"]
    paired.seek(0)
    mlmcorpus.run_mask(paired, masked, mask=config.mask, seed=3)
    masked.seek(0)
    piped = mlmcorpus.run_write(masked, str(tmp_path / "piped"), output=output)
    assert [s.sha256 for s in piped.shards] == [s.sha256 for s in built.shards] and len(built.shards) > 1
    assert piped.stats["masked_positions"] == built.stats["masked_positions"]
    assert piped == mlmcorpus.read_manifest(str(tmp_path / "piped"))


def test_library_tokenizer_functions(tmp_path):
    import io

    import mlmcorpus

    sources = mlmcorpus.resolve_sources([str(SAMPLE / "en_wiki.bert.txt")])
    result = mlmcorpus.run_tokenizer_train(
        sources, str(tmp_path / "spm"), reader=mlmcorpus.ReaderConfig(), train=mlmcorpus.TrainConfig(vocab_size=500)
    )
    assert result.tokenizer.vocab_size == 500 and result.read.documents > 0 and (tmp_path / "spm.model").is_file()
    out = io.StringIO()
    bad = mlmcorpus.run_tokenizer_encode(result.tokenizer, [b"Hello world\n", b"caf\xff\n"], out, output="ids")
    lines = out.getvalue().splitlines()
    assert bad == 1 and len(lines) == 2
    assert [int(x) for x in lines[0].split()] == result.tokenizer.encode_batch(["Hello world"])[0].tolist()
    with pytest.raises(mlmcorpus.ConfigError, match="stdin"):
        mlmcorpus.run_tokenizer_train(mlmcorpus.resolve_sources(["-"]), str(tmp_path / "x"),
                                      reader=mlmcorpus.ReaderConfig(), train=mlmcorpus.TrainConfig())


def test_a_tokenizer_file_replaced_between_builds_of_one_process_is_reloaded(tmp_path, spm_model):
    """The per-process tokenizer cache is keyed by the file's sha256, not its path."""
    import shutil

    from mlmcorpus.tokenizers import TrainConfig, train_tokenizer

    other, _ = train_tokenizer(
        lambda: iter(["A small corpus of sentences.", "Another one follows here."] * 200), str(tmp_path / "other"),
        TrainConfig(vocab_size=60, threads=1),
    )
    path = tmp_path / "tok.model"
    config = BuildConfig(pairs=PairConfig(max_seq_length=64), units=UnitConfig(pool_docs=10))
    sources = resolve_sources([str(SAMPLE / "en_wiki.bert.txt")])

    def run(tok: Path, out: str):
        return build(sources, str(tmp_path / out), reader=ReaderConfig(), config=config, tokenizer=TokenizerSpec(str(tok)))

    shutil.copy(spm_model, path)
    first = run(path, "first")
    shutil.copy(other.path, path)  # same path, another model
    second = run(path, "second")
    fresh = run(Path(other.path), "fresh")
    assert second.tokenizer["vocab_size"] == other.vocab_size != first.tokenizer["vocab_size"]
    assert [s.sha256 for s in second.shards] == [s.sha256 for s in fresh.shards] != [s.sha256 for s in first.shards]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_a_failed_stage_2_in_this_process_unmaps_the_spill_files(tmp_path, spm_model, monkeypatch):
    """Even while the caller holds the exception (and so the frames of the failed shard task)."""
    from mlmcorpus.errors import MlmCorpusError
    from mlmcorpus.formats.base import ShardWriter

    def fail(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ShardWriter, "finish", fail)
    config = BuildConfig(units=UnitConfig(pool_docs=10))
    out = tmp_path / "out"
    with pytest.raises(MlmCorpusError) as failure:
        build(resolve_sources([str(SAMPLE)]), str(out), reader=ReaderConfig(), config=config,
              tokenizer=TokenizerSpec(str(spm_model)), workers=1)
    assert failure.value is not None  # held: its traceback keeps the task's frames alive
    with open("/proc/self/maps") as f:
        assert [line for line in f if str(out) in line] == []
    assert not out.exists() or os.listdir(out) == []


def test_an_explicit_cap_that_binds_is_counted_and_warned_about(runner, spm_model, tmp_path):
    common = ["build", str(SAMPLE), "--tokenizer", str(spm_model), "--max-seq-length", "256", "--shard-size", "100000"]
    result = runner.invoke(cli, [*common, "-o", str(tmp_path / "capped"), "--max-predictions-per-seq", "5"])
    assert result.exit_code == 0, result.output
    assert "--max-predictions-per-seq 5 binds on" in result.stderr and "it would take 39" in result.stderr
    capped = json.loads((tmp_path / "capped" / "manifest.json").read_text())
    assert capped["stats"]["counts"]["rows_capped_by_max_predictions"] > capped["stats"]["instances"] // 2

    result = runner.invoke(cli, [*common, "-o", str(tmp_path / "default")])
    assert result.exit_code == 0 and "binds on" not in result.stderr
    default = json.loads((tmp_path / "default" / "manifest.json").read_text())
    assert default["config"]["mask"]["max_predictions_per_seq"] == 39  # ceil(256 * 0.15), recorded
    assert "rows_capped_by_max_predictions" not in default["stats"]["counts"]
    for out in ("capped", "default"):
        assert runner.invoke(cli, ["inspect", str(tmp_path / out), "--verify"]).exit_code == 0
    rate = {out: json.loads(runner.invoke(cli, ["inspect", str(tmp_path / out), "--json"]).stdout)["distributions"]["masked"]["mask_rate"]
            for out in ("capped", "default")}
    assert rate["capped"] < 0.1 < 0.14 < rate["default"] < 0.16
