"""The Dask engine: ordered, bounded maps; the same bytes as the local engine, on a LocalCluster and
on a scheduler with `dask worker` processes, one of which is killed mid-build."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmcorpus.cli import cli
from mlmcorpus.errors import MlmCorpusError

from .conftest import ROOT, SAMPLE
from .test_build import SMALL, sha_of_shards

# Every worker, ours or a `dask worker` process, imports this module (the test jobs) and mlmcorpus
# from this checkout.
WORKER_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def distributed():
    return pytest.importorskip("distributed")


@pytest.fixture
def dask_results(distributed, monkeypatch):
    """How many results the Dask engine's maps handed back during the test (proof that it ran)."""
    from mlmcorpus.engines.dask import DaskEngine

    count = [0]
    run = DaskEngine.map

    def counted(self, fn, items):
        for result in run(self, fn, items):
            count[0] += 1
            yield result

    monkeypatch.setattr(DaskEngine, "map", counted)
    return count


@pytest.fixture(scope="module")
def cluster(distributed):
    """A 2-worker LocalCluster shared by the module's tests that attach to a scheduler."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def sample_splits() -> int:
    """The splits of sample_data/ (one per file): the read tasks of a build."""
    from mlmcorpus.config import UnitConfig
    from mlmcorpus.pipeline import plan
    from mlmcorpus.readers import ReaderConfig, resolve_sources

    n = len(plan(resolve_sources([str(SAMPLE)]), ReaderConfig(), UnitConfig()))
    assert n >= 4
    return n


def run_cli(runner, out: Path, spm_model, *extra: str) -> dict:
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "-q", *SMALL, *extra]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


def assert_same_build(out: Path, manifest: dict, ref: Path, ref_manifest: dict) -> None:
    assert sha_of_shards(out) == sha_of_shards(ref) and sha_of_shards(ref)
    assert manifest["shards"] == ref_manifest["shards"]
    assert manifest["stats"] == ref_manifest["stats"]
    assert manifest["config"] == ref_manifest["config"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())  # no temporaries left


# ------------------------------------------------------------------ the engine itself


def _slow_square(x: int) -> int:
    time.sleep(0.02 * ((x * 7) % 5))  # later items often finish first
    return x * x


def _fail_at_5(x: int) -> int:
    if x == 5:
        raise ValueError("item 5 is bad")
    time.sleep(0.02)
    return x


def test_map_is_ordered_and_bounded(cluster):
    from mlmcorpus.engines.dask import DaskEngine

    pulled = []
    ahead = []

    def items():
        for i in range(30):
            pulled.append(i)
            yield i

    with DaskEngine(0, scheduler=cluster.scheduler_address, in_flight=3) as engine:
        assert engine.parallel and engine.limit == 3
        results = []
        for r in engine.map(_slow_square, items()):
            ahead.append(len(pulled) - len(results))  # submitted and not yet consumed
            results.append(r)
        assert results == [i * i for i in range(30)]
        assert max(ahead) == 3  # never more than in_flight out, and the bound is reached
    with DaskEngine(0, scheduler=cluster.scheduler_address) as engine:
        assert engine.limit == 4  # 2 x the cluster's threads
        cluster.scale(3)
        engine.client.wait_for_workers(3, timeout=30)
        engine._sized -= 10  # as if the last look was 10 s ago
        assert engine.limit == 6  # workers that join during a build are used
    cluster.scale(2)


def test_a_job_error_propagates_and_stops_new_work(cluster):
    from mlmcorpus.engines.dask import DaskEngine

    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    with pytest.raises(ValueError, match="item 5 is bad"):
        with DaskEngine(0, scheduler=cluster.scheduler_address, in_flight=4) as engine:
            list(engine.map(_fail_at_5, items()))
    assert len(pulled) <= 5 + 4  # nothing submitted after the error came back


def _same(x: object) -> object:
    return x


def test_equal_items_are_separate_tasks(cluster):
    """Keys are unique per submission: equal items are not merged into one task (Dask's content keys
    would), and every key names its job."""
    from mlmcorpus.engines.dask import DaskEngine

    with DaskEngine(0, scheduler=cluster.scheduler_address) as engine:
        seen: list[str] = []
        client = engine.client
        submit = client.submit

        def spy(fn, *args, **kw):
            future = submit(fn, *args, **kw)
            seen.append(future.key)
            return future

        client.submit = spy
        assert list(engine.map(_same, [1, 1, 1])) == [1, 1, 1]
        assert list(engine.map(_same, [1])) == [1]
    assert len(set(seen)) == 4 and all(k.startswith("same-") for k in seen)


def _die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_task_that_kills_its_workers_is_a_one_line_error(distributed):
    import dask

    from mlmcorpus.engines.dask import DaskEngine

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with DaskEngine(1) as engine:
            with pytest.raises(MlmCorpusError, match=r"^Dask task die-\w+-1-0 was lost with its worker") as e:
                list(engine.map(_die, [0]))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ builds: same bytes as local


@pytest.fixture(scope="module")
def local_builds(tmp_path_factory, spm_model):
    """The local engine's builds that the Dask builds must equal: (out, manifest) by name."""
    from click.testing import CliRunner

    base = tmp_path_factory.mktemp("local")
    return {
        name: (base / name, run_cli(CliRunner(), base / name, spm_model, "--workers", "2", *extra))
        for name, extra in {"shuffle": (), "no-shuffle": ("--no-shuffle",)}.items()
    }


@pytest.mark.parametrize("name,extra", [("shuffle", ()), ("no-shuffle", ("--no-shuffle",))])
def test_local_cluster_build_equals_the_local_build(dask_results, local_builds, runner, spm_model, tmp_path, name,
                                                    extra):
    out = tmp_path / "dask"
    manifest = run_cli(runner, out, spm_model, "--engine", "dask", "--workers", "2", *extra)
    assert manifest["stats"]["units"] >= 5 and len(manifest["shards"]) >= 3
    # One task per split (each worker reads its own files) and per shard: all ran on Dask.
    assert dask_results[0] >= sample_splits() + len(manifest["shards"])
    assert_same_build(out, manifest, *local_builds[name])


def _mapped_spill_files() -> list[str]:
    from mlmcorpus import outdir

    with open("/proc/self/maps") as f:
        return [line for line in f if outdir.SPILL_DIR in line]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux /proc")
def test_workers_that_outlive_a_build_keep_no_spill_file_mapped(cluster, dask_results, local_builds, runner, spm_model,
                                                                tmp_path):
    """Stage 2 ran on the cluster's workers; they hold nothing of the removed spill files after it."""
    from distributed import Client

    out = tmp_path / "out"
    manifest = run_cli(runner, out, spm_model, "--scheduler", cluster.scheduler_address)
    assert_same_build(out, manifest, *local_builds["shuffle"])
    assert dask_results[0] >= sample_splits() + len(manifest["shards"])
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        assert client.run(_mapped_spill_files) == {w: [] for w in client.nthreads()}


# ------------------------------------------------------------------ `dask scheduler` + `dask worker` processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM, and SIGKILL after 10 s; the workers first (a worker whose scheduler went first
    retries its goodbye for a while)."""
    for group in (procs[1:], procs[:1]):
        for p in group:
            if p.poll() is None:
                p.terminate()
        for p in group:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def dask_processes(distributed, tmp_path):
    """`dask scheduler` and two `dask worker --nthreads 1` on loopback, in a working directory that
    is not the client's (paths the client hands them must be absolute).  Yields (address, workers);
    every process is stopped at the end, whatever the test did."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    cwd = tmp_path / "workers"
    cwd.mkdir()
    procs: list[subprocess.Popen] = []
    logs = open(tmp_path / "dask.log", "wb")

    def start(*args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=cwd, env=WORKER_ENV, stdout=logs,
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard")
        workers = [
            start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                  "--death-timeout", "60", "--local-directory", str(cwd))
            for _ in range(2)
        ]
        with distributed.Client(address, set_as_default=False, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        _stop(procs)
        logs.close()


SLOW = ("--dupe-factor", "10", "--pool-docs", "10")  # 20 units of about 0.1 s each


def test_scheduler_build_equals_local_even_when_a_worker_is_killed(dask_processes, dask_results, runner, spm_model,
                                                                   tmp_path, monkeypatch):
    import mlmcorpus.pipeline as pipeline

    address, workers = dask_processes
    ref = tmp_path / "local"
    ref_manifest = run_cli(runner, ref, spm_model, "--workers", "2", *SLOW)

    # Into a relative output path: the client's working directory is not the workers'.
    monkeypatch.chdir(tmp_path)
    manifest = run_cli(runner, Path("attached"), spm_model, "--scheduler", address, *SLOW)
    assert_same_build(tmp_path / "attached", manifest, ref, ref_manifest)
    assert dask_results[0] >= sample_splits() + len(manifest["shards"])

    # Again, killing one worker once a few units are in.
    done = []

    def on_unit(unit: object) -> None:
        done.append(unit)
        if len(done) == 3:
            workers[0].send_signal(signal.SIGKILL)

    build = pipeline.build

    def build_and_kill(*args, **kw):
        given = kw["on_unit"]
        return build(*args, **{**kw, "on_unit": lambda unit: (on_unit(unit), given(unit))})

    monkeypatch.setattr(pipeline, "build", build_and_kill)
    manifest = run_cli(runner, Path("killed"), spm_model, "--scheduler", address, *SLOW)
    assert workers[0].wait(timeout=10) == -signal.SIGKILL
    assert len(done) >= 3 + 4 + 5  # most units ran after the kill (at most 4 were in flight)
    assert_same_build(tmp_path / "killed", manifest, ref, ref_manifest)


# ------------------------------------------------------------------ the CLI


def test_scheduler_with_engine_local_is_refused(runner, spm_model, tmp_path):
    result = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(tmp_path / "o"), "--tokenizer", str(spm_model),
                                 "--engine", "local", "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.output == "Error: --scheduler attaches to a Dask cluster: it cannot go with --engine local\n"
    assert not (tmp_path / "o").exists()


def test_without_dask_the_error_says_what_to_install(runner, spm_model, tmp_path, monkeypatch):
    import mlmcorpus.engines.dask as dask_engine

    monkeypatch.setattr(dask_engine, "distributed", None)
    for extra in (["--engine", "dask"], ["--scheduler", "tcp://127.0.0.1:1"]):
        result = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(tmp_path / "o"), "--tokenizer",
                                     str(spm_model), *extra])
        assert result.exit_code == 1
        assert result.output == ("Error: the Dask engine needs dask.distributed: pip install 'mlmcorpus[dask]'\n")
    assert not (tmp_path / "o").exists()
