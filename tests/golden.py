"""Golden content: what the default build writes on sample_data/, pinned by content, not bytes.

    python tests/golden.py             # print the digests of every configuration (JSON)
    python tests/golden.py --write     # rewrite tests/golden/digests.json (a deliberate change)

Each configuration builds ``sample_data/`` with one of the tokenizers in ``tests/golden/`` (a 2k
sentencepiece unigram model and a 3k WordPiece vocabulary, both trained on ``sample_data/``
and committed, so that a library upgrade cannot retrain them). The digest of an output is, per
column, its dtype, its shape over all shards and the sha256 of its values in shard order, plus the
row count of every shard and the manifest's statistics. File bytes (compression, row groups,
Parquet metadata) are left out, so a pyarrow upgrade does not move them; a change of what the
rows hold does. ``tests/test_golden.py`` compares every configuration with ``digests.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
GOLDEN = Path(__file__).resolve().parent / "golden"
DIGESTS = GOLDEN / "digests.json"
TOKENIZERS = {"spm": GOLDEN / "sample-unigram-2k.model", "wordpiece": GOLDEN / "sample-wordpiece-3k.vocab.txt"}


@dataclass(frozen=True)
class Config:
    name: str
    tokenizer: str  # key of TOKENIZERS
    options: tuple[str, ...] = ()
    pipeline: bool = False  # `stream | pairs | mask | write` instead of `build`


CONFIGS = [
    Config("spm-parquet", "spm"),
    Config("spm-parquet-no-shuffle", "spm", ("--no-shuffle",)),
    Config("spm-numpy", "spm", ("--format", "numpy")),
    Config("spm-seed7-dupe2-small-units", "spm", ("--seed", "7", "--dupe-factor", "2", "--pool-docs", "25", "--shard-size", "300")),
    Config("wordpiece-parquet", "wordpiece"),
    Config("wordpiece-numpy-no-shuffle", "wordpiece", ("--format", "numpy", "--no-shuffle")),
    Config("spm-parquet-pipeline", "spm", pipeline=True),
    Config("wordpiece-numpy-no-shuffle-pipeline", "wordpiece", ("--format", "numpy", "--no-shuffle"), pipeline=True),
]


def _mlmcorpus() -> list[str]:
    return [sys.executable, "-m", "mlmcorpus"]


def run(config: Config, out: Path) -> None:
    """Build ``config`` into ``out`` (a new directory) with the CLI, as a user would."""
    tok = str(TOKENIZERS[config.tokenizer])
    if not config.pipeline:
        argv = [*_mlmcorpus(), "build", str(SAMPLE), "-o", str(out), "--tokenizer", tok, "-q", *config.options]
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, cwd=ROOT)
        return
    write_opts = [o for o in config.options if o in ("--format", "numpy", "parquet", "--no-shuffle")]
    mc = " ".join(_mlmcorpus())
    cmd = (
        f"set -o pipefail; {mc} stream -q '{SAMPLE}' | {mc} pairs --tokenizer '{tok}' -q | {mc} mask"
        f" | {mc} write '{out}' -q {' '.join(write_opts)}"
    )
    subprocess.run(["bash", "-c", cmd], check=True, stdin=subprocess.DEVNULL, cwd=ROOT)


def _parquet_columns(path: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            values = col.flatten().to_numpy(zero_copy_only=False)
            out[name] = values.reshape(len(col), col.type.list_size)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def _numpy_columns(path: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}


def digest(out: Path) -> dict:
    """The content of the build in ``out``: per column dtype, shape and sha256; rows per shard; stats."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    hashes: dict[str, hashlib._Hash] = {}
    meta: dict[str, tuple[str, list[int]]] = {}
    rows = []
    for shard in manifest["shards"]:
        path = out / shard["file"]
        columns = _parquet_columns(path) if path.suffix == ".parquet" else _numpy_columns(path)
        rows.append(int(next(iter(columns.values())).shape[0]))
        for name, values in sorted(columns.items()):
            values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
            hashes.setdefault(name, hashlib.sha256()).update(values.tobytes())
            dtype, shape = meta.get(name, (values.dtype.name, [0, *values.shape[1:]]))
            if (dtype, shape[1:]) != (values.dtype.name, list(values.shape[1:])):
                raise ValueError(f"{path}: column {name} is {values.dtype}{values.shape[1:]} here, {dtype}{shape[1:]} before")
            meta[name] = (dtype, [shape[0] + values.shape[0], *shape[1:]])
    return {
        "rows_per_shard": rows,
        "columns": {
            name: {"dtype": meta[name][0], "shape": meta[name][1], "sha256": hashes[name].hexdigest()} for name in sorted(meta)
        },
        "stats": manifest["stats"],
    }


def compute(configs: list[Config] = CONFIGS) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="mlmcorpus-golden-") as tmp:
        result = {}
        for config in configs:
            out = Path(tmp) / config.name
            run(config, out)
            result[config.name] = digest(out)
            if config.pipeline:
                # `pairs` counts the bytes of the stream it read, whose document ids hold the
                # path of sample_data/: they depend on where the checkout is.
                del result[config.name]["stats"]["input"]["bytes"]
        return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite {DIGESTS.relative_to(ROOT)} (a deliberate change)")
    args = ap.parse_args(argv)
    digests = compute()
    text = json.dumps(digests, indent=1, sort_keys=True) + "\n"
    if args.write:
        DIGESTS.write_text(text, encoding="utf-8")
        print(f"written: {DIGESTS.relative_to(ROOT)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
