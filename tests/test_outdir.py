"""The output directory (mlmcorpus/outdir.py): names, --overwrite, atomic writes, cleanup."""

from __future__ import annotations

import errno
import os

import pytest

from mlmcorpus import outdir
from mlmcorpus.cli import cli
from mlmcorpus.errors import OutputError

from .conftest import SAMPLE


def test_overwrite_clears_shards_and_temporaries_and_keeps_the_rest(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ours = ["manifest.json", "train-00000-of-00002.parquet", ".tmp-train-00001.parquet", ".tmp-manifest.json-1a2b3c4d"]
    for name in ours:
        (out / name).write_text("x")
    (out / "train-00001-of-00002").mkdir()  # a NumPy shard
    (out / outdir.SPILL_DIR).mkdir()
    (out / outdir.SPILL_DIR / "spill-0.bin").write_text("x")
    kept = ["tokenizer.model", "notes.txt"]
    for name in kept:
        (out / name).write_text("mine")
    with pytest.raises(OutputError, match="not empty; pass --overwrite"):
        outdir.prepare(str(out), overwrite=False)
    outdir.prepare(str(out), overwrite=True)
    assert sorted(os.listdir(out)) == sorted(kept)


def test_atomic_write_leaves_the_old_file_or_the_new_one_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    outdir.atomic_write(str(path), b"first")
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["manifest.json"]

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        outdir.atomic_write(str(path), b"second")
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["manifest.json"]


def test_a_full_disk_at_the_manifest_is_a_one_line_error_and_leaves_no_temporary(runner, spm_model, tmp_path, monkeypatch):
    real = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == outdir.MANIFEST:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(out), "--tokenizer", str(spm_model), "-q"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}: cannot write manifest.json (No space left on device)\n"
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-") or n == outdir.MANIFEST]


def test_inspect_verify_reports_a_leftover_temporary(runner, spm_model, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(cli, ["build", str(SAMPLE / "ko_wiki.jsonl"), "-o", str(out), "--tokenizer", str(spm_model), "-q"]).exit_code == 0
    (out / ".tmp-manifest.json-1a2b3c4d").write_text("{}")
    result = runner.invoke(cli, ["inspect", str(out), "--verify"])
    assert result.exit_code == 1 and ".tmp-manifest.json-1a2b3c4d: shard or temporary file not listed in the manifest" in result.stdout


def test_overwrite_that_cannot_remove_an_old_shard_is_an_error(tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "out"
    (out / "train-00000-of-00001").mkdir(parents=True)  # a NumPy shard

    def stuck(path, ignore_errors=False):
        if not ignore_errors:
            raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(shutil, "rmtree", stuck)
    with pytest.raises(OutputError, match=r"out: cannot remove train-00000-of-00001 for --overwrite \(Device or resource busy\)"):
        outdir.prepare(str(out), overwrite=True)


@pytest.mark.parametrize("index", [0, 7, 99_999, 100_000, 1_234_567])
@pytest.mark.parametrize("suffix", [".parquet", ""])
def test_a_temporary_shard_name_gives_back_its_suffix(index, suffix):
    tmp = outdir.tmp_shard_path("/out", index, suffix)
    assert outdir.tmp_shard_suffix(tmp) == suffix
    assert outdir.shard_name(index, index + 1, outdir.tmp_shard_suffix(tmp)).endswith(f"-of-{index + 1:05d}{suffix}")
