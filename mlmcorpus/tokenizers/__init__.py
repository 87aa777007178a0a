"""Train and load tokenizers behind one interface.

Three kinds load: a sentencepiece ``.model``, a BERT WordPiece ``vocab.txt`` and a
Hugging Face ``tokenizer.json``.  Every kind offers batch encoding to flat NumPy
arrays, the vocabulary size, the ids of the five BERT special tokens, id -> piece,
and which pieces start a word (for whole-word masking).  Here: which kind a path
names; each kind, the interface and training live in their own modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlmcorpus.errors import ConfigError, TokenizerError
from mlmcorpus.hashing import sha256_file as file_sha256
from mlmcorpus.tokenizers.base import SPECIAL_TOKENS, EncodedBatch, SpecialIds, Tokenizer
from mlmcorpus.tokenizers.hf import HFTokenizer
from mlmcorpus.tokenizers.sentencepiece import SentencePieceTokenizer
from mlmcorpus.tokenizers.train import TrainConfig, hangul_preserving_nfkc_rules, train_tokenizer

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
    "TokenizerSpec",
]


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


@dataclass(frozen=True)
class TokenizerSpec:
    """How to load the tokenizer (in this process or a worker)."""

    path: str
    lowercase: bool | None = None
    add_special_tokens: bool = False

    def load(self, threads: int = 1) -> Tokenizer:
        return load_tokenizer(self.path, lowercase=self.lowercase, add_special_tokens=self.add_special_tokens, threads=threads)
