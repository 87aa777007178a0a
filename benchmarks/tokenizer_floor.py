"""Tokenizer floor: raw encoder throughput on the sentences mlmcorpus would feed it.

Run by ``benchmarks/run.py`` as a subprocess (not meant to be called by hand, but it can be)::

    python benchmarks/tokenizer_floor.py spm MODEL SENTENCES_FILE [--threads 2] [--batch 8192]
    python benchmarks/tokenizer_floor.py wordpiece VOCAB_TXT SENTENCES_FILE [--threads 2]

SENTENCES_FILE is the BERT layout (one sentence per line, blank line between documents); blank
lines are dropped. Only the encode calls are timed (reading the file and loading the model are
not). Prints one JSON line: sentences, tokens, encode_seconds.

* ``spm``: ``SentencePieceProcessor.encode(batch, out_type=int, num_threads=THREADS)``.
* ``wordpiece``: Hugging Face ``tokenizers`` WordPiece with the BERT normaliser (lower case, strip
  accents) and pre-tokeniser, ``encode_batch_fast`` (``encode_batch`` on older releases) with
  ``add_special_tokens=False``, on a Rayon pool of THREADS threads (``RAYON_NUM_THREADS`` is set before ``tokenizers`` is imported).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def read_sentences(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def batches(items: list[str], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def floor_spm(model: str, sentences: list[str], threads: int, batch: int) -> tuple[int, float]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model)
    tokens = 0
    t0 = time.perf_counter()
    for chunk in batches(sentences, batch):
        tokens += sum(map(len, sp.encode(chunk, out_type=int, num_threads=threads)))
    return tokens, time.perf_counter() - t0


def floor_wordpiece(vocab: str, sentences: list[str], threads: int, batch: int) -> tuple[int, float]:
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    with open(vocab, encoding="utf-8") as f:
        ids = {line.rstrip("\n"): i for i, line in enumerate(f)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets: the faster one
    tokens = 0
    t0 = time.perf_counter()
    for chunk in batches(sentences, batch):
        tokens += sum(len(e.ids) for e in encode(chunk, add_special_tokens=False))
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["spm", "wordpiece"])
    ap.add_argument("model", help="sentencepiece .model or WordPiece vocab.txt")
    ap.add_argument("sentences", help="BERT-layout text file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8192, help="sentences per encode call")
    args = ap.parse_args()
    if args.kind == "wordpiece":
        # Before any tokenizers import: the Rayon pool size is read once.
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    sentences = read_sentences(args.sentences)
    run = floor_spm if args.kind == "spm" else floor_wordpiece
    tokens, seconds = run(args.model, sentences, args.threads, args.batch)
    print(json.dumps({"sentences": len(sentences), "tokens": tokens, "encode_seconds": seconds}))


if __name__ == "__main__":
    main()
