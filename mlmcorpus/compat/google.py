"""``build --compat google``: the instances of Google's ``create_pretraining_data.py``, exactly.

For users who must reproduce an existing setup.  Given the BERT layout (one sentence per
line, a blank line between documents), a WordPiece ``vocab.txt``, the reference's flags
and its ``--random_seed``, this writes the instances google-research/bert's script makes,
instance for instance and in its order:

* one ``random.Random(seed)``, drawn in the reference's call order: the document
  shuffle; ``dupe_factor`` passes over the documents (per document the short target;
  per chunk ``a_end``, random next, the random document and its start, the truncation,
  then the masking of that instance); the shuffle of all instances;
* its rules where mlmcorpus' own build differs: random documents from the whole corpus
  (not a unit's pool), a random next that may come from the same document when ten
  tries keep finding it, sentences longer than a row kept whole for the truncation to
  cut, Python 3 ``round`` for the number of predictions, random replacements drawn from
  the whole vocabulary (``[PAD]``, ``[unused*]`` and ``[MASK]`` included), padding with
  id 0, and ``do_whole_word_mask`` (``--masking whole-word``) grouping a ``##`` piece
  with the word before it even across a ``[SEP]``;
* lines read as the reference reads them: ``line.strip()``, no cleaning or Unicode
  normalisation, files one after another (a file that does not end with a blank line
  runs on into the next one's first document);
* Google's tokenisation: ``BasicTokenizer`` + ``WordpieceTokenizer`` with 200 characters
  per word, through the ``tokenizers`` package; Python's context-dependent lower-casing
  of a final capital sigma is applied first where it matters (the one rule ``tokenizers``
  does not share).

Like the reference it holds the corpus (token ids) and every finished row until the final
shuffle in memory, and runs in one process; it only writes the rows more compactly.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mlmcorpus import formats, outdir
from mlmcorpus.config import BuildConfig
from mlmcorpus.errors import ConfigError, InputError
from mlmcorpus.manifest import Manifest, new_manifest, tokenizer_record, write_manifest
from mlmcorpus.readers import Source
from mlmcorpus.readers.opening import open_source
from mlmcorpus.schema import RowLayout, id_dtype
from mlmcorpus.tokenizers import EncodedBatch, Tokenizer, TokenizerSpec
from mlmcorpus.units import BuildStats, MaskedUnit, PairStats

log = logging.getLogger("mlmcorpus")

__all__ = ["REFERENCE_DEFAULTS", "check_config", "load_tokenizer", "read_corpus", "Corpus", "Rows",
           "create_instances", "build"]

#: The reference's defaults where mlmcorpus' own differ: ``build --compat google`` takes these
#: for options left unset, so that the reference's command line translates flag for flag.
REFERENCE_DEFAULTS = {"dupe_factor": 10, "max_predictions_per_seq": 20, "lowercase": True}
#: Characters per word above which WordpieceTokenizer gives one [UNK].
MAX_CHARS_PER_WORD = 200
#: Lines tokenised at a time.
_BATCH_LINES = 8192
#: Rows written per unit of the shard writer.
_WRITE_ROWS = 8192


def check_config(config: BuildConfig, sources: list[Source]) -> None:
    """Refuse what the reference cannot do (one line, naming the option)."""
    p, m, o = config.pairs, config.mask, config.output
    if p.task != "nsp":
        raise ConfigError(f"--compat google: the reference builds NSP pairs only, not --pair-task {p.task}")
    if p.word_splitter is not None:
        raise ConfigError("--compat google: the reference's words are its WordPiece ## pieces (no --word-splitter)")
    if m.masking not in ("token", "whole-word"):
        raise ConfigError(f"--compat google: the reference masks tokens or whole words (do_whole_word_mask), "
                          f"not --masking {m.masking}")
    if m.replace_per != "piece":
        raise ConfigError("--compat google: the reference draws [MASK]/random/unchanged per piece (--replace-per piece)")
    if m.mask_ratios != (0.8, 0.1, 0.1):
        raise ConfigError("--compat google: the reference fixes --mask-ratios at 0.8,0.1,0.1")
    if o.shuffle:
        raise ConfigError("--compat google: rows keep the reference's own order (its final shuffle); "
                          "the config must say shuffle=False")
    for s in sources:
        if s.format in ("jsonl", "parquet"):
            raise ConfigError(f"--compat google: {s.name} is {s.format}; the reference reads the BERT layout "
                              "(one sentence per line, a blank line between documents)")


# ---------------------------------------------------------------- tokenisation


def load_tokenizer(spec: TokenizerSpec) -> Tokenizer:
    """The WordPiece vocab.txt of ``spec`` with Google's rules (``spec.lowercase`` = ``do_lower_case``)."""
    from mlmcorpus.tokenizers.hf import HFTokenizer

    path = spec.path
    if path.lower().endswith((".model", ".json")):
        raise ConfigError(f"--compat google: the reference reads a WordPiece vocab.txt, not {path}")
    if spec.add_special_tokens:
        raise ConfigError("--compat google: the reference's vocab.txt holds its special tokens (no --add-special-tokens)")
    lowercase = REFERENCE_DEFAULTS["lowercase"] if spec.lowercase is None else spec.lowercase
    return HFTokenizer(path, "wordpiece", lowercase=bool(lowercase), threads=None, max_chars_per_word=MAX_CHARS_PER_WORD)


def encode_lines(tokenizer: Tokenizer, lines: list[str], lowercase: bool) -> EncodedBatch:
    """Stripped lines as the reference's ``FullTokenizer`` tokenises them.

    Through ``tokenizers`` (fast), except what it does not do as the reference: a final capital
    sigma (see :func:`_prepared`), and private-use or unassigned characters, which ``tokenizers``
    drops and the reference keeps (the word becomes [UNK]): such lines go through a plain port
    of ``BasicTokenizer`` + ``WordpieceTokenizer`` (:class:`_Port`).
    """
    outside = _outside()
    slow = {i for i, line in enumerate(lines) if not line.isascii() and outside.search(line)}
    fast = tokenizer.encode_batch([_prepared(line, lowercase) for i, line in enumerate(lines) if i not in slow])
    if not slow:
        return fast
    port = _Port.of(tokenizer.path, lowercase)
    out: list[list[int]] = []
    k = 0
    for i, line in enumerate(lines):
        if i in slow:
            out.append(port.encode(line))
        else:
            out.append(fast[k].tolist())
            k += 1
    return EncodedBatch.from_lists(out)


@functools.lru_cache(maxsize=1)
def _outside() -> re.Pattern[str]:
    """Characters of the categories Co (private use) and Cn (unassigned), as one character class."""
    ranges: list[list[int]] = []
    for cp in range(0x110000):
        if unicodedata.category(chr(cp)) in ("Co", "Cn"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    body = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{body}]")


class _Port:
    """Google's ``BasicTokenizer`` + ``WordpieceTokenizer``, step by step, for the lines
    ``tokenizers`` would tokenise otherwise (slow: a few lines in a corpus)."""

    def __init__(self, vocab: dict[str, int], lowercase: bool):
        self.vocab, self.lowercase = vocab, lowercase
        self.unk = vocab["[UNK]"]

    @classmethod
    @functools.lru_cache(maxsize=2)
    def of(cls, path: str, lowercase: bool) -> _Port:
        from mlmcorpus.tokenizers.hf import _read_vocab_txt

        return cls(_read_vocab_txt(path), lowercase)

    def encode(self, text: str) -> list[int]:
        text = "".join(f" {ch} " if _is_cjk(ord(ch)) else ch for ch in _clean(text))
        ids: list[int] = []
        for token in text.split():
            if self.lowercase:
                token = "".join(ch for ch in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(ch) != "Mn")
            for word in _split_punctuation(token):
                ids.extend(self._pieces(word))
        return ids

    def _pieces(self, word: str) -> list[int]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk]
        out, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    out.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.unk]  # a word with a part outside the vocabulary is one [UNK]
        return out


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # Every ASCII character that is not a letter or a digit counts, as in the reference.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _split_punctuation(token: str) -> list[str]:
    words: list[str] = []
    current = ""
    for ch in token:
        if _is_punctuation(ch):
            if current:
                words.append(current)
            words.append(ch)
            current = ""
        else:
            current += ch
    if current:
        words.append(current)
    return words


def _clean(text: str) -> str:
    """The reference's text cleaning: NUL, U+FFFD and control characters (Cc, Cf) dropped,
    tab/newline/CR and space separators (Zs) turned into spaces."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or cat == "Zs":
            out.append(" ")
        elif ch != "\ufffd" and cat not in ("Cc", "Cf"):
            out.append(ch)
    return "".join(out)


def _prepared(line: str, lowercase: bool) -> str:
    # Python lower-cases a capital sigma at the end of a word to final sigma; `tokenizers` maps
    # characters one by one.  The reference lower-cases after cleaning, so clean first here too.
    if lowercase and "\u03a3" in line:
        return _clean(line).lower()
    return line


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Corpus:
    """Every non-empty tokenised sentence, in reading order, and the documents as sentence ranges.

    Sentence ``s`` is ``ids[offsets[s]:offsets[s + 1]]``; document ``d`` is sentences
    ``first[d] .. first[d] + count[d] - 1`` (documents without tokens are dropped, as the
    reference drops them).
    """

    ids: np.ndarray
    offsets: np.ndarray
    first: list[int]
    count: list[int]

    @property
    def num_docs(self) -> int:
        return len(self.first)


def _lines(source: Source, on_progress: Callable[[int], None] | None) -> Iterator[tuple[str, int]]:
    """(stripped line, its bytes) of ``source``, split at ``\\n`` only, as ``tf.gfile`` reads."""
    opened = open_source(source)
    try:
        seen = 0
        for lineno, raw in enumerate(opened.stream, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{source.name}:{lineno}: not valid UTF-8 at byte {e.start} of the line "
                                 "(the reference reads UTF-8 text only)") from None
            yield line.strip(), len(raw)
            if on_progress is not None and lineno % 4096 == 0:
                now = opened.position()
                on_progress(now - seen)
                seen = now
        if on_progress is not None:
            on_progress(opened.position() - seen)
    finally:
        opened.close()


def read_corpus(
    sources: Iterable[Source], tokenizer: Tokenizer, lowercase: bool, stats: BuildStats,
    on_progress: Callable[[int], None] | None = None,
) -> Corpus:
    """Read and tokenise every line like the reference; empty lines end a document."""
    ids_parts: list[np.ndarray] = []
    lengths_parts: list[np.ndarray] = []
    first: list[int] = []
    count: list[int] = []
    state = {"sentences": 0, "first": 0, "count": 0}
    read = stats.read

    def close_document() -> None:
        if state["count"]:
            first.append(state["first"])
            count.append(state["count"])
            state["count"] = 0

    def flush(batch: list[str]) -> None:
        enc = encode_lines(tokenizer, [line for line in batch if line], lowercase)
        lengths = enc.lengths
        j = 0
        for line in batch:
            if not line:
                close_document()
                continue
            if lengths[j]:
                if not state["count"]:
                    state["first"] = state["sentences"]
                state["count"] += 1
                state["sentences"] += 1
            j += 1
        ids_parts.append(enc.ids)
        lengths_parts.append(lengths[lengths > 0])

    for source in sources:
        read.files += 1
        batch: list[str] = []
        for line, size in _lines(source, on_progress):
            read.bytes += size
            batch.append(line)
            if len(batch) >= _BATCH_LINES:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    close_document()
    lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, dtype=np.int32)
    read.documents, read.sentences = len(first), len(lengths)
    stats.pairs.documents, stats.pairs.sentences, stats.pairs.tokens = len(first), len(lengths), len(ids)
    return Corpus(ids, offsets, first, count)


# ---------------------------------------------------------------- instances


class Rows:
    """Finished rows, in the order they were made, in blocks of ``block`` rows."""

    def __init__(self, L: int, P: int, vocab_size: int, block: int = 16384):
        self.L, self.P, self.block = L, P, block
        self.ids_dtype = id_dtype(vocab_size)
        self.n = 0
        self._blocks: list[dict[str, np.ndarray]] = []

    def next_row(self) -> tuple[dict[str, np.ndarray], int]:
        r = self.n % self.block
        if r == 0:
            b = self.block
            self._blocks.append({
                "input_ids": np.zeros((b, self.L), dtype=self.ids_dtype),  # padding: id 0, as the reference
                "lengths": np.zeros(b, dtype=np.int32),
                "a_len": np.zeros(b, dtype=np.int32),
                "next_sentence_label": np.zeros(b, dtype=np.int8),
                "masked_lm_positions": np.zeros((b, self.P), dtype=np.int32),
                "masked_lm_ids": np.zeros((b, self.P), dtype=self.ids_dtype),
                "kinds": np.zeros((b, 3), dtype=np.int32),
            })
        self.n += 1
        return self._blocks[-1], r

    def columns(self) -> dict[str, np.ndarray]:
        """Every row, one array per column (the blocks are released)."""
        names = ("input_ids", "lengths", "a_len", "next_sentence_label", "masked_lm_positions", "masked_lm_ids", "kinds")
        out = {}
        for name in names:
            out[name] = np.concatenate([b[name] for b in self._blocks])[: self.n] if self._blocks else np.zeros(0)
            for b in self._blocks:
                del b[name]
        self._blocks = []
        return out


def create_instances(
    corpus: Corpus, config: BuildConfig, tokenizer: Tokenizer, rng: random.Random,
    on_pass: Callable[[int], None] | None = None,
) -> tuple[Rows, list[int]]:
    """Every instance of the reference, masked, and the order of its final shuffle.

    Draws from ``rng`` exactly as ``create_training_instances`` does after reading.
    Returns the rows in the order made and ``order``: row ``order[i]`` is the i-th
    instance the reference writes.
    """
    p, m = config.pairs, config.mask
    L = p.max_seq_length
    P = m.predictions_for(L)
    max_num_tokens = L - 3
    short_seq_prob, prob = p.short_seq_prob, m.masked_lm_prob
    whole_word = m.masking == "whole-word"
    sp = tokenizer.special_ids
    cls_id, sep_id, mask_id = sp.cls, sp.sep, sp.mask
    vocab_words = tokenizer.base_size  # random replacements: any id of the vocab.txt
    continues = [tokenizer.id_to_piece(i).startswith("##") for i in range(vocab_words)]
    rows = Rows(L, P, tokenizer.vocab_size)
    offsets = corpus.offsets.tolist()
    all_ids = corpus.ids
    rnd, randint = rng.random, rng.randint

    order = list(range(corpus.num_docs))
    rng.shuffle(order)  # the document shuffle
    docs = [(corpus.first[d], corpus.count[d]) for d in order]
    n_docs = len(docs)

    def emit(a_lo: int, a_hi: int, b_lo: int, b_hi: int, is_random_next: bool) -> None:
        # truncate_seq_pair: one draw per token removed, from the front or the back of the longer side.
        la, lb = a_hi - a_lo, b_hi - b_lo
        while la + lb > max_num_tokens:
            if la > lb:
                if rnd() < 0.5:
                    a_lo += 1
                else:
                    a_hi -= 1
                la -= 1
            else:
                if rnd() < 0.5:
                    b_lo += 1
                else:
                    b_hi -= 1
                lb -= 1
        tokens = [cls_id, *all_ids[a_lo:a_hi].tolist(), sep_id, *all_ids[b_lo:b_hi].tolist(), sep_id]
        n = la + lb + 3
        # create_masked_lm_predictions: candidates are all but [CLS] and the two [SEP].
        if whole_word:
            cand: list[list[int]] = []
            for i in range(1, n - 1):
                if i == la + 1:
                    continue
                if cand and continues[tokens[i]]:
                    cand[-1].append(i)
                else:
                    cand.append([i])
        else:
            cand = [[i] for i in range(1, la + 1)] + [[i] for i in range(la + 2, n - 1)]
        rng.shuffle(cand)
        num_to_predict = min(P, max(1, int(round(n * prob))))
        original = tokens[:]
        masked: list[int] = []
        kinds = [0, 0, 0]
        for group in cand:
            if len(masked) >= num_to_predict:
                break
            if len(masked) + len(group) > num_to_predict:
                continue
            # (Groups never overlap, so the reference's covered-index check never fires.)
            for index in group:
                if rnd() < 0.8:
                    tokens[index] = mask_id
                    kinds[0] += 1
                elif rnd() < 0.5:
                    kinds[2] += 1
                else:
                    tokens[index] = randint(0, vocab_words - 1)
                    kinds[1] += 1
                masked.append(index)
        masked.sort()
        block, r = rows.next_row()
        block["input_ids"][r, :n] = tokens
        block["lengths"][r] = n
        block["a_len"][r] = la
        block["next_sentence_label"][r] = is_random_next
        block["masked_lm_positions"][r, : len(masked)] = masked
        block["masked_lm_ids"][r, : len(masked)] = [original[i] for i in masked]
        block["kinds"][r] = kinds

    for dupe in range(p.dupe_factor):
        if on_pass is not None:
            on_pass(dupe)
        for d in range(n_docs):
            first, count = docs[d]
            target = max_num_tokens
            if rnd() < short_seq_prob:
                target = randint(2, max_num_tokens)
            i, chunk_start, current = 0, 0, 0
            while i < count:
                current += offsets[first + i + 1] - offsets[first + i]
                if i == count - 1 or current >= target:
                    size = i - chunk_start + 1
                    a_end = randint(1, size - 1) if size >= 2 else 1
                    a_lo, a_hi = offsets[first + chunk_start], offsets[first + chunk_start + a_end]
                    if size == 1 or rnd() < 0.5:
                        target_b = target - (a_hi - a_lo)
                        for _ in range(10):
                            rd = randint(0, n_docs - 1)
                            if rd != d:
                                break
                        r_first, r_count = docs[rd]
                        j = randint(0, r_count - 1)
                        b_lo = offsets[r_first + j]
                        while True:
                            b_hi = offsets[r_first + j + 1]
                            j += 1
                            if b_hi - b_lo >= target_b or j == r_count:
                                break
                        i -= size - a_end  # the unused segments go back
                        emit(a_lo, a_hi, b_lo, b_hi, True)
                    else:
                        emit(a_lo, a_hi, a_hi, offsets[first + i + 1], False)
                    current = 0
                    chunk_start = i + 1
                i += 1
    written = list(range(rows.n))
    rng.shuffle(written)  # the instance shuffle
    return rows, written


# ---------------------------------------------------------------- the build


def build(
    sources: list[Source],
    out_dir: str,
    *,
    config: BuildConfig,
    tokenizer: TokenizerSpec,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_unit: Callable[[MaskedUnit], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> Manifest:
    """Read, make the reference's instances, write them in its order; returns the manifest."""
    from mlmcorpus.pipeline import write_shards

    check_config(config, sources)
    tok = load_tokenizer(tokenizer)
    outdir.prepare(out_dir, overwrite)
    formats.get(config.output.format)
    stats = BuildStats()
    if on_phase:
        on_phase("reading")
    lowercase = bool(tok.info().get("lowercase"))
    corpus = read_corpus(sources, tok, lowercase, stats, on_progress)
    if not corpus.num_docs:
        raise InputError("no text: every line of the input is empty or tokenises to nothing")
    if corpus.num_docs == 1:
        log.warning("the input is one document: as in the reference, every random next comes from that document "
                    "(check the blank lines between documents)")
    passes = config.pairs.dupe_factor

    def on_pass(k: int) -> None:
        if on_phase:
            on_phase(f"instances {k + 1}/{passes}")

    rows, written = create_instances(corpus, config, tok, random.Random(config.seed), on_pass)
    del corpus
    if on_phase:
        on_phase("writing")
    layout = RowLayout.of(config, tok.vocab_size)
    shards = write_shards(_units(rows, written, layout), out_dir, config, tok.vocab_size, stats, on_unit=on_unit)
    stats.units = 1  # the whole corpus is the one pool
    manifest = new_manifest(
        config,
        reader=None,
        sources=[s.path for s in sources],
        tokenizer=tokenizer_record(tok, tokenizer, False, out_dir),
        shards=shards,
        stats=stats.as_dict(),
    )
    write_manifest(out_dir, manifest)
    return manifest


def _units(rows: Rows, written: list[int], layout: RowLayout) -> Iterator[MaskedUnit]:
    """The rows in the reference's order, a writer's unit at a time."""
    cols = rows.columns()
    order = np.asarray(written, dtype=np.int64)
    for k, lo in enumerate(range(0, len(order), _WRITE_ROWS)):
        take = order[lo : lo + _WRITE_ROWS]
        label = cols["next_sentence_label"][take]
        stats = PairStats(instances=len(take), random_next=int(label.sum()))
        columns = layout.compact(
            cols["input_ids"][take], cols["lengths"][take], cols["a_len"][take], label,
            cols["masked_lm_positions"][take], cols["masked_lm_ids"][take],
        )
        yield MaskedUnit(k, columns, stats, cols["kinds"][take].sum(axis=0).astype(np.int64))
