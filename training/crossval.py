"""Cross-validation: judge a setting on speakers and corpora the network never heard.

Two protocols, each one network per fold, trained on everything the fold does not hold out:

- ``corpora`` (leave one corpus out, the default): every corpus but RAVDESS is held out whole in
  turn (SAVEE, TESS, nEMO, TurEV-DB, ESD, ASED), and RAVDESS by speaker folds, one fold held out
  beside each corpus (pairs of a male and a female actor; RAVDESS needs the folds because
  it is the only corpus with calm). A corpus's score is its clips' UA when it was held out,
  plain and restricted to its own labels; the headline is the mean restricted UA over the
  corpora, so a setting that wins on one corpus and loses on the others does not win.
- ``speakers``: RAVDESS speaker folds only, with SAVEE JK and TESS YAF validated alongside
  (the protocol of the earlier rounds, kept to compare with them).

RAVDESS actors 15 and 16 (the test pair) are in no fold and never trained on: they are looked
at once, for the shipped model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.corpora import Clip
from training.split import VALIDATION, Split

log = logging.getLogger(__name__)

PROTOCOLS = ("corpora", "speakers")
FOLDED = "ravdess"  # the corpus held out by speaker folds rather than whole


def speaker_folds(clips: Sequence[Clip], folds: int = 3, base: Split | None = None) -> list[Split]:
    """Speaker folds over RAVDESS for tuning: each fold validates on a share of the actors.

    The actors that are not test speakers of ``base`` are taken in order as (odd, even) pairs,
    one male and one female, and pair i goes to fold i % folds; with actors 1-14 and 17-20
    that is (1, 2, 7, 8, 13, 14), (3, 4, 9, 10, 17, 18), (5, 6, 11, 12, 19, 20). Each fold
    also validates on base's other validation speakers (SAVEE JK, TESS YAF) and keeps its test
    speakers, so every figure stays speaker-independent and the test actors stay unseen.
    """
    base = base or Split()
    return [
        Split(validation=tuple(actors) + tuple(s for s in base.validation if not s.startswith(f"{FOLDED}_")), test=base.test)
        for actors in _ravdess_folds(clips, folds, base)
    ]


def _ravdess_folds(clips: Sequence[Clip], folds: int, base: Split) -> list[list[str]]:
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    actors = sorted({c.speaker for c in clips if c.corpus == FOLDED and c.speaker not in base.test})
    pairs = [actors[i : i + 2] for i in range(0, len(actors), 2)]  # a female and a male actor in each
    if len(pairs) < folds:
        raise ValueError(
            f"{len(actors)} RAVDESS actors outside the test speakers make {len(pairs)} pairs, too few for {folds} folds "
            f"(each fold holds out whole pairs); use --folds {len(pairs)} or fewer"
        )
    return [[a for i, pair in enumerate(pairs) if i % folds == k for a in pair] for k in range(folds)]


def corpus_folds(clips: Sequence[Clip], folds: int = 3, base: Split | None = None) -> list[Split]:
    """Leave one corpus out: fold i holds out the i-th corpus (all its speakers) and RAVDESS speaker fold i % folds.

    There are max(corpora other than RAVDESS, folds) runs, so every corpus and every RAVDESS fold is
    held out at least once (with six other corpora and three folds, each RAVDESS fold twice).
    """
    base = base or Split()
    others = sorted({c.corpus for c in clips} - {FOLDED})
    ravdess = _ravdess_folds(clips, folds, base) if any(c.corpus == FOLDED for c in clips) else []
    runs = max(len(others), len(ravdess))
    if runs < 2:
        raise ValueError("leaving one corpus out needs at least two corpora (or RAVDESS with its speaker folds)")
    out = []
    for i in range(runs):
        held = sorted({c.speaker for c in clips if i < len(others) and c.corpus == others[i] and c.speaker not in base.test})
        if ravdess:
            held += ravdess[i % len(ravdess)]
        out.append(Split(validation=tuple(held), test=base.test))
    return out


def summarise(rows: list[dict], protocol: str) -> dict:
    """Per held-out corpus, its UA and restricted UA over the folds that held it out, and their mean over corpora."""
    per: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        profiled = row.get("float_with_profile", {}).get(VALIDATION, {})
        for name, s in row["float"].get(VALIDATION, {}).items():
            if name in ("all", "mean"):
                continue
            if protocol == "corpora" and name != FOLDED and name not in row["held_out_whole"]:
                continue
            entry = per.setdefault(name, {"ua": [], "ua_restricted": [], "wa": [], "clips": [], "ua_restricted_profile": []})
            for key in ("ua", "ua_restricted", "wa"):
                entry[key].append(s[key])
            entry["clips"].append(s["clips"])
            if name in profiled:
                entry["ua_restricted_profile"].append(profiled[name]["ua_restricted"])
    corpora = {}
    for name, v in sorted(per.items()):
        corpora[name] = {
            "ua": round(float(np.mean(v["ua"])), 4),
            "ua_restricted": round(float(np.mean(v["ua_restricted"])), 4),
            "wa": round(float(np.mean(v["wa"])), 4),
            "per_fold_ua_restricted": v["ua_restricted"],
            "clips": int(np.sum(v["clips"])),
        }
        if len(v["ua_restricted_profile"]) == len(v["ua_restricted"]):
            corpora[name]["ua_restricted_profile"] = round(float(np.mean(v["ua_restricted_profile"])), 4)
    keys = ["ua", "ua_restricted", "wa"] + (
        ["ua_restricted_profile"] if all("ua_restricted_profile" in c for c in corpora.values()) else []
    )
    mean = {k: round(float(np.mean([c[k] for c in corpora.values()])), 4) for k in keys} if corpora else {}
    return {"corpora": corpora, "mean": mean}


def run(
    clips: Sequence[Clip],
    settings,
    out: str | Path,
    cache_dir: str | Path = "cache",
    protocol: str = "corpora",
    folds: int = 3,
    workers: int = 2,
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Train one network (or settings.ensemble) per fold and write crossval.json; returns it.

    A fold whose run folder already holds a report for the same settings and split is read, not
    trained again, so an interrupted cross-validation resumes where it stopped.
    """
    from training.train import load_features, train

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose {' or '.join(PROTOCOLS)}")
    splits = corpus_folds(clips, folds) if protocol == "corpora" else speaker_folds(clips, folds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    union = Split(validation=(), test=splits[0].test)
    features = None
    rows = []
    for k, split in enumerate(splits):
        whole = sorted({c.corpus for c in clips if c.speaker in split.validation} - {FOLDED}) if protocol == "corpora" else []
        described = ", ".join(whole + ([f"{FOLDED} {_actors(split)}"] if _actors(split) else []))
        print(f"fold {k + 1} of {len(splits)}: holding out {described}", flush=True)
        done = out / f"fold{k}" / "report.json"
        report = json.loads(done.read_text()) if done.exists() else None
        if report is None or report.get("settings") != _as_json(settings.to_dict()) or report.get("split") != _as_json(split.to_dict()):
            if features is None:  # every fold's training clips are the union's training clips
                features = load_features(clips, settings, cache_dir, union, workers, progress)
            report = train(clips, settings, out / f"fold{k}", cache_dir, split, workers, threads, progress, features)
        else:
            print("  (read from an earlier run)", flush=True)
        rows.append(
            {
                "fold": k,
                "validation": list(split.validation),
                "held_out_whole": whole,
                "float": report["float"],
                "float_with_profile": report.get("float_with_profile", {}),
            }
        )
        _print_fold(report["float"].get(VALIDATION, {}), whole, protocol)
    summary = summarise(rows, protocol)
    result = {"protocol": protocol, "settings": settings.to_dict(), "folds": rows, **summary}
    (out / "crossval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"runs and crossval.json in {out}")
    return result


def _as_json(value):
    """What ``value`` reads back as from a report (tuples become lists)."""
    return json.loads(json.dumps(value))


def _actors(split: Split) -> str:
    return ",".join(s.split("_", 1)[1] for s in split.validation if s.startswith(f"{FOLDED}_"))


def _print_fold(scores: dict, whole: list[str], protocol: str) -> None:
    for name, s in scores.items():
        if name in ("all", "mean") or (protocol == "corpora" and name != FOLDED and name not in whole):
            continue
        print(f"  {name:<8} UA {s['ua']:.3f}  restricted {s['ua_restricted']:.3f}  ({s['clips']} clips)", flush=True)


def table(result: dict) -> str:
    """The summary as a markdown table: one row per held-out corpus, then the mean."""
    profiled = "ua_restricted_profile" in result["mean"]
    lines = [
        "| held out | clips | UA | restricted UA | restricted UA per fold |"
        + (" restricted UA, each speaker enrolled |" if profiled else ""),
        "|---|---:|---:|---:|---|" + ("---:|" if profiled else ""),
    ]
    for name, c in result["corpora"].items():
        per_fold = " ".join(f"{v:.3f}" for v in c["per_fold_ua_restricted"])
        extra = f" {c['ua_restricted_profile']:.3f} |" if profiled else ""
        lines.append(f"| {name} | {c['clips']} | {c['ua']:.3f} | {c['ua_restricted']:.3f} | {per_fold} |{extra}")
    if result["mean"]:
        m = result["mean"]
        extra = f" **{m['ua_restricted_profile']:.3f}** |" if profiled else ""
        lines.append(f"| **mean** | | **{m['ua']:.3f}** | **{m['ua_restricted']:.3f}** | |{extra}")
    return "\n".join(lines)


def replace_ensemble(settings, pairs: Sequence[str]):
    """One network per fold unless --set ensemble=N asks otherwise: folds are for comparing settings."""
    if any(pair.startswith("ensemble=") for pair in pairs):
        return settings
    return dataclasses.replace(settings, ensemble=1)
