#!/usr/bin/env python3
"""mlmcorpus benchmark suite (issue 5): mlmcorpus build against Google's reference, the tokenizer
floor and Hugging Face datasets, on the real corpora in ../shared/data.

    python benchmarks/run.py                 # everything, 3 repetitions, medians
    python benchmarks/run.py --quick         # everything, 1 repetition
    python benchmarks/run.py --only 'wiki.*' --repeats 5
    python benchmarks/run.py --list          # contender names for --only

Steps:

1. Prepare inputs into benchmarks/.work/ (git-ignored; cached between runs, ``--refresh`` redoes
   them): the corpora in the BERT layout (``mlmcorpus stream`` splits the sentences; one sentence
   per line, a blank line between documents) for Google's script and the tokenizer floors; a 32k
   sentencepiece unigram model trained on en_wikipedia with ``mlmcorpus tokenizer train``; the
   virtualenvs of the baselines that need extra packages (``venv-google``: tensorflow-cpu +
   bert-tensorflow==1.0.4; ``venv-hf``: torch==2.13.0 + transformers + datasets), installed once.
   A baseline whose install fails is skipped with the reason.
2. Run every selected contender as a subprocess, ``--repeats`` times, measuring wall time and the
   peak RSS of the whole process tree (RSS of the process and all its descendants, read from
   /proc every 50 ms and summed; Linux only).
3. Print a Markdown table (medians) and the headline ratios, and write both to
   benchmarks/.work/results.md.

MB/s is always the UTF-8 size of the corpus's ``text`` fields (en_wikipedia 20.6 MB, en_gutenberg
80.0 MB) over the wall time, whatever layout a contender reads. The data folder is
``<repo>/../shared/data`` unless ``MLMCORPUS_BENCH_DATA`` names another.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import gzip
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
WORK = BENCH / ".work"
DATA_ENV = "MLMCORPUS_BENCH_DATA"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
POLL_SECONDS = 0.05

# Settings shared by every contender (the issue's: seq 128, 20 predictions, seed 12345).
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS = 20
MASKED_LM_PROB = 0.15
SEED = 12345
FLOOR_THREADS = 2
SPM_VOCAB_SIZE = 32000

CORPORA = {
    "wiki": "en_wikipedia.jsonl.gz",
    "gutenberg": "en_gutenberg.jsonl.gz",
    "gutenberg20": "en_gutenberg.jsonl.gz",
}
# Corpora cut from another: (source key, text bytes), the first whole documents up to that size.
# The memory target compares the same kind of text at 20 and 80 MB.
PREFIXES = {"gutenberg20": ("gutenberg", 20_000_000)}
CORPUS_NAME = {"wiki": "en_wikipedia", "gutenberg": "en_gutenberg", "gutenberg20": "en_gutenberg first 20 MB"}
WORDPIECE_VOCAB = "tokenizers/bert-base-uncased_vocab.txt"
TOKENIZER_LABEL = {"wp": "WordPiece bert-base-uncased", "spm": "sentencepiece unigram 32k"}

VENVS = {
    "venv-google": {
        "requirements": ["tensorflow-cpu", "bert-tensorflow==1.0.4"],
        "check": "import tensorflow.compat.v1, bert.create_pretraining_data, bert.tokenization",
        "versions": ["tensorflow-cpu", "bert-tensorflow"],
    },
    "venv-hf": {
        "requirements": ["torch==2.13.0", "transformers", "datasets"],
        "check": "import torch, datasets; from transformers import BertTokenizerFast, DataCollatorForLanguageModeling",
        "versions": ["torch", "transformers", "datasets", "tokenizers"],
    },
}


# --------------------------------------------------------------------------- contenders


@dataclass(frozen=True)
class Contender:
    name: str  # "<corpus>.<tool>.<tokenizer>[.d<dupe>][.w<workers>][.<variant>]"
    tool: str  # build | google | floor | hf
    corpus: str  # key of CORPORA
    tokenizer: str  # wp | spm
    dupe: int = 1
    workers: int | None = None
    extra: tuple[str, ...] = ()  # extra `mlmcorpus build` options
    variant: str = ""

    @property
    def venv(self) -> str | None:
        return {"google": "venv-google", "hf": "venv-hf"}.get(self.tool)

    @property
    def label(self) -> str:
        tool = {
            "build": "mlmcorpus build",
            "google": "Google create_pretraining_data.py",
            "floor": "tokenizer floor",
            "hf": "HF datasets.map + collator",
        }[self.tool]
        parts = [tool, self.tokenizer]
        if self.tool != "floor":
            parts.append(f"dupe {self.dupe}")
        if self.workers:
            parts.append(f"-j {self.workers}")
        if self.variant:
            parts.append(self.variant)
        return " ".join(parts)


def all_contenders(pair_task_none: bool) -> list[Contender]:
    """Every contender, in run order (cheap floors first, the slow reference last)."""
    cs = [
        Contender("wiki.floor.spm", "floor", "wiki", "spm"),
        Contender("wiki.floor.wp", "floor", "wiki", "wp"),
        Contender("gutenberg.floor.spm", "floor", "gutenberg", "spm"),
        Contender("gutenberg.floor.wp", "floor", "gutenberg", "wp"),
    ]
    # Google comparison: en_wikipedia, dupe 5.
    for tok in ("wp", "spm"):
        for w in (1, 2):
            cs.append(Contender(f"wiki.build.{tok}.d5.w{w}", "build", "wiki", tok, dupe=5, workers=w))
    # Tokenizer-floor comparison and scaling on the big input: en_gutenberg, dupe 1.
    for w in (1, 2):
        cs.append(Contender(f"gutenberg.build.spm.d1.w{w}", "build", "gutenberg", "spm", dupe=1, workers=w))
    # Memory: the same settings on 20.6 MB and 80 MB, at dupe 1 (above) and 5.
    cs.append(Contender("wiki.build.spm.d1.w2", "build", "wiki", "spm", dupe=1, workers=2))
    cs.append(Contender("gutenberg.build.spm.d5.w2", "build", "gutenberg", "spm", dupe=5, workers=2))
    # Memory growth with input size on the same kind of text: the first 20 MB of en_gutenberg.
    for dupe in (1, 5):
        cs.append(Contender(f"gutenberg20.build.spm.d{dupe}.w2", "build", "gutenberg20", "spm", dupe=dupe, workers=2))
    # Objectives (issue 11): each masking policy and pair task against the default build, en_wikipedia
    # WordPiece dupe 5 -j 2.
    if pair_task_none:
        for task in ("sop", "none"):
            cs.append(
                Contender(
                    f"wiki.build.wp.d5.w2.{'packed' if task == 'none' else task}", "build", "wiki", "wp", dupe=5, workers=2,
                    extra=("--pair-task", task), variant=f"--pair-task {task}",
                )
            )
    for policy in ("whole-word", "ngram", "span", "none"):
        cs.append(
            Contender(
                f"wiki.build.wp.d5.w2.{'unmasked' if policy == 'none' else policy}", "build", "wiki", "wp", dupe=5, workers=2,
                extra=("--masking", policy), variant=f"--masking {policy}",
            )
        )
    # Google-exact mode, on the reference's own input (the BERT layout); one process, as the reference.
    cs.append(
        Contender("wiki.build.wp.d5.compat", "build", "wiki", "wp", dupe=5, workers=1, extra=("--compat", "google"),
                  variant="--compat google")
    )
    # Hugging Face comparison: en_wikipedia, dupe 1, WordPiece.
    cs.append(Contender("wiki.build.wp.d1.w2", "build", "wiki", "wp", dupe=1, workers=2))
    if pair_task_none:
        cs.append(
            Contender(
                "wiki.build.wp.d1.w2.nopair", "build", "wiki", "wp", dupe=1, workers=2,
                extra=("--pair-task", "none"), variant="--pair-task none",
            )
        )
    cs.append(Contender("wiki.hf.wp.d1", "hf", "wiki", "wp", dupe=1, workers=2))
    cs.append(Contender("wiki.google.wp.d5", "google", "wiki", "wp", dupe=5))
    return cs


def select(contenders: list[Contender], patterns: list[str] | None) -> list[Contender]:
    """--only: fnmatch patterns, or a dotted prefix ('wiki', 'wiki.build')."""
    if not patterns:
        return contenders
    chosen = [
        c for c in contenders
        if any(fnmatch.fnmatchcase(c.name, p) or c.name.startswith(p.rstrip(".") + ".") for p in patterns)
    ]
    if not chosen:
        raise SystemExit(f"--only {' '.join(patterns)} matches no contender; see --list")
    return chosen


# --------------------------------------------------------------------------- preparation


@dataclass
class Inputs:
    data: Path
    jsonl: dict[str, Path] = field(default_factory=dict)
    layout: dict[str, Path] = field(default_factory=dict)  # BERT layout
    text_bytes: dict[str, int] = field(default_factory=dict)
    vocab: Path | None = None
    spm: Path | None = None
    pythons: dict[str, Path] = field(default_factory=dict)  # venv name -> python
    unavailable: dict[str, str] = field(default_factory=dict)  # venv name -> reason


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data").resolve()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def source_stamp(path: Path) -> dict:
    import mlmcorpus

    st = path.stat()
    # The prepared sentences come from mlmcorpus's reader and splitter: redo them when those change.
    reader = hashlib.sha256()
    for file in [*sorted((REPO / "mlmcorpus" / "readers").glob("*.py")), REPO / "mlmcorpus" / "sentences.py"]:
        reader.update(file.read_bytes())
    return {"source": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "mlmcorpus": getattr(mlmcorpus, "__version__", "?"), "reader_sha256": reader.hexdigest()[:16]}


def write_bert_layout(source: Path, dest: Path) -> int:
    """`mlmcorpus stream SOURCE` -> one sentence per line, a blank line between documents.

    Returns the UTF-8 byte count of the source's `text` fields (the MB/s denominator)."""
    tmp = dest.with_suffix(".tmp")
    cmd = [sys.executable, "-m", "mlmcorpus", "stream", str(source), "-q"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, encoding="utf-8") as proc, \
            open(tmp, "w", encoding="utf-8") as out:
        first = True
        for line in proc.stdout:
            sentences = [s.replace("\r", " ").replace("\n", " ").strip() for s in json.loads(line)["sentences"]]
            sentences = [s for s in sentences if s]
            if not sentences:
                continue
            if not first:
                out.write("\n")
            out.write("\n".join(sentences) + "\n")
            first = False
    if proc.returncode:
        raise SystemExit(f"mlmcorpus stream {source} failed (exit {proc.returncode})")
    tmp.replace(dest)
    total = 0
    with gzip.open(source, "rt", encoding="utf-8") as f:
        for line in f:
            total += len(json.loads(line)["text"].encode("utf-8"))
    return total


def write_prefix(source: Path, dest: Path, limit: int) -> int:
    """The first documents of SOURCE (JSON Lines, gzip) whose text adds up to LIMIT bytes; returns their text bytes."""
    total = 0
    tmp = dest.with_suffix(".tmp")
    with gzip.open(source, "rt", encoding="utf-8") as f, gzip.GzipFile(tmp, "wb", mtime=0) as raw:
        for line in f:
            if total >= limit:
                break
            total += len(json.loads(line)["text"].encode("utf-8"))
            raw.write(line.encode("utf-8"))
    tmp.replace(dest)
    return total


def prepare_prefix(inputs: Inputs, key: str, refresh: bool) -> None:
    base, limit = PREFIXES[key]
    source = inputs.data / CORPORA[base]
    if not source.exists():
        raise SystemExit(f"{source} not found: set {DATA_ENV} to the folder holding {CORPORA[base]}")
    dest = WORK / "inputs" / f"{CORPUS_NAME[base]}-first{limit // 1_000_000}MB.jsonl.gz"
    meta_path = dest.with_suffix("").with_suffix(".json")
    stamp = {**source_stamp(source), "limit": limit}
    if refresh or not dest.exists() or not meta_path.exists() or json.loads(meta_path.read_text()).get("stamp") != stamp:
        log(f"prepare: first {limit / 1e6:.0f} MB of {source.name} -> {dest.relative_to(REPO)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        text_bytes = write_prefix(source, dest, limit)
        meta_path.write_text(json.dumps({"stamp": stamp, "text_bytes": text_bytes}, indent=1) + "\n")
    inputs.jsonl[key], inputs.text_bytes[key] = dest, json.loads(meta_path.read_text())["text_bytes"]


def prepare_corpus(inputs: Inputs, key: str, refresh: bool) -> None:
    if key in PREFIXES:  # build contenders only: no BERT layout
        prepare_prefix(inputs, key, refresh)
        return
    source = inputs.data / CORPORA[key]
    if not source.exists():
        raise SystemExit(f"{source} not found: set {DATA_ENV} to the folder holding {CORPORA[key]}")
    inputs.jsonl[key] = source
    dest = WORK / "inputs" / CORPORA[key].replace(".jsonl.gz", ".bert.txt")
    meta_path = dest.with_suffix(".json")
    stamp = source_stamp(source)
    if not refresh and dest.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("stamp") == stamp:
            inputs.layout[key], inputs.text_bytes[key] = dest, meta["text_bytes"]
            return
    log(f"prepare: {source.name} -> {dest.relative_to(REPO)} (BERT layout, sentences from mlmcorpus stream)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    text_bytes = write_bert_layout(source, dest)
    meta_path.write_text(json.dumps({"stamp": stamp, "text_bytes": text_bytes}, indent=1) + "\n")
    inputs.layout[key], inputs.text_bytes[key] = dest, text_bytes


def prepare_spm(inputs: Inputs, refresh: bool) -> None:
    """A 32k unigram model trained on en_wikipedia by `mlmcorpus tokenizer train` (cached)."""
    source = inputs.data / CORPORA["wiki"]
    prefix = WORK / "tokenizers" / f"en_wikipedia-unigram-{SPM_VOCAB_SIZE // 1000}k"
    model, info = prefix.with_suffix(".model"), prefix.with_suffix(".json")
    if not refresh and model.exists() and info.exists() and json.loads(info.read_text()).get("sources") == [str(source)]:
        inputs.spm = model
        return
    log(f"prepare: training {model.relative_to(REPO)} on {source.name} (about 20 s)")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "mlmcorpus", "tokenizer", "train", str(source), "-o", str(prefix),
         "--vocab-size", str(SPM_VOCAB_SIZE), "--model-type", "unigram", "--seed", str(SEED)],
        check=True,
    )
    inputs.spm = model


def ensure_venv(name: str, install: bool) -> tuple[Path | None, str | None]:
    """Create WORK/NAME with its requirements once. Returns (python, None) or (None, why not)."""
    spec = VENVS[name]
    venv = WORK / name
    python = venv / "bin" / "python"
    stamp = venv / "bench-installed.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == spec["requirements"]:
        return python, None
    if not install:
        return None, f"{venv.relative_to(REPO)} is not installed (--no-install)"
    logfile = WORK / "logs" / f"install-{name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"prepare: installing {' '.join(spec['requirements'])} into {venv.relative_to(REPO)} "
        f"(once; several minutes; log: {logfile.relative_to(REPO)})")
    with open(logfile, "w") as out:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--upgrade", "pip"],
            [str(python), "-m", "pip", "install", *spec["requirements"]],
            [str(python), "-c", spec["check"]],
        ]
        for step in steps:
            out.write(f"$ {shlex.join(step)}\n")
            out.flush()
            rc = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
            if rc and step[-1] != "pip":  # a failed pip self-upgrade is not fatal
                shown = shlex.join(step[2:] if step[1] == "-m" else step)
                return None, (f"`{shown}` failed (exit {rc}): {last_error_line(logfile)} "
                              f"(log: {logfile.relative_to(REPO)})")
    stamp.write_text(json.dumps(spec["requirements"]) + "\n")
    return python, None


def last_error_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def prepare(contenders: list[Contender], refresh: bool, install: bool) -> Inputs:
    inputs = Inputs(data=data_dir())
    if not inputs.data.is_dir():
        raise SystemExit(f"data folder {inputs.data} not found: set {DATA_ENV}")
    WORK.mkdir(parents=True, exist_ok=True)
    for key in sorted({c.corpus for c in contenders}):
        prepare_corpus(inputs, key, refresh)
    if any(c.tokenizer == "wp" for c in contenders):
        inputs.vocab = inputs.data / WORDPIECE_VOCAB
        if not inputs.vocab.exists():
            raise SystemExit(f"{inputs.vocab} not found")
    if any(c.tokenizer == "spm" for c in contenders):
        prepare_spm(inputs, refresh)
    for name in sorted({c.venv for c in contenders if c.venv}):
        python, why = ensure_venv(name, install)
        if python:
            inputs.pythons[name] = python
        else:
            inputs.unavailable[name] = why
            log(f"prepare: SKIPPING the contenders that need {name}: {why}")
    return inputs


# --------------------------------------------------------------------------- commands


def tokenizer_path(c: Contender, inputs: Inputs) -> Path:
    return inputs.vocab if c.tokenizer == "wp" else inputs.spm


def command(c: Contender, inputs: Inputs, out: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment of one run of contender C writing into OUT."""
    env = dict(os.environ)
    tok = str(tokenizer_path(c, inputs))
    if c.tool == "build":
        argv = [
            # --compat google reads what the reference reads.
            sys.executable, "-m", "mlmcorpus", "build",
            str(inputs.layout[c.corpus] if "--compat" in c.extra else inputs.jsonl[c.corpus]), "-o", str(out),
            "--tokenizer", tok, "--dupe-factor", str(c.dupe), "--max-seq-length", str(MAX_SEQ_LENGTH),
            "--max-predictions-per-seq", str(MAX_PREDICTIONS), "--seed", str(SEED),
            "--workers", str(c.workers), *c.extra,
        ]
    elif c.tool == "floor":
        kind = "wordpiece" if c.tokenizer == "wp" else "spm"
        argv = [sys.executable, str(BENCH / "tokenizer_floor.py"), kind, tok, str(inputs.layout[c.corpus]),
                "--threads", str(FLOOR_THREADS)]
    elif c.tool == "google":
        # Google's script reads only the BERT layout and only a WordPiece vocab.txt.
        argv = [
            str(inputs.pythons["venv-google"]), "-m", "bert.create_pretraining_data",
            f"--input_file={inputs.layout[c.corpus]}", f"--output_file={out / 'instances.tfrecord'}",
            f"--vocab_file={tok}", "--do_lower_case=True", f"--max_seq_length={MAX_SEQ_LENGTH}",
            f"--max_predictions_per_seq={MAX_PREDICTIONS}", f"--dupe_factor={c.dupe}",
            f"--masked_lm_prob={MASKED_LM_PROB}", "--short_seq_prob=0.1", f"--random_seed={SEED}",
        ]
    elif c.tool == "hf":
        argv = [
            str(inputs.pythons["venv-hf"]), str(BENCH / "hf_datasets_mlm.py"), str(inputs.jsonl[c.corpus]),
            tok, str(out), "--max-seq-length", str(MAX_SEQ_LENGTH), "--num-proc", str(c.workers),
            "--mlm-probability", str(MASKED_LM_PROB), "--seed", str(SEED),
        ]
        env["HF_DATASETS_OFFLINE"] = "1"
        env["HF_HUB_OFFLINE"] = "1"
    else:
        raise ValueError(c.tool)
    return argv, env


def count_tfrecords(path: Path) -> int:
    """Records in a TFRecord file, from its framing (u64 length, u32 crc, data, u32 crc)."""
    n = 0
    with open(path, "rb") as f:
        while head := f.read(12):
            if len(head) < 12:
                raise ValueError(f"{path}: truncated TFRecord")
            (length,) = struct.unpack("<Q", head[:8])
            f.seek(length + 4, os.SEEK_CUR)
            n += 1
    return n


def instances(c: Contender, out: Path, report: dict) -> int | None:
    if c.tool == "build":
        return json.loads((out / "manifest.json").read_text())["totals"]["rows"]
    if c.tool == "google":
        return count_tfrecords(out / "instances.tfrecord")
    return report.get("instances")


# --------------------------------------------------------------------------- measurement


def tree_pids(root: int) -> list[int]:
    """ROOT and all its descendants, from /proc (Linux)."""
    pids, stack, seen = [], [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pids.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    stack.extend(int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # exited between two reads
    return pids


def tree_rss(root: int) -> int:
    """Summed RSS (bytes) of ROOT and all its descendants, from /proc."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # exited meanwhile
    return total


class PeakTreeRss(threading.Thread):
    """Polls tree_rss(pid) every POLL_SECONDS and keeps the maximum."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop_event.wait(POLL_SECONDS)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def busy_cpu_seconds() -> float:
    """CPU time spent busy (not idle or iowait) on all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(limit: float, window: float = 1.0, cores: float = 0.2) -> float:
    """Wait up to LIMIT seconds for a WINDOW in which other processes keep fewer than CORES
    cores busy (the machine may be shared). Returns the load of the last window."""
    deadline = time.monotonic() + limit
    while True:
        busy0 = busy_cpu_seconds()
        time.sleep(window)
        load = (busy_cpu_seconds() - busy0) / window
        if load < cores or time.monotonic() >= deadline:
            return load


@dataclass
class Sample:
    wall: float  # seconds, whole process (for floors: the encode calls only)
    process_wall: float
    peak_rss: int  # bytes, summed over the process tree
    cpu: float  # user + system seconds of the process and its descendants
    background: float  # average cores kept busy by other processes meanwhile
    report: dict  # the last stdout line, when it is JSON


def measure(argv: list[str], env: dict[str, str], logstem: Path) -> tuple[Sample | None, str | None]:
    """Run ARGV once; (Sample, None) or (None, reason) when it exits non-zero."""
    logstem.parent.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logstem.with_suffix(".stdout"), logstem.with_suffix(".stderr")
    with open(stdout_path, "w") as so, open(stderr_path, "w") as se:
        busy0 = busy_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=so, stderr=se, env=env, cwd=WORK, stdin=subprocess.DEVNULL)
        sampler = PeakTreeRss(proc.pid)
        sampler.start()
        # wait4: the rusage covers the child and every descendant it waited for.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy = busy_cpu_seconds() - busy0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        peak = sampler.stop()
    cpu = usage.ru_utime + usage.ru_stime
    background = max(0.0, busy - cpu) / wall
    if rc:
        return None, f"exit {rc}: {last_error_line(stderr_path)} (log: {stderr_path.relative_to(REPO)})"
    report = {}
    lines = stdout_path.read_text(errors="replace").strip().splitlines()
    if lines and lines[-1].startswith("{"):
        report = json.loads(lines[-1])
    timed = report.get("encode_seconds", wall)
    return Sample(wall=timed, process_wall=wall, peak_rss=peak, cpu=cpu, background=background, report=report), None


@dataclass
class Result:
    contender: Contender
    samples: list[Sample] = field(default_factory=list)
    instances: int | None = None
    manifest: dict | None = None  # mlmcorpus builds: manifest.json of the last repetition
    skipped: str | None = None

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def peak_rss(self) -> int:
        return int(statistics.median(s.peak_rss for s in self.samples))

    @property
    def ok(self) -> bool:
        return bool(self.samples) and not self.skipped


def run_contender(c: Contender, inputs: Inputs, repeats: int, idle_wait: float) -> Result:
    result = Result(c)
    if c.venv and c.venv in inputs.unavailable:
        result.skipped = inputs.unavailable[c.venv]
        return result
    out = WORK / "runs" / c.name
    for rep in range(1, repeats + 1):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        argv, env = command(c, inputs, out)
        if rep == 1:
            log(f"run: {c.name}: {shlex.join(argv)}")
        if idle_wait > 0:
            load = wait_for_idle(idle_wait)
            if load >= 0.2:
                log(f"run: the machine is busy ({load:.1f} cores used by other processes); measuring anyway")
        sample, error = measure(argv, env, WORK / "logs" / f"{c.name}.{rep}")
        if error:
            result.skipped = error
            log(f"run: {c.name} FAILED: {error}")
            break
        result.samples.append(sample)
        if rep == 1:
            try:
                result.instances = instances(c, out, sample.report)
            except (OSError, ValueError, KeyError) as e:
                log(f"run: {c.name}: cannot count the instances: {e}")
        log(f"run: {c.name} #{rep}: {sample.wall:.2f} s, peak RSS {sample.peak_rss / 2**20:,.0f} MiB, "
            f"CPU {sample.cpu:.1f} s, other processes {sample.background:.2f} cores")
    if result.ok and c.tool == "build":
        shutil.copy(out / "manifest.json", WORK / "logs" / f"{c.name}.manifest.json")
        result.manifest = json.loads((out / "manifest.json").read_text())
    shutil.rmtree(out, ignore_errors=True)  # outputs can be hundreds of MB
    return result


# --------------------------------------------------------------------------- report


def run_interleaved(contenders: list[Contender], inputs: Inputs, repeats: int, idle_wait: float) -> list[Result]:
    """Repetition by repetition, every contender once each: a machine whose speed drifts over
    minutes then slows all contenders of a round alike, and the ratios hold."""
    results = [Result(c) for c in contenders]
    for _ in range(repeats):
        for r in results:
            if r.skipped:
                continue
            one = run_contender(r.contender, inputs, 1, idle_wait)
            if one.skipped:
                r.skipped = one.skipped
                continue
            r.samples.extend(one.samples)
            r.instances = r.instances if r.instances is not None else one.instances
            r.manifest = one.manifest or r.manifest
    return results


def find(results: list[Result], name: str) -> Result | None:
    r = next((r for r in results if r.contender.name == name), None)
    return r if r and r.ok else None


def mb_per_s(r: Result, inputs: Inputs) -> float:
    return inputs.text_bytes[r.contender.corpus] / 1e6 / r.wall


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def comparisons(r: Result, results: list[Result], inputs: Inputs) -> list[str]:
    """The ratios of a build row against the baselines of the same input."""
    c = r.contender
    if c.tool != "build":
        return []
    out = []
    google = find(results, f"{c.corpus}.google.wp.d{c.dupe}")
    if google:
        mark = "" if c.tokenizer == "wp" else " (Google on WordPiece)"
        out.append(f"Google/this {ratio(google.wall, r.wall)}{mark}")
    hf = find(results, f"{c.corpus}.hf.{c.tokenizer}.d{c.dupe}")
    if hf:
        out.append(f"HF/this {ratio(hf.wall, r.wall)}")
    floor = find(results, f"{c.corpus}.floor.{c.tokenizer}")
    if floor and c.dupe == 1:
        out.append(f"this/floor {ratio(mb_per_s(r, inputs), mb_per_s(floor, inputs))} (MB/s)")
    if c.variant:
        default = find(results, c.name.rsplit(".", 1)[0])
        if default:
            out.append(f"this/default build {ratio(r.wall, default.wall)} (time)")
    if c.workers == 2:
        w1 = find(results, c.name.replace(".w2", ".w1"))
        if w1:
            out.append(f"w2/w1 {ratio(w1.wall, r.wall)}")
    return out


def table(results: list[Result], inputs: Inputs, repeats: int) -> str:
    head = ["contender", "input", "wall s (median)", "MB/s", "instances/s", "peak RSS tree",
            "CPU s", "other load", "vs baselines"]
    rows = []
    for r in results:
        c = r.contender
        corpus = f"{CORPUS_NAME[c.corpus]} ({inputs.text_bytes[c.corpus] / 1e6:.1f} MB)"
        name = f"`{c.name}` {c.label}"
        if not r.ok:
            rows.append([name, corpus, "skipped", "", "", "", "", "", r.skipped or ""])
            continue
        walls = [s.wall for s in r.samples]
        wall = f"{r.wall:.2f}" + (f" ({min(walls):.2f}-{max(walls):.2f})" if len(walls) > 1 else "")
        if c.tool == "floor":
            wall += " encode only"
        inst = f"{r.instances / r.wall:,.0f}" if r.instances else "-"
        cpu = statistics.median(s.cpu for s in r.samples)
        other = max(s.background for s in r.samples)
        rows.append([name, corpus, wall, f"{mb_per_s(r, inputs):.2f}", inst,
                     f"{r.peak_rss / 2**20:,.0f} MiB", f"{cpu:.1f}", f"{other:.2f}",
                     "; ".join(comparisons(r, results, inputs))])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def headline(results: list[Result], inputs: Inputs) -> list[str]:
    """The issue's comparisons, as measured (no thresholds are applied here)."""
    lines = []

    def add(text: str, a: str, b: str, f) -> None:
        ra, rb = find(results, a), find(results, b)
        if ra and rb:
            lines.append(f"- {text}: **{f(ra, rb)}** (`{a}` vs `{b}`)")

    def wall_ratio(a: Result, b: Result) -> str:
        return ratio(a.wall, b.wall)

    add("Google / mlmcorpus, WordPiece, en_wikipedia dupe 5, -j 2 (wall time)",
        "wiki.google.wp.d5", "wiki.build.wp.d5.w2", wall_ratio)
    add("Google (WordPiece: its script cannot load sentencepiece) / mlmcorpus with the 32k "
        "sentencepiece model, en_wikipedia dupe 5, -j 2 (wall time)",
        "wiki.google.wp.d5", "wiki.build.spm.d5.w2", wall_ratio)
    for corpus in ("gutenberg", "wiki"):
        for tok in ("spm", "wp"):
            add(f"mlmcorpus / tokenizer floor, {CORPUS_NAME[corpus]} dupe 1, {TOKENIZER_LABEL[tok]}, "
                "-j 2 vs 2 threads (MB/s)",
                f"{corpus}.build.{tok}.d1.w2", f"{corpus}.floor.{tok}",
                lambda a, b: ratio(mb_per_s(a, inputs), mb_per_s(b, inputs)))
    add("HF datasets / mlmcorpus (NSP), WordPiece, en_wikipedia dupe 1 (wall time)",
        "wiki.hf.wp.d1", "wiki.build.wp.d1.w2", wall_ratio)
    add("HF datasets / mlmcorpus --pair-task none, WordPiece, en_wikipedia dupe 1 (wall time)",
        "wiki.hf.wp.d1", "wiki.build.wp.d1.w2.nopair", wall_ratio)
    for r in results:
        if r.contender.tool == "build" and r.contender.workers == 2:
            add(f"scaling -j 2 / -j 1 throughput, {r.contender.label.replace(' -j 2', '')} on "
                f"{CORPUS_NAME[r.contender.corpus]}",
                r.contender.name, r.contender.name.replace(".w2", ".w1"), lambda a, b: ratio(b.wall, a.wall))
    for r in results:
        w1 = find(results, r.contender.name.replace(".w2", ".w1"))
        if r.ok and r.manifest and r.contender.workers == 2 and w1 and w1.manifest:
            same = [s.get("sha256") for s in r.manifest["shards"]] == [s.get("sha256") for s in w1.manifest["shards"]]
            lines.append(f"- shards of -j 2 and -j 1 byte-identical (manifest sha256), {r.contender.label.replace(' -j 2', '')} "
                         f"on {CORPUS_NAME[r.contender.corpus]}: **{'yes' if same else 'NO'}**")
    for dupe in (1, 5):
        add(f"memory: peak tree RSS on en_gutenberg (80 MB) / en_wikipedia (20.6 MB), sentencepiece, "
            f"dupe {dupe}, -j 2",
            f"gutenberg.build.spm.d{dupe}.w2", f"wiki.build.spm.d{dupe}.w2",
            lambda a, b: f"{a.peak_rss / 2**20:,.0f} / {b.peak_rss / 2**20:,.0f} MiB = {ratio(a.peak_rss, b.peak_rss)}")
        add(f"memory: peak tree RSS on en_gutenberg (80 MB) / its first 20 MB, sentencepiece, dupe {dupe}, -j 2",
            f"gutenberg.build.spm.d{dupe}.w2", f"gutenberg20.build.spm.d{dupe}.w2",
            lambda a, b: f"{a.peak_rss / 2**20:,.0f} / {b.peak_rss / 2**20:,.0f} MiB = {ratio(a.peak_rss, b.peak_rss)}")
    peaks = [r for r in results if r.ok and r.contender.tool == "build" and r.contender.corpus == "gutenberg"]
    if peaks:
        top = max(peaks, key=lambda r: r.peak_rss)
        lines.append(f"- memory: largest peak tree RSS of mlmcorpus on en_gutenberg: "
                     f"**{top.peak_rss / 2**20:,.0f} MiB** (`{top.contender.name}`)")
    return lines


def package_version(python: Path | str, names: list[str]) -> str:
    code = (f"import importlib.metadata as m\nfor n in {names!r}:\n try: print(n + ' ' + m.version(n))\n"
            " except m.PackageNotFoundError: pass")
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ", ".join(out.split("\n")[:-1]) or "?"


def code_version() -> tuple[str, str]:
    """The commit of the checkout and a digest of the mlmcorpus sources as they are on disk (an
    editable install runs whatever is there, so a change during the run shows as a new digest)."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=False).stdout.strip() or "?"
    except OSError:
        commit = "?"
    import mlmcorpus

    digest = hashlib.sha256()
    package = Path(mlmcorpus.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return commit, digest.hexdigest()[:12]


def environment(inputs: Inputs, code_at_start: tuple[str, str]) -> list[str]:
    (commit0, digest0), (commit1, digest1) = code_at_start, code_version()
    commit = f"`{commit0}`" if commit0 == commit1 else f"`{commit0}` (`{commit1}` at the end)"
    if digest0 == digest1:
        commit += f", mlmcorpus/ sources {digest0} unchanged during the run"
    else:
        commit += f", mlmcorpus/ sources CHANGED during the run ({digest0} -> {digest1}): the runs mix two versions"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"- machine: {os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}, Python {platform.python_version()}",
        f"- mlmcorpus at {commit}; {package_version(sys.executable, ['mlmcorpus', 'sentencepiece', 'tokenizers', 'pyarrow', 'numpy'])}",
    ]
    for name, python in inputs.pythons.items():
        lines.append(f"- {name}: {package_version(python, VENVS[name]['versions'])}")
    for name, why in inputs.unavailable.items():
        lines.append(f"- {name}: unavailable: {why}")
    if inputs.spm:
        lines.append(f"- sentencepiece model: `{inputs.spm.relative_to(REPO)}` "
                     f"({SPM_VOCAB_SIZE} unigram, trained on en_wikipedia by `mlmcorpus tokenizer train`)")
    return lines


NOTES = """\
Notes: wall time is the median over the repetitions (min-max in brackets), of the whole process
(interpreter start-up included), except the tokenizer floors, whose wall time is that of the encode
calls alone (`benchmarks/tokenizer_floor.py`, batches of 8,192 sentences, 2 threads). MB/s = UTF-8
bytes of the corpus's `text` fields / wall time. instances/s: rows of the mlmcorpus manifest,
records of Google's TFRecord, rows of HF's Parquet. Peak RSS: the median over repetitions of the
maximum, sampled every 50 ms, of the RSS summed over the process and all its descendants (shared
pages count once per process, so this overstates what a forked tree really uses). Google's
`create_pretraining_data.py` reads the BERT layout of the same sentences and only a WordPiece
`vocab.txt` (its `tokenization.FullTokenizer`; there is no sentencepiece path), so every "Google"
ratio is against its WordPiece run; mlmcorpus reads the JSON Lines and splits sentences itself.
CPU s: user + system time of the whole tree (median). Other load: the most, over the repetitions,
of the cores kept busy by processes outside the tree during a run (busy time from /proc/stat minus
the tree's CPU time, over the wall time); above about 0.1 the machine was shared and the times
are pessimistic."""


def render(results: list[Result], inputs: Inputs, repeats: int, seconds: float, code_at_start: str) -> str:
    today = datetime.date.today().isoformat()
    parts = [
        f"# mlmcorpus benchmark, {today}",
        "",
        (f"Command: `{shlex.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}` "
         f"({repeats} repetition(s), {seconds / 60:.1f} min in all, preparation included)"),
        "",
        table(results, inputs, repeats),
        "",
        "Headline ratios:",
        "",
        *headline(results, inputs),
        "",
        NOTES,
        "",
        "Environment:",
        "",
        *environment(inputs, code_at_start),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- main


def mlmcorpus_has_pair_task() -> bool:
    out = subprocess.run([sys.executable, "-m", "mlmcorpus", "build", "--help"], capture_output=True, text=True,
                         check=False)
    return "--pair-task" in out.stdout


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark mlmcorpus build against Google's create_pretraining_data.py, the raw "
                    "tokenizer and Hugging Face datasets (issue 5). Results: a Markdown table on stdout "
                    "and in benchmarks/.work/results.md.",
        epilog=f"Data: <repo>/../shared/data, or ${DATA_ENV}. Work files, virtualenvs and logs: "
               "benchmarks/.work/ (git-ignored).",
    )
    ap.add_argument("--quick", action="store_true", help="one repetition instead of three")
    ap.add_argument("--repeats", type=int, help="repetitions per contender (default 3, --quick 1)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="contenders to run: names, glob patterns or dotted prefixes (e.g. wiki.build 'gutenberg.*')")
    ap.add_argument("--list", action="store_true", help="list the contenders and exit")
    ap.add_argument("--no-interleave", dest="interleave", action="store_false",
                    help="run every repetition of a contender before the next (default: round by round)")
    ap.add_argument("--refresh", action="store_true", help="redo the prepared inputs and the sentencepiece model")
    ap.add_argument("--no-install", action="store_true",
                    help="never install the baselines' virtualenvs; skip the contenders that need a missing one")
    ap.add_argument("--wait-idle", type=float, default=60, metavar="SECONDS",
                    help="before each run, wait up to SECONDS for a second in which other processes use "
                         "under 0.2 cores (for a shared machine; 0 = never wait) [default: 60]")
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    contenders = all_contenders(mlmcorpus_has_pair_task())
    if args.list:
        for c in contenders:
            print(f"{c.name:32} {c.label} on {CORPUS_NAME[c.corpus]}")
        return 0
    contenders = select(contenders, args.only)
    started = time.perf_counter()
    code_at_start = code_version()
    inputs = prepare(contenders, args.refresh, not args.no_install)
    if args.interleave:
        results = run_interleaved(contenders, inputs, args.repeats, args.wait_idle)
    else:
        results = [run_contender(c, inputs, args.repeats, args.wait_idle) for c in contenders]
    report = render(results, inputs, args.repeats, time.perf_counter() - started, code_at_start)
    (WORK / "results.md").write_text(report)
    print(report)
    log(f"written: {(WORK / 'results.md').relative_to(REPO)}")
    return 0 if any(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
