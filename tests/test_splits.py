"""Splits: a file cut into byte ranges reads, split by split, as the whole file reads."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmcorpus.errors import ConfigError, InputError
from mlmcorpus.readers import (
    ReaderConfig,
    ReadStats,
    Source,
    Split,
    iter_documents,
    iter_split_documents,
    plan_splits,
    resolve_sources,
)
from mlmcorpus.readers import records

from .conftest import SHARED, requires_shared

CAP = 1024  # the smallest --max-line-bytes: over-long lines stay small


def whole(path: Path, fmt: str, config: ReaderConfig) -> tuple[list, ReadStats] | str:
    """The documents and counts of reading the whole file today (or the error it raises)."""
    stats = ReadStats()
    try:
        docs = list(iter_documents([Source(str(path), fmt, None)], config, stats, parts=True, require_documents=False))
    except InputError as e:
        return str(e)
    return docs, stats


def by_splits(path: Path, fmt: str, config: ReaderConfig, split_bytes: int) -> tuple[list[Split], list[list], ReadStats, int] | str:
    """The splits, the documents of each, their counts merged and the bytes reported as progress."""
    splits = plan_splits([Source(str(path), fmt, None)], config, split_bytes)
    merged = ReadStats()
    per_split = []
    progress: list[int] = []
    try:
        for split in splits:
            stats = ReadStats()
            per_split.append(list(iter_split_documents(split, config, stats, on_progress=progress.append)))
            merged.merge(stats)
    except InputError as e:
        return str(e)
    return splits, per_split, merged, sum(progress)


def content(docs: list) -> list[tuple]:
    return [(d.sentences, d.more, d.source) for d in docs]


def check_same_as_whole(path: Path, fmt: str, config: ReaderConfig, split_bytes: int) -> None:
    size = path.stat().st_size
    expected = whole(path, fmt, config)
    got = by_splits(path, fmt, config, split_bytes)
    if isinstance(expected, str) or isinstance(got, str):
        # --strict: a bad line fails the whole read and then some split (not necessarily with the same words).
        assert isinstance(expected, str) and isinstance(got, str), (expected, got)
        assert str(path) in got
        return
    docs, stats = expected
    splits, per_split, merged, progress = got
    assert len(splits) == (1 if size <= split_bytes else -(-size // split_bytes))
    flat = [d for docs_ in per_split for d in docs_]
    assert content(flat) == content(docs)
    assert merged.as_dict() == stats.as_dict()
    assert stats.bytes == size and progress == size
    for docs_ in per_split:  # a split hands on whole documents: its last item is no part
        assert not docs_ or not docs_[-1].more
    ends = [d.id for d in flat if not d.more and d.id.startswith(str(path))]  # not a JSON record's own id
    assert len(set(ends)) == len(ends), "document ids are unique"
    if len(splits) == 1:
        assert [d.id for d in flat] == [d.id for d in docs]


# ------------------------------------------------------------------ random files

WORD = st.sampled_from(["alpha", "Beta.", "gamma,", "Delta!", "épée", "한국어.", "x", "Mr.", "end?", "(a)", "\u00a0"])
SENTENCE = st.lists(WORD, min_size=1, max_size=6).map(" ".join)
ODD_LINES = [
    b"",
    b"   ",
    b"\t \t",
    b"\x01\x02",  # control characters only: blank to the BERT reader once cleaned, not to the text reader
    b"\x1c\x1f",  # whitespace controls: blank to both
    "\x85".encode(),
    "\ufeff".encode(),  # a BOM that is not at byte 0 is text
    b"\x00",
    b"a\x00b",
    b"\xff\xfe broken utf-8",
    b"\xc3",
    b"  x  ",
    b"\r",
]


@st.composite
def lines_of(draw: st.DrawFn, line: st.SearchStrategy[bytes]) -> bytes:
    """A file: lines (with LF or CRLF), runs of blank lines, over-long lines, maybe a BOM, maybe no final newline."""
    items = draw(
        st.lists(
            st.one_of(
                line,
                line,
                st.sampled_from(ODD_LINES),
                st.integers(0, 4).map(lambda n: b"\n" * n),  # a run of blank lines
                # over-long lines (and lines right at the cap), some of them blank or mostly spaces
                st.tuples(st.sampled_from([b"y", b" ", b"w "]), st.integers(CAP - 3, CAP + 3) | st.integers(CAP + 4, 3 * CAP)).map(
                    lambda t: (t[0] * t[1])[: t[1]]
                ),
            ),
            max_size=30,
        )
    )
    eols = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(items), max_size=len(items)))
    data = b"".join(item + eol for item, eol in zip(items, eols))
    if draw(st.booleans()):
        data = data.rstrip(b"\r\n")
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


BERT_LINES = SENTENCE.map(str.encode)
TEXT_LINES = st.lists(SENTENCE, min_size=1, max_size=3).map(lambda ss: " ".join(ss).encode())


@st.composite
def jsonl_record(draw: st.DrawFn) -> bytes:
    text = draw(st.lists(SENTENCE, max_size=4).map(lambda ss: draw(st.sampled_from([" ", "\n", "\n\n"])).join(ss)))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return json.dumps({"id": draw(st.integers(0, 3)), "text": text}).encode()
    if kind == 1:
        return json.dumps({"sentences": text.split("\n")}).encode()
    if kind == 2:
        return draw(st.sampled_from([b'{"text": "unterminated', b"[1, 2]", b'{"body": "x"}', b'{"text": 5}', b'"s"']))
    if kind == 3:
        return b'{"text": "a lone \\ud800 surrogate"}'
    return json.dumps({"text": text}, ensure_ascii=draw(st.booleans())).encode()


def write(tmp: str, name: str, data: bytes) -> Path:
    path = Path(tmp) / name
    path.write_bytes(data)
    return path


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split_sizes(data: bytes) -> st.SearchStrategy[int]:
    return st.integers(1, 8) | st.integers(1, len(data) + 2) | st.just(max(1, len(data)))


@SETTINGS
@given(data=lines_of(BERT_LINES), d=st.data(), max_doc_sentences=st.sampled_from([1, 2, 3, 100_000]),
       strip_control=st.booleans(), part_chars=st.sampled_from([1, 12, 1 << 20]))
def test_bert_splits_read_as_the_whole_file(data, d, max_doc_sentences, strip_control, part_chars):
    split_bytes = d.draw(split_sizes(data), "split_bytes")
    config = ReaderConfig(max_line_bytes=CAP, max_doc_sentences=max_doc_sentences, strip_control=strip_control)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(records, "_PART_CHARS", part_chars):
        check_same_as_whole(write(tmp, "a.bert", data), "bert", config, split_bytes)


@SETTINGS
@given(data=lines_of(TEXT_LINES), d=st.data(), part_chars=st.sampled_from([1, 30, 1 << 20]), normalize=st.sampled_from(["nfc", "nfkc"]))
def test_text_splits_read_as_the_whole_file(data, d, part_chars, normalize):
    split_bytes = d.draw(split_sizes(data), "split_bytes")
    config = ReaderConfig(max_line_bytes=CAP, normalize=normalize)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(records, "_PART_CHARS", part_chars):
        check_same_as_whole(write(tmp, "a.txt", data), "text", config, split_bytes)


@SETTINGS
@given(data=lines_of(jsonl_record()), d=st.data())
def test_jsonl_splits_read_as_the_whole_file(data, d):
    split_bytes = d.draw(split_sizes(data), "split_bytes")
    config = ReaderConfig(max_line_bytes=CAP, max_doc_sentences=2)
    with tempfile.TemporaryDirectory() as tmp:
        check_same_as_whole(write(tmp, "a.jsonl", data), "jsonl", config, split_bytes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["bert", "text", "jsonl"]), d=st.data())
def test_strict_splits_fail_when_the_whole_file_fails(fmt, d):
    line = {"bert": BERT_LINES, "text": TEXT_LINES, "jsonl": jsonl_record()}[fmt]
    data = d.draw(lines_of(line), "data")
    split_bytes = d.draw(split_sizes(data), "split_bytes")
    config = ReaderConfig(max_line_bytes=CAP, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        check_same_as_whole(write(tmp, f"a.{fmt}", data), fmt, config, split_bytes)


# ------------------------------------------------------------------ hand-checked cases


def test_a_bom_cut_first_line_reads_as_the_whole_file(tmp_path):
    """The whole-file reader takes a first line with a BOM and no break within the cap as two lines."""
    data = b"\xef\xbb\xbf" + b"z" * (2 * CAP) + b"\n\nNext doc.\nMore.\n\n" + b"q" * 3000 + b"\n  \nLast.\n"
    path = tmp_path / "a.bert"
    path.write_bytes(data)
    for fmt in ("bert", "text"):
        for split_bytes in (1, 7, CAP - 1, CAP, CAP + 1, CAP + 2, CAP + 3, 2 * CAP, len(data) - 1):
            check_same_as_whole(path, fmt, ReaderConfig(max_line_bytes=CAP), split_bytes)


def test_ownership_is_by_first_byte(tmp_path):
    path = tmp_path / "a.bert"
    path.write_bytes(b"One.\nTwo.\n\nThree.\n\nFour.\n")  # documents at bytes 0, 11 and 19
    config = ReaderConfig()
    got = [[d.sentences for d in iter_split_documents(s, config)] for s in plan_splits([Source(str(path), "bert", None)], config, 11)]
    assert got == [[["One.", "Two."]], [["Three."], ["Four."]], []]
    got = [[d.id for d in iter_split_documents(s, config)] for s in plan_splits([Source(str(path), "bert", None)], config, 12)]
    assert got == [[f"{path}:0", f"{path}:1"], [f"{path}@12:0"], []]


def test_later_splits_name_lines_by_byte_offset(tmp_path, warnings_log):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "A."}\n{"text": "B."}\n{"text": \n')
    config = ReaderConfig()
    splits = plan_splits([Source(str(path), "jsonl", None)], config, 10)  # lines at bytes 0, 15 and 30
    assert [d.id for s in splits for d in iter_split_documents(s, config)] == [f"{path}:1", f"{path}:byte 15"]
    assert any(m.startswith(f"{path}:byte 30: malformed JSON line skipped") for m in warnings_log)
    with pytest.raises(InputError, match=rf"^{path}:byte 30: malformed JSON"):
        list(iter_split_documents(splits[3], ReaderConfig(strict=True)))


def test_plan_splits_cuts_only_what_can_be_read_from_an_offset(tmp_path):
    big = b'{"text": "x"}\n' * 100  # 1,400 bytes
    for name in ("a.jsonl", "b.bert", "c.txt", "d.jsonl.gz", "e.txt"):
        (tmp_path / name).write_bytes(gzip.compress(big) if name.endswith(".gz") else big)
    (tmp_path / "small.jsonl").write_bytes(big[:140])
    sources = resolve_sources([str(tmp_path)])
    splits = plan_splits(sources, ReaderConfig(), 500)
    assert [s.index for s in splits] == list(range(len(splits)))
    assert pickle.loads(pickle.dumps(splits)) == splits  # sent to workers
    by_file = {}
    for s in splits:
        by_file.setdefault(os.path.basename(s.source.path), []).append((s.start, s.end))
    ranges = [(0, 500), (500, 1000), (1000, None)]
    assert by_file == {"a.jsonl": ranges, "b.bert": ranges, "c.txt": ranges, "d.jsonl.gz": [(0, None)], "e.txt": ranges, "small.jsonl": [(0, None)]}
    assert all(s.size == os.path.getsize(s.source.path) and s.mtime_ns == os.stat(s.source.path).st_mtime_ns for s in splits)
    per_file = plan_splits(sources, ReaderConfig(doc_boundary="file"), 500)
    assert [(os.path.basename(s.source.path), s.start, s.end) for s in per_file if s.source.format == "text"] == [("c.txt", 0, None), ("e.txt", 0, None)]
    assert len(plan_splits(sources, ReaderConfig(), 1400)) == 6  # a file of exactly split_bytes is one split
    stdin = plan_splits([Source("-", "jsonl", None)], ReaderConfig(), 1)
    assert stdin == [Split(Source("-", "jsonl", None), 0, 0, None, None, None)]
    with pytest.raises(ConfigError):
        plan_splits(sources, ReaderConfig(), 0)


def test_plan_splits_keeps_parquet_and_pipes_whole(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["A. B."] * 500}), tmp_path / "a.parquet")
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    splits = plan_splits([Source(str(tmp_path / "a.parquet"), "parquet", None), Source(str(fifo), "jsonl", None)], ReaderConfig(), 10)
    assert [(s.index, s.start, s.end, s.size) for s in splits] == [(0, 0, None, os.path.getsize(tmp_path / "a.parquet")), (1, 0, None, None)]


def test_a_whole_split_reads_as_iter_documents(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "One. Two."}\n{"id": "k", "text": "Three."}\n'))
    source = resolve_sources([str(path)])[0]
    (split,) = plan_splits([source], ReaderConfig(), 1)
    stats, expected = ReadStats(), ReadStats()
    assert [(d.id, d.sentences) for d in iter_split_documents(split, None, stats, parts=False)] == [
        (d.id, d.sentences) for d in iter_documents([source], None, expected)
    ]
    assert stats.as_dict() == expected.as_dict()


def test_binary_and_changed_files(tmp_path):
    data = b"\x00\x01\x02\x03" * 4000
    path = tmp_path / "bin.bert"
    path.write_bytes(data)
    explicit = Source(str(path), "bert", None, explicit=True)
    for split in plan_splits([explicit], ReaderConfig(), 5000):
        with pytest.raises(InputError, match="looks like a binary file"):
            list(iter_split_documents(split))
    walked = Source(str(path), "bert", None, explicit=False)
    merged = ReadStats()
    for split in plan_splits([walked], ReaderConfig(), 5000):
        stats = ReadStats()
        assert list(iter_split_documents(split, None, stats)) == []
        merged.merge(stats)
    assert merged.files == 1 and merged.skipped == {"binary_file": 1}

    text = tmp_path / "a.bert"
    text.write_bytes(b"One.\n\nTwo.\n" * 100)
    splits = plan_splits([Source(str(text), "bert", None)], ReaderConfig(), 300)
    text.write_bytes(b"One.\n\nTwo.\n" * 101)
    with pytest.raises(InputError, match=r"a\.bert: changed since the splits were planned \(size 1,100 -> 1,111 bytes"):
        list(iter_split_documents(splits[1]))


def test_a_split_inside_a_long_line_looks_back_in_bounded_chunks(tmp_path):
    """A split that starts inside an over-long line finds its document past it, holding a chunk at a time."""
    from .test_readers import traced_peak

    cap = 1 << 20
    data = b"Intro.\n" + b"y" * (8 * cap) + b"\nStill the intro's document.\n\nSecond.\n"
    path = tmp_path / "a.bert"
    path.write_bytes(data)
    config = ReaderConfig(max_line_bytes=cap)
    splits = plan_splits([Source(str(path), "bert", None)], config, 3 * cap)
    assert len(splits) == 3
    (docs, stats), peak = traced_peak(lambda: (list(iter_split_documents(splits[2], config, s := ReadStats())), s))
    assert [d.sentences for d in docs] == [["Second."]] and stats.bytes == len(b"Second.\n")
    assert peak < 2 * cap
    check_same_as_whole(path, "bert", config, 3 * cap)


@pytest.mark.shared
@requires_shared
@pytest.mark.parametrize("fmt", ["jsonl", "bert"])
def test_en_wikipedia_by_splits(tmp_path, fmt):
    src = SHARED / "en_wikipedia.jsonl.gz"
    path = tmp_path / f"wiki.{fmt}"
    with gzip.open(src, "rb") as f, open(path, "wb") as out:
        if fmt == "jsonl":
            shutil.copyfileobj(f, out)
        else:  # the BERT layout: a line per paragraph, a blank line after each article
            for line in f:
                out.write("\n".join(p for p in json.loads(line)["text"].split("\n") if p.strip()).encode() + b"\n\n")
    size = path.stat().st_size
    for split_bytes in (size // 7 + 1, 1 << 20, size // 2):
        check_same_as_whole(path, fmt, ReaderConfig(), split_bytes)
