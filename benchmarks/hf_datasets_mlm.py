"""Hugging Face baseline: `datasets.map` tokenisation + `DataCollatorForLanguageModeling` static
masking, written to Parquet (the RoBERTa-style recipe of transformers' run_mlm.py, no NSP).

Run by ``benchmarks/run.py`` with the python of ``benchmarks/.work/venv-hf`` (torch, transformers,
datasets)::

    python benchmarks/hf_datasets_mlm.py INPUT.jsonl.gz VOCAB.txt OUT_DIR [--max-seq-length 128] [--num-proc 2]

1. ``load_dataset("json")`` on INPUT, with a cache folder inside OUT_DIR (so no run reuses another's);
2. ``map``: ``BertTokenizerFast`` (from VOCAB.txt) on each document's ``text`` ([CLS] doc [SEP], with the
   special-tokens mask);
3. ``map``: concatenate and cut into blocks of ``--max-seq-length`` tokens (``group_texts``);
4. ``map``: ``DataCollatorForLanguageModeling(mlm_probability=0.15, return_tensors="np")`` masks
   each batch once (static masking: 80% [MASK], 10% random, 10% unchanged);
5. ``to_parquet(OUT_DIR/train.parquet)``.

Every ``map`` runs on ``--num-proc`` processes. Prints one JSON line: instances.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

# One Rayon thread per map process (the map processes are the parallelism).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("vocab")
    ap.add_argument("out")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--mlm-probability", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()

    from datasets import load_dataset
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    block = args.max_seq_length
    # from_pretrained on a folder holding vocab.txt works on transformers 4 and 5 (5 ignores
    # BertTokenizerFast(vocab_file=...) and gives a 5-token vocabulary).
    tok_dir = out / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    shutil.copy(args.vocab, tok_dir / "vocab.txt")
    tok = BertTokenizerFast.from_pretrained(str(tok_dir), do_lower_case=True)
    with open(args.vocab, encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    if len(tok) != lines:
        raise SystemExit(f"{args.vocab}: loaded {len(tok)} tokens, the file has {lines}")
    tok.model_max_length = 1 << 30  # whole documents are tokenised, then cut into blocks
    collator = DataCollatorForLanguageModeling(
        tok, mlm_probability=args.mlm_probability, return_tensors="np", seed=args.seed
    )

    ds = load_dataset("json", data_files=args.input, split="train", cache_dir=str(out / "hf-cache"))

    def tokenize(batch):
        return tok(batch["text"], return_special_tokens_mask=True, return_attention_mask=False,
                   return_token_type_ids=False)

    def group_texts(batch):
        ids = [i for doc in batch["input_ids"] for i in doc]
        special = [s for doc in batch["special_tokens_mask"] for s in doc]
        n = len(ids) // block * block
        return {
            "input_ids": [ids[i : i + block] for i in range(0, n, block)],
            "special_tokens_mask": [special[i : i + block] for i in range(0, n, block)],
        }

    def mask(batch):
        examples = [{"input_ids": i, "special_tokens_mask": s}
                    for i, s in zip(batch["input_ids"], batch["special_tokens_mask"])]
        masked = collator(examples)
        return {k: masked[k] for k in ("input_ids", "attention_mask", "labels")}

    p = args.num_proc
    ds = ds.map(tokenize, batched=True, num_proc=p, remove_columns=ds.column_names)
    ds = ds.map(group_texts, batched=True, num_proc=p)
    ds = ds.map(mask, batched=True, num_proc=p, remove_columns=["special_tokens_mask"])
    ds.to_parquet(str(out / "train.parquet"))
    print(json.dumps({"instances": len(ds)}))


if __name__ == "__main__":
    main()
