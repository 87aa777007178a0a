"""What `mlmcorpus inspect` shows and checks about a built corpus.

:func:`inspect_corpus` opens a corpus (:mod:`.corpus`: the manifest is untrusted
input), scans every shard batch by batch in bounded memory — in parallel with
``workers`` — (:mod:`.scan`), gathers distributions (sequence lengths, predictions
per row, NSP labels, [MASK]/random/unchanged) and, with ``verify``, every violation
of the layout and the masking policy, by shard and row (:mod:`.verify`).
:mod:`.render` draws the report with rich and decodes sample rows.
"""

from __future__ import annotations

from dataclasses import replace


import numpy as np

from mlmcorpus.errors import InputError, MlmCorpusError
from mlmcorpus.report.corpus import Corpus, CorpusParams, open_corpus
from mlmcorpus.report.model import Report
from mlmcorpus.report.render import render, render_samples
from mlmcorpus.report.scan import ShardScan, scan_shard
from mlmcorpus.report.verify import ALPHA, chi_square, verdict

__all__ = [
    "ALPHA",
    "Corpus",
    "CorpusParams",
    "ShardScan",
    "open_corpus",
    "scan_shard",
    "inspect_corpus",
    "Report",
    "chi_square",
    "render",
    "render_samples",
]


def _merge(scans: list[ShardScan], p: CorpusParams) -> dict:
    length = np.zeros(p.max_seq_length + 1, dtype=np.int64)
    preds = np.zeros(p.max_predictions + 1, dtype=np.int64)
    nsp = np.zeros(2, dtype=np.int64)
    kinds = np.zeros(3, dtype=np.int64)
    run_tokens = run_sq = 0
    for s in scans:
        run_tokens += s.run_tokens
        run_sq += s.run_sq
        if s.length_hist:
            length += np.asarray(s.length_hist)
            preds += np.asarray(s.predictions_hist)
        nsp += np.asarray(s.nsp)
        kinds += np.asarray(s.kinds)
    return {"length": length, "predictions": preds, "nsp": nsp, "kinds": kinds, "run_tokens": run_tokens, "run_sq": run_sq}


def inspect_corpus(path: str, verify: bool = False, workers: int = 1) -> Report:
    """Scan (and verify) a corpus; returns the report, JSON-able.

    ``report["verify"]["passed"]`` is the verdict when ``verify`` is set.
    """
    from mlmcorpus.engines.local import map_ordered

    corpus = open_corpus(path)
    if verify and corpus.manifest is None:
        raise InputError(f"{path}: --verify needs the manifest.json the shard was built with (special ids, vocabulary)")
    p = corpus.params
    word_check = None
    if verify and p.masking != "token":
        word_start, word_check = _word_starts(corpus)
        p = replace(p, word_start=word_start)
    jobs = [(corpus.out_dir, corpus.format.name, e, p, verify) for e in corpus.shards]
    scans = list(map_ordered(scan_shard, jobs, min(workers, max(len(jobs), 1))))
    merged = _merge(scans, p)
    rows = int(sum(s.rows for s in scans))
    kinds = merged["kinds"].tolist()
    masked_total = int(sum(kinds))
    candidates = int(sum(s.candidates for s in scans))
    m = (corpus.manifest.raw or corpus.manifest.as_dict()) if corpus.manifest is not None else {}
    report: Report = {
        "path": path,
        "manifest": corpus.manifest is not None,
        "format": corpus.format.name,
        "summary": {
            "shards": len(scans),
            "rows": rows,
            "tokens": int(sum(s.tokens for s in scans)),
            "bytes_on_disk": int(sum(s.bytes for s in scans)),
        },
        "seed": m.get("seed"),
        "config": m.get("config"),
        "tokenizer": m.get("tokenizer"),
        "versions": m.get("versions"),
        "stats": m.get("stats"),
        "distributions": {
            "sequence_length": _sparse(merged["length"]),
            "masked_per_sequence": _sparse(merged["predictions"]),
            "nsp": {"actual_next": int(merged["nsp"][0]), "random_next": int(merged["nsp"][1]),
                    "random_ratio": round(float(merged["nsp"][1]) / rows, 6) if rows else None,
                    "expected_random_ratio": p.random_next_prob, "label": p.label},
            "masked": {
                "total": masked_total,
                "mask": kinds[0], "random": kinds[1], "keep": kinds[2],
                "observed_ratios": [round(x / masked_total, 6) for x in kinds] if masked_total else None,
                "expected_ratios": list(p.mask_ratios),
                "mask_rate": round(masked_total / candidates, 6) if candidates else None,
                "masked_lm_prob": p.masked_lm_prob,
            },
        },
        "shards": [
            {"file": s.file, "rows": s.rows, "tokens": s.tokens, "bytes": s.bytes, "checksum": s.checksum}
            for s in scans
        ],
    }
    if verify:
        report["verify"] = verdict(corpus, scans, merged)
        if word_check is not None:
            report["verify"]["word_check"] = word_check
    return report


def _word_starts(corpus: Corpus) -> tuple[np.ndarray | None, str]:
    """The word starts of the corpus's own tokenizer (to check that words stay whole), if it is found."""
    from mlmcorpus.tokenizers import load_tokenizer

    assert corpus.manifest is not None
    splitter = corpus.manifest.config.pairs.word_splitter
    if splitter is not None:
        # Word starts per piece are not in the shards, and a module a manifest names is not run.
        return None, f"skipped: the words came from --word-splitter {splitter}, which the shards do not record"
    tok_info = corpus.manifest.tokenizer
    candidate = corpus.tokenizer_file()
    if candidate is None:
        return None, "skipped: the corpus's tokenizer file was not found"
    try:
        tok = load_tokenizer(candidate, add_special_tokens=bool(tok_info.get("added_special_tokens")))
    except MlmCorpusError as e:
        return None, f"skipped: {e}"
    if tok.sha256 != tok_info.get("sha256"):
        return None, f"skipped: {candidate} is not the tokenizer the corpus was built with"
    if tok.word_starts_per_token:
        return None, (f"skipped: the words of {candidate} are its pre-tokenizer's, found sentence by sentence, "
                      "which the shards do not record")
    return tok.word_start_mask(), f"checked with {candidate}"


def _sparse(hist: np.ndarray) -> dict[str, int]:
    return {str(i): int(c) for i, c in enumerate(hist) if c}
