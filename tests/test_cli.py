"""The command line: output on stdout only, one-line errors, pipes, help text."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys

import pytest

from mlmcorpus.cli import cli

from .conftest import ROOT, SAMPLE


def invoke(runner, args, input=None):
    return runner.invoke(cli, args, input=input, catch_exceptions=False)


def test_stream_writes_json_lines_and_counts_to_stderr(runner):
    result = invoke(runner, ["stream", str(SAMPLE / "en_wiki.bert.txt")])
    assert result.exit_code == 0
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 40
    assert set(docs[0]) == {"id", "sentences", "split"}
    assert docs[0]["id"] == f"{SAMPLE / 'en_wiki.bert.txt'}:0"
    assert all(isinstance(s, str) and s for d in docs for s in d["sentences"])
    assert "40 documents, 889 sentences" in result.stderr
    assert "documents" not in result.stdout


def test_stream_quiet_prints_nothing_on_stderr(runner):
    result = invoke(runner, ["stream", "-q", str(SAMPLE / "ko_wiki.jsonl")])
    assert result.exit_code == 0 and result.stderr == ""
    assert len(result.stdout.splitlines()) == 40


def test_stream_stdin_sniffs_jsonl_and_text(runner):
    data = (SAMPLE / "ko_wiki.jsonl").read_text(encoding="utf-8")
    result = invoke(runner, ["stream", "-q", "-"], input=data)
    assert len(result.stdout.splitlines()) == 40
    result = invoke(runner, ["stream", "-q", "-"], input="One sentence. Two sentences.\n\nDoc two.\n")
    assert [json.loads(x)["sentences"] for x in result.stdout.splitlines()] == [
        ["One sentence.", "Two sentences."],
        ["Doc two."],
    ]
    assert json.loads(result.stdout.splitlines()[0])["id"] == "stdin:0"


def test_stream_output_reads_back_as_its_own_input(runner, tmp_path):
    first = invoke(runner, ["stream", "-q", str(SAMPLE)]).stdout
    (tmp_path / "docs.jsonl").write_text(first, encoding="utf-8")
    again = invoke(runner, ["stream", "-q", str(tmp_path / "docs.jsonl")]).stdout
    assert [json.loads(x)["sentences"] for x in again.splitlines()] == [
        json.loads(x)["sentences"] for x in first.splitlines()
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["stream", "no/such/file.txt"], "Error: no/such/file.txt: no such file or directory\n"),
        (["stream", "x.unknown"], None),
        (["stream", "--input-format", "xml", "a"], None),
        (["stream", "--max-line-bytes", "lots", str(SAMPLE)], None),
        (["tokenizer", "info", "missing.model"], "Error: missing.model: no such tokenizer file\n"),
    ],
)
def test_errors_are_one_line_without_traceback(runner, tmp_path, args, message):
    if args[1] == "x.unknown":
        (tmp_path / "x.unknown").write_text("hi\n")
        args = ["stream", str(tmp_path / "x.unknown")]
    result = runner.invoke(cli, args, catch_exceptions=False)  # an unexpected exception fails the test
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") or "Error: Invalid value" in result.stderr
    assert result.stdout == ""
    if message:
        assert result.stderr == message


def test_malformed_json_strict_exits_with_file_and_line(runner, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "fine."}\n{broken\n')
    lax = runner.invoke(cli, ["stream", str(p)])
    assert lax.exit_code == 0 and len(lax.stdout.splitlines()) == 1
    assert "malformed_json 1" in lax.stderr
    assert lax.stderr.count("malformed JSON line skipped") == 1
    strict = runner.invoke(cli, ["stream", "--strict", str(p)])
    assert strict.exit_code == 1
    assert strict.stderr.startswith(f"Error: {p}:2: malformed JSON")
    assert len(strict.stderr.splitlines()) == 1


def test_every_command_has_help_with_an_example(runner):
    every = [[name] for name in cli.commands] + [["tokenizer", name] for name in cli.commands["tokenizer"].commands]
    for args in [[]] + every:
        args = [*args, "--help"]
        result = invoke(runner, args)
        assert result.exit_code == 0 and "Example:" in result.stdout, args


def test_readme_documents_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [name for name in cli.commands if name != "tokenizer"]
    commands += [f"tokenizer {name}" for name in cli.commands["tokenizer"].commands]
    assert {"build", "stream", "pairs", "mask", "write", "tokenizer train"} <= set(commands)
    for command in commands:
        assert f"mlmcorpus {command}" in readme, command


def test_tokenizer_train_info_encode(runner, tmp_path):
    prefix = tmp_path / "tok" / "ko"
    result = invoke(runner, ["tokenizer", "train", str(SAMPLE / "ko_wiki.jsonl"), str(SAMPLE / "ko_petitions.jsonl.gz"),
                             "-o", str(prefix), "--vocab-size", "1500", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert re.search(r"Trained unigram model, vocab 1,500, on ([\d,]+) of \1 sentences \(100 documents", result.stderr)
    record = json.loads((tmp_path / "tok" / "ko.json").read_text())
    assert record["sources"] == [str(SAMPLE / "ko_wiki.jsonl"), str(SAMPLE / "ko_petitions.jsonl.gz")]
    assert record["reader"]["normalize"] == "nfc"
    info = json.loads(invoke(runner, ["tokenizer", "info", str(prefix) + ".model", "--json"]).stdout)
    assert info["vocab_size"] == 1500 and info["special_ids"]["mask"] == 4 and info["kind"] == "sentencepiece"
    text = invoke(runner, ["tokenizer", "info", str(prefix)]).stdout
    assert "special_ids" in text and "pad=0 unk=1 cls=2 sep=3 mask=4" in text
    enc = invoke(runner, ["tokenizer", "encode", str(prefix) + ".model", "--json"], input="ㅋㅋㅋ 진짜 웃기네요\n\n대한민국\n")
    rows = [json.loads(x) for x in enc.stdout.splitlines()]
    assert len(rows) == 3 and rows[1] == {"ids": [], "pieces": []}
    assert "".join(rows[0]["pieces"]).replace("\u2581", " ").strip() == "ㅋㅋㅋ 진짜 웃기네요"
    ids = invoke(runner, ["tokenizer", "encode", str(prefix) + ".model"], input="대한민국\n").stdout
    assert [int(x) for x in ids.split()] == rows[2]["ids"]


def test_tokenizer_train_refuses_stdin(runner):
    result = runner.invoke(cli, ["tokenizer", "train", "-", "-o", "x"], input="text\n")
    assert result.exit_code == 2 and result.stderr.startswith("Error: tokenizer train cannot read stdin")


def _run(cmd: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, shell=True, capture_output=True, env=env, cwd=ROOT, **kw)


def test_python_m_and_pipe_into_head_exit_cleanly(tmp_path):
    big = tmp_path / "big.bert.txt.gz"
    with gzip.open(big, "wt") as f:
        for i in range(200_000):
            f.write(f"Sentence {i}.\n\n")
    proc = _run(f"{sys.executable} -m mlmcorpus stream {big} | head -n 2", executable="/bin/bash")
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 2
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr
    piped = _run(f"set -o pipefail; {sys.executable} -m mlmcorpus stream {big} | head -n 2", executable="/bin/bash")
    assert piped.returncode == 0, piped.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    proc = _run(f"{sys.executable} -m mlmcorpus stream {SAMPLE} > /dev/null")
    assert proc.returncode == 0
    err = proc.stderr.decode()
    assert "\x1b[" not in err and "\r" not in err
    assert len(err.splitlines()) == 1 and "194 documents" in err


def test_ci_runs_the_readme_quick_start_verbatim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [block.strip() for block in quick.split("```bash")[1:]]
    commands = [c.split("```")[0].strip() for c in commands]
    assert len(commands) == 2, commands
    assert "mlmcorpus build sample_data/" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci, command


def test_encode_normalises_to_nfc_and_counts_bad_utf8(runner, spm_model):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "대한민국 café\n").encode()
    nfc = unicodedata.normalize("NFC", "대한민국 café\n").encode()
    a = runner.invoke(cli, ["tokenizer", "encode", str(spm_model)], input=nfd)
    b = runner.invoke(cli, ["tokenizer", "encode", str(spm_model)], input=nfc)
    assert a.exit_code == 0 and a.stdout == b.stdout
    bad = runner.invoke(cli, ["tokenizer", "encode", str(spm_model)], input=b"ok\n\xff\xfe\n")
    assert len(bad.stdout.splitlines()) == 2
    assert bad.stderr == "Warning: 1 input line(s) had invalid UTF-8, replaced by U+FFFD\n"


def test_compressed_stdin_is_detected(runner):
    data = gzip.compress((SAMPLE / "ko_wiki.jsonl").read_bytes())
    result = runner.invoke(cli, ["stream", "-q", "-"], input=data)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 40


def test_bad_size_option_is_one_line(runner):
    result = runner.invoke(cli, ["stream", "--max-line-bytes", "lots", str(SAMPLE)])
    assert result.exit_code == 2
    assert result.stderr == "Error: --max-line-bytes: expected a size such as 16M or 1048576, got 'lots'\n"


def test_empty_input_is_an_error(runner, tmp_path):
    (tmp_path / "e.txt").write_text("")
    result = runner.invoke(cli, ["stream", str(tmp_path / "e.txt")])
    assert result.exit_code == 1 and result.stderr == f"Error: {tmp_path / 'e.txt'}: no documents found (the input is empty)\n"
