"""Drawing an inspect report with rich, and decoding sample rows."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from mlmcorpus.errors import InputError
from mlmcorpus.formats.base import ShardFormat
from mlmcorpus.report.corpus import open_corpus
from mlmcorpus.report.model import Report

__all__ = ["render", "render_samples"]


def _bar(value: float, peak: float, width: int = 40) -> str:
    if peak <= 0:
        return ""
    full = value / peak * width
    blocks = " ▏▎▍▌▋▊▉█"
    whole = int(full)
    part = int((full - whole) * 8)
    return "█" * whole + (blocks[part] if part and whole < width else "")


def _histogram(console: Any, title: str, hist: dict[str, int], buckets: int = 16) -> None:
    from rich.table import Table

    items = sorted((int(k), v) for k, v in hist.items())
    table = Table(title=title, show_header=False, box=None, padding=(0, 1))
    if not items:
        console.print(table)
        return
    lo, hi = items[0][0], items[-1][0]
    if hi - lo + 1 <= buckets * 1.5:
        rows = [(str(i), hist.get(str(i), 0)) for i in range(lo, hi + 1)]
    else:
        step = math.ceil((hi - lo + 1) / buckets)
        rows = []
        for start in range(lo, hi + 1, step):
            rows.append((f"{start}–{min(start + step - 1, hi)}", sum(v for k, v in items if start <= k < start + step)))
    peak = max(c for _, c in rows)
    for label, count in rows:
        table.add_row(label, f"[cyan]{_bar(count, peak)}[/]", f"{count:,}")
    console.print(table)


def _share_table(console: Any, title: str, first: str, colour: str, rows: list[tuple[str, int, float]]) -> None:
    """label | bar | count | observed share | expected share."""
    from rich.table import Table

    total = sum(count for _, count, _ in rows) or 1
    t = Table(title=title, box=None, padding=(0, 1))
    t.add_column(first)
    t.add_column("")
    for col in ("count", "share", "expected"):
        t.add_column(col, justify="right")
    for label, count, expected in rows:
        t.add_row(label, f"[{colour}]{_bar(count, total, 30)}[/]", f"{count:,}", f"{count / total:.1%}", f"{expected:.0%}")
    console.print(t)


def render(report: Report, console: Any) -> None:
    """Draw the report on a rich console (stderr or stdout)."""
    from rich.panel import Panel
    from rich.table import Table

    s = report["summary"]
    cfg = report.get("config") or {}
    tok = report.get("tokenizer") or {}
    lines = [
        f"[bold]{report['path']}[/]  {s['shards']} shard(s), {s['rows']:,} rows, {s['tokens']:,} tokens, "
        f"{s['bytes_on_disk'] / 1e6:,.1f} MB on disk ({report['format']})",
    ]
    if report.get("manifest"):
        pairs, mask, units = cfg.get("pairs", {}), cfg.get("mask", {}), cfg.get("units", {})
        lines.append(
            f"seed {report.get('seed')} · max_seq_length {pairs.get('max_seq_length')} · dupe_factor {pairs.get('dupe_factor')} · "
            f"short_seq_prob {pairs.get('short_seq_prob')} · masked_lm_prob {mask.get('masked_lm_prob')} · "
            f"max_predictions {mask.get('max_predictions_per_seq')} · ratios {mask.get('mask_ratios')} · pool_docs {units.get('pool_docs')}"
        )
        objective = f"pair task {pairs.get('task', 'nsp')} · masking {mask.get('masking', 'token')}"
        if cfg.get("compat", "none") != "none":
            objective += f" · compat {cfg.get('compat')} (the reference's instances, in its order)"
        lines.append(objective)
        lines.append(
            f"tokenizer {tok.get('kind')} {tok.get('path')} · vocab {tok.get('vocab_size'):,} · sha256 {str(tok.get('sha256'))[:16]}…"
        )
        versions = report.get("versions") or {}
        lines.append("versions " + " · ".join(f"{k} {v}" for k, v in versions.items()))
    else:
        lines.append("[yellow]no manifest: configuration unknown; checks limited to the shard itself[/]")
    console.print(Panel("\n".join(lines), title="mlmcorpus corpus", expand=False))

    d = report["distributions"]
    _histogram(console, "sequence length (tokens)", d["sequence_length"])
    _histogram(console, "masked positions per sequence", d["masked_per_sequence"])
    nsp = d["nsp"]
    exp_random = nsp.get("expected_random_ratio", 0.5)
    sop = nsp.get("label") == "sentence_order_label"
    names = ("0 in order", "1 swapped") if sop else ("0 actual next", "1 random")
    if "label" not in nsp or nsp["label"] is not None:  # packed rows have no pair label
        _share_table(console, "sentence order label" if sop else "next sentence label", "label", "green",
                     [(names[0], nsp["actual_next"], 1 - exp_random), (names[1], nsp["random_next"], exp_random)])
    mk = d["masked"]
    if not report.get("manifest"):
        console.print(f"masked positions: {sum(int(k) * v for k, v in d['masked_per_sequence'].items()):,} "
                      "(split into [MASK]/random/unchanged unknown without the manifest's special ids)")
    masking = (cfg.get("mask") or {}).get("masking", "token")
    if masking == "none":
        console.print("no masks: --masking none leaves them to train time (special_tokens_mask)")
    else:
        _share_table(console, "masked positions", "becomes", "magenta",
                     list(zip(("[MASK]", "random token", "unchanged"), (mk["mask"], mk["random"], mk["keep"]), mk["expected_ratios"])))
    if mk.get("mask_rate") is not None and masking != "none":
        console.print(f"mask rate {mk['mask_rate']:.2%} of maskable tokens (masked_lm_prob {mk['masked_lm_prob']}, "
                      "capped by max_predictions_per_seq)")

    t = Table(title="shards")
    for col in ("file", "rows", "tokens", "size", "checksum"):
        t.add_column(col, justify="right" if col in ("rows", "tokens", "size") else "left")
    style = {"ok": "[green]ok[/]", "mismatch": "[red]MISMATCH[/]", "missing": "[red]MISSING[/]", "unreadable": "[red]UNREADABLE[/]"}
    for sh in report["shards"]:
        t.add_row(sh["file"], f"{sh['rows']:,}", f"{sh['tokens']:,}", f"{sh['bytes'] / 1e6:,.1f} MB",
                  style.get(sh["checksum"], sh["checksum"]))
    console.print(t)
    v = report.get("verify")
    if v is not None:
        test = v["mask_ratio_test"]
        chi = "inf" if test["chi_square"] is None else f"{test['chi_square']:.2f}"
        console.print(f"mask split chi-square {chi} (df {test['df']}), p = {test['p_value']:.3g}, "
                      f"alpha {test['alpha']:g}: {'ok' if test['passed'] else 'FAIL'}")
        if v.get("word_check"):
            colour = "yellow" if v["word_check"].startswith("skipped") else "green"
            console.print(f"whole words: [{colour}]{v['word_check']}[/]", highlight=False)
        if v["passed"]:
            console.print("[bold green]verify: PASSED[/] — checksums, schema, every row and the corpus statistics")
        else:
            console.print(f"[bold red]verify: FAILED[/] — {', '.join(f'{k} {n:,}' for k, n in sorted(v['problems'].items()))}")
            for f in v["findings"]:
                console.print(f"  {f}", markup=False, highlight=False, soft_wrap=True)


def render_samples(corpus_path: str, n: int, shard_index: int, console: Any, tokenizer_path: str | None = None) -> None:
    """Print ``n`` decoded rows of shard ``shard_index``: A and B told apart, masked tokens as ⟦original→replacement⟧."""
    from rich.text import Text

    from mlmcorpus.tokenizers import load_tokenizer

    corpus = open_corpus(corpus_path)
    if not 0 <= shard_index < len(corpus.shards):
        raise InputError(f"--shard {shard_index}: the corpus has {len(corpus.shards)} shard(s) (0..{len(corpus.shards) - 1})")
    tok_info = corpus.manifest.tokenizer if corpus.manifest is not None else {}
    found = tokenizer_path if tokenizer_path and os.path.isfile(tokenizer_path) else corpus.tokenizer_file()
    if found is None:
        raise InputError("cannot find the corpus's tokenizer; pass --tokenizer PATH to decode samples")
    tok = load_tokenizer(found, add_special_tokens=bool(tok_info.get("added_special_tokens")))
    if tok_info.get("sha256") and tok.sha256 != tok_info.get("sha256"):
        raise InputError(f"{tok.path}: not the tokenizer this corpus was built with (sha256 differs from the manifest)")
    if corpus.params.vocab_size is not None and tok.vocab_size < corpus.params.vocab_size:
        raise InputError(f"{tok.path}: vocabulary of {tok.vocab_size} is smaller than the corpus's {corpus.params.vocab_size}")
    p = corpus.params
    path = os.path.join(corpus.out_dir, corpus.shards[shard_index].file)
    shown = 0
    starts = tok.word_start_mask()
    try:
        batches = list(_iter_first(path, corpus.format, n, p.columns))
    except Exception as e:
        raise InputError(f"{path}: cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    for batch in batches:
        for r in range(len(batch["input_ids"])):
            if shown >= n:
                return
            ids = batch["input_ids"][r].astype(np.int64)
            # Unmasked rows (--masking none) have no labels: nothing to highlight.
            labels = batch["labels"][r].astype(np.int64) if "labels" in batch else np.full(len(ids), -100, dtype=np.int64)
            tt = batch["token_type_ids"][r]
            length = int(batch["attention_mask"][r].sum())
            nsp = int(batch[p.label][r]) if p.label is not None else -1
            text = Text()
            text.append(f"#{shown} shard {shard_index} row {r} · {_pair_label(p.label, nsp)} · "
                        f"{length} tokens · {int((labels != -100).sum())} masked\n", style="bold")
            after_special = False
            for j in range(length):
                i = int(ids[j])
                if i in (p.cls, p.sep):
                    text.append(" [CLS]" if i == p.cls else " [SEP]", style="dim")
                    after_special = True
                    continue
                original = int(labels[j]) if labels[j] != -100 else i
                piece = _display_piece(tok.id_to_piece(original))
                space = " " if (after_special or original >= len(starts) or starts[original]) else ""
                after_special = False
                seg_style = "cyan" if tt[j] == 0 else "yellow"
                if labels[j] != -100:
                    new = "[MASK]" if i == p.mask else (_display_piece(tok.id_to_piece(i)) or "\u2581")
                    text.append(space)
                    # A lone word-start piece is invisible as text: show the marker itself.
                    text.append(f"⟦{piece or chr(0x2581)}→{new}⟧", style=f"bold reverse {seg_style}")
                else:
                    text.append(space + piece, style=seg_style)
            console.print(text)
            shown += 1


def _pair_label(column: str | None, value: int) -> str:
    if column is None:
        return "packed"
    if column == "sentence_order_label":
        return "swapped" if value else "in order"
    return "random next" if value else "actual next"


def _iter_first(path: str, fmt: ShardFormat, n: int, columns: tuple[str, ...]) -> Iterator[dict[str, np.ndarray]]:
    """Batches holding at least the first ``n`` rows of a shard."""
    got = 0
    for batch in fmt.iter_batches(path, columns, max(n, 1)):
        yield batch
        got += len(batch["input_ids"])
        if got >= n:
            return


def _display_piece(piece: str) -> str:
    if piece.startswith("##"):
        return piece[2:]
    return piece.replace("\u2581", "")
