#!/usr/bin/env python3
"""Scale-out (issue 12): engines, workers and the plan on one big file and on many files.

    python benchmarks/scaleout.py                    # 3 interleaved rounds, medians; ~15 min on 2 cores
    python benchmarks/scaleout.py --repeats 1 --only 'many.*'

Contenders, all `mlmcorpus build --tokenizer bert-base-uncased_vocab.txt --dupe-factor 5`:

* ``one.local.j{1,2}``, ``one.dask.j2``: en_wikipedia.jsonl.gz, one compressed file (one split:
  the client reads, the workers do the rest), the local engine and a 2-worker Dask LocalCluster;
* ``many.local.j{1,2}``, ``many.dask.j2``: en_gutenberg.jsonl.gz cut into 40 gzip files of whole
  books (written once to benchmarks/.work/inputs/gutenberg40/): 40 splits, each read by a worker.

Per run: wall time, the client's own peak RSS (VmHWM of the mlmcorpus process, read by a wrapper
at exit; with a LocalCluster the scheduler and its nannies live in that process) and the peak RSS
of the whole process tree. Prints medians and the 1 -> 2 worker and local -> Dask ratios. The
rounds run every contender once, then again, so that a noisy machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (inputs, tree RSS sampling)

FILES = 40
# Runs the CLI in this process and reports its own peak RSS on stderr at exit.
CLIENT = r"""
import atexit, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"CLIENT_PEAK_KB {line.split()[1]}\n")
atexit.register(peak)
sys.argv = ["mlmcorpus", *sys.argv[1:]]
from mlmcorpus.cli import main
main()
"""


def many_files(data: Path) -> Path:
    """en_gutenberg's books in FILES gzip files of consecutive whole books (made once)."""
    dest = run.WORK / "inputs" / f"gutenberg{FILES}"
    done = dest / "done.json"
    source = data / run.CORPORA["gutenberg"]
    stamp = run.source_stamp(source)
    if done.exists() and json.loads(done.read_text()) == stamp:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with gzip.open(source, "rt", encoding="utf-8") as f:
        books = f.readlines()
    per = -(-len(books) // FILES)
    for k in range(FILES):
        with gzip.GzipFile(dest / f"part-{k:03d}.jsonl.gz", "wb", mtime=0) as out:
            out.write("".join(books[k * per : (k + 1) * per]).encode("utf-8"))
    done.write_text(json.dumps(stamp))
    return dest


def measure(argv: list[str]) -> tuple[float, int, int]:
    """(wall s, client peak KB, tree peak bytes) of one run."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        sampler = run.PeakTreeRss(p.pid)
        sampler.start()
        p.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
        err.seek(0)
        text = err.read()
    if p.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{text[-2000:]}")
    client = max((int(line.split()[1]) for line in text.splitlines() if line.startswith("CLIENT_PEAK_KB")), default=0)
    return wall, client, sampler.peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    data = run.data_dir()
    vocab = data / run.WORDPIECE_VOCAB
    inputs = {"one": data / run.CORPORA["wiki"], "many": many_files(data)}
    contenders = {}
    for corpus in ("one", "many"):
        for engine, workers in (("local", 1), ("local", 2), ("dask", 2)):
            contenders[f"{corpus}.{engine}.j{workers}"] = (corpus, engine, workers)
    if args.only:
        contenders = {k: v for k, v in contenders.items() if any(fnmatch.fnmatch(k, p) for p in args.only)}
    results: dict[str, list[tuple[float, int, int]]] = {k: [] for k in contenders}
    with tempfile.TemporaryDirectory(dir=run.WORK) as tmp:
        for r in range(args.repeats):
            for name, (corpus, engine, workers) in contenders.items():
                out = Path(tmp) / name
                argv = [sys.executable, "-c", CLIENT, "build", str(inputs[corpus]), "-o", str(out), "--tokenizer",
                        str(vocab), "--dupe-factor", "5", "-j", str(workers), "--engine", engine, "-q", "--overwrite"]
                sample = measure(argv)
                results[name].append(sample)
                print(f"scaleout: {name} #{r + 1}: {sample[0]:.2f} s, client {sample[1] / 1024:.0f} MiB, "
                      f"tree {sample[2] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    med = {k: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v) / 1024,
               statistics.median(s[2] for s in v) / 2**20) for k, v in results.items()}
    print(f"# scale-out, {args.repeats} interleaved rounds, medians ({os.cpu_count()} cores)\n")
    print("| contender | wall s | client peak MiB | tree peak MiB |")
    print("|---|---|---|---|")
    for k, (w, c, t) in med.items():
        print(f"| `{k}` | {w:.2f} | {c:.0f} | {t:.0f} |")
    print()
    for corpus in ("one", "many"):
        j1, j2, dk = (med.get(f"{corpus}.{e}") for e in ("local.j1", "local.j2", "dask.j2"))
        if j1 and j2:
            print(f"{corpus}: 2 workers / 1 worker speed-up {j1[0] / j2[0]:.2f}x")
        if j2 and dk:
            print(f"{corpus}: Dask LocalCluster / local at -j 2: {dk[0] / j2[0]:.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
