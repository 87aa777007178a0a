"""Reading raw text: formats, compression, sources, normalisation, repairs and bad input."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import textwrap
import tracemalloc
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcorpus.errors import ConfigError, InputError
from mlmcorpus.readers import (
    ReaderConfig,
    ReadStats,
    detect_format,
    iter_documents,
    resolve_sources,
)
from mlmcorpus.readers.cleaning import _CONTROL_CHAR, _CONTROL_TABLE

BERT_TEXT = "First sentence here.\nSecond one.\n\nOther document.\n\n\nThird doc line one.\nLine two.\n"


def read(paths, require_documents=True, **kw):
    stats = ReadStats()
    sources = resolve_sources([str(p) for p in paths], kw.get("input_format"))
    docs = list(iter_documents(sources, ReaderConfig(**kw), stats, require_documents=require_documents))
    return docs, stats


def traced_peak(fn):
    """``fn()`` and the peak of Python allocations while it ran (tracemalloc: exact, not the process size)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------ formats


def test_bert_layout_documents_and_sentences(tmp_path):
    docs, stats = read([write(tmp_path / "a.bert.txt", BERT_TEXT)])
    assert [d.sentences for d in docs] == [
        ["First sentence here.", "Second one."],
        ["Other document."],
        ["Third doc line one.", "Line two."],
    ]
    assert [d.id for d in docs] == [f"{tmp_path}/a.bert.txt:{i}" for i in range(3)]
    assert (stats.documents, stats.sentences, stats.bytes) == (3, 5, len(BERT_TEXT.encode()))


def test_jsonl_splits_paragraphs_and_sentences_and_uses_id_field(tmp_path):
    recs = [
        {"id": 7, "text": "Title\n\nDr. Smith arrived. He sat down.\nNew paragraph here."},
        {"id": "x", "text": "   "},
        {"text": "No id. Still read."},
    ]
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    docs, stats = read([p])
    assert [d.id for d in docs] == ["7", f"{p}:3"]
    assert docs[0].sentences == ["Title", "Dr. Smith arrived.", "He sat down.", "New paragraph here."]
    assert docs[1].sentences == ["No id.", "Still read."]
    assert stats.skipped == {"empty_document": 1}


def test_jsonl_joins_hard_wrapped_lines_but_keeps_one_paragraph_per_line(tmp_path):
    book = "CHAPTER I.\n\nIt was a dark\nand stormy night; the rain fell in\ntorrents. Except at\nintervals.\n"
    wiki = "Anarchism\n\nAnarchism is a philosophy.\nEarly life.\nHe was born in Paris\n"
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps({"text": t}) for t in (book, wiki)) + "\n")
    docs, _ = read([p])
    assert docs[0].sentences == ["CHAPTER I.", "It was a dark and stormy night; the rain fell in torrents.", "Except at intervals."]
    assert docs[1].sentences == ["Anarchism", "Anarchism is a philosophy.", "Early life.", "He was born in Paris"]
    # only a line continued by a lowercase letter is joined: not headings, list items, or scripts
    # without case (Korean often ends a sentence without punctuation; Hindi ends one with "।")
    others = (
        "He paused—\nthen spoke.\nEarly life\nHe was born in 1914\n- two eggs\n- salt\n"
        "청원합니다\n정말 힘들었다\n吾輩は猫である\n名前はまだ無い\nवह घर गया।\nफिर वह सो गया।\n"
    )
    p2 = write(tmp_path / "k.jsonl", json.dumps({"text": others}) + "\n")
    assert read([p2])[0][0].sentences == [
        "He paused— then spoke.", "Early life", "He was born in 1914", "- two eggs", "- salt",
        "청원합니다", "정말 힘들었다", "吾輩は猫である", "名前はまだ無い", "वह घर गया।", "फिर वह सो गया।",
    ]
    # the same book as a text file (paragraphs between blank lines) splits the same way
    text_docs, _ = read([write(tmp_path / "b.txt", book)], doc_boundary="file")
    assert text_docs[0].sentences == docs[0].sentences


def _identity(x):
    return x


# One paragraph rule for every prose format (issue 10): text files, JSON Lines and Parquet texts.
PROSE = (
    "Some say that the place was bewitched by a High German Doctor during the early days of the "
    "Settlement, while Others say that an old Indian Chief, the Prophet or Wizard of his Tribe, held "
    "his powwows there before the Country was discovered by Master Hendrick Hudson, who, as he "
    "expressed it, \u201ctarried,\u201d in Sleepy Hollow for the Purpose of instructing the Children of "
    "the Vicinity, and who Sojourned there for Years."
)
PARAGRAPH_CASES = [
    ("Chapter One\nThe story begins here.", ["Chapter One", "The story begins here."]),
    # Hard-wrapped prose (a greedy wrap at 60 to 80 columns) is joined, onto a lowercase word
    # and onto a capital that would not have fitted on the line.
    *[(textwrap.fill(PROSE, width), [PROSE]) for width in (60, 64, 70, 72, 76, 80)],
    # ... and after a title abbreviation and onto a number, when they would not have fitted.
    (
        "It was the year when the whole village went out to see the old Mrs.\n"
        "Snow at her farm, and the year was, as everyone in the town knows,\n"
        "1984, when they all came back home again for good.",
        ["It was the year when the whole village went out to see the old Mrs. Snow at her farm, and the year "
         "was, as everyone in the town knows, 1984, when they all came back home again for good."],
    ),
    ("See Mr.\nSmith in the office.", ["See Mr.", "Smith in the office."]),  # a short line: not wrapped
    # Short lines (verse, a list) keep their breaks; so do final punctuation and closing quotes after it.
    (
        "A pleasing land of drowsy head it was,\nOf dreams that wave before the eye;\n\"Go,\" he said.\u201d\nand left.",
        ["A pleasing land of drowsy head it was,", "Of dreams that wave before the eye;", '"Go," he said.\u201d', "and left."],
    ),
    # One paragraph per line (lines longer than any hard wrap) is never joined onto a capital.
    ("x" * 120 + " without a stop\nNext paragraph here.", ["x" * 120 + " without a stop", "Next paragraph here."]),
    # Scripts without case are never joined.
    ("청원합니다\n정말 힘들었다", ["청원합니다", "정말 힘들었다"]),
]


@pytest.mark.parametrize("fmt", ["text", "jsonl", "parquet"])
@pytest.mark.parametrize("text,sentences", PARAGRAPH_CASES, ids=[f"case{i}" for i in range(len(PARAGRAPH_CASES))])
def test_one_paragraph_rule_for_every_prose_format(tmp_path, fmt, text, sentences):
    if fmt == "text":
        path = write(tmp_path / "a.txt", text + "\n")
    elif fmt == "jsonl":
        path = write(tmp_path / "a.jsonl", json.dumps({"text": text}) + "\n")
    else:
        path = tmp_path / "a.parquet"
        pq.write_table(pa.table({"text": [text]}), path)
    (doc,), _ = read([path])
    assert doc.sentences == sentences


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["", "the end.", "The Start", "and more words here", "Short", "a" * 30, "B" * 90 + ",", "\u201cQuote,\u201d", "끝"]), min_size=1, max_size=25))
def test_text_files_and_jsonl_texts_split_alike(tmp_path_factory, lines):
    """The same text as a text file and as a JSON Lines record: the same sentences."""
    text = "\n".join(lines)
    d = tmp_path_factory.mktemp("same")
    as_text, _ = read([write(d / "a.txt", text + "\n")], doc_boundary="file", require_documents=False)
    as_jsonl, _ = read([write(d / "a.jsonl", json.dumps({"text": text}) + "\n")], require_documents=False)
    assert [s for doc in as_text for s in doc.sentences] == [s for doc in as_jsonl for s in doc.sentences]


def test_splitting_in_worker_processes_gives_the_same_documents_and_counts(tmp_path, monkeypatch):
    import mlmcorpus.readers.records as records
    from mlmcorpus.engines.local import map_ordered

    recs = []
    for i in range(40):
        if i % 7 == 3:
            recs.append({"id": i, "text": "  \n "})  # empty: skipped and counted
        elif i % 5 == 0:
            recs.append({"id": i, "sentences": [f"Pre {i}.", "split."]})  # already split: not sent to a worker
        else:
            recs.append({"id": i, "text": " ".join(f"Sentence {i}.{k} here." for k in range(i % 9 + 1))})
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    monkeypatch.setattr(records, "_BATCH_ITEMS", 3)  # many small batches in flight
    expected, expected_stats = read([p], max_doc_sentences=4)
    stats = ReadStats()

    def documents(side_map):
        assert side_map is not None
        cfg = ReaderConfig(max_doc_sentences=4)
        return iter_documents(resolve_sources([str(p)], None), cfg, stats, split_map=side_map)

    got = list(map_ordered(_identity, documents, 2))
    assert [(d.id, d.sentences) for d in got] == [(d.id, d.sentences) for d in expected]
    assert stats.as_dict() == expected_stats.as_dict()
    assert stats.skipped["empty_document"] == 6 and stats.skipped["long_documents_split"] > 0


def test_a_truncated_file_keeps_its_first_documents_with_or_without_workers(tmp_path, monkeypatch):
    """A corrupt file found by walking a folder: what was read before the error counts, either way."""
    import mlmcorpus.readers.records as records
    from mlmcorpus.engines.local import map_ordered

    lines = "".join(json.dumps({"id": i, "text": f"Document {i} is here. It has two sentences."}) + "\n" for i in range(3000))
    data = gzip.compress(lines.encode())
    write(tmp_path / "in" / "a.jsonl.gz", data[: len(data) * 2 // 3])
    write(tmp_path / "in" / "b.jsonl", json.dumps({"id": "b", "text": "Last one. Still read."}) + "\n")
    monkeypatch.setattr(records, "_BATCH_ITEMS", 64)
    expected, expected_stats = read([tmp_path / "in"])
    assert 100 < len(expected) < 3000 and expected[-1].id == "b"
    assert expected_stats.skipped["unreadable_file"] == 1
    stats = ReadStats()

    def documents(side_map):
        return iter_documents(resolve_sources([str(tmp_path / "in")], None), ReaderConfig(), stats, split_map=side_map)

    got = list(map_ordered(_identity, documents, 2))
    assert [(d.id, d.sentences) for d in got] == [(d.id, d.sentences) for d in expected]
    assert stats.as_dict() == expected_stats.as_dict()


# ------------------------------------------------------------------ what the reader holds


def _bert_corpus(path: Path, docs: int, sentences: int, width: int = 99) -> list[list[str]]:
    """A BERT-layout file of ``docs`` documents of ``sentences`` distinct ASCII lines each."""
    corpus = [[f"{d:05d} {k:05d} " + "w" * (width - 12) for k in range(sentences)] for d in range(docs)]
    write(path, "\n\n".join("\n".join(doc) for doc in corpus) + "\n")
    return corpus


def _read_ahead(paths, side_map=None, newlines=1, **kw):
    """The parts read, and the most bytes the reader had read from disk but not yet handed on
    (counting the part being handed on).

    Counted from the outside: ``on_progress`` gives the bytes consumed from the file, each part
    handed on accounts for its lines (a sentence and ``newlines`` line breaks, a blank line after
    a document's last part).  So the figure is what the reader buffers, whatever it buffers in.
    """
    read = handed = worst = 0

    def progress(n):
        nonlocal read
        read += n

    def parts():
        nonlocal handed, worst
        sources = resolve_sources([str(p) for p in paths], kw.get("input_format"))
        config = ReaderConfig(**kw)
        for part in iter_documents(sources, config, ReadStats(), on_progress=progress, split_map=side_map, parts=True):
            worst = max(worst, read - handed)
            handed += sum(len(s.encode()) + newlines for s in part.sentences) + (not part.more)
            yield part

    return parts, lambda: worst


def test_with_workers_the_reader_holds_a_bounded_amount_of_presplit_text(tmp_path, monkeypatch):
    """Many long pre-split documents (books in the BERT layout), read while workers take the units:
    the text read ahead stays within the batches in flight, counted in characters, not documents.
    (Batches used to close at 512 documents: here that was the whole 6 MB file.)"""
    import mlmcorpus.readers.records as records
    from mlmcorpus.engines.local import LocalPool

    corpus = _bert_corpus(tmp_path / "books.bert.txt", docs=150, sentences=400)  # 6 MB, 40 kB a book
    monkeypatch.setattr(records, "_BATCH_CHARS", 32 * 1024)
    monkeypatch.setattr(records, "_PART_CHARS", 32 * 1024)
    with LocalPool(2) as pool:
        parts, worst = _read_ahead([tmp_path / "books.bert.txt"], side_map=pool.map)
        got = list(pool.map(_identity, parts()))  # the units' map: tasks in flight, as in a build
    # In flight: pool.limit batches submitted and the one being handed on, each under
    # _BATCH_CHARS plus one part; a part under _PART_CHARS plus one sentence.
    part = 32 * 1024 + 100
    bound = (pool.limit + 1) * (32 * 1024 + part) + part
    assert worst() <= bound, f"{worst() / 1e6:.2f} MB read ahead, bound {bound / 1e6:.2f} MB"
    assert worst() > 32 * 1024  # (the counting sees the batching at all)
    assert any(p.more for p in got)
    joined = [d.sentences for d in iter_documents(resolve_sources([str(tmp_path / "books.bert.txt")]), ReaderConfig())]
    assert joined == corpus


@pytest.mark.parametrize("fmt", ["bert", "text"])
def test_one_huge_document_is_handed_on_in_parts(tmp_path, fmt):
    """A 6 MB document (a BERT file without blank lines; a text file read as one document) is
    never held whole: parts of about _PART_CHARS characters go on as they are read."""
    import mlmcorpus.readers.records as records

    lines = [f"Line {k:06d} of one very long document goes on and on, like a book that never ends." for k in range(75_000)]
    if fmt == "bert":
        path = write(tmp_path / "one.bert.txt", "\n".join(lines) + "\n")
        kw, newlines = {}, 1
    else:  # short paragraphs: the document is the file
        path = write(tmp_path / "one.txt", "\n\n".join(lines) + "\n")
        kw, newlines = {"input_format": "text", "doc_boundary": "file"}, 2
    assert path.stat().st_size > 6_000_000
    parts, worst = _read_ahead([path], newlines=newlines, **kw)
    got = list(parts())
    # The part being handed on (at most one line over _PART_CHARS characters, and its lines'
    # breaks) and the next line.  (Every line has the same length.)
    line = len(lines[0]) + newlines
    bound = (records._PART_CHARS // len(lines[0]) + 2) * line + line
    assert worst() <= bound, f"{worst() / 1e6:.3f} MB read ahead, bound {bound / 1e6:.3f} MB"
    assert len(got) > 5 and all(p.more for p in got[:-1]) and not got[-1].more
    assert len({p.id for p in got}) == 1
    stats = ReadStats()
    (doc,) = iter_documents(resolve_sources([str(path)], kw.get("input_format")), ReaderConfig(**kw), stats)
    assert doc.sentences == lines and stats.documents == 1 and stats.sentences == len(lines)


def test_a_paragraph_without_blank_lines_is_handed_on_in_parts(tmp_path):
    """Text without blank lines is one paragraph (held up to --max-line-bytes to be split), but it
    goes on to the workers in parts of about _PART_CHARS characters, not as one 6 MB item."""
    import mlmcorpus.readers.records as records

    lines = [f"Line {k:06d} of a file without a single blank line, one sentence a line." for k in range(85_000)]
    path = write(tmp_path / "flat.txt", "\n".join(lines) + "\n")
    assert path.stat().st_size > 6_000_000
    parts = list(iter_documents(resolve_sources([str(path)]), ReaderConfig(doc_boundary="file"), parts=True))
    assert len(parts) > 5 and [s for p in parts for s in p.sentences] == lines
    assert max(sum(map(len, p.sentences)) for p in parts) <= records._PART_CHARS + max(map(len, lines))


def test_parquet_books_are_read_a_few_at_a_time(tmp_path):
    """Read batches of a Parquet file are sized by its text bytes, not a row count: 256 rows of
    40 kB books were 10 MB of Python strings at once."""
    book = " ".join(f"Sentence {k} of a book in a Parquet file." for k in range(900))  # 40 kB
    pq.write_table(pa.table({"id": list(range(300)), "text": [f"{i} {book}" for i in range(300)]}), tmp_path / "b.parquet")
    sources = resolve_sources([str(tmp_path / "b.parquet")])
    n, peak = traced_peak(lambda: sum(1 for _ in iter_documents(sources, ReaderConfig(splitter="none"), parts=True)))
    assert n == 300
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB of Python objects for 12 MB of books"


@pytest.mark.parametrize("fmt", ["bert", "text"])
def test_a_file_broken_inside_a_document_ends_it_there(tmp_path, monkeypatch, fmt):
    """A truncated file found by walking: its last document ends where the file broke, with all
    that was read of it, whatever part of it was handed on already; the next file's documents
    stay apart.  The same with and without workers, and for any part size."""
    import mlmcorpus.readers.records as records
    from mlmcorpus.engines.local import map_ordered

    lines = [f"Sentence {k} of a long book that is cut off." for k in range(20_000)]
    text = ("\n" if fmt == "bert" else "\n\n").join(lines) + "\n"
    data = gzip.compress(text.encode())
    name = "a.bert.txt.gz" if fmt == "bert" else "a.txt.gz"
    write(tmp_path / "in" / name, data[: len(data) // 2])
    write(tmp_path / "in" / "b.txt", "Next file.\n\nIts second paragraph.\n")
    kw = {"doc_boundary": "file"}

    def read_all(side_map=None, **extra):
        stats = ReadStats()
        cfg = ReaderConfig(**kw)
        got = list(map_ordered(_identity, lambda m: iter_documents(resolve_sources([str(tmp_path / "in")]), cfg, stats, split_map=m, **extra), 2 if side_map else 1))
        return got, stats

    whole, stats = read_all()
    assert [d.source.endswith(name) for d in whole] == [True, False]
    kept = whole[0].sentences
    assert 5_000 < len(kept) < 20_000 and kept == lines[: len(kept)]
    assert whole[1].sentences == ["Next file.", "Its second paragraph."]
    assert stats.documents == 2 and stats.sentences == len(kept) + 2 and stats.skipped["unreadable_file"] == 1
    monkeypatch.setattr(records, "_PART_CHARS", 64 * 1024)
    for workers in (False, True):
        parts, parted_stats = read_all(workers, parts=True)
        a = [p for p in parts if p.source.endswith(name)]
        assert len(a) > 2 and all(p.more for p in a[:-1]) and not a[-1].more
        assert [s for p in a for s in p.sentences] == kept
        assert parted_stats.as_dict() == stats.as_dict()


def test_an_error_that_is_not_the_files_is_not_retried(tmp_path, monkeypatch):
    """Only read errors end the document being read; a failing splitter is raised as it is, once."""
    import mlmcorpus.readers.cleaning as cleaning

    calls = []

    def failing(self, paragraph):
        calls.append(paragraph)
        raise RuntimeError("splitter failed")

    monkeypatch.setattr(cleaning._ProseSplitter, "paragraph_sentences", failing)
    with pytest.raises(RuntimeError, match="splitter failed"):
        read([write(tmp_path / "a.txt", "One paragraph.\n\nAnother.\n")])
    assert calls == ["One paragraph."]


def test_jsonl_custom_text_field_and_presplit_sentences(tmp_path):
    p = write(tmp_path / "d.jsonl", json.dumps({"body": "One. Two."}) + "\n" + json.dumps({"id": "s", "sentences": ["a  b", "", "c"]}) + "\n")
    docs, _ = read([p], text_field="body")
    assert [d.sentences for d in docs] == [["One.", "Two."], ["a b", "c"]]


def test_parquet_text_and_id_columns(tmp_path):
    p = tmp_path / "d.parquet"
    table = pa.table({"doc": ["a1", "b2", None, "d4"], "content": ["Hello there. General Kenobi.", "Second doc.", "x", None]})
    pq.write_table(table, p)
    docs, stats = read([p], text_column="content", id_field="doc")
    assert [(d.id, d.sentences) for d in docs] == [
        ("a1", ["Hello there.", "General Kenobi."]),
        ("b2", ["Second doc."]),
        (f"{p}:row 2", ["x"]),
    ]
    assert stats.documents == 3 and stats.skipped == {"non_string_text": 1}


def test_parquet_missing_column_names_available_ones(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["x"]}), p)
    with pytest.raises(InputError, match=r"no column 'text' \(columns: body\); set --text-column"):
        read([p])


def test_text_blank_line_documents_join_wrapped_lines(tmp_path):
    text = "It was a dark\nand stormy night. The rain\nfell.\n\nNext document starts. Ends.\n"
    docs, _ = read([write(tmp_path / "t.txt", text)])
    assert [d.sentences for d in docs] == [
        ["It was a dark and stormy night.", "The rain fell."],
        ["Next document starts.", "Ends."],
    ]


def test_text_one_document_per_file(tmp_path):
    text = "Para one. Still one.\n\nPara two.\n"
    write(tmp_path / "d" / "b.txt", "Other file.\n")
    write(tmp_path / "d" / "a.txt", text)
    docs, _ = read([tmp_path / "d"], doc_boundary="file")
    assert [d.sentences for d in docs] == [["Para one.", "Still one.", "Para two."], ["Other file."]]


def test_sample_data_reads_every_file(sample):
    docs, stats = read([sample])
    by_source = {}
    for d in docs:
        by_source.setdefault(os.path.basename(d.source), []).append(d)
    assert set(by_source) == {"en_gutenberg.txt", "en_wiki.bert.txt", "ko_petitions.jsonl.gz", "ko_wiki.jsonl"}
    assert len(by_source["en_wiki.bert.txt"]) == 40
    assert len(by_source["ko_wiki.jsonl"]) == 40
    assert len(by_source["ko_petitions.jsonl.gz"]) == 60
    assert not stats.skipped
    assert all(s and s == s.strip() for d in docs for s in d.sentences)


# ------------------------------------------------------------------ compression and sources


@pytest.mark.parametrize(
    "ext,compress",
    [
        (".gz", lambda b: gzip.compress(b, mtime=0)),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
        (".zst", lambda b: __import__("zstandard").ZstdCompressor().compress(b)),
    ],
)
def test_compressed_inputs_read_like_plain(tmp_path, ext, compress):
    plain, _ = read([write(tmp_path / "a.bert.txt", BERT_TEXT)])
    docs, stats = read([write(tmp_path / f"c.bert.txt{ext}", compress(BERT_TEXT.encode()))])
    assert [d.sentences for d in docs] == [d.sentences for d in plain]
    assert stats.bytes == len(BERT_TEXT.encode())


def test_directory_walk_is_sorted_recursive_and_skips_hidden(tmp_path):
    write(tmp_path / "b" / "z.txt", "Zed.\n")
    write(tmp_path / "a.txt", "Ay.\n")
    write(tmp_path / ".hidden.txt", "Hidden.\n")
    write(tmp_path / ".git" / "x.txt", "Hidden dir.\n")
    write(tmp_path / "notes.unknownext", "Ignored.\n")
    sources = resolve_sources([str(tmp_path)])
    assert [os.path.relpath(s.path, tmp_path) for s in sources] == ["a.txt", os.path.join("b", "z.txt")]
    assert all(not s.explicit for s in sources)


def test_glob_sources(tmp_path):
    for name in ["x2.jsonl", "x1.jsonl", "y.txt"]:
        write(tmp_path / name, json.dumps({"text": name}) + "\n")
    sources = resolve_sources([str(tmp_path / "x*.jsonl")])
    assert [os.path.basename(s.path) for s in sources] == ["x1.jsonl", "x2.jsonl"]


def test_detect_format():
    assert detect_format("a.jsonl.gz") == "jsonl"
    assert detect_format("wiki.bert.txt.zst") == "bert"
    assert detect_format("book.TXT") == "text"
    assert detect_format("t.parquet") == "parquet"
    assert detect_format("x.tokens") is None


# ------------------------------------------------------------------ normalisation and repairs


def test_control_table_is_exactly_category_cc_minus_newlines():
    cc = {c for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"} - {10, 13}
    spaces = {c for c in cc if chr(c).isspace()}  # tab, VT, FF, FS..US, NEL: they separate words
    assert spaces == {9, 11, 12, 28, 29, 30, 31, 133}
    assert {c for c, v in _CONTROL_TABLE.items() if v is None} == (cc - spaces) | {0xFEFF}
    assert {c for c, v in _CONTROL_TABLE.items() if v == " "} == spaces
    # the pre-check that lets clean() skip translate finds exactly these characters
    found = {c for c in range(0x3000) if _CONTROL_CHAR.search("ab" + chr(c) + "cd")} | {
        c for c in (0xFEFF, 0xFFFE, 0x10FFFF) if _CONTROL_CHAR.search(chr(c))
    }
    assert found == set(_CONTROL_TABLE)


def test_normalisation_nfc_nfkc_lowercase_and_control(tmp_path):
    decomposed = "Cafe\u0301 \uff21\uff22 x\x07y\ufeff"
    p = write(tmp_path / "n.bert.txt", decomposed + "\n")
    assert read([p])[0][0].sentences == ["Caf\u00e9 \uff21\uff22 xy"]
    assert read([p], normalize="nfkc")[0][0].sentences == ["Caf\u00e9 AB xy"]
    assert read([p], lowercase=True)[0][0].sentences == ["caf\u00e9 \uff41\uff42 xy"]
    assert read([p], normalize="none", strip_control=False)[0][0].sentences == [decomposed.replace("\ufeff", "\ufeff")]


def test_invalid_utf8_replaced_and_counted(tmp_path):
    p = write(tmp_path / "u.bert.txt", b"ok line\nbad \xff\xfe here\nalso \xc3 bad\n")
    docs, stats = read([p])
    assert docs[0].sentences == ["ok line", "bad \ufffd\ufffd here", "also \ufffd bad"]
    assert stats.repaired == {"invalid_utf8": 3}


def test_nul_bytes_removed_and_counted(tmp_path):
    p = write(tmp_path / "z.jsonl", b'{"text": "nu\x00ll"}\n' + b'{"text": "fine"}\n')
    docs, stats = read([p])
    assert [d.sentences for d in docs] == [["null"], ["fine"]]
    assert stats.repaired == {"nul_bytes": 1}


def test_huge_line_is_capped_counted_and_memory_stays_bounded(tmp_path):
    p = tmp_path / "big.jsonl"
    with open(p, "wb") as f:
        f.write(b'{"text": "before."}\n')
        f.write(b'{"text": "' + b"a" * (50 * 1024 * 1024) + b'"}\n')
        f.write(b'{"text": "after."}\n')
    (docs, stats), peak = traced_peak(lambda: read([p], max_line_bytes=1024 * 1024))
    assert [d.sentences for d in docs] == [["before."], ["after."]]
    assert stats.skipped == {"line_too_long": 1}
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while skipping a 50 MB line"


def test_reading_a_large_file_does_not_hold_it(tmp_path):
    p = tmp_path / "many.bert.txt"
    with open(p, "w") as f:
        for i in range(60_000):
            f.write(f"Sentence number {i} of a long corpus that goes on.\nAnother line.\n\n")
    assert p.stat().st_size > 3_000_000
    n, peak = traced_peak(lambda: sum(1 for _ in iter_documents(resolve_sources([str(p)]), ReaderConfig())))
    assert n == 60_000
    assert peak < 2_000_000, f"peak {peak / 1e6:.1f} MB for a {p.stat().st_size / 1e6:.1f} MB file"


def test_warns_once_per_reason(tmp_path, warnings_log):
    lines = ['{"body": "x"}', '{"body": "y"}', "not json", "{also not"]
    p = write(tmp_path / "w.jsonl", "\n".join(lines) + "\n")
    docs, stats = read([p], require_documents=False)
    assert docs == []
    assert stats.skipped == {"missing_text_field": 2, "malformed_json": 2}
    assert len(warnings_log) == 2
    assert "Is --text-field correct? Available fields: body" in warnings_log[0]
    assert f"{p}:3: malformed JSON" in warnings_log[1]


# ------------------------------------------------------------------ bad input


def test_strict_malformed_json_names_file_and_line(tmp_path):
    p = write(tmp_path / "s.jsonl", '{"text": "ok"}\n{"text": \n')
    with pytest.raises(InputError, match=rf"^{p}:2: malformed JSON"):
        read([p], strict=True)


def test_strict_missing_field_and_non_string(tmp_path):
    p = write(tmp_path / "s.jsonl", '{"text": 5}\n')
    with pytest.raises(InputError, match=r":1: field 'text' is int, not a string"):
        read([p], strict=True)
    with pytest.raises(InputError, match=r"s.jsonl: no documents found \(skipped: non_string_text 1\)$"):
        read([p])
    docs, stats = read([p], require_documents=False)
    assert docs == [] and stats.skipped == {"non_string_text": 1}


def test_missing_path():
    with pytest.raises(InputError, match=r"^nope/missing.txt: no such file or directory$"):
        resolve_sources(["nope/missing.txt"])


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="directory has no input files"):
        resolve_sources([str(tmp_path / "empty")])


def test_glob_without_matches(tmp_path):
    with pytest.raises(InputError, match="pattern matches no files"):
        resolve_sources([str(tmp_path / "*.jsonl")])


def test_unknown_format(tmp_path):
    p = write(tmp_path / "wiki.tokens", "x\n")
    with pytest.raises(InputError, match=r"cannot tell the input format.*--input-format"):
        resolve_sources([str(p)])
    assert resolve_sources([str(p)], "text")[0].format == "text"
    with pytest.raises(ConfigError, match="--input-format: unknown format 'xml'"):
        ReaderConfig(input_format="xml")


def test_unreadable_file(tmp_path, monkeypatch):
    p = write(tmp_path / "secret.txt", "x\n")
    import mlmcorpus.readers.opening as opening

    def deny(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(opening, "_open_raw", deny)
    with pytest.raises(InputError, match=r"secret.txt: permission denied$"):
        read([p])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file_for_real(tmp_path):  # pragma: no cover - CI runs as root
    p = write(tmp_path / "secret.txt", "x\n")
    p.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        read([p])


def test_binary_file_named_explicitly_is_an_error(tmp_path):
    p = write(tmp_path / "model.txt", bytes(range(256)) * 64)
    with pytest.raises(InputError, match=r"model.txt: looks like a binary file \(\d+ NUL bytes"):
        read([p])


def test_binary_file_in_a_directory_is_skipped_and_counted(tmp_path):
    write(tmp_path / "a.txt", "Real text.\n")
    write(tmp_path / "b.txt", os.urandom(4096) + b"\x00" * 200)
    docs, stats = read([tmp_path])
    assert [d.sentences for d in docs] == [["Real text."]]
    assert stats.skipped == {"binary_file": 1}


def test_corrupt_gzip(tmp_path):
    data = gzip.compress(BERT_TEXT.encode() * 100)
    p = write(tmp_path / "c.bert.txt.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match=r"c.bert.txt.gz: corrupt or truncated gzip data"):
        read([p])
    q = write(tmp_path / "n.bert.txt.gz", b"this is not gzip at all\n")
    with pytest.raises(InputError, match=r"n.bert.txt.gz: corrupt or truncated gzip data"):
        read([q])


def test_not_a_parquet_file(tmp_path):
    p = write(tmp_path / "bad.parquet", b"PAR1 but not really")
    with pytest.raises(InputError, match="bad.parquet: not a readable Parquet file"):
        read([p])


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="--splitter"):
        ReaderConfig(splitter="nosuch")
    with pytest.raises(ConfigError, match="--doc-boundary"):
        ReaderConfig(doc_boundary="page")
    with pytest.raises(ConfigError, match="--max-line-bytes"):
        ReaderConfig(max_line_bytes=10)


# ------------------------------------------------------------------ review findings: streams, truncation, odd bytes


def test_named_pipe_is_read_once_from_the_start(tmp_path):
    fifo = tmp_path / "pipe.bert.txt"
    os.mkfifo(fifo)
    import threading

    lines = "".join(f"Sentence {i}.\n\n" for i in range(5000))

    def feed():
        with open(fifo, "w") as f:
            f.write(lines)

    t = threading.Thread(target=feed)
    t.start()
    docs, _ = read([fifo])
    t.join()
    assert len(docs) == 5000 and docs[0].sentences == ["Sentence 0."]


@pytest.mark.parametrize(
    "ext,compress,name",
    [
        (".bz2", bz2.compress, "bz2"),
        (".xz", lzma.compress, "xz"),
        (".zst", lambda b: __import__("zstandard").ZstdCompressor().compress(b), "zstd"),
    ],
)
def test_truncated_compressed_files_are_errors(tmp_path, ext, compress, name):
    data = compress(("A sentence here.\n\n" * 50_000).encode())
    p = write(tmp_path / f"t.bert.txt{ext}", data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"t.bert.txt{ext}: corrupt or truncated {name} data"):
        read([p])


def test_multi_frame_zstd_reads_every_frame(tmp_path):
    import zstandard

    c = zstandard.ZstdCompressor()
    p = write(tmp_path / "m.bert.txt.zst", c.compress(b"One.\n\n") + c.compress(b"Two.\n"))
    assert [d.sentences for d in read([p])[0]] == [["One."], ["Two."]]


def test_lone_surrogate_escapes_are_replaced_and_counted(tmp_path):
    p = write(tmp_path / "s.jsonl", '{"text": "bad \\ud800 here. Pair \\ud83d\\ude00 ok."}\n')
    docs, stats = read([p])
    assert docs[0].sentences == ["bad \ufffd here.", "Pair \U0001f600 ok."]
    assert stats.repaired == {"invalid_utf8": 1}
    with pytest.raises(InputError, match=r"s.jsonl:1: lone surrogate"):
        read([p], strict=True)


def test_documents_are_capped_so_memory_stays_bounded(tmp_path):
    p = write(tmp_path / "noblank.bert.txt", "".join(f"Line {i}.\n" for i in range(25)))
    docs, stats = read([p], max_doc_sentences=10)
    assert [len(d.sentences) for d in docs] == [10, 10, 5]
    assert [s for d in docs for s in d.sentences] == [f"Line {i}." for i in range(25)]
    assert stats.skipped == {"long_documents_split": 2}
    q = write(tmp_path / "book.txt", "".join(f"Para {i}.\n\n" for i in range(25)))
    docs, _ = read([q], doc_boundary="file", max_doc_sentences=10)
    assert [len(d.sentences) for d in docs] == [10, 10, 5]


def test_byte_order_mark_is_dropped(tmp_path):
    p = write(tmp_path / "bom.jsonl", b'\xef\xbb\xbf{"text": "First."}\n{"text": "Second."}\n')
    docs, stats = read([p])
    assert [d.sentences for d in docs] == [["First."], ["Second."]] and not stats.skipped


def test_whitespace_controls_separate_words(tmp_path):
    p = write(tmp_path / "ff.bert.txt", b"word\x0cnext and\x0bmore\xc2\x85end\n")
    assert read([p])[0][0].sentences == ["word next and more end"]


def test_strict_applies_to_long_lines_and_bad_bytes_in_every_format(tmp_path):
    p = write(tmp_path / "l.bert.txt", b"ok\n" + b"x" * 5000 + b"\n")
    with pytest.raises(InputError, match=r"l.bert.txt:2: line longer than 1024 bytes"):
        read([p], max_line_bytes=1024, strict=True)
    q = write(tmp_path / "u.txt", b"fine\nbad \xff\n")
    with pytest.raises(InputError, match=r"u.txt:2: invalid UTF-8 at byte 4"):
        read([q], strict=True)


def test_no_documents_is_an_error_naming_what_was_skipped(tmp_path):
    empty = write(tmp_path / "empty.txt", "")
    with pytest.raises(InputError, match=r"empty.txt: no documents found \(the input is empty\)"):
        read([empty])
    blank = write(tmp_path / "blank.bert.txt", "\n\n  \n")
    with pytest.raises(InputError, match="no documents found"):
        read([blank])
    d = tmp_path / "bin"
    write(d / "a.txt", bytes(range(256)) * 40)
    write(d / "b.txt", bytes(range(256)) * 40)
    with pytest.raises(InputError, match=r"no documents found \(skipped: binary_file 2\)"):
        read([d])


def test_corrupt_file_found_while_walking_is_skipped_and_counted(tmp_path):
    write(tmp_path / "a.bert.txt", "Good.\n")
    data = gzip.compress(b"Sentence.\n\n" * 10000)
    write(tmp_path / "b.bert.txt.gz", data[: len(data) // 2])
    docs, stats = read([tmp_path])
    assert docs[0].sentences == ["Good."] and stats.skipped["unreadable_file"] == 1


def test_parquet_cells_obey_the_line_cap(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["short.", "y" * 5000]}), p)
    docs, stats = read([p], max_line_bytes=1024)
    assert [d.sentences for d in docs] == [["short."]] and stats.skipped == {"line_too_long": 1}


# ------------------------------------------------------------------ whitespace inside sentences


def test_printable_text_has_no_control_characters_and_only_the_space_as_whitespace():
    """What the reader's shortcuts rely on: clean() skips the control-character search for
    printable text, and sentences of printable text without double spaces need no re-spacing."""
    import sys as _sys

    assert not any(chr(c).isprintable() for c in _CONTROL_TABLE)
    assert [c for c in range(_sys.maxunicode + 1) if chr(c).isspace() and chr(c).isprintable()] == [0x20]


def _reference_paragraph_sentences(reader, paragraph: str) -> list[str]:
    """What paragraph_sentences computed before its fast path: every sentence re-spaced."""
    out = (" ".join(s.split()) for s in reader.split(reader.cleaner.clean(paragraph)))
    return [s for s in out if s]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list("Aa. ?!\t\u00a0\u2003\u3000\x0c\x07\u0301e\u00e9\"") + ["Mr.", "  ", "가다."]), max_size=40).map("".join))
def test_sentence_whitespace_fast_path_matches_the_full_normalisation(paragraph):
    from mlmcorpus.readers.cleaning import _ProseSplitter

    for config in (ReaderConfig(), ReaderConfig(splitter="none"), ReaderConfig(lowercase=True, normalize="nfkc")):
        reader = _ProseSplitter(config, ReadStats())
        assert reader.paragraph_sentences(paragraph) == _reference_paragraph_sentences(reader, paragraph)


def test_runs_of_whitespace_inside_sentences_become_one_space(tmp_path):
    text = "Two  spaces\there. No\u00a0break\u2003space and\u3000ideographic.\nPlain one. Another one."
    p = write(tmp_path / "w.jsonl", json.dumps({"text": text}) + "\n")
    assert read([p])[0][0].sentences == [
        "Two spaces here.", "No break space and ideographic.", "Plain one.", "Another one.",
    ]


def padded_splitter(paragraph: str) -> list[str]:
    """A plug-in splitter that does not return slices: its sentences are still re-spaced."""
    return [f"  {part}\t " for part in paragraph.split(". ")]


def test_plugin_splitter_output_is_normalised(tmp_path):
    p = write(tmp_path / "w.jsonl", json.dumps({"text": "One here. Two there."}) + "\n")
    docs, _ = read([p], splitter=f"{__name__}:padded_splitter")
    assert docs[0].sentences == ["One here", "Two there."]


def test_each_file_is_a_split_of_its_own(tmp_path):
    """Documents carry the index of the file they came from; `stream` writes it, and reading
    `stream`'s output back keeps it (so `stream | pairs` cuts the units `build` cuts)."""
    from mlmcorpus.readers import iter_documents, resolve_sources

    for name, text in [("a.txt", "One. Two.\n\nThree.\n"), ("b.txt", "Four.\n"), ("c.jsonl", '{"text": "Five. Six."}\n')]:
        (tmp_path / name).write_text(text)
    docs = list(iter_documents(resolve_sources([str(tmp_path)])))
    assert [d.split for d in docs] == [0, 0, 1, 2]
    stream = tmp_path / "stream.jsonl"
    stream.write_text("".join(d.to_json() + "\n" for d in docs))
    again = list(iter_documents(resolve_sources([str(stream)])))
    assert [(d.split, d.sentences) for d in again] == [(d.split, d.sentences) for d in docs]
