"""A build killed at any moment and resumed gives the bytes of an uninterrupted one; the lock.

The kills are real SIGKILLs of the build's whole process group (``mlmcorpus.faults``:
``MLMCORPUS_KILL_AT=POINT:N``), at the start, after some units, after all of them, while the
shards are written and just before the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmcorpus.cli import cli

from .conftest import SAMPLE

SMALL = ["--pool-docs", "25", "--shard-size", "300"]


def content(out: Path) -> dict[str, str]:
    """sha256 of every shard file (the manifest aside)."""
    return {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(out.rglob("*")) if f.is_file() and str(f.relative_to(out)).startswith("train-")}


def run(out: Path, spm_model: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop("MLMCORPUS_KILL_AT", None)
    if kill_at:
        env["MLMCORPUS_KILL_AT"] = kill_at
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model),
            "-q", *SMALL, *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, start_new_session=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spm_model):
    """Uninterrupted builds: worker-read (-j 2, four files), client-read (-j 1), unshuffled."""
    out = {}
    for name, args in {"workers": ["-j", "2"], "client": ["-j", "1"], "ordered": ["-j", "2", "--no-shuffle"]}.items():
        path = tmp_path_factory.mktemp("ref") / name
        r = run(path, spm_model, *args)
        assert r.returncode == 0, r.stderr
        out[name] = (args, content(path), json.loads((path / "manifest.json").read_text())["stats"])
    return out


POINTS = ["start:1", "unit:1", "unit:5", "stage2:1", "shard:1", "shard:3", "manifest:1"]


@pytest.mark.parametrize("mode", ["workers", "client", "ordered"])
@pytest.mark.parametrize("point", POINTS)
def test_killed_then_resumed_gives_the_same_bytes(reference, spm_model, tmp_path, mode, point):
    args, expected, stats = reference[mode]
    if point.startswith("shard") and mode != "client":
        args = [*args, "-j", "1"]  # stage 2 in this process: the kill takes the whole build at once
    out = tmp_path / "out"
    killed = run(out, spm_model, *args, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "manifest.json").exists()  # nothing that looks complete
    if point != "manifest:1":
        assert (out / ".tmp-units" / "build.json").exists()
    again = run(out, spm_model, *args)
    assert again.returncode == 1 and "--resume" in again.stderr  # not overwritten by accident
    resumed = run(out, spm_model, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert content(out) == expected
    assert json.loads((out / "manifest.json").read_text())["stats"] == stats
    assert sorted(os.listdir(out)) == sorted(expected_names(expected))


def expected_names(files: dict[str, str]) -> set[str]:
    return {f.split("/")[0] for f in files} | {"manifest.json"}


def test_resume_skips_finished_units(spm_model, tmp_path, monkeypatch):
    """After a kill once every unit is done, --resume redoes none of them (none is tokenised)."""
    out = tmp_path / "out"
    assert run(out, spm_model, "-j", "1", kill_at="stage2:1").returncode == -signal.SIGKILL
    import mlmcorpus.objective as objective
    from mlmcorpus.config import BuildConfig, OutputConfig, UnitConfig
    from mlmcorpus.pipeline import build
    from mlmcorpus.readers import ReaderConfig, resolve_sources
    from mlmcorpus.tokenizers import TokenizerSpec

    def fail(*a, **k):
        raise AssertionError("a finished unit was redone")

    monkeypatch.setattr(objective, "pair_unit", fail)
    config = BuildConfig(units=UnitConfig(pool_docs=25), output=OutputConfig(shard_rows=300))
    build(resolve_sources([str(SAMPLE)]), str(out), reader=ReaderConfig(), config=config,
          tokenizer=TokenizerSpec(str(spm_model)), workers=1, resume_build=True)
    assert (out / "manifest.json").exists()


@pytest.mark.parametrize("change,message", [
    (["--seed", "7"], "config.seed differs"),
    (["--dupe-factor", "2"], "config.pairs.dupe_factor differs"),
    (["--normalize", "nfkc"], "reader.normalize differs"),
])
def test_resume_refuses_another_build(spm_model, tmp_path, change, message):
    out = tmp_path / "out"
    assert run(out, spm_model, "-j", "1", kill_at="unit:2").returncode == -signal.SIGKILL
    r = run(out, spm_model, "-j", "1", "--resume", *change)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_resume_refuses_a_changed_input_file(spm_model, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in SAMPLE.iterdir():
        if f.suffix in (".txt", ".jsonl", ".gz"):
            (data / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    env = {**os.environ, "MLMCORPUS_KILL_AT": "unit:2"}
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(data), "-o", str(out), "--tokenizer", str(spm_model),
            "-q", "-j", "1", *SMALL]
    assert subprocess.run(argv, env=env, start_new_session=True, capture_output=True).returncode == -signal.SIGKILL
    with open(data / "en_gutenberg.txt", "a") as f:
        f.write("\nOne more line.\n")
    env.pop("MLMCORPUS_KILL_AT")
    r = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "en_gutenberg.txt changed since the interrupted build read it" in r.stderr, r.stderr


def test_resume_of_nothing_builds_and_of_a_finished_build_refuses(runner, spm_model, tmp_path):
    out = tmp_path / "out"
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "-q", "-j", "1", *SMALL, "--resume"]
    assert runner.invoke(cli, args).exit_code == 0  # nothing to resume: a plain build
    r = runner.invoke(cli, args)
    assert r.exit_code == 1 and "holds a finished build" in r.output


def test_sigterm_stops_cleanly_and_says_how_to_resume(spm_model, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ}
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model),
            "-j", "2", "--dupe-factor", "30", *SMALL]
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    units = out / ".tmp-units"
    deadline = time.time() + 120
    while time.time() < deadline and not (units.is_dir() and len(list(units.glob("unit-*.json"))) >= 1):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "terminated; run the same command with --resume to continue" in err
    assert not (out / "manifest.json").exists() and not list(out.glob(".tmp-train-*"))
    assert subprocess.run([*argv, "-q", "--resume"], env=env, capture_output=True).returncode == 0


def test_a_second_build_into_the_same_directory_is_refused(spm_model, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model),
            "-q", "-j", "1", "--dupe-factor", "30", *SMALL]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / ".tmp-lock").exists():
            time.sleep(0.02)
        second = subprocess.run([*argv, "--overwrite"], capture_output=True, text=True)
        assert second.returncode == 1
        assert "another build (pid" in second.stderr and "is writing there" in second.stderr, second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err  # the first build was not disturbed
    assert not (out / ".tmp-lock").exists()
    r = subprocess.run([sys.executable, "-m", "mlmcorpus", "inspect", str(out), "--verify", "-q"], capture_output=True)
    assert r.returncode == 0


def test_resume_into_a_directory_of_other_files_is_refused(runner, spm_model, tmp_path):
    """--resume without records goes ahead only over a killed build's own leftovers; files that
    look like shards but are not named as ours are neither counted as build work nor removed."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-notes.csv").write_text("precious\n")
    (out / "README").write_text("mine\n")
    args = ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "-q", "-j", "1", *SMALL]
    plain = runner.invoke(cli, args)
    assert plain.exit_code == 1 and "pass --overwrite to replace it" in plain.output and "--resume" not in plain.output
    resumed = runner.invoke(cli, [*args, "--resume"])
    assert resumed.exit_code == 1 and "not empty" in resumed.output
    assert runner.invoke(cli, [*args, "--overwrite"]).exit_code == 0
    assert (out / "train-notes.csv").read_text() == "precious\n" and (out / "README").exists()


def test_overwrite_and_resume_exclude_each_other(runner, spm_model, tmp_path):
    r = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(tmp_path / "o"), "--tokenizer", str(spm_model),
                            "--overwrite", "--resume"])
    assert r.exit_code == 2 and "--overwrite and --resume exclude each other" in r.output


def test_a_copied_interrupted_build_resumes_with_its_own_trained_tokenizer(tmp_path):
    import shutil

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "MLMCORPUS_KILL_AT": "unit:3"}
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE), "--vocab-size", "2000", "-q", "-j", "1", *SMALL]
    first = tmp_path / "m1"
    assert subprocess.run([*argv, "-o", str(first)], env=env, start_new_session=True,
                          capture_output=True).returncode == -signal.SIGKILL
    copy = tmp_path / "m2"
    shutil.copytree(first, copy)
    env.pop("MLMCORPUS_KILL_AT")
    r = subprocess.run([*argv, "-o", str(copy), "--resume"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["tokenizer"]["path"] == "tokenizer.model" and manifest["tokenizer"]["trained_by_build"] is True


@pytest.mark.parametrize("edit", ["short offsets", "rows beyond the spill", "other columns", "another build"])
def test_a_malformed_unit_record_is_redone_not_trusted(reference, spm_model, tmp_path, edit):
    args, expected, stats = reference["client"]
    out = tmp_path / "out"
    assert run(out, spm_model, *args, kill_at="unit:5").returncode == -signal.SIGKILL
    record = sorted((out / ".tmp-units").glob("unit-*.json"))[0]
    d = json.loads(record.read_text())
    if edit == "short offsets":
        d["spill"]["offsets"] = [0, d["spill"]["rows"]]
    elif edit == "rows beyond the spill":
        d["spill"]["offsets"][-1] += 100000
        d["spill"]["rows"] += 100000
    elif edit == "other columns":
        d["spill"]["columns"][0][1] = "<f8"
    else:  # a stray task of an earlier build left it: its rows are not this build's
        d["build"] = "0" * 16
        d["pair_stats"]["instances"] += 1
    record.write_text(json.dumps(d))
    resumed = run(out, spm_model, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert content(out) == expected
    assert json.loads((out / "manifest.json").read_text())["stats"] == stats
