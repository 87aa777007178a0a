"""A sentencepiece ``.model`` (ours or anyone's) as a :class:`Tokenizer`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlmcorpus.errors import TokenizerError
from mlmcorpus.tokenizers.base import EncodedBatch, Tokenizer
from mlmcorpus.tokenizers.spm_model import _spm_spec_summary

__all__ = ["SentencePieceTokenizer"]


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

    def encode_batch(self, sentences: Sequence[str], word_starts: bool = False) -> EncodedBatch:
        batch = EncodedBatch.from_lists(self.sp.encode(list(sentences), out_type=int, num_threads=self.threads))
        return self._table_word_starts(batch) if word_starts else batch

    def encode_spans(self, sentences: Sequence[str]) -> tuple[EncodedBatch, np.ndarray]:
        from mlmcorpus.word_splitter import spans_from_lists

        try:
            encoded = self.sp.encode(list(sentences), out_type="offset_mapping", num_threads=self.threads)
        except ValueError as e:  # an older sentencepiece
            raise TokenizerError(f"{self.path}: this sentencepiece cannot give pieces' offsets ({e}); "
                                 "pip install -U sentencepiece") from None
        batch = EncodedBatch.from_lists([e["ids"] for e in encoded])
        return batch, spans_from_lists((e["offsets"] for e in encoded), len(batch.ids))

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
