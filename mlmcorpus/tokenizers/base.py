"""The interface every tokenizer kind implements, and the BERT special tokens each must have.

The pipeline sees only this; sentencepiece.py and hf.py fill it in for their files.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import chain

import numpy as np

from mlmcorpus.hashing import sha256_file as file_sha256
from mlmcorpus.errors import TokenizerError

__all__ = ["SPECIAL_TOKENS", "SpecialIds", "EncodedBatch", "Tokenizer"]

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
# [PAD], [unused17], <s>, <mask>, <|endoftext|>: bracketed pieces are specials or placeholders.
_BRACKETED = re.compile(r"^(\[[^\[\]]+\]|<[^<>\s]+>)$")


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

    ``ids``: int32[total_tokens]; ``offsets``: int64[n_sentences + 1]; ``word_starts``
    (bool[total_tokens], only when asked for): the piece starts a word, as the first piece of
    every sentence does.
    """

    ids: np.ndarray
    offsets: np.ndarray
    word_starts: np.ndarray | None = None

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
    #: Whether a piece's word start depends on its sentence, not only on the piece (a
    #: tokenizer.json's pre-tokenizer): then ``encode_batch(..., word_starts=True)`` is the rule
    #: and :meth:`word_start_mask` only an approximation.
    word_starts_per_token: bool = False

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
    def encode_batch(self, sentences: Sequence[str], word_starts: bool = False) -> EncodedBatch:
        """Encode many sentences at once (no special tokens added); with ``word_starts``, say
        which pieces start a word (``EncodedBatch.word_starts``)."""

    @abstractmethod
    def encode_spans(self, sentences: Sequence[str]) -> tuple[EncodedBatch, np.ndarray]:
        """The ids of :meth:`encode_batch` and each piece's characters in its sentence,
        ``[begin, end)`` (int64[total_tokens, 2]), for word boundaries found in the text."""

    def encode(self, sentence: str) -> list[int]:
        return self.encode_batch([sentence])[0].tolist()

    def _table_word_starts(self, batch: EncodedBatch) -> EncodedBatch:
        """``batch`` with the word starts of :meth:`word_start_mask` (exact for ``##``/``▁``
        vocabularies), the first piece of every sentence a start too."""
        starts = self.word_start_mask()[batch.ids]
        starts[batch.offsets[:-1][batch.lengths > 0]] = True
        return EncodedBatch(batch.ids, batch.offsets, starts)

    def marks_word_continuations(self) -> bool:
        """Whether some piece can continue a word (else word-level masking is token masking)."""
        return not bool(self.word_start_mask()[: self.base_size].all())

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
