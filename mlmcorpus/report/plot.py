"""``inspect --plot``: the report's distributions as a PNG (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlmcorpus.report import Report

__all__ = ["plot_report"]


def plot_report(report: Report, path: str) -> None:
    """Four panels: sequence lengths, masked positions per row, NSP labels, the mask split vs expected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = report["distributions"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, key, title in ((axes[0][0], "sequence_length", "sequence length (tokens)"),
                           (axes[0][1], "masked_per_sequence", "masked positions per sequence")):
        items = sorted((int(k), v) for k, v in d[key].items())
        ax.bar([k for k, _ in items], [v for _, v in items], width=1.0, color="#4c72b0")
        ax.set_title(title)
        ax.set_ylabel("rows")
    nsp = d["nsp"]
    ax = axes[1][0]
    total = max(nsp["actual_next"] + nsp["random_next"], 1)
    names = ["0 in order", "1 swapped"] if nsp.get("label") == "sentence_order_label" else ["0 actual next", "1 random"]
    ax.bar(names, [nsp["actual_next"] / total, nsp["random_next"] / total], color="#55a868")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="expected 0.5")
    ax.set_title("next sentence label")
    ax.legend()
    mk = d["masked"]
    ax = axes[1][1]
    tm = max(mk["total"], 1)
    labels = ["[MASK]", "random", "unchanged"]
    ax.bar(labels, [mk["mask"] / tm, mk["random"] / tm, mk["keep"] / tm], color="#8172b2", label="observed")
    ax.scatter(labels, mk["expected_ratios"], color="black", zorder=3, label="expected")
    ax.set_title("masked positions become")
    ax.legend()
    s = report["summary"]
    fig.suptitle(f"{report['path']}: {s['shards']} shard(s), {s['rows']:,} rows, {s['tokens']:,} tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
