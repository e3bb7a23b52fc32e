"""Look at the data before training: clips per emotion and corpus, durations, and what each emotion looks like.

Writes into one folder:
  counts.png        clips per emotion, one bar group per corpus (the class balance at a glance)
  durations.png     clip length per corpus against the model's window (shorter clips are repeated to fill it)
  examples.png      for one speaker and each emotion: waveform, spectrogram, and the device's MFCC
  summary.md        the same numbers as a table, plus what the loaders could not use
The spectrogram and MFCC come from edge.frontend, the features the model will see.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from edge.frontend import Frontend, FrontendSettings
from training.corpora import Clip, LoadReport, corpus_labels, labels_of
from training.features import clip_audio16k
from training.plots import _pyplot

log = logging.getLogger(__name__)

CORPUS_COLOURS = {
    "ravdess": "#1f77b4",
    "savee": "#ff7f0e",
    "tess": "#2ca02c",
    "crema_d": "#d62728",
    "nemo": "#9467bd",
    "turev": "#8c564b",
    "esd": "#e377c2",
    "ased": "#17becf",
}


def _corpora(clips: list[Clip]) -> list[str]:
    return sorted({c.corpus for c in clips})


def plot_counts(clips: list[Clip], path: Path) -> None:
    plt = _pyplot()
    corpora = _corpora(clips)
    labels = labels_of(clips)
    counts = Counter((c.corpus, c.label) for c in clips)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / len(corpora)
    for i, corpus in enumerate(corpora):
        values = [counts[(corpus, e)] for e in labels]
        x = np.arange(len(labels)) + (i - (len(corpora) - 1) / 2) * width
        ax.bar(x, values, width, label=corpus, color=CORPUS_COLOURS.get(corpus))
        for xi, v in zip(x, values, strict=True):
            if not v:
                ax.text(xi, 0, "-", ha="center", va="bottom", fontsize=9, color=CORPUS_COLOURS.get(corpus, "#333"))
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("clips")
    ax.set_title("Clips per emotion and corpus: '-' is a label the corpus does not have (not evidence against it in training)", fontsize=9)
    ax.legend(fontsize=8, ncol=len(corpora), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_durations(clips: list[Clip], path: Path, window_s: float) -> None:
    """One box per corpus against the model's window: a clip shorter than the window is repeated to fill it."""
    plt = _pyplot()
    corpora = _corpora(clips)
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(corpora) + 1.4))
    data = [[c.duration_s for c in clips if c.corpus == corpus] for corpus in corpora]
    box = ax.boxplot(data, vert=False, widths=0.6, patch_artist=True, showfliers=False)
    for patch, corpus in zip(box["boxes"], corpora, strict=True):
        patch.set_facecolor(CORPUS_COLOURS.get(corpus, "#999"))
        patch.set_alpha(0.6)
    shorter = [100 * np.mean(np.asarray(d) < window_s) for d in data]
    ax.set_yticks(range(1, len(corpora) + 1), [f"{c}  ({s:.0f} % shorter)" for c, s in zip(corpora, shorter, strict=True)], fontsize=8)
    ax.axvline(window_s, color="k", linestyle="--", linewidth=1)
    ax.text(window_s, len(corpora) + 0.45, f" model window {window_s:g} s", fontsize=8, va="top")
    ax.set_xlabel("clip duration (s); boxes: quartiles, whiskers: 1.5 IQR")
    ax.set_title("Clip lengths: the share of each corpus shorter than one window is repeated to fill it", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_examples(clips: list[Clip], path: Path, speaker: str | None = None) -> str:
    """Waveform, spectrogram and MFCC of one clip per emotion from one speaker (RAVDESS if present)."""
    plt = _pyplot()
    if speaker is None:
        speakers = Counter(c.speaker for c in clips if c.corpus == "ravdess") or Counter(c.speaker for c in clips)
        speaker = sorted(speakers)[0]
    mine = [c for c in clips if c.speaker == speaker]
    chosen = [next((c for c in mine if c.label == e), None) for e in labels_of(mine)]
    chosen = [c for c in chosen if c is not None]
    spec_frontend = Frontend(FrontendSettings(n_mels=64, n_ceps=64))  # a finer log-mel view for the eye
    mfcc_frontend = Frontend(FrontendSettings())
    fig, axes = plt.subplots(3, len(chosen), figsize=(2.3 * len(chosen), 6.2), squeeze=False)
    for col, clip in enumerate(chosen):
        audio = clip_audio16k(clip.path)
        t = np.arange(audio.size) / 16000
        peak = float(np.max(np.abs(audio)))
        axes[0, col].plot(t, audio, linewidth=0.3, color="#333")
        axes[0, col].set_ylim(-1.1 * peak, 1.1 * peak)
        axes[0, col].set_title(f"{clip.label}\npeak {20 * np.log10(peak):.0f} dBFS", fontsize=9)
        # log-mel energies: undo the orthonormal DCT of a full-width (n_ceps = n_mels) MFCC
        logmel = spec_frontend.mfcc(audio) @ spec_frontend._dct.T
        axes[1, col].imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, t[-1], 0, 64))
        mfcc = mfcc_frontend.mfcc(audio)[:, 1:]
        z = (mfcc - mfcc.mean(0)) / (mfcc.std(0) + 1e-5)  # per coefficient, so every row shows its own movement
        axes[2, col].imshow(z.T, origin="lower", aspect="auto", cmap="coolwarm", vmin=-3, vmax=3, extent=(0, t[-1], 1, 40))
        for row in range(3):
            axes[row, col].tick_params(labelsize=6)
            if col and row:
                axes[row, col].set_yticklabels([])
        axes[2, col].set_xlabel("s", fontsize=7)
    axes[0, 0].set_ylabel("waveform", fontsize=8)
    axes[1, 0].set_ylabel("log-mel band", fontsize=8)
    axes[2, 0].set_ylabel("MFCC c1-c39 (z per row)", fontsize=8)
    fig.suptitle(f"One sentence per emotion, speaker {speaker}: the same words, different voices", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return speaker


def summary_table(clips: list[Clip], report: LoadReport | None, window_s: float = 3.0) -> str:
    corpora = _corpora(clips)
    counts = Counter((c.corpus, c.label) for c in clips)
    lines = ["# Data summary", "", "| emotion | " + " | ".join(corpora) + " | total |", "|---|" + "---:|" * (len(corpora) + 1)]
    for e in labels_of(clips):
        row = [counts[(c, e)] for c in corpora]
        lines.append(f"| {e} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    lines.append("| **clips** | " + " | ".join(str(sum(c.corpus == k for c in clips)) for k in corpora) + f" | {len(clips)} |")
    lines += [
        "",
        "| corpus | language | speakers | female / male / unknown | labels | duration median (min-max) s | total minutes | sample rates |",
        "|---|---|---:|---|---|---|---:|---|",
    ]
    per_corpus = corpus_labels(clips)
    for k in corpora:
        mine = [c for c in clips if c.corpus == k]
        g = Counter(c.gender for c in {c.speaker: c for c in mine}.values())
        d = np.array([c.duration_s for c in mine])
        rates = ", ".join(f"{r} Hz ({n})" for r, n in Counter(c.rate_hz for c in mine).most_common())
        language = ", ".join(sorted({c.language for c in mine if c.language})) or "-"
        lines.append(
            f"| {k} | {language} | {len({c.speaker for c in mine})} | {g['female']} / {g['male']} / {g['unknown']} | {len(per_corpus[k])} | "
            f"{np.median(d):.2f} ({d.min():.2f}-{d.max():.2f}) | {d.sum() / 60:.1f} | {rates} |"
        )
    shorter = ", ".join(f"{k} {100 * np.mean([c.duration_s < window_s for c in clips if c.corpus == k]):.0f} %" for k in corpora)
    lines += ["", f"The model's window is {window_s:g} s; clips shorter than it are repeated to fill one window: {shorter}."]
    if report is not None and report.lines():
        lines += ["", "Loader report:", "", *[f"- {line}" for line in report.lines()]]
    return "\n".join(lines) + "\n"


def explore(clips: list[Clip], out: str | Path, report: LoadReport | None = None, window_s: float | None = None) -> Path:
    """Write the PNGs and summary.md into ``out``; returns the summary's path. ``window_s`` defaults to the model's (TrainSettings)."""
    if window_s is None:
        from training.settings import TrainSettings

        window_s = TrainSettings().window_s
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_counts(clips, out / "counts.png")
    plot_durations(clips, out / "durations.png", window_s)
    speaker = plot_examples(clips, out / "examples.png")
    log.info("example clips from %s", speaker)
    summary = out / "summary.md"
    summary.write_text(summary_table(clips, report, window_s))
    return summary
