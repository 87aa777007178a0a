"""`mlmcorpus inspect`: the report, --json, --samples, and --verify catching every kind of damage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlmcorpus.cli import cli
from mlmcorpus.config import BuildConfig, MaskConfig, OutputConfig, UnitConfig
from mlmcorpus.pipeline import build
from mlmcorpus.tokenizers import TokenizerSpec
from mlmcorpus.readers import ReaderConfig, resolve_sources
from mlmcorpus.report import ALPHA, chi_square, inspect_corpus

from .conftest import SAMPLE


def make_corpus(out: Path, spm_model: Path, fmt: str = "parquet", **mask) -> dict:
    config = BuildConfig(
        mask=MaskConfig(**mask),
        units=UnitConfig(pool_docs=25),
        output=OutputConfig(format=fmt, shard_rows=300),
    )
    return build(resolve_sources([str(SAMPLE)]), str(out), reader=ReaderConfig(), config=config,
                 tokenizer=TokenizerSpec(str(spm_model)), workers=1)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, spm_model) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "clean"
    make_corpus(out, spm_model)
    return out


@pytest.fixture
def corpus(clean, tmp_path) -> Path:
    """A private copy to damage."""
    dst = tmp_path / "corpus"
    shutil.copytree(clean, dst)
    return dst


def verify(runner, path: Path, *extra: str):
    return runner.invoke(cli, ["inspect", str(path), "--verify", *extra], catch_exceptions=False)


def update_manifest_shard(out: Path, index: int) -> None:
    """Make the manifest agree with a rewritten shard (sha256, bytes), so only the row check can catch it."""
    m = json.loads((out / "manifest.json").read_text())
    f = out / m["shards"][index]["file"]
    m["shards"][index]["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    m["shards"][index]["bytes"] = f.stat().st_size
    (out / "manifest.json").write_text(json.dumps(m))


def rewrite_shard(path: Path, edit) -> None:
    table = pq.read_table(path)
    cols = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if isinstance(col.type, pa.FixedSizeListType):
            cols[name] = col.flatten().to_numpy().reshape(len(col), col.type.list_size).copy()
        else:
            cols[name] = col.to_numpy().copy()
    edit(cols)
    arrays = []
    for f in table.schema:
        arr = cols[f.name]
        if arr.ndim == 2:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1).astype(f.type.value_type.to_pandas_dtype())), arr.shape[1]))
        else:
            arrays.append(pa.array(arr.astype(f.type.to_pandas_dtype())))
    pq.write_table(pa.Table.from_arrays(arrays, schema=table.schema), path, compression="zstd")


# ------------------------------------------------------------------ a clean corpus


def test_clean_corpus_passes(runner, clean):
    result = verify(runner, clean, "-j", "2")
    assert result.exit_code == 0, result.stdout
    assert "verify: PASSED" in result.stdout
    m = json.loads((clean / "manifest.json").read_text())
    for shard in m["shards"]:
        assert shard["file"] in result.stdout


def test_json_report_is_the_only_stdout(runner, clean):
    result = runner.invoke(cli, ["inspect", str(clean), "--json", "--verify"], catch_exceptions=False)
    report = json.loads(result.stdout)  # nothing but the JSON
    m = json.loads((clean / "manifest.json").read_text())
    assert report["summary"]["rows"] == m["totals"]["rows"] and report["summary"]["shards"] == len(m["shards"])
    assert report["verify"]["passed"] is True
    assert report["distributions"]["nsp"]["random_next"] == m["stats"]["nsp"]["random_next"]
    masked = report["distributions"]["masked"]
    assert masked["total"] == m["stats"]["masked_positions"]["total"]
    assert masked["mask"] == m["stats"]["masked_positions"]["mask"]
    assert sum(report["distributions"]["masked_per_sequence"].values()) == m["totals"]["rows"]
    assert report["tokenizer"]["sha256"] == m["tokenizer"]["sha256"] and report["seed"] == 12345
    assert [s["checksum"] for s in report["shards"]] == ["ok"] * len(m["shards"])


def test_report_shows_distributions_and_expected_split(runner, clean):
    out = runner.invoke(cli, ["inspect", str(clean)], catch_exceptions=False).stdout
    out = " ".join(out.replace("│", " ").split())  # the summary panel wraps at the terminal width
    for text in ("sequence length", "masked positions per sequence", "next sentence label", "[MASK]",
                 "random token", "unchanged", "80%", "10%", "seed 12345", "sentencepiece", "vocab 2,000"):
        assert text in out, text


def test_samples_highlight_masked_tokens(runner, clean):
    result = runner.invoke(cli, ["inspect", str(clean), "--samples", "3", "--shard", "1"], catch_exceptions=False)
    out = result.stdout
    assert out.count("shard 1 row") == 3
    assert "[CLS]" in out and out.count("[SEP]") >= 6
    assert "→[MASK]⟧" in out and "⟦" in out
    # Korean text decodes readably (sample_data is half Korean).
    all_samples = runner.invoke(cli, ["inspect", str(clean), "--samples", "40", "--shard", "1"]).stdout
    assert any("\uac00" <= ch <= "\ud7a3" for ch in all_samples)


def test_numpy_corpus_verifies(runner, spm_model, tmp_path):
    make_corpus(tmp_path / "np", spm_model, fmt="numpy")
    result = verify(runner, tmp_path / "np")
    assert result.exit_code == 0 and "verify: PASSED" in result.stdout


# ------------------------------------------------------------------ damage is found and named


def test_flipped_byte_fails_naming_the_shard(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    target = corpus / m["shards"][1]["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    result = verify(runner, corpus)
    assert result.exit_code == 1
    assert f"{m['shards'][1]['file']}: sha256" in result.stdout and "verify: FAILED" in result.stdout
    assert m["shards"][0]["file"] + ": sha256" not in result.stdout


def test_deleted_shard_fails(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    (corpus / m["shards"][2]["file"]).unlink()
    result = verify(runner, corpus)
    assert result.exit_code == 1
    assert f"{m['shards'][2]['file']}: listed in the manifest but missing" in result.stdout


def test_altered_label_fails_naming_the_row(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    target = corpus / m["shards"][0]["file"]

    def edit(cols):
        row = 17
        pos = int(np.flatnonzero(cols["labels"][row] != -100)[0])
        cols["labels"][row, pos] = (cols["labels"][row, pos] + 1) % 2000 or 5

    rewrite_shard(target, edit)
    update_manifest_shard(corpus, 0)
    result = verify(runner, corpus)
    assert result.exit_code == 1
    assert f"{m['shards'][0]['file']}: row 17: masked_lm_ids are not the original ids" in result.stdout
    assert "sha256" not in result.stdout.split("verify: FAILED")[1]  # the checksum agrees: the row check caught it


def test_label_on_a_special_token_fails(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())

    def edit(cols):
        cols["labels"][5, 0] = 2  # [CLS] "masked"

    rewrite_shard(corpus / m["shards"][0]["file"], edit)
    update_manifest_shard(corpus, 0)
    result = verify(runner, corpus)
    assert result.exit_code == 1
    assert "row 5: a special token ([CLS]/[SEP]/[PAD]/[MASK]) is masked" in result.stdout


def test_stray_shard_and_leftover_temp_file_fail(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    shutil.copy(corpus / m["shards"][0]["file"], corpus / "train-00099-of-00099.parquet")
    (corpus / ".tmp-train-00007.parquet").write_bytes(b"x")
    result = verify(runner, corpus)
    assert result.exit_code == 1
    assert "train-00099-of-00099.parquet: shard or temporary file not listed in the manifest" in result.stdout
    assert ".tmp-train-00007.parquet: shard or temporary file not listed" in result.stdout


def test_truncated_shard_is_reported_not_a_traceback(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    target = corpus / m["shards"][0]["file"]
    target.write_bytes(target.read_bytes()[:1000])
    result = verify(runner, corpus)
    assert result.exit_code == 1 and "cannot be read" in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_wrong_mask_ratio_fails_the_statistical_check(runner, spm_model, tmp_path, monkeypatch):
    """A corpus masked 50/25/25 while its manifest claims 80/10/10 (forced through the API)."""
    import mlmcorpus.masking.tokens as tokens

    real = tokens.mask_batch

    def skewed(ids, lengths, special, mask_id, random_ids, config, rng):
        return real(ids, lengths, special, mask_id, random_ids, MaskConfig(mask_ratios=(0.5, 0.25, 0.25)), rng)

    monkeypatch.setattr(tokens, "mask_batch", skewed)
    make_corpus(tmp_path / "skewed", spm_model)
    monkeypatch.undo()
    report = inspect_corpus(str(tmp_path / "skewed"), verify=True)
    assert report["verify"]["passed"] is False
    assert report["verify"]["mask_ratio_test"]["p_value"] < ALPHA
    assert set(report["verify"]["problems"]) == {"mask_ratios"}  # every row is otherwise valid
    result = verify(runner, tmp_path / "skewed")
    assert result.exit_code == 1 and "does not fit the configured 0.8/0.1/0.1" in result.stdout


def test_chi_square_p_values():
    # df 2: p = exp(-x/2); a perfect fit has p = 1.
    stat, df, p = chi_square([800, 100, 100], [0.8, 0.1, 0.1])
    assert (stat, df, p) == (0.0, 2, 1.0)
    stat, df, p = chi_square([500, 250, 250], [0.8, 0.1, 0.1])
    assert df == 2 and p < 1e-50
    stat, df, p = chi_square([900, 100, 0], [0.9, 0.1, 0.0])
    assert df == 1 and p == 1.0
    assert chi_square([900, 99, 1], [0.9, 0.1, 0.0])[2] == 0.0


# ------------------------------------------------------------------ the manifest is untrusted input


@pytest.mark.parametrize("bad", ["../outside.parquet", "/etc/passwd", "sub/../../x.parquet", ""])
def test_manifest_paths_leaving_the_directory_are_refused(runner, corpus, bad):
    m = json.loads((corpus / "manifest.json").read_text())
    m["shards"][0]["file"] = bad
    (corpus / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(cli, ["inspect", str(corpus)], catch_exceptions=False)
    assert result.exit_code == 1 and result.stderr.startswith("Error: manifest.json: shard path")


def test_symlink_out_of_the_directory_is_refused(runner, corpus, tmp_path):
    m = json.loads((corpus / "manifest.json").read_text())
    name = m["shards"][0]["file"]
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(corpus / name, outside)
    os.symlink(outside, corpus / name)
    result = runner.invoke(cli, ["inspect", str(corpus)])
    assert result.exit_code == 1 and "points outside the output directory" in result.stderr


def test_missing_or_broken_manifest(runner, tmp_path, corpus):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["inspect", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "not an output directory" in result.stderr
    (corpus / "manifest.json").write_text("{not json")
    result = runner.invoke(cli, ["inspect", str(corpus)])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {corpus / 'manifest.json'}: unreadable manifest")


def test_single_shard_can_be_inspected(runner, clean):
    m = json.loads((clean / "manifest.json").read_text())
    shard = clean / m["shards"][0]["file"]
    result = runner.invoke(cli, ["inspect", str(shard), "--verify", "--json"], catch_exceptions=False)
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["summary"]["rows"] == m["shards"][0]["rows"]
    assert report["summary"]["shards"] == 1 and report["verify"]["passed"]


def test_plot_writes_a_png(runner, clean, tmp_path):
    pytest.importorskip("matplotlib")
    result = runner.invoke(cli, ["inspect", str(clean), "--plot", str(tmp_path / "r.png")], catch_exceptions=False)
    assert result.exit_code == 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ review findings


def test_one_shard_corpus_truncated_is_a_finding_not_a_traceback(runner, spm_model, tmp_path):
    out = tmp_path / "one"
    config = BuildConfig(output=OutputConfig(shard_rows=10**6))
    build(resolve_sources([str(SAMPLE / "ko_wiki.jsonl")]), str(out), reader=ReaderConfig(), config=config,
          tokenizer=TokenizerSpec(str(spm_model)))
    shard = next(out.glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:1000])
    result = verify(runner, out)  # catch_exceptions=False: a traceback would fail the test
    assert result.exit_code == 1 and "cannot be read" in result.stdout
    report = json.loads(runner.invoke(cli, ["inspect", str(out), "--json"], catch_exceptions=False).stdout)
    assert report["shards"][0]["checksum"] == "mismatch" and report["summary"]["rows"] == 0
    assert "MISMATCH" in runner.invoke(cli, ["inspect", str(out)], catch_exceptions=False).stdout


@pytest.mark.parametrize("where", ["pad_in_text", "sep_in_text", "mask_unmasked", "masked_to_sep", "cls_replaced"])
def test_special_tokens_in_the_input_are_caught(runner, corpus, where):
    m = json.loads((corpus / "manifest.json").read_text())

    def edit(cols):
        row = 3
        masked = np.flatnonzero(cols["labels"][row] != -100)
        plain = [j for j in range(2, 20) if cols["labels"][row, j] == -100 and cols["input_ids"][row, j] not in (2, 3)]
        if where == "pad_in_text":
            cols["input_ids"][row, plain[0]] = 0
        elif where == "sep_in_text":
            cols["input_ids"][row, plain[0]] = 3
        elif where == "mask_unmasked":
            cols["input_ids"][row, plain[0]] = 4
        elif where == "masked_to_sep":
            cols["input_ids"][row, masked[0]] = 3
        else:
            cols["input_ids"][row, 0] = 7

    rewrite_shard(corpus / m["shards"][0]["file"], edit)
    update_manifest_shard(corpus, 0)
    result = verify(runner, corpus)
    assert result.exit_code == 1 and f"{m['shards'][0]['file']}: row 3:" in result.stdout


def test_manifest_must_account_for_everything(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    del m["shards"][0]["sha256"]
    m["totals"]["tokens"] += 1
    m["stats"]["masked_positions"]["mask"] -= 1
    (corpus / "manifest.json").write_text(json.dumps(m))
    out = verify(runner, corpus).stdout
    assert "the manifest gives no sha256 for this shard" in out
    assert "totals.tokens is" in out and "stats.masked_positions.mask is" in out


def test_duplicate_and_malformed_manifest_entries(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    m["shards"].append(dict(m["shards"][0]))
    (corpus / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(cli, ["inspect", str(corpus)])
    assert result.exit_code == 1 and "is listed twice" in result.stderr


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m.__setitem__("config", []), "'config' is list"),
        (lambda m: m["config"].__setitem__("output", "x"), "config.output is missing or not an object"),
        (lambda m: m.__setitem__("totals", []), "'totals' is list"),
        (lambda m: m["config"]["mask"].__setitem__("mask_ratios", [0.5, 0.5]), "--mask-ratios"),
        (lambda m: m["tokenizer"].__setitem__("vocab_size", 1e999), "tokenizer.vocab_size"),
        (lambda m: m["tokenizer"].__setitem__("vocab_size", "4000"), "tokenizer.vocab_size"),
        (lambda m: m["config"]["pairs"].__setitem__("max_seq_length", 300_000_000), "config.pairs.max_seq_length"),
        (lambda m: m["config"]["mask"].__setitem__("max_predictions_per_seq", 10**12), "max_predictions_per_seq"),
        (lambda m: m["tokenizer"]["special_ids"].__setitem__("cls", 2.9), "special_ids.cls"),
        (lambda m: m.__setitem__("format_version", True), "format version True"),
        (lambda m: m["shards"][0].__setitem__("rows", "7"), "rows is not an integer"),
    ],
)
def test_malformed_manifest_values_are_one_line_errors(runner, corpus, edit, message):
    m = json.loads((corpus / "manifest.json").read_text())
    edit(m)
    (corpus / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(cli, ["inspect", str(corpus), "--verify"], catch_exceptions=False)
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_manifest_with_keys_this_version_does_not_know_is_read(runner, corpus):
    """A newer writer may add configuration keys: they are left out, what is known is still checked."""
    m = json.loads((corpus / "manifest.json").read_text())
    m["config"]["pairs"]["max_ngram"] = 3
    m["config"]["output"]["compression"] = "lz4"
    (corpus / "manifest.json").write_text(json.dumps(m))
    result = verify(runner, corpus)
    assert result.exit_code == 0, result.stdout
    report = json.loads(runner.invoke(cli, ["inspect", str(corpus), "--json"]).stdout)
    assert report["config"]["pairs"]["max_ngram"] == 3  # the report shows the manifest as written


def test_a_manifest_without_the_masking_parameters_is_refused(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    del m["config"]["mask"]["masked_lm_prob"]
    (corpus / "manifest.json").write_text(json.dumps(m))
    result = runner.invoke(cli, ["inspect", str(corpus), "--verify"])
    assert result.exit_code == 1 and "config.mask.masked_lm_prob is missing" in result.stderr


def test_deeply_nested_manifest(runner, corpus):
    (corpus / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = runner.invoke(cli, ["inspect", str(corpus)], catch_exceptions=False)
    assert result.exit_code == 1 and "unreadable manifest" in result.stderr


def test_fifo_and_directory_in_place_of_a_shard(runner, corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    a, b = corpus / m["shards"][0]["file"], corpus / m["shards"][1]["file"]
    a.unlink()
    os.mkfifo(a)  # would block a reader forever
    b.unlink()
    b.mkdir()
    result = verify(runner, corpus)
    assert result.exit_code == 1 and result.stdout.count("not a regular file inside the output directory") == 2


def test_numpy_column_symlinked_outside_is_refused(runner, spm_model, tmp_path):
    make_corpus(tmp_path / "np", spm_model, fmt="numpy")
    m = json.loads((tmp_path / "np" / "manifest.json").read_text())
    col = tmp_path / "np" / m["shards"][0]["file"] / "labels.npy"
    outside = tmp_path / "labels.npy"
    shutil.move(col, outside)
    os.symlink(outside, col)
    (tmp_path / "np" / m["shards"][1]["file"] / "notes.txt").write_text("extra")
    result = verify(runner, tmp_path / "np")
    assert result.exit_code == 1
    assert "labels.npy: missing, not a regular file, or outside the output directory" in result.stdout
    assert "unexpected files in the shard: notes.txt" in result.stdout


def test_lone_shard_without_manifest(runner, clean, tmp_path):
    m = json.loads((clean / "manifest.json").read_text())
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(clean / m["shards"][0]["file"], lone / "train-00000-of-00001.parquet")
    result = runner.invoke(cli, ["inspect", str(lone / "train-00000-of-00001.parquet")], catch_exceptions=False)
    flat = " ".join(result.stdout.replace("│", " ").split())
    assert result.exit_code == 0 and "no manifest" in flat and "unknown without the manifest" in flat
    result = runner.invoke(cli, ["inspect", str(lone / "train-00000-of-00001.parquet"), "--verify"])
    assert result.exit_code == 1 and "--verify needs the manifest.json" in result.stderr


def test_samples_and_plot_errors_are_one_line(runner, corpus, tmp_path, vocab_for_errors=None):
    result = runner.invoke(cli, ["inspect", str(corpus), "--samples", "2", "--json"])
    assert result.exit_code == 2 and "cannot be combined with --json" in result.stderr
    result = runner.invoke(cli, ["inspect", str(corpus), "--plot", str(tmp_path / "nodir" / "x.png")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    other = tmp_path / "vocab.txt"
    other.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    result = runner.invoke(cli, ["inspect", str(corpus), "--samples", "1", "--tokenizer", str(other)])
    assert result.exit_code == 1 and "not the tokenizer this corpus was built with" in result.stderr
    m = json.loads((corpus / "manifest.json").read_text())
    shard = corpus / m["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:500])
    result = runner.invoke(cli, ["inspect", str(corpus), "--samples", "1"])
    assert result.exit_code == 1 and "cannot be read" in result.stderr
