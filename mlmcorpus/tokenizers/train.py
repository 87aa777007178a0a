"""Training a sentencepiece model from our own streaming reader.

Sentences reach sentencepiece through ``sentence_iterator`` (no temporary copy of the
corpus).  Trained models reserve ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4`` and, by
default, normalise with ``nfkc_hangul``: NFKC except that Hangul compatibility jamo
(``ㅋ``, ``ㅠ``, common in Korean web text) stay as written instead of becoming
conjoining jamo, which render as different characters.
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import cast

import numpy as np

from mlmcorpus import __version__, outdir
from mlmcorpus.rng import CorpusStream, corpus_generator
from mlmcorpus.errors import ConfigError, TokenizerError
from mlmcorpus.tokenizers.base import SPECIAL_TOKENS
from mlmcorpus.tokenizers.sentencepiece import SentencePieceTokenizer
from mlmcorpus.tokenizers.spm_model import _set_rule_name

__all__ = ["TrainConfig", "train_tokenizer", "hangul_preserving_nfkc_rules", "reservoir_sample"]

log = logging.getLogger("mlmcorpus")

NORMALIZATIONS = ("nfkc_hangul", "nmt_nfkc", "nfkc", "identity")
MODEL_TYPES = ("unigram", "bpe")


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
        rng = corpus_generator(config.seed, CorpusStream.TOKENIZER_SAMPLE)
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
