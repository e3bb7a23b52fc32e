"""PNG figures for runs: a confusion matrix a person can read at a glance, and training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(per_corpus: dict, labels, path: str | Path, title: str) -> None:
    """Row-normalised confusion matrices (recall on the diagonal), one panel per corpus plus all."""
    plt = _pyplot()
    names = [n for n in per_corpus if n not in ("all", "mean")] + ["all"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
    short = [e[:4] for e in labels]
    for ax, name in zip(axes[0], names, strict=True):
        m = np.asarray(per_corpus[name]["confusion"], dtype=float)
        rows = m.sum(axis=1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{share[i, j] * 100:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
        s = per_corpus[name]
        if name == "all":
            sizes = {n: per_corpus[n]["clips"] for n in names if n != "all"}
            biggest = max(sizes, key=sizes.get)
            what = f"every clip pooled: {biggest} is {100 * sizes[biggest] / max(s['clips'], 1):.0f} %"
        else:
            what = f"{s['clips']} clips"
        restricted = f", restricted {s['ua_restricted'] * 100:.1f}" if "ua_restricted" in s and s["ua_restricted"] != s["ua"] else ""
        ax.set_title(f"{name}: UA {s['ua'] * 100:.1f}{restricted}\n({what})", fontsize=9)
        ax.set_xticks(range(len(labels)), short, rotation=45, fontsize=7)
        ax.set_yticks(range(len(labels)), short, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true (row %)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_curves(history: dict, validation_ua: dict, path: str | Path) -> None:
    """Training loss per epoch, and the validation clips' UA per corpus per epoch (restricted to each corpus's labels)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    loss = history.get("loss", [])
    axes[0].plot(range(1, len(loss) + 1), loss, marker="o", label="training windows")
    axes[0].set_ylabel("loss (masked cross-entropy)")
    for name, values in validation_ua.items():
        if name == "mean":
            continue
        axes[1].plot(range(1, len(values) + 1), values, marker=".", alpha=0.8, label=name)
    if "mean" in validation_ua:
        values = validation_ua["mean"]
        axes[1].plot(range(1, len(values) + 1), values, color="black", linewidth=2.5, label="mean of corpora")
        axes[1].annotate("kept: last epoch", (len(values), values[-1]), textcoords="offset points", xytext=(-60, 8), fontsize=7)
    axes[1].set_ylabel("validation UA (clip level)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
