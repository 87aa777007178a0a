#!/usr/bin/env python3
"""Peak memory of `mlmcorpus build` at 1x and 13x the input, for every input format (issue 16).

    python benchmarks/memory.py                      # bert, jsonl and text at 1x and 13x
    python benchmarks/memory.py --formats bert --copies 4

The same books (``../shared/data/en_gutenberg.jsonl.gz``, 80 MB of text, 190 books) are built in
three layouts: the gzipped JSON Lines as shipped, the BERT layout (one sentence per line, a blank
line between books, from ``mlmcorpus stream``) and plain text (one ``.txt`` file per book, read
with ``--doc-boundary file``). The large input is COPIES copies of the small one: concatenated into
one file for JSON Lines and the BERT layout (so one reader sees all of it), 13 folders of the same
book files for plain text. Every build uses the 32k sentencepiece model of ``run.py``, ``-j 2``
and the defaults otherwise.

While a build runs, ``/proc/PID/status`` of the process and all its descendants is read every
50 ms; the table reports the peak of the summed **RssAnon** (anonymous resident memory: the
memory-mapped shuffle spill files and shared libraries do not count, unlike RSS) and the peak
RssAnon of the main process alone. Goal of the issue: at most 1 GB at 1 GB of input, and the
large figure within 25% of the small one. Nothing is asserted; the ratios are printed.

Inputs and outputs go to ``benchmarks/.work/memory/`` (about 2.5 GB of disk while it runs; the
outputs are deleted after each build). A run takes about 5 minutes with the default settings.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the suite's data folder, BERT layout writer and sentencepiece model)

WORK = run.WORK / "memory"
FORMATS = ("bert", "jsonl", "text")
POLL_SECONDS = 0.05
GOAL_BYTES = 1 << 30
GOAL_GROWTH = 1.25


# --------------------------------------------------------------------------- inputs


def _stamp(source: Path) -> dict:
    st = source.stat()
    return {"source": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cached(dest: Path, stamp: dict) -> bool:
    meta = dest.parent / (dest.name + ".json")
    return dest.exists() and meta.exists() and json.loads(meta.read_text()) == stamp


def _done(dest: Path, stamp: dict) -> None:
    (dest.parent / (dest.name + ".json")).write_text(json.dumps(stamp) + "\n")


def _concatenate(part: Path, dest: Path, copies: int, separator: bytes = b"") -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as out:
        for k in range(copies):
            if k and separator:
                out.write(separator)
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    tmp.replace(dest)


def _book_files(source: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with gzip.open(source, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            (tmp / f"{i:04d}.txt").write_text(json.loads(line)["text"] + "\n", encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)


def _copies_of_dir(part: Path, dest: Path, copies: int) -> None:
    """COPIES folders of symbolic links to PART's files: the same books, read COPIES times."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for k in range(copies):
        sub = tmp / f"copy{k:02d}"
        sub.mkdir(parents=True)
        for f in sorted(part.iterdir()):
            (sub / f.name).symlink_to(f.resolve())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)


def _make(dest: Path, stamp: dict, what: str, write) -> None:
    """write() unless DEST is there from the same STAMP."""
    if not _cached(dest, stamp):
        run.log(f"prepare: {what} -> {dest.name}")
        write()
        _done(dest, stamp)


def prepare_input(fmt: str, copies: int, source: Path) -> Path:
    """The input of FORMAT at COPIES times the books (cached under .work/memory/)."""
    WORK.mkdir(parents=True, exist_ok=True)
    one = {"jsonl": source, "bert": WORK / "gutenberg-x1.bert.txt", "text": WORK / "gutenberg-x1.text"}[fmt]
    if fmt == "bert":  # sentences from mlmcorpus stream, a blank line between books
        _make(one, {**_stamp(source), "copies": 1}, "BERT layout", lambda: run.write_bert_layout(source, one))
    elif fmt == "text":
        _make(one, {**_stamp(source), "copies": 1}, "one .txt file per book", lambda: _book_files(source, one))
    if copies == 1:
        return one
    dest = WORK / one.name.replace("x1.", f"x{copies}.") if fmt != "jsonl" else WORK / f"gutenberg-x{copies}.jsonl.gz"
    copy = {
        "jsonl": lambda: _concatenate(one, dest, copies),  # concatenated gzip members are one gzip stream
        "bert": lambda: _concatenate(one, dest, copies, separator=b"\n"),  # a blank line between copies
        "text": lambda: _copies_of_dir(one, dest, copies),
    }[fmt]
    _make(dest, {**_stamp(source), "copies": copies}, f"{copies} copies of {one.name}", copy)
    return dest


def format_options(fmt: str) -> list[str]:
    return {"bert": ["--input-format", "bert"], "jsonl": [], "text": ["--input-format", "text", "--doc-boundary", "file"]}[fmt]


# --------------------------------------------------------------------------- measurement


def _anon_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakAnon(threading.Thread):
    """Every POLL_SECONDS: RssAnon of ROOT and of its whole tree; keeps both peaks."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.tree_peak, self.main_peak, self.processes = root, 0, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = 0
            pids = run.tree_pids(self.root)
            for pid in pids:
                try:
                    anon = _anon_bytes(pid)
                except (FileNotFoundError, ProcessLookupError):
                    continue  # exited between two reads
                total += anon
                if pid == self.root:
                    self.main_peak = max(self.main_peak, anon)
            self.tree_peak = max(self.tree_peak, total)
            self.processes = max(self.processes, len(pids))
            self._stop_event.wait(POLL_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Row:
    fmt: str
    copies: int
    text_bytes: int
    wall: float
    tree_peak: int
    main_peak: int
    processes: int


def build_once(fmt: str, copies: int, path: Path, spm: Path, workers: int, text_bytes: int) -> Row:
    out = WORK / "out"
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "mlmcorpus", "build", str(path), "-o", str(out), "--tokenizer", str(spm),
            "-j", str(workers), "-q", *format_options(fmt)]
    run.log("run: " + " ".join(argv))
    log_path = WORK / f"build-{fmt}-x{copies}.stderr"
    with open(log_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=WORK)
        sampler = PeakAnon(proc.pid)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
    shutil.rmtree(out, ignore_errors=True)
    if rc:
        raise SystemExit(f"build failed (exit {rc}); see {log_path}")
    return Row(fmt, copies, text_bytes, wall, sampler.tree_peak, sampler.main_peak, sampler.processes)


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def table(rows: list[Row], copies: int) -> str:
    lines = [
        f"| input | text | wall | MB/s | peak RssAnon, tree | peak RssAnon, main process | tree x{copies} / x1 | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    small = {r.fmt: r for r in rows if r.copies == 1}
    for r in rows:
        growth, goal = "", ""
        if r.copies != 1 and r.fmt in small:
            g = r.tree_peak / small[r.fmt].tree_peak
            growth = f"{g:.2f}x"
            goal = "met" if g <= GOAL_GROWTH and r.tree_peak <= GOAL_BYTES else "not met"
        lines.append(
            f"| {r.fmt} x{r.copies} | {r.text_bytes / 1e6:,.0f} MB | {r.wall:.1f} s | {r.text_bytes / 1e6 / r.wall:.1f} | "
            f"{mib(r.tree_peak)} | {mib(r.main_peak)} | {growth} | {goal} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Inputs and logs: benchmarks/.work/memory/")
    ap.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    ap.add_argument("--copies", type=int, default=13, help="copies of the books in the large input [13: 1 GB]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only-large", action="store_true", help="skip the 1x builds")
    args = ap.parse_args(argv)
    if args.copies < 2:
        ap.error("--copies must be at least 2")
    source = run.data_dir() / run.CORPORA["gutenberg"]
    if not source.exists():
        raise SystemExit(f"{source} not found: set {run.DATA_ENV} to the folder holding it")
    inputs = run.Inputs(data=run.data_dir())
    run.prepare_spm(inputs, refresh=False)
    text_bytes = 0
    with gzip.open(source, "rt", encoding="utf-8") as f:
        for line in f:
            text_bytes += len(json.loads(line)["text"].encode("utf-8"))
    rows = []
    for fmt in args.formats:
        for copies in ((args.copies,) if args.only_large else (1, args.copies)):
            path = prepare_input(fmt, copies, source)
            rows.append(build_once(fmt, copies, path, inputs.spm, args.workers, text_bytes * copies))
            run.log(table(rows[-1:], args.copies).splitlines()[-1])
    report = table(rows, args.copies)
    git = ["git", "-C", str(run.REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
    if subprocess.run([*git, "status", "--porcelain", "mlmcorpus"], capture_output=True, text=True).stdout.strip():
        commit += " with uncommitted changes to mlmcorpus/"
    report += f"\n\n`-j {args.workers}`, 32k sentencepiece, defaults otherwise; commit {commit}\n"
    (WORK / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
