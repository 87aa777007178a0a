"""Train and load tokenizers behind one interface.

Three kinds load: a sentencepiece ``.model`` (ours or anyone's), a BERT
WordPiece ``vocab.txt`` and a Hugging Face ``tokenizer.json`` (both through the
``tokenizers`` package, the ``hf`` extra).  Every kind offers batch encoding to
flat NumPy arrays, the vocabulary size, the ids of the five BERT special tokens,
id -> piece, and which pieces start a word (for whole-word masking).

Training uses sentencepiece fed from our own streaming reader through
``sentence_iterator`` (no temporary copy of the corpus).  Trained models reserve
``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4`` and, by default, normalise with
``nfkc_hangul``: NFKC except that Hangul compatibility jamo (``ㅋ``, ``ㅠ``, common
in Korean web text) stay as written instead of becoming conjoining jamo, which
render as different characters.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import chain, islice
from typing import cast

import numpy as np

from mlmcorpus import __version__, outdir
from mlmcorpus.hashing import sha256_file as file_sha256
from mlmcorpus.errors import ConfigError, TokenizerError

__all__ = [
    "SPECIAL_TOKENS",
    "SpecialIds",
    "EncodedBatch",
    "Tokenizer",
    "TrainConfig",
    "load_tokenizer",
    "train_tokenizer",
    "hangul_preserving_nfkc_rules",
    "file_sha256",
]

log = logging.getLogger("mlmcorpus")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_ROLES = ("pad", "unk", "cls", "sep", "mask")
# Spellings other tokenizer families use for the same roles (RoBERTa/XLM-R style).
_ALIASES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<cls>", "<s>"),
    "sep": ("[SEP]", "<sep>", "</s>"),
    "mask": ("[MASK]", "<mask>"),
}
NORMALIZATIONS = ("nfkc_hangul", "nmt_nfkc", "nfkc", "identity")
MODEL_TYPES = ("unigram", "bpe")


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the BERT special tokens in a vocabulary."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def all(self) -> tuple[int, ...]:
        return (self.pad, self.unk, self.cls, self.sep, self.mask)


@dataclass(frozen=True)
class EncodedBatch:
    """Token ids of many sentences, ragged: sentence i is ``ids[offsets[i]:offsets[i+1]]``.

    ``ids``: int32[total_tokens]; ``offsets``: int64[n_sentences + 1].
    """

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> EncodedBatch:
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter(chain.from_iterable(lists), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)


class Tokenizer(ABC):
    """What every tokenizer kind offers the pipeline.

    ``vocab_size`` counts every id the tokenizer can emit, including special
    tokens appended by ``add_special_tokens=True`` at load time (those get the
    ids right after the base vocabulary).
    """

    kind: str
    path: str
    special_ids: SpecialIds

    def __init__(self, path: str, base_size: int, added: Sequence[str] = ()):
        self.path = path
        self.base_size = base_size
        self.added = tuple(added)
        self._sha256: str | None = None
        self._word_start: np.ndarray | None = None
        self._random_ids: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        return self.base_size + len(self.added)

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return self._sha256

    @abstractmethod
    def encode_batch(self, sentences: Sequence[str]) -> EncodedBatch:
        """Encode many sentences at once (no special tokens added)."""

    def encode(self, sentence: str) -> list[int]:
        return self.encode_batch([sentence])[0].tolist()

    @abstractmethod
    def _base_piece(self, i: int) -> str: ...

    @abstractmethod
    def _base_decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def _is_base_word_start(self, piece: str) -> bool: ...

    def id_to_piece(self, i: int) -> str:
        if 0 <= i < self.base_size:
            return self._base_piece(i)
        if self.base_size <= i < self.vocab_size:
            return self.added[i - self.base_size]
        raise IndexError(f"token id {i} out of range (vocab size {self.vocab_size})")

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens are dropped."""
        specials = set(self.special_ids.all())
        return self._base_decode([int(i) for i in ids if int(i) < self.base_size and int(i) not in specials])

    def word_start_mask(self) -> np.ndarray:
        """bool[vocab_size]: True where the piece starts a word (specials count as starts)."""
        if self._word_start is None:
            mask = np.fromiter(
                (self._is_base_word_start(self._base_piece(i)) for i in range(self.base_size)),
                dtype=bool,
                count=self.base_size,
            )
            mask = np.concatenate([mask, np.ones(len(self.added), dtype=bool)])
            mask[list(self.special_ids.all())] = True
            self._word_start = mask
        return self._word_start

    def _is_base_special(self, i: int, piece: str) -> bool:
        """Whether base id ``i`` is a special/control/placeholder token (``[unused3]``, ``<s>``)."""
        return bool(_BRACKETED.match(piece))

    def random_token_ids(self) -> np.ndarray:
        """int32 ids that random replacement may draw: the vocabulary minus special,
        control and placeholder tokens (the reference draws from all of it, ``[unused*]``
        and ``[MASK]`` included; we do not)."""
        if self._random_ids is None:
            specials = set(self.special_ids.all())
            keep = [
                i for i in range(self.base_size)
                if i not in specials and not self._is_base_special(i, self._base_piece(i))
            ]
            if not keep:
                raise TokenizerError(f"{self.path}: vocabulary has no ordinary tokens to draw random replacements from")
            self._random_ids = np.array(keep, dtype=np.int32)
        return self._random_ids

    def info(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "vocab_size": self.vocab_size,
            "special_ids": self.special_ids.as_dict(),
            "added_special_tokens": list(self.added),
        }

    def _resolve_specials(self, lookup: Callable[[str], int | None], add: bool) -> None:
        found: dict[str, int] = {}
        missing: list[str] = []
        for role in _ROLES:
            for spelling in _ALIASES[role]:
                i = lookup(spelling)
                if i is not None:
                    found[role] = i
                    break
            else:
                missing.append(role)
        if missing:
            names = [SPECIAL_TOKENS[_ROLES.index(r)] for r in missing]
            if not add:
                raise TokenizerError(
                    f"{self.path}: tokenizer lacks special tokens {', '.join(names)}; "
                    "pass --add-special-tokens to append them to the vocabulary"
                )
            for role, name in zip(missing, names):
                found[role] = self.base_size + len(self.added)
                self.added += (name,)
        self.special_ids = SpecialIds(**found)


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model (unigram or BPE)."""

    kind = "sentencepiece"

    def __init__(self, path: str, add_special_tokens: bool = False, threads: int = 1):
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(model_file=path)
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{path}: not a loadable sentencepiece model ({str(e).splitlines()[0]})") from None
        super().__init__(path, self.sp.get_piece_size())
        self.threads = threads
        self._resolve_specials(self._lookup, add_special_tokens)

    def _lookup(self, piece: str) -> int | None:
        i = self.sp.piece_to_id(piece)
        return i if self.sp.id_to_piece(i) == piece else None

    def encode_batch(self, sentences: Sequence[str]) -> EncodedBatch:
        return EncodedBatch.from_lists(self.sp.encode(list(sentences), out_type=int, num_threads=self.threads))

    def _base_piece(self, i: int) -> str:
        return self.sp.id_to_piece(i)

    def _base_decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def _is_base_word_start(self, piece: str) -> bool:
        return piece.startswith("\u2581")

    def _is_base_special(self, i: int, piece: str) -> bool:
        # Byte-fallback pieces (<0x41>) are ordinary tokens; control/unknown/unused are not.
        return bool(self.sp.is_control(i) or self.sp.is_unknown(i) or self.sp.is_unused(i))

    def info(self) -> dict:
        out = super().info()
        out.update(_spm_spec_summary(self.sp.serialized_model_proto()))
        return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _proto_spans(buf: bytes) -> Iterator[tuple[int, int, int | bytes, int, int]]:
    """(field number, wire type, value, start, end) of each top-level field of a protobuf message."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value = buf[i : i + n]
            i += n
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            return
        yield num, wire, value, start, i


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    for num, wire, value, _, _ in _proto_spans(buf):
        yield num, wire, value


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num: int, data: bytes) -> bytes:
    return _encode_varint(num << 3 | 2) + _encode_varint(len(data)) + data


def _set_rule_name(proto: bytes, name: str) -> bytes:
    """Replace normalizer_spec.normalization_rule_tsv (a temp-file path) by ``name``.

    sentencepiece stores the path of the rule file it was given; the path holds a
    random temp-dir name, which would make two identical trainings differ.
    """
    out = bytearray()
    for num, wire, value, start, end in _proto_spans(proto):
        if num == 3 and wire == 2:  # ModelProto.normalizer_spec
            inner = bytearray()
            for n2, w2, _v2, s2, e2 in _proto_spans(value):  # type: ignore[arg-type]
                if not (n2 == 6 and w2 == 2):  # NormalizerSpec.normalization_rule_tsv
                    inner += value[s2:e2]  # type: ignore[index]
            inner += _len_field(6, name.encode())
            out += _len_field(3, bytes(inner))
        else:
            out += proto[start:end]
    return bytes(out)


_SPM_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _spm_spec_summary(proto: bytes) -> dict[str, str]:
    """model_type and normalizer name from a sentencepiece ModelProto.

    Read with a tiny protobuf walk (ModelProto.trainer_spec = 2 -> model_type = 3;
    normalizer_spec = 3 -> name = 1) so that ``protobuf`` is not a dependency.
    """
    out = {"model_type": "unigram", "normalization": ""}
    try:
        for num, wire, value in _proto_fields(proto):
            if num == 2 and wire == 2:
                for n2, w2, v2 in _proto_fields(value):  # type: ignore[arg-type]
                    if n2 == 3 and w2 == 0:
                        out["model_type"] = _SPM_MODEL_TYPES.get(v2, str(v2))  # type: ignore[arg-type]
            elif num == 3 and wire == 2:
                for n2, w2, v2 in _proto_fields(value):  # type: ignore[arg-type]
                    if n2 == 1 and w2 == 2:
                        out["normalization"] = v2.decode("utf-8", "replace")  # type: ignore[union-attr]
    except IndexError:
        pass
    return out


class HFTokenizer(Tokenizer):
    """A WordPiece ``vocab.txt`` or a Hugging Face ``tokenizer.json`` via ``tokenizers``."""

    def __init__(
        self, path: str, kind: str, lowercase: bool | None = None, add_special_tokens: bool = False, threads: int | None = None
    ):
        # threads: 1 = encode on this thread only (a worker process must not start a thread pool of
        # its own on top of the other workers); None or more = the library's pool over all cores.
        self.threads = threads
        try:
            from tokenizers import Tokenizer as HFTok
            from tokenizers import decoders, models, normalizers, pre_tokenizers
        except ImportError:
            raise TokenizerError(
                f"{path}: loading WordPiece vocab.txt / tokenizer.json needs the tokenizers package: "
                "pip install 'mlmcorpus[hf]'"
            ) from None
        self.kind = kind
        self.lowercase: bool | None = None
        if kind == "wordpiece":
            vocab = _read_vocab_txt(path)
            if "[UNK]" not in vocab:
                raise TokenizerError(f"{path}: WordPiece vocab lacks [UNK]; it is needed to encode unknown words")
            if lowercase is None:
                # Uncased vocabularies (bert-base-uncased) have no ASCII capitals outside [..] specials
                # (they do hold a few symbols such as U+211D that str.isupper() counts as upper case).
                lowercase = not any(_HAS_ASCII_UPPER.search(w) for w in vocab if not w.startswith("["))
            self.lowercase = lowercase
            tok = HFTok(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
            tok.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
            )
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            self._prefix: str | None = "##"
            self._start_marker = None
        else:
            try:
                tok = HFTok.from_file(path)
            except Exception as e:
                raise TokenizerError(f"{path}: not a loadable tokenizer.json ({str(e).splitlines()[0]})") from None
            # Saved tokenizers may carry truncation/padding (the MiniLM one pads to 128): we want raw ids.
            tok.no_truncation()
            tok.no_padding()
            if hasattr(tok, "encode_special_tokens"):
                # "[MASK]" written in the corpus is text, not the mask token.
                tok.encode_special_tokens = True
            spec = json.loads(tok.to_str())
            model = spec.get("model") or {}
            self._prefix = model.get("continuing_subword_prefix") if model.get("type") == "WordPiece" else None
            if model.get("type") == "WordPiece" and not self._prefix:
                self._prefix = "##"
            text = json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
            self._start_marker = "\u2581" if "Metaspace" in text else ("\u0120" if "ByteLevel" in text else None)
            if lowercase is not None:
                raise ConfigError("--lowercase/--no-lowercase applies to WordPiece vocab.txt; tokenizer.json sets its own normalizer")
        self.tok = tok
        self._special_added: set[int] | None = None
        super().__init__(path, tok.get_vocab_size(with_added_tokens=True))
        self._resolve_specials(tok.token_to_id, add_special_tokens)
        self._encode = getattr(tok, "encode_batch_fast", tok.encode_batch)

    def encode_batch(self, sentences: Sequence[str]) -> EncodedBatch:
        if self.threads == 1:
            # `tokenizers` reads this variable on every call: the batch is encoded on this thread.
            saved = os.environ.get("TOKENIZERS_PARALLELISM")
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            try:
                encs = self._encode(list(sentences), add_special_tokens=False)
            finally:
                if saved is None:
                    del os.environ["TOKENIZERS_PARALLELISM"]
                else:
                    os.environ["TOKENIZERS_PARALLELISM"] = saved
        else:
            encs = self._encode(list(sentences), add_special_tokens=False)
        return EncodedBatch.from_lists([e.ids for e in encs])

    def _base_piece(self, i: int) -> str:
        return self.tok.id_to_token(i) or ""

    def _base_decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def _is_base_special(self, i: int, piece: str) -> bool:
        if self._special_added is None:
            decoder = self.tok.get_added_tokens_decoder() if hasattr(self.tok, "get_added_tokens_decoder") else {}
            self._special_added = {j for j, t in decoder.items() if getattr(t, "special", False)}
        return i in self._special_added or bool(_BRACKETED.match(piece))

    def _is_base_word_start(self, piece: str) -> bool:
        if self._prefix:
            return not piece.startswith(self._prefix)
        if self._start_marker:
            return piece.startswith(self._start_marker)
        return True

    def info(self) -> dict:
        out = super().info()
        if self.lowercase is not None:
            out["lowercase"] = self.lowercase
        return out


_HAS_ASCII_UPPER = re.compile("[A-Z]")
# [PAD], [unused17], <s>, <mask>, <|endoftext|>: bracketed pieces are specials or placeholders.
_BRACKETED = re.compile(r"^(\[[^\[\]]+\]|<[^<>\s]+>)$")


def _read_vocab_txt(path: str) -> dict[str, int]:
    vocab: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                token = line.rstrip("\r\n")
                if token in vocab:
                    raise TokenizerError(f"{path}:{i + 1}: duplicate token {token!r} in vocab.txt")
                vocab[token] = i
    except UnicodeDecodeError:
        raise TokenizerError(f"{path}: not a UTF-8 text vocabulary (one token per line)") from None
    if not vocab:
        raise TokenizerError(f"{path}: empty vocabulary")
    return vocab


def load_tokenizer(
    path: str,
    *,
    lowercase: bool | None = None,
    add_special_tokens: bool = False,
    threads: int = 1,
) -> Tokenizer:
    """Load a tokenizer by file: ``*.model`` (sentencepiece), ``*.json`` (tokenizer.json), else a WordPiece vocab.txt.

    A directory or a training prefix also works when it holds exactly one of
    ``tokenizer.json``, ``vocab.txt``, ``*.model`` (or ``PREFIX.model`` exists).
    ``threads``: encoding threads (sentencepiece's ``num_threads``; for ``tokenizers``,
    1 keeps encoding on the calling thread, more uses the library's own pool).
    """
    path = _resolve_tokenizer_path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read ({e.strerror or e})") from None
    lower = path.lower()
    if lower.endswith(".model"):
        if lowercase is not None:
            raise ConfigError("--lowercase/--no-lowercase applies to WordPiece vocab.txt, not sentencepiece models")
        return SentencePieceTokenizer(path, add_special_tokens=add_special_tokens, threads=threads)
    if lower.endswith(".json"):
        return HFTokenizer(path, "tokenizer.json", lowercase=lowercase, add_special_tokens=add_special_tokens, threads=threads)
    if b"\x00" in head:
        raise TokenizerError(f"{path}: binary file; expected a sentencepiece .model, a tokenizer.json or a vocab.txt")
    return HFTokenizer(path, "wordpiece", lowercase=lowercase, add_special_tokens=add_special_tokens, threads=threads)


def _resolve_tokenizer_path(path: str) -> str:
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        cands = [n for n in names if n in ("tokenizer.json", "vocab.txt") or n.endswith(".model")]
        if len(cands) == 1:
            return os.path.join(path, cands[0])
        if not cands:
            raise TokenizerError(f"{path}: directory holds no tokenizer.json, vocab.txt or .model file")
        raise TokenizerError(f"{path}: directory holds several tokenizers ({', '.join(cands)}); name one")
    if os.path.isfile(path + ".model"):
        return path + ".model"
    raise TokenizerError(f"{path}: no such tokenizer file")


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``tokenizer train`` (sentencepiece)."""

    model_type: str = "unigram"
    vocab_size: int = 32000
    character_coverage: float = 0.9995
    input_sentence_size: int = 2_000_000
    seed: int = 12345
    normalization: str = "nfkc_hangul"
    # sentencepiece's result depends on its thread count, so the default is a fixed
    # number (not the machine's core count) and the value is recorded with the model.
    threads: int = 4
    max_sentence_length: int = 8192

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(f"--model-type: expected one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}")
        if self.vocab_size < len(SPECIAL_TOKENS) + 2:
            raise ConfigError(f"--vocab-size: must be at least {len(SPECIAL_TOKENS) + 2}, got {self.vocab_size}")
        if not 0.0 < self.character_coverage <= 1.0:
            raise ConfigError(f"--character-coverage: must be in (0, 1], got {self.character_coverage}")
        if self.input_sentence_size < 0:
            raise ConfigError(f"--input-sentence-size: must be >= 0 (0 = all), got {self.input_sentence_size}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"--normalization: expected one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")


def hangul_preserving_nfkc_rules() -> str:
    """A sentencepiece normalization TSV: NFKC of each code point, but Hangul stays as written.

    NFKC maps Hangul compatibility jamo (U+3131..U+318E) to conjoining jamo
    (U+1100..), which render differently, so ``decode(encode("ㅋㅋ"))`` would not
    give ``ㅋㅋ`` back.  Here such characters are left alone, and characters whose
    NFKC form contains lone conjoining jamo (halfwidth ``ﾡ``, circled ``㉠``) map
    to compatibility jamo instead.  Format: ``source<TAB>target`` in hex code points.
    """
    to_compat: dict[str, str] = {}
    for c in range(0x3131, 0x318F):
        n = unicodedata.normalize("NFKC", chr(c))
        if len(n) == 1:
            to_compat.setdefault(n, chr(c))
    rows = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF or 0x3131 <= c <= 0x318E:
            continue
        ch = chr(c)
        n = unicodedata.normalize("NFKC", ch)
        if n == ch:
            continue
        n = unicodedata.normalize("NFC", "".join(to_compat.get(x, x) for x in n))
        if n == ch:
            continue
        target = " ".join(f"{ord(x):X}" for x in n) if n else ""
        rows.append(f"{c:X}\t{target}")
    return "\n".join(rows) + "\n"


def reservoir_sample(items: Iterable[str], k: int, rng: np.random.Generator) -> list[str]:
    """A uniform random sample of ``k`` items from a stream of unknown length (Li's Algorithm L).

    One pass, ``O(k)`` memory, and ``O(k log(n/k))`` random draws: skipped items
    cost only iteration.  The result depends on ``rng`` alone, unlike
    sentencepiece's own sampling, which differs from run to run.
    """
    it = iter(items)
    sample = list(islice(it, k))
    if len(sample) < k:
        return sample
    w = math.exp(math.log(rng.random()) / k)
    while True:
        skip = math.floor(math.log(rng.random()) / math.log1p(-w)) if w < 1.0 else 0
        nxt = next(islice(it, skip, None), _END)
        if nxt is _END:
            return sample
        sample[int(rng.integers(k))] = cast(str, nxt)
        w *= math.exp(math.log(rng.random()) / k)


_END = object()
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
_TOO_BIG = re.compile(r"Vocabulary size (?:is )?too high \((\d+)\)\. Please set it to a value <= (\d+)")


def train_tokenizer(
    make_sentences: Callable[[], Iterator[str]],
    prefix: str,
    config: TrainConfig | None = None,
    record: dict | None = None,
) -> tuple[SentencePieceTokenizer, dict]:
    """Train a sentencepiece model on the sentences ``make_sentences()`` yields.

    Writes ``PREFIX.model``, ``PREFIX.vocab`` and ``PREFIX.json`` (how it was
    trained); returns the loaded tokenizer and that record.  ``make_sentences``
    is a factory because a too-large ``vocab_size`` is reduced to the largest
    the corpus supports (with a warning) and training runs again.
    """
    import sentencepiece as spm

    config = config or TrainConfig()
    if not os.path.basename(prefix) or prefix.endswith(os.sep):
        raise ConfigError(f"-o/--output: {prefix!r} is a directory; give a prefix such as {os.path.join(prefix, 'spm')!r}")
    prefix_dir = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(prefix_dir, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=prefix_dir, prefix=".mlmcorpus-probe-")
        probe.close()
    except OSError as e:
        raise TokenizerError(f"{prefix}: cannot write there ({e.strerror or e})") from None
    vocab_size = config.vocab_size
    seen = 0
    too_long = 0
    limit = config.max_sentence_length

    def counted() -> Iterator[str]:
        nonlocal seen, too_long
        seen = too_long = 0
        for s in make_sentences():
            seen += 1
            if len(s) * 4 > limit and len(s.encode("utf-8")) > limit:
                too_long += 1  # sentencepiece skips these silently; we say so
            yield s

    def corpus() -> Iterator[str]:
        if not config.input_sentence_size:
            return counted()  # everything, streamed straight into the trainer
        rng = np.random.default_rng([config.seed, 0x5EED])
        return iter(reservoir_sample(counted(), config.input_sentence_size, rng))

    with tempfile.TemporaryDirectory(prefix="mlmcorpus-spm-") as tmp:
        kwargs: dict = {}
        if config.normalization == "nfkc_hangul":
            rule = os.path.join(tmp, "nfkc_hangul.tsv")
            with open(rule, "w", encoding="utf-8") as f:
                f.write(hangul_preserving_nfkc_rules())
            kwargs["normalization_rule_tsv"] = rule
        else:
            kwargs["normalization_rule_name"] = config.normalization
        for attempt in range(2):
            model = io.BytesIO()
            try:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=corpus(),
                    model_writer=model,
                    model_type=config.model_type,
                    vocab_size=vocab_size,
                    character_coverage=config.character_coverage,
                    input_sentence_size=0,  # sampled above, reproducibly
                    num_threads=config.threads,
                    max_sentence_length=config.max_sentence_length,
                    pad_id=0,
                    unk_id=1,
                    bos_id=-1,
                    eos_id=-1,
                    pad_piece="[PAD]",
                    unk_piece="[UNK]",
                    control_symbols=["[CLS]", "[SEP]", "[MASK]"],
                    minloglevel=2,
                    **kwargs,
                )
                break
            except RuntimeError as e:
                m = _TOO_BIG.search(str(e))
                if m and attempt == 0:
                    vocab_size = int(m.group(2))
                    log.warning(
                        "--vocab-size %d is too large for this corpus; training with %d, the most it supports "
                        "(add text or lower --vocab-size to silence this)",
                        config.vocab_size,
                        vocab_size,
                    )
                    continue
                m = _TOO_SMALL.search(str(e))
                if m:
                    raise TokenizerError(
                        f"--vocab-size {vocab_size} is smaller than the {m.group(2)} characters this corpus needs at "
                        f"--character-coverage {config.character_coverage}; raise --vocab-size or lower --character-coverage"
                    ) from None
                if seen == 0:
                    raise TokenizerError("cannot train a tokenizer: the input has no sentences") from None
                raise TokenizerError(f"sentencepiece training failed: {str(e).splitlines()[0]}") from None

    if too_long:
        log.warning(
            "%d sentence(s) longer than %d bytes were left out of tokenizer training (sentencepiece's "
            "max_sentence_length); check the sentence splitting of that input",
            too_long,
            limit,
        )
    data = model.getvalue()
    if config.normalization == "nfkc_hangul":
        data = _set_rule_name(data, "nfkc_hangul")
    model_path = prefix + ".model"
    _atomic_write(model_path, data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    vocab_lines = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))
    _atomic_write(prefix + ".vocab", vocab_lines.encode("utf-8"))
    tok = SentencePieceTokenizer(model_path, threads=config.threads)
    info = {
        "mlmcorpus_version": __version__,
        "sentencepiece_version": spm.__version__,
        "model": os.path.basename(model_path),
        "sha256": tok.sha256,
        "requested_vocab_size": config.vocab_size,
        "vocab_size": tok.vocab_size,
        "special_ids": tok.special_ids.as_dict(),
        "sentences_seen": seen,
        "sentences_too_long": too_long,
        "config": asdict(config),
        **(record or {}),
    }
    _atomic_write(prefix + ".json", (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return tok, info


def _atomic_write(path: str, data: bytes) -> None:
    try:
        outdir.atomic_write(path, data)
    except OSError as e:
        raise TokenizerError(f"{path}: cannot write ({e.strerror or e})") from None
