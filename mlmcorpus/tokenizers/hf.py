"""A WordPiece ``vocab.txt`` or a Hugging Face ``tokenizer.json`` as a :class:`Tokenizer`.

Both go through the ``tokenizers`` package (the ``hf`` extra), imported only when one loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

import numpy as np

from mlmcorpus.errors import ConfigError, TokenizerError
from mlmcorpus.tokenizers.base import _BRACKETED, EncodedBatch, Tokenizer

__all__ = ["HFTokenizer"]


class HFTokenizer(Tokenizer):
    """A WordPiece ``vocab.txt`` or a Hugging Face ``tokenizer.json`` via ``tokenizers``."""

    def __init__(
        self, path: str, kind: str, lowercase: bool | None = None, add_special_tokens: bool = False, threads: int | None = None,
        max_chars_per_word: int = 100,
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
        self.max_chars_per_word = max_chars_per_word
        if kind == "wordpiece":
            vocab = _read_vocab_txt(path)
            if "[UNK]" not in vocab:
                raise TokenizerError(f"{path}: WordPiece vocab lacks [UNK]; it is needed to encode unknown words")
            if lowercase is None:
                # Uncased vocabularies (bert-base-uncased) have no ASCII capitals outside [..] specials
                # (they do hold a few symbols such as U+211D that str.isupper() counts as upper case).
                lowercase = not any(_HAS_ASCII_UPPER.search(w) for w in vocab if not w.startswith("["))
            self.lowercase = lowercase
            # Longer words are one [UNK]: 100 as Hugging Face's BERT tokenizers, Google's own takes 200.
            tok = HFTok(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=max_chars_per_word))
            tok.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
            )
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            self._prefix: str | None = "##"
            self._start_marker = None
            self._word_level = False
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
            # The pre-tokenizer's words are the words (``word_ids``); without one, a sentence would
            # be one word, and the prefix markers below are the rule.
            self.word_starts_per_token = spec.get("pre_tokenizer") is not None
            self._word_level = model.get("type") == "WordLevel"  # a piece is a whole pre-tokenizer word
            text = json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
            self._start_marker = "\u2581" if "Metaspace" in text else ("\u0120" if "ByteLevel" in text else None)
            if lowercase is not None:
                raise ConfigError("--lowercase/--no-lowercase applies to WordPiece vocab.txt; tokenizer.json sets its own normalizer")
        self.tok = tok
        self._special_added: set[int] | None = None
        super().__init__(path, tok.get_vocab_size(with_added_tokens=True))
        self._resolve_specials(tok.token_to_id, add_special_tokens)
        self._encode = getattr(tok, "encode_batch_fast", tok.encode_batch)

    def _encodings(self, sentences: Sequence[str], full: bool) -> list:
        """``tokenizers`` encodings; ``full``: with words and offsets (``encode_batch_fast`` has none)."""
        encode = self.tok.encode_batch if full else self._encode
        if self.threads == 1:
            # `tokenizers` reads this variable on every call: the batch is encoded on this thread.
            saved = os.environ.get("TOKENIZERS_PARALLELISM")
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
            try:
                return encode(list(sentences), add_special_tokens=False)
            finally:
                if saved is None:
                    del os.environ["TOKENIZERS_PARALLELISM"]
                else:
                    os.environ["TOKENIZERS_PARALLELISM"] = saved
        return encode(list(sentences), add_special_tokens=False)

    def encode_batch(self, sentences: Sequence[str], word_starts: bool = False) -> EncodedBatch:
        if not (word_starts and self.word_starts_per_token):
            batch = EncodedBatch.from_lists([e.ids for e in self._encodings(sentences, False)])
            return self._table_word_starts(batch) if word_starts else batch
        encs = self._encodings(sentences, True)
        batch = EncodedBatch.from_lists([e.ids for e in encs])
        # A piece starts a word when its pre-tokenizer word differs from the previous piece's; a
        # piece of no word (None: an added token) is a word of its own.
        total = len(batch.ids)
        wids = np.fromiter((-1 if w is None else w for e in encs for w in e.word_ids), dtype=np.int64, count=total)
        starts = np.ones(total, dtype=bool)
        starts[1:] = (wids[1:] != wids[:-1]) | (wids[1:] < 0)
        starts[batch.offsets[:-1][batch.lengths > 0]] = True
        return EncodedBatch(batch.ids, batch.offsets, starts)

    def encode_spans(self, sentences: Sequence[str]) -> tuple[EncodedBatch, np.ndarray]:
        from mlmcorpus.word_splitter import spans_from_lists

        encs = self._encodings(sentences, True)
        batch = EncodedBatch.from_lists([e.ids for e in encs])
        return batch, spans_from_lists((e.offsets for e in encs), len(batch.ids))

    def marks_word_continuations(self) -> bool:
        if self.word_starts_per_token:
            return not self._word_level  # BPE, WordPiece, Unigram pieces may be parts of a word
        return super().marks_word_continuations()

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
        if self.kind == "wordpiece" and self.max_chars_per_word != 100:
            out["max_chars_per_word"] = self.max_chars_per_word
        return out


_HAS_ASCII_UPPER = re.compile("[A-Z]")


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
