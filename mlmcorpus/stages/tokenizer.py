"""`tokenizer train` and `tokenizer encode` as library functions."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from mlmcorpus.errors import ConfigError
from mlmcorpus.readers import ReaderConfig, ReadStats, Source, iter_documents, iter_sentences
from mlmcorpus.tokenizers import Tokenizer, TrainConfig, train_tokenizer

__all__ = ["TrainResult", "run_tokenizer_train", "run_tokenizer_encode", "ENCODE_OUTPUTS"]

ENCODE_OUTPUTS = ("ids", "pieces", "json")


@dataclass
class TrainResult:
    """A trained tokenizer, what training recorded (``sentences_seen``, …), and the reader's counts."""

    tokenizer: Tokenizer
    info: dict[str, Any]
    read: ReadStats = field(default_factory=ReadStats)


def run_tokenizer_train(
    sources: list[Source],
    prefix: str,
    *,
    reader: ReaderConfig,
    train: TrainConfig,
    on_progress: Callable[[int], None] | None = None,
    on_pass: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a sentencepiece model on the sentences of ``sources``: ``prefix.model``/``.vocab``/``.json``.

    The sentences are streamed through the same reader as every other command, so the
    model sees what the corpus will contain.  Training may read the input twice (a
    retry with a smaller vocabulary); ``on_pass`` is called before each pass.
    """
    if any(s.path == "-" for s in sources):
        raise ConfigError("tokenizer train cannot read stdin: it may need a second pass; pass files")
    result: dict[str, ReadStats] = {"read": ReadStats()}

    def sentences() -> Iterator[str]:
        result["read"] = ReadStats()  # a retry counts afresh
        if on_pass is not None:
            on_pass()
        yield from iter_sentences(iter_documents(sources, reader, result["read"], on_progress=on_progress, parts=True))

    record = {"sources": [s.path for s in sources], "reader": asdict(reader)}
    tok, info = train_tokenizer(sentences, prefix, train, record=record)
    return TrainResult(tok, info, result["read"])


def run_tokenizer_encode(
    tokenizer: Tokenizer, lines: Iterable[bytes], sink: TextIO, output: str = "ids", batch_size: int = 1024
) -> int:
    """Encode each input line to one output line (``ids``, ``pieces`` or ``json``); returns how many
    lines had invalid UTF-8 (replaced by U+FFFD)."""
    if output not in ENCODE_OUTPUTS:
        raise ConfigError(f"output: expected one of {', '.join(ENCODE_OUTPUTS)}, got {output!r}")

    def flush(batch: list[str]) -> None:
        enc = tokenizer.encode_batch(batch)
        for i in range(len(enc)):
            ids = enc[i].tolist()
            if output == "ids":
                sink.write(" ".join(map(str, ids)))
            elif output == "pieces":
                sink.write(" ".join(tokenizer.id_to_piece(j) for j in ids))
            else:
                sink.write(json.dumps({"ids": ids, "pieces": [tokenizer.id_to_piece(j) for j in ids]}, ensure_ascii=False))
            sink.write("\n")

    batch: list[str] = []
    bad = 0
    for raw in lines:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", "replace")
            bad += 1
        # The reader hands the tokenizer NFC text; do the same here (trained models expect it).
        batch.append(unicodedata.normalize("NFC", line.rstrip("\r\n")))
        if len(batch) >= batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    sink.flush()
    return bad
