"""PNG figures for runs: a confusion matrix a person can read at a glance, and training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.model import EMOTIONS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(per_corpus: dict, path: str | Path, title: str) -> None:
    """Row-normalised confusion matrices (recall on the diagonal), one panel per corpus plus all."""
    plt = _pyplot()
    names = [n for n in per_corpus if n != "all"] + ["all"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.4), squeeze=False)
    short = [e[:4] for e in EMOTIONS]
    for ax, name in zip(axes[0], names, strict=True):
        m = np.asarray(per_corpus[name]["confusion"], dtype=float)
        rows = m.sum(axis=1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(EMOTIONS)):
            for j in range(len(EMOTIONS)):
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
        ax.set_title(f"{name}: WA {s['wa'] * 100:.1f}  UA {s['ua'] * 100:.1f}\n({s['clips']} clips)", fontsize=9)
        ax.set_xticks(range(len(EMOTIONS)), short, rotation=45, fontsize=7)
        ax.set_yticks(range(len(EMOTIONS)), short, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true (row %)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_curves(history: dict, path: str | Path) -> None:
    """Loss and accuracy per epoch, training against validation windows."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        if key in history:
            ax.plot(range(1, len(history[key]) + 1), history[key], label="training windows")
        if f"val_{key}" in history:
            ax.plot(range(1, len(history[f"val_{key}"]) + 1), history[f"val_{key}"], label="validation windows")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
