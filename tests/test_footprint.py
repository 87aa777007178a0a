"""A process's footprint: what it imports and the memory it keeps.

Commands must not import pandas: pyarrow does so implicitly (``pa.array(ndarray)``,
``Array.to_numpy``) when it is installed, which costs every writing process 0.2-0.5 s and
40+ MB.  The hook sees the *attempt*, so these tests mean the same whether pandas is
installed or not; forked workers inherit it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from mlmcorpus.formats.arrow import from_numpy, numeric_values, to_arrow, to_numpy

from .conftest import ROOT, SAMPLE

FORBIDDEN = ("pandas",)

_WRAPPER = textwrap.dedent(
    f"""
    import sys
    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {FORBIDDEN!r}:
                sys.stderr.write(f"FORBIDDEN-IMPORT {{name}}\\n")
            return None
    sys.meta_path.insert(0, Watch())
    from mlmcorpus.cli import main
    sys.argv[0] = "mlmcorpus"
    main()
    """
)


def _run(tmp_path, cmd: str) -> subprocess.CompletedProcess:
    wrapper = tmp_path / "watched.py"
    wrapper.write_text(_WRAPPER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    mc = f"{sys.executable} {wrapper}"
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd.format(mc=mc)], capture_output=True, env=env, cwd=ROOT, text=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_build_and_inspect_do_not_import_pandas(tmp_path, workers):
    out = tmp_path / "out"
    proc = _run(tmp_path, f"{{mc}} build {SAMPLE} -o {out} --vocab-size 1500 --shard-size 300 -q -j {workers}")
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("train-*.parquet"))) >= 2  # stage 2 wrote shards (in workers with -j 2)
    proc2 = _run(tmp_path, f"{{mc}} inspect {out} --verify -j {workers} --json > /dev/null")
    assert proc2.returncode == 0, proc2.stderr
    assert "FORBIDDEN-IMPORT" not in proc.stderr + proc2.stderr


def test_stage_pipeline_does_not_import_pandas(tmp_path, spm_model):
    proc = _run(
        tmp_path,
        f"{{mc}} stream -q {SAMPLE / 'ko_wiki.jsonl'} | {{mc}} pairs --tokenizer {spm_model} -q "
        f"| {{mc}} mask --seed 3 | {{mc}} write {tmp_path / 'piped'} --format numpy -q",
    )
    assert proc.returncode == 0, proc.stderr
    assert "FORBIDDEN-IMPORT" not in proc.stderr


def test_the_watch_sees_an_attempt(tmp_path):
    """The hook itself works: an explicit import attempt is reported (installed or not)."""
    wrapper = tmp_path / "w.py"
    wrapper.write_text(_WRAPPER.replace("from mlmcorpus.cli import main", "try:\n    import pandas\nexcept ImportError:\n    pass\nmain = lambda: None"))
    proc = subprocess.run([sys.executable, str(wrapper)], capture_output=True, text=True)
    assert "FORBIDDEN-IMPORT pandas" in proc.stderr


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.int64, np.float32])
def test_numpy_arrow_round_trip_without_copies(dtype):
    a = (np.arange(24) * 3 - 20).astype(dtype).reshape(4, 6)
    arr = to_arrow(a)
    assert arr.type == pa.list_(pa.from_numpy_dtype(np.dtype(dtype)), 6)
    assert arr.to_pylist() == a.tolist()
    back = to_numpy(arr)
    assert back.dtype == a.dtype and np.array_equal(back, a)
    sliced = to_numpy(arr.slice(1, 2))  # offsets of sliced arrays are honoured
    assert np.array_equal(sliced, a[1:3])
    flat = from_numpy(a[:, 2])  # a strided column is made contiguous first
    assert flat.to_pylist() == a[:, 2].tolist()
    assert np.array_equal(numeric_values(flat.slice(2)), a[2:, 2])


def test_conversions_of_empty_and_big_endian_arrays():
    assert numeric_values(pa.Array.from_buffers(pa.int32(), 0, [None, None])).shape == (0,)
    assert numeric_values(from_numpy(np.zeros(0, dtype=np.int16))).dtype == np.int16
    big = np.arange(3, dtype=">i4")
    assert from_numpy(big).to_pylist() == [0, 1, 2]


def test_numeric_values_falls_back_for_nulls_and_refuses_non_numbers():
    with_null = pa.array([1, None, 3], type=pa.int32())
    assert numeric_values(with_null).tolist()[0] == 1  # pyarrow's own conversion (float with NaN)
    with pytest.raises(TypeError):
        from_numpy(np.array([True, False]))
    with pytest.raises(TypeError):
        from_numpy(np.zeros((2, 2), dtype=np.int32))


def _rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc are Linux")
def test_release_memory_returns_freed_heap_to_the_os():
    """Workers call release_memory between tasks so each one does not keep its high-water mark."""
    from mlmcorpus import runtime

    if runtime._MALLOC_TRIM is None:
        pytest.skip("not glibc")
    runtime.release_memory()
    # 64 MB in 64 KB arrays: below glibc's mmap threshold, so they live on the heap and freeing
    # them leaves the pages resident until trimmed (the last one keeps the heap top in use).
    blocks = [np.ones(64 * 1024, dtype=np.uint8) for _ in range(1024)]
    keep = np.ones(64 * 1024, dtype=np.uint8)
    high = _rss_anon_kb()
    del blocks
    before = _rss_anon_kb()
    runtime.release_memory()
    after = _rss_anon_kb()
    assert high - after > 40_000, (high, before, after)  # most of the 64 MB is gone
    assert keep.sum() == 64 * 1024


def _gc_state(_: object) -> tuple[tuple[int, int, int], int]:
    import gc

    return gc.get_threshold(), gc.get_freeze_count()


@pytest.fixture
def default_gc():
    """Start from Python's default collector settings (an in-process CLI test may have run before)."""
    import gc

    saved = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_pool_workers_tune_the_collector(default_gc, spm_model):
    from mlmcorpus.config import BuildConfig
    from mlmcorpus.engines.local import LocalPool
    from mlmcorpus.pipeline import UnitJob
    from mlmcorpus.tokenizers import TokenizerSpec

    spec = TokenizerSpec(str(spm_model))
    with LocalPool(2, UnitJob(spec, spec.load().sha256, BuildConfig()).warm) as pool:
        states = list(pool.map(_gc_state, range(4)))
    assert all(threshold[0] == 10_000 and frozen > 0 for threshold, frozen in states), states
    assert _gc_state(None) == ((700, 10, 10), 0)  # the pool's owner is untouched


def test_library_and_in_process_cli_callers_keep_their_collector(default_gc, tmp_path, spm_model, runner):
    import gc

    from mlmcorpus.cli import cli
    from mlmcorpus.config import BuildConfig, OutputConfig
    from mlmcorpus.pipeline import build
    from mlmcorpus.tokenizers import TokenizerSpec
    from mlmcorpus.readers import ReaderConfig, resolve_sources

    build(resolve_sources([str(SAMPLE / "ko_wiki.jsonl")]), str(tmp_path / "lib"), reader=ReaderConfig(),
          config=BuildConfig(output=OutputConfig(shard_rows=300)), tokenizer=TokenizerSpec(str(spm_model)), workers=1)
    result = runner.invoke(cli, ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(tmp_path / "cli"),
                                 "--tokenizer", str(spm_model), "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert (gc.get_threshold(), gc.get_freeze_count()) == ((700, 10, 10), 0)


_REPORTED: list[int] = []


def gc_reporting_splitter(paragraph: str) -> list[str]:
    """A plug-in splitter that tells (once) the collector settings of the process it runs in."""
    import gc

    from mlmcorpus.sentences import split_rules

    if not _REPORTED:
        _REPORTED.append(1)
        sys.stderr.write(f"GC-STATE {gc.get_threshold()[0]} {gc.get_freeze_count()}\n")
    return split_rules(paragraph)


def test_the_cli_process_tunes_its_collector(tmp_path, spm_model):
    """With -j 1 everything runs in the CLI's own process: it is ours to tune."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(tmp_path / "o"),
         "--tokenizer", str(spm_model), "-q", "-j", "1", "--splitter", f"{__name__}:gc_reporting_splitter"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    threshold, frozen = proc.stderr.split("GC-STATE ")[1].split()[:2]
    assert int(threshold) == 10_000 and int(frozen) > 0


def _sigint_handler(_: object) -> str:
    import signal

    return "ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "default"


def _library_build_in_a_child(args: tuple[str, str]) -> str:
    from mlmcorpus.config import BuildConfig
    from mlmcorpus.pipeline import build
    from mlmcorpus.tokenizers import TokenizerSpec
    from mlmcorpus.readers import ReaderConfig, resolve_sources

    out, model = args
    build(resolve_sources([str(SAMPLE / "ko_wiki.jsonl")]), out, reader=ReaderConfig(), config=BuildConfig(),
          tokenizer=TokenizerSpec(model), workers=1)
    return _sigint_handler(None)


def test_pool_workers_ignore_ctrl_c_and_a_callers_child_process_keeps_it(tmp_path, spm_model):
    """Ctrl-C reaches the whole process group: our workers leave it to the parent. A caller's own
    multiprocessing child that runs a build in-process must keep its handler."""
    import multiprocessing as mp

    from mlmcorpus.engines.local import LocalPool

    with LocalPool(2) as pool:
        assert set(pool.map(_sigint_handler, range(4))) == {"ignored"}
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as users_pool:
        assert users_pool.map(_library_build_in_a_child, [(str(tmp_path / "o"), str(spm_model))]) == ["default"]
