"""Text cleaning and the paragraph rule: how decoded lines become clean sentences.

Repairs (invalid UTF-8, NUL bytes, control characters) and Unicode normalisation, the
line cap that bounds memory, and the one rule that joins hard-wrapped lines into
paragraphs, kept together so every format cleans and splits prose alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import BinaryIO, Literal

from mlmcorpus.errors import InputError
from mlmcorpus.readers.config import ReaderConfig
from mlmcorpus.readers.stats import ReadStats
from mlmcorpus.sentences import get_splitter, is_abbreviation, split_none, split_rules

_SURROGATE = re.compile("[\ud800-\udfff]")

# Control characters (Unicode category Cc) other than tab/newline/CR, plus the
# byte-order mark, are deleted; tabs become spaces.  Built once: str.translate
# with a dict is the fastest pure-Python way to delete a set of characters.
_CONTROL_TABLE: dict[int, str | None] = {
    c: None for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"
}  # exactly Unicode category Cc (checked in the tests)
_CONTROL_TABLE[0xFEFF] = None
for _c in "\t\x0b\x0c\x1c\x1d\x1e\x1f\x85":  # whitespace controls separate words: keep a space
    _CONTROL_TABLE[ord(_c)] = " "
_CONTROL_CHAR = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_CONTROL_TABLE)) + "]")


_NORMAL_FORMS: dict[str, Literal["NFC", "NFKC"] | None] = {"nfc": "NFC", "nfkc": "NFKC", "none": None}


class _TextCleaner:
    """Decode, repair and normalise text; counts what it repairs."""

    def __init__(self, config: ReaderConfig, stats: ReadStats):
        self.stats = stats
        self.form = _NORMAL_FORMS[config.normalize.lower()]
        self.lowercase = config.lowercase
        self.strict = config.strict
        self.table = _CONTROL_TABLE if config.strip_control else None

    def fix_surrogates(self, text: str, where: str) -> str:
        """JSON escapes can encode lone surrogates (``\\ud800``), which are not text: replace and count."""
        if not _SURROGATE.search(text):
            return text
        if self.strict:
            raise InputError(f"{where}: lone surrogate escape in JSON string")
        fixed, n = _SURROGATE.subn("\ufffd", text)
        self.stats.repair("invalid_utf8", f"{where}: lone surrogate replaced by U+FFFD", n)
        return fixed

    def decode(self, raw: bytes, where: str) -> str:
        if b"\x00" in raw:
            if self.strict:
                raise InputError(f"{where}: NUL byte in text")
            n = raw.count(b"\x00")
            raw = raw.replace(b"\x00", b"")
            self.stats.repair("nul_bytes", f"{where}: removed NUL bytes", n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if self.strict:
                raise InputError(f"{where}: invalid UTF-8 at byte {e.start}") from None
            text = raw.decode("utf-8", "replace")
            n = text.count("\ufffd") - raw.count(b"\xef\xbf\xbd")
            self.stats.repair("invalid_utf8", f"{where}: invalid UTF-8 replaced by U+FFFD", max(n, 1))
            return text

    def clean(self, text: str) -> str:
        # Control characters are not printable: most text skips the search (itself 5x faster than translate).
        if self.table is not None and not text.isprintable() and _CONTROL_CHAR.search(text) is not None:
            text = text.translate(self.table)
        if self.form is not None and not unicodedata.is_normalized(self.form, text):
            text = unicodedata.normalize(self.form, text)
        if self.lowercase:
            text = text.lower()
        return text


def _iter_lines(
    stream: BinaryIO, cap: int, stats: ReadStats, name: str, strict: bool = False
) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) with the newline kept; None for a line over ``cap`` bytes.

    A UTF-8 byte-order mark at the start of the file is dropped.
    """
    lineno = 0
    readline = stream.readline
    while True:
        line = readline(cap + 1)
        if not line:
            return
        lineno += 1
        stats.bytes += len(line)
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if len(line) > cap and not line.endswith(b"\n"):
            while True:  # drain the rest of the long line in bounded chunks
                chunk = readline(1 << 20)
                stats.bytes += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            if strict:
                raise InputError(f"{name}:{lineno}: line longer than {cap} bytes (--max-line-bytes)")
            stats.skip(
                "line_too_long",
                f"{name}:{lineno}: line longer than {cap} bytes skipped (raise --max-line-bytes to keep such lines)",
            )
            yield lineno, None
            continue
        yield lineno, line


# Hard-wrapped prose: which line breaks continue a sentence (see _wrapped).  A line ending a
# sentence, or a colon (a list, a formula or code follows), never continues; a semicolon does.
# A closing quote or bracket is final when what it closes is ('said.”'), not after a comma
# ('“tarried,”').
_FINAL = frozenset(".!?:\u2026")
_CLOSERS = "\"')]}\u00bb\u201d\u2019\u203a"
_OPENERS = "\"'([{\u00ab\u201c\u2018\u2039"
# Prose is hard-wrapped at 60-80 columns: a block whose longest line is outside this range is
# one paragraph per line (longer) or verse, a list, headings (shorter).
_WRAP_COLUMNS = range(55, 101)


def _wrapped(line: str, nxt: str, width: int) -> bool:
    """Whether ``line`` (stripped, not empty) continues on the next line ``nxt`` of its block.

    Never after sentence-final punctuation (but ``Mr.`` or ``approx.`` does not end a sentence).
    Onto a lowercase letter (after any opening quote or bracket), always.  Onto a capital or a
    digit, only in a block that looks hard-wrapped (``width``,
    its longest line, is in _WRAP_COLUMNS) and when the next word would not have fitted
    on the line: a greedy wrapper broke it there, which a heading, a list item or a line of
    verse is not.  Scripts without letter case (Hangul, CJK,
    Devanagari, Arabic, Thai, ...) are therefore never joined: one paragraph per line.
    """
    core = line.rstrip(_CLOSERS)
    if not core:
        return False
    if core[-1] in _FINAL and not (len(core) == len(line) and is_abbreviation(line[line.rfind(" ") + 1 :])):
        return False
    first = nxt.lstrip(_OPENERS)[:1]
    if first.islower():
        return True
    # The wrap width is a little under the longest line (a wrapper's width is not always reached
    # exactly, and a few lines run over it): a tenth of slack.
    wrappable = first.isupper() or first.isdigit()
    return wrappable and width in _WRAP_COLUMNS and len(line) + 1 + len(nxt.split(maxsplit=1)[0]) > width - width // 10


class _ProseSplitter:
    """Cleans prose and splits it into sentences by the one paragraph rule of every prose format.

    Plain text files are split by it as they are read, JSON Lines and Parquet texts by
    :func:`mlmcorpus.readers.records.split_texts` (perhaps in a worker): the same rule either way.
    """

    def __init__(self, config: ReaderConfig, stats: ReadStats):
        self.cleaner = _TextCleaner(config, stats)
        self.split = get_splitter(config.splitter)
        # The built-in splitters return stripped, non-empty slices of the paragraph.
        self._slices = self.split in (split_rules, split_none)

    def paragraph_sentences(self, paragraph: str) -> list[str]:
        text = self.cleaner.clean(paragraph)
        if self._slices and "  " not in text and text.isprintable():
            # Single spaces are the only whitespace: the sentences are already normalised.
            return self.split(text)
        out = []
        for s in self.split(text):
            s = " ".join(s.split())
            if s:
                out.append(s)
        return out

    def text_sentences(self, text: str) -> list[str]:
        """Sentences of a multi-paragraph text: the one paragraph rule of every prose format.

        A blank line always ends a paragraph.  Within a block of lines between blank lines,
        a line is a paragraph (WikiExtractor writes one per line; a heading; a list item)
        unless it is hard-wrapped prose that continues on the next line (:func:`_wrapped`).
        """
        out: list[str] = []
        block: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                block.append(line)
            elif block:
                out.extend(self._block_sentences(block))
                block = []
        if block:
            out.extend(self._block_sentences(block))
        return out

    def _block_sentences(self, lines: list[str]) -> list[str]:
        width = max(map(len, lines))
        out: list[str] = []
        para: list[str] = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            para.append(line)
            if i < last and _wrapped(line, lines[i + 1], width):
                continue
            out.extend(self.paragraph_sentences(" ".join(para)))
            para = []
        return out
