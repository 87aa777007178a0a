"""Before/after: the same mlmcorpus contenders at two commits, interleaved run by run.

    python benchmarks/compare.py REV                      # REV against the working tree
    python benchmarks/compare.py REV --only 'wiki.build.*' --repeats 5

A restructure (or any change meant to be neutral) shows with this that build time and peak
memory did not move.  REV is checked out as a detached git worktree under
``benchmarks/.work/rev-<sha>/``; each repetition runs the two versions back to back, in
alternating order, on the inputs and settings of ``benchmarks/run.py`` (same machine, same
minute: the noise of a shared machine hits both).  Prints, per contender, the medians of wall
time, CPU time and peak RSS of the process tree for both versions and their ratio, and whether
the two wrote the same shards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (benchmarks/run.py: inputs, commands, measurement)

DEFAULT = ["wiki.build.spm.d5.w1", "wiki.build.spm.d5.w2", "wiki.build.wp.d5.w2", "gutenberg.build.spm.d1.w2"]


def worktree(rev: str) -> tuple[Path, str]:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=run.REPO, capture_output=True, text=True, check=True).stdout.strip()
    path = run.WORK / f"rev-{sha}"
    if not (path / "mlmcorpus").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), sha], cwd=run.REPO, check=True, capture_output=True)
    return path, sha


def shard_digests(out: Path) -> list[str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return [s["sha256"] for s in manifest["shards"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the commit to compare against (before)")
    ap.add_argument("--only", nargs="+", default=DEFAULT, help="contenders of run.py --list (mlmcorpus builds)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wait-idle", type=float, default=30.0, help="as in run.py")
    args = ap.parse_args(argv)

    before_tree, before_sha = worktree(args.rev)
    contenders = [c for c in run.select(run.all_contenders(False), args.only) if c.tool == "build"]
    if not contenders:
        run.log("compare: no mlmcorpus build among the selected contenders")
        return 2
    inputs = run.prepare(contenders, refresh=False, install=False)
    sides = {"before": str(before_tree), "after": str(run.REPO)}
    rows = []
    for c in contenders:
        samples: dict[str, list[run.Sample]] = {"before": [], "after": []}
        digests: dict[str, list[str]] = {}
        for rep in range(args.repeats):
            order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
            for side in order:
                out = run.WORK / "runs" / f"compare-{side}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                argv_, env = run.command(c, inputs, out)
                env["PYTHONPATH"] = sides[side]  # run.py runs `python -m mlmcorpus` outside the repo
                if args.wait_idle > 0:
                    run.wait_for_idle(args.wait_idle)
                sample, error = run.measure(argv_, env, run.WORK / "logs" / f"compare.{c.name}.{side}.{rep}")
                if error:
                    run.log(f"compare: {c.name} {side} FAILED: {error}")
                    return 1
                assert sample is not None
                samples[side].append(sample)
                digests[side] = shard_digests(out)
                run.log(f"compare: {c.name} {side} #{rep + 1}: {sample.wall:.2f} s, CPU {sample.cpu:.1f} s, "
                        f"peak {sample.peak_rss / 2**20:,.0f} MiB, other load {sample.background:.2f}")
                shutil.rmtree(out, ignore_errors=True)
        med = {s: (statistics.median(x.wall for x in v), statistics.median(x.cpu for x in v),
                   statistics.median(x.peak_rss for x in v) / 2**20, max(x.background for x in v)) for s, v in samples.items()}
        rows.append((c, med, digests["before"] == digests["after"]))

    print(f"# mlmcorpus {before_sha} (before) vs the working tree (after), {args.repeats} interleaved repetitions\n")
    print("| contender | wall s before | after | after/before | CPU s before | after | peak MiB before | after | other load | same shards |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c, m, same in rows:
        b, a = m["before"], m["after"]
        print(f"| `{c.name}` | {b[0]:.2f} | {a[0]:.2f} | {a[0] / b[0]:.3f} | {b[1]:.1f} | {a[1]:.1f} | {b[2]:,.0f} | {a[2]:,.0f} "
              f"| {max(b[3], a[3]):.2f} | {'yes' if same else 'no'} |")
    print("\nMedians; other load is the most cores used by other processes during any run of the row.")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
