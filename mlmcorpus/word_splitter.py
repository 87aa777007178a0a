"""Word boundaries from an external segmenter: the ``--word-splitter module:function`` hook.

Text without spaces (Chinese, Japanese) has no word boundaries a tokenizer can see.  A word
splitter is any function that takes one sentence (``str``) and returns its words, in order, as
strings (a list, or any iterable)::

    import jieba

    def words(sentence):
        return list(jieba.cut(sentence))

The words, whitespace aside, must spell the sentence (whitespace aside): ``jieba.cut`` (which
returns the spaces as words of their own), ``[w.surface for w in fugashi.Tagger()(sentence)]``
and ``sentence.split()`` all qualify.  A piece then starts a word when its characters begin a
word, or run into a new one (a piece that crosses a boundary joins the word it ends in); the
first piece of a sentence always starts one; a piece of whitespace only belongs to the word
after it.  The pieces' character spans come from the tokenizer
(:meth:`~mlmcorpus.tokenizers.Tokenizer.encode_spans`), asked only when the hook is on.

The hook is resolved like the sentence splitter's ``--splitter module:function``
(:func:`mlmcorpus.sentences.load_callable`), once per process; a hook that cannot be loaded,
raises, or returns something else than the sentence's words is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from mlmcorpus.errors import ConfigError
from mlmcorpus.sentences import load_callable

if TYPE_CHECKING:
    from mlmcorpus.tokenizers import EncodedBatch, Tokenizer

__all__ = ["WordSplitter", "check_word_splitter_name", "load_word_splitter", "encode_with_words", "piece_word_starts"]

#: A word splitter: one sentence in, its words out (strings that spell it, whitespace aside).
WordSplitter = Callable[[str], Iterable[str]]

_OPTION = "--word-splitter"
#: Every code point ``str.isspace`` accepts (none is above U+3000).
_SPACES = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def check_word_splitter_name(name: str) -> None:
    """Refuse a value that cannot name a hook, without importing anything (a manifest or stream
    header naming one is read without running it)."""
    module_name, colon, attr = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not colon or not module_name or not attr:
        raise ConfigError(f"{_OPTION}: expected 'module.path:function', got {name!r}")


@functools.lru_cache(maxsize=8)
def load_word_splitter(name: str) -> WordSplitter:
    """The hook ``name`` names, imported once per process (``ConfigError`` when it cannot be)."""
    check_word_splitter_name(name)
    try:
        return load_callable(name, "word splitter")  # type: ignore[return-value]
    except ValueError as e:
        raise ConfigError(f"{_OPTION}: {e}") from None


def _words(split: WordSplitter, name: str, sentence: str) -> list[str]:
    """The hook's words of ``sentence``, checked: strings that spell it, whitespace aside."""
    try:
        result = split(sentence)
        words = list(result) if isinstance(result, Iterable) and not isinstance(result, str) else None
    except Exception as e:  # a plug-in may fail in any way (a generator, while it is read)
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise ConfigError(f"{_OPTION} {name}: raised {reason} on the sentence {_show(sentence)}") from None
    if words is None or not all(isinstance(w, str) for w in words):
        got = type(result).__name__ if words is None else "a list holding " + next(
            type(w).__name__ for w in words if not isinstance(w, str))
        raise ConfigError(f"{_OPTION} {name}: returned {got} for the sentence {_show(sentence)}; expected a list of "
                          "str, its words")
    if "".join("".join(w.split()) for w in words) != "".join(sentence.split()):
        raise ConfigError(f"{_OPTION} {name}: its words {_show(' | '.join(words))} do not spell the sentence "
                          f"{_show(sentence)} (whitespace aside)")
    return words


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def piece_word_starts(
    sentences: Sequence[str], split: WordSplitter, name: str, offsets: np.ndarray, spans: np.ndarray
) -> np.ndarray:
    """bool[total_pieces]: which pieces start a word of the hook.

    ``offsets`` (int64[n + 1]) gives each sentence's pieces, ``spans`` (int64[total, 2]) each
    piece's characters ``[begin, end)`` in its sentence.
    """
    total = int(offsets[-1])
    starts = np.ones(total, dtype=bool)
    if total == 0:
        return starts
    # Every sentence's characters one after the other; word_first: the first non-space
    # character of each word, in that concatenation.
    text = "".join(sentences)
    base = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences)), out=base[1:])
    N = len(text)
    space = np.isin(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), _SPACES)
    nonspace = np.flatnonzero(~space)
    sizes: list[int] = []  # non-space characters of each word
    for s in sentences:
        sizes.extend(n for n in (len(w) - sum(map(str.isspace, w)) for w in _words(split, name, s)) if n)
    size = np.array(sizes, dtype=np.int64)
    before = np.zeros(len(size) + 1, dtype=np.int64)
    np.cumsum(size, out=before[1:])  # non-space characters before each word (they spell the text's)
    word_first = nonspace[before[:-1]] if len(size) else np.zeros(0, dtype=np.int64)
    # Word of each character (the last word that starts at or before it).
    mark = np.zeros(N + 1, dtype=np.int64)
    mark[word_first] = 1
    word_of = np.cumsum(mark) - 1
    # First non-space character at or after c (N: none), last one at or before c (-1: none).
    idx = np.arange(N + 1)
    nxt = np.minimum.accumulate(np.where(np.append(~space, True), idx, N)[::-1])[::-1]
    prv = np.maximum.accumulate(np.where(np.append(~space, False), idx, -1))
    sentence_of = np.repeat(np.arange(len(sentences)), np.diff(offsets))
    b = base[sentence_of] + spans[:, 0]
    e = base[sentence_of] + np.maximum(spans[:, 1], spans[:, 0])
    f = nxt[np.minimum(b, N)]
    lo = word_of[np.minimum(f, N)]  # the word the piece's first non-space character (or the next) is in
    g = prv[np.maximum(e - 1, 0)]
    hi = np.where((e > b) & (g >= f), word_of[np.clip(g, 0, N)], lo)  # ... and its last one
    starts[1:] = (lo[1:] > hi[:-1]) | (hi[1:] > lo[1:])
    starts[offsets[:-1][np.diff(offsets) > 0]] = True
    return starts


def encode_with_words(tokenizer: Tokenizer, sentences: Sequence[str], name: str) -> EncodedBatch:
    """Encode ``sentences`` with per-piece word starts from the hook ``name``."""
    split = load_word_splitter(name)
    batch, spans = tokenizer.encode_spans(sentences)
    return replace(batch, word_starts=piece_word_starts(sentences, split, name, batch.offsets, spans))


def spans_from_lists(spans: Iterable[Sequence[tuple[int, int]]], total: int) -> np.ndarray:
    """int64[total, 2] from per-sentence lists of (begin, end) character offsets."""
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(spans)), dtype=np.int64, count=2 * total)
    return flat.reshape(total, 2)
