"""Issue 13: inputs and options the catch-list did not foresee end in a counted skip or a one-line
error naming the culprit, through the CLI, never in a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlmcorpus.cli import cli

from .conftest import SAMPLE

ROOT = Path(__file__).resolve().parent.parent


def one_line_error(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture
def odd_json(tmp_path) -> Path:
    """JSON Lines that json.loads rejects with ValueError (digits) and RecursionError (nesting)."""
    path = tmp_path / "odd.jsonl"
    good = [json.dumps({"text": "A fine sentence here. And another one."}), json.dumps({"text": "More text. Yes."})]
    path.write_text("\n".join([good[0], '{"text": "x", "n": ' + "1" * 5000 + "}", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}",
                               good[1]]) + "\n")
    return path


def test_a_huge_integer_or_deep_nesting_is_a_counted_skip(runner, odd_json):
    result = runner.invoke(cli, ["stream", str(odd_json)])
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["id"] for d in docs] == [f"{odd_json}:1", f"{odd_json}:4"]
    assert "malformed_json 2" in result.stderr and "Traceback" not in result.stderr


def test_a_huge_integer_with_strict_is_an_error_naming_the_line(runner, odd_json):
    result = runner.invoke(cli, ["stream", str(odd_json), "--strict"])
    assert result.exit_code == 1
    assert one_line_error(result.output).startswith(f"Error: {odd_json}:2: malformed JSON")


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> Path:
    (tmp_path / "badsplit.py").write_text(
        "def boom(text):\n    raise RuntimeError('kaput')\n"
        "def nothing():\n    return []\n"
        "def number(text):\n    return 7\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{ROOT}")
    return tmp_path


@pytest.mark.parametrize("name,message", [
    ("badsplit:boom", "--splitter badsplit:boom: failed on a paragraph (RuntimeError: kaput)"),
    ("badsplit:nothing", "--splitter badsplit:nothing: failed on a paragraph (TypeError: nothing() takes 0 positional"),
    ("badsplit:number", "--splitter badsplit:number: must return a list of str, returned int"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failing_splitter_is_a_one_line_error_naming_it(plugins, spm_model, tmp_path, name, message, workers):
    """In this process and in the workers alike; the build leaves nothing behind."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "mlmcorpus", "build", str(SAMPLE / "en_gutenberg.txt"), str(SAMPLE / "ko_wiki.jsonl"),
                        "-o", str(out), "--tokenizer", str(spm_model), "--splitter", name, "-j", workers, "-q"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert one_line_error(r.stderr).startswith(f"Error: {message}"), r.stderr
    assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("argv", [["mask"], ["write", "{out}"], ["stream", "-"], ["tokenizer", "encode", "{tok}"],
                                  ["pairs", "--tokenizer", "{tok}"]])
def test_commands_reading_stdin_with_stdin_closed(spm_model, tmp_path, argv):
    args = [a.format(out=tmp_path / "out", tok=spm_model) for a in argv]
    r = subprocess.run([sys.executable, "-m", "mlmcorpus", *args], capture_output=True, text=True,
                       preexec_fn=lambda: os.close(0), env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode != 0
    assert "stdin is closed" in one_line_error(r.stderr)


def test_the_disk_filling_up_at_the_manifest(runner, spm_model, tmp_path, monkeypatch):
    """ENOSPC exactly at the manifest: a one-line error, and nothing of the build left, neither its
    shards (they would look like a build) nor a temporary."""
    import errno

    from mlmcorpus import outdir

    real = outdir.atomic_write

    def full(path, data):
        if os.path.basename(path) == outdir.MANIFEST:
            tmp = os.path.join(os.path.dirname(path), ".tmp-manifest.json-test")
            open(tmp, "wb").close()  # as a real write would leave one half-written
            os.unlink(tmp)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(outdir, "atomic_write", full)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(out), "--tokenizer", str(spm_model), "-q", "-j", "1"])
    assert result.exit_code == 1
    assert one_line_error(result.output) == f"Error: {out}: cannot write manifest.json (No space left on device)"
    assert sorted(os.listdir(out)) == []


def test_training_options_with_a_tokenizer_are_refused_not_ignored(runner, spm_model, tmp_path):
    result = runner.invoke(cli, ["build", str(SAMPLE), "-o", str(tmp_path / "o"), "--tokenizer", str(spm_model),
                                 "--vocab-size", "500", "--model-type", "bpe"])
    assert result.exit_code == 2
    assert one_line_error(result.output).startswith("Error: --model-type, --vocab-size: options for training a tokenizer")
    assert not (tmp_path / "o").exists()
