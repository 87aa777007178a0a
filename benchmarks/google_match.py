#!/usr/bin/env python3
"""How many instances of ``build --compat google`` equal those of Google's ``create_pretraining_data.py``.

    python benchmarks/google_match.py                       # en_wikipedia, the reference's default flags
    python benchmarks/google_match.py --dupe-factor 2 --masking whole-word
    python benchmarks/google_match.py --reference-python /path/to/venv/bin/python

The input is en_wikipedia in the BERT layout, as ``run.py`` prepares it (benchmarks/.work/inputs/;
made on first use). The reference runs in ``run.py``'s ``venv-google`` (tensorflow-cpu +
bert-tensorflow 1.0.4, installed on first use) unless ``--reference-python`` names a Python that
imports ``bert.create_pretraining_data``: its own ``create_training_instances`` with its
``FullTokenizer`` and ``random.Random(seed)``, exactly what its ``main`` calls, the instances saved
as NumPy arrays instead of TFRecords. Prints the match rate instance for instance (tokens, segment
ids, NSP label, masked positions and labels, in order) and both wall times.

``--masking whole-word`` needs a reference with ``do_whole_word_mask`` (google-research/bert
master); bert-tensorflow 1.0.4 predates it, so the script then refuses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the benchmark suite's inputs and virtualenvs)

REFERENCE = r"""
import json, random, sys
import numpy as np
from absl import flags
from bert import create_pretraining_data as cpd, tokenization
flags.FLAGS.mark_as_parsed()
a = json.loads(sys.argv[1])
tok = tokenization.FullTokenizer(a["vocab"], do_lower_case=True)
instances = cpd.create_training_instances([a["input"]], tok, a["max_seq_length"], a["dupe_factor"], a["short_seq_prob"],
                                          a["masked_lm_prob"], a["max_predictions"], random.Random(a["seed"]))
L, P = a["max_seq_length"], a["max_predictions"]
ids = np.zeros((len(instances), L), np.int32); seg = np.zeros((len(instances), L), np.int8)
pos = np.zeros((len(instances), P), np.int32); lab = np.zeros((len(instances), P), np.int32)
nsp = np.zeros(len(instances), np.int8)
for i, inst in enumerate(instances):
    t = tok.convert_tokens_to_ids(inst.tokens); ids[i, :len(t)] = t; seg[i, :len(t)] = inst.segment_ids
    k = len(inst.masked_lm_positions); pos[i, :k] = inst.masked_lm_positions
    lab[i, :k] = tok.convert_tokens_to_ids(inst.masked_lm_labels); nsp[i] = inst.is_random_next
np.savez(a["out"], input_ids=ids, segment_ids=seg, positions=pos, labels=lab, nsp=nsp)
"""


def ours(out: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = json.loads((out / "manifest.json").read_text())
    parts = [pq.read_table(out / s["file"]) for s in manifest["shards"]]

    def col(name: str) -> np.ndarray:
        chunks = []
        for t in parts:
            c = t.column(name).combine_chunks()
            fixed = pa.types.is_fixed_size_list(c.type)
            chunks.append(c.flatten().to_numpy().reshape(len(c), -1) if fixed else c.to_numpy())
        return np.concatenate(chunks)

    return {"input_ids": col("input_ids"), "segment_ids": col("token_type_ids"), "positions": col("masked_lm_positions"),
            "labels": col("masked_lm_ids"), "nsp": col("next_sentence_label")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-python", default=None, help="a Python with bert-tensorflow [default: run.py's venv-google]")
    ap.add_argument("--dupe-factor", type=int, default=10)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--masking", choices=["token", "whole-word"], default="token")
    args = ap.parse_args()
    if args.masking == "whole-word":
        print("bert-tensorflow 1.0.4 has no do_whole_word_mask: nothing to compare against", file=sys.stderr)
        return 2
    # The reference's contender asks prepare() for the BERT layout and, unless given one, its virtualenv.
    tool = "google" if args.reference_python is None else "build"
    inputs = run.prepare([run.Contender("wiki.google.wp", tool, "wiki", "wp")], refresh=False, install=True)
    python = args.reference_python or str(inputs.pythons.get("venv-google") or "")
    if not python:
        print("no Python with bert-tensorflow (pass --reference-python)", file=sys.stderr)
        return 2
    vocab = str(run.data_dir() / run.WORDPIECE_VOCAB)
    layout = str(inputs.layout["wiki"])
    with tempfile.TemporaryDirectory(dir=run.WORK) as tmp:
        spec = {"vocab": vocab, "input": layout, "max_seq_length": args.max_seq_length, "dupe_factor": args.dupe_factor,
                "short_seq_prob": 0.1, "masked_lm_prob": 0.15, "max_predictions": 20, "seed": args.seed,
                "out": str(Path(tmp) / "reference.npz")}
        t0 = time.perf_counter()
        subprocess.run([python, "-c", REFERENCE, json.dumps(spec)], check=True,
                       env={**run.os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        t_ref = time.perf_counter() - t0
        out = Path(tmp) / "ours"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlmcorpus", "build", layout, "-o", str(out), "--tokenizer", vocab,
                        "--compat", "google", "--seed", str(args.seed), "--dupe-factor", str(args.dupe_factor),
                        "--max-seq-length", str(args.max_seq_length), "-q"], check=True)
        t_ours = time.perf_counter() - t0
        ref = dict(np.load(spec["out"]))
        got = ours(out)
    n_ref, n_got = len(ref["nsp"]), len(got["nsp"])
    n = min(n_ref, n_got)
    same = np.ones(n, dtype=bool)
    by_field = {}
    for name in ref:
        a, b = ref[name][:n].reshape(n, -1), got[name][:n].reshape(n, -1)
        eq = (a == b).all(axis=1)
        by_field[name] = int((~eq).sum())
        same &= eq
    print(f"input: {layout} ({Path(layout).stat().st_size / 1e6:.1f} MB), vocab {Path(vocab).name}, seed {args.seed}, "
          f"dupe {args.dupe_factor}, max_seq_length {args.max_seq_length}")
    print(f"instances: reference {n_ref:,}, --compat google {n_got:,}")
    print(f"identical instances: {int(same.sum()):,} of {max(n_ref, n_got):,} ({same.sum() / max(n_ref, n_got, 1):.4%})")
    print("differing, by field: " + ", ".join(f"{k} {v}" for k, v in by_field.items()))
    first = np.flatnonzero(~same)
    if len(first):
        print(f"first differing instance: {int(first[0])}")
    print(f"wall: reference {t_ref:.1f} s, --compat google {t_ours:.1f} s ({t_ref / t_ours:.1f}x)")
    return 0 if same.all() and n_ref == n_got else 1


if __name__ == "__main__":
    sys.exit(main())
