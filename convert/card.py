"""MODEL_CARD.md: what the model is, what it was trained and judged on, how well it does, where not to trust it, and whose data it is."""

from __future__ import annotations

from pathlib import Path

from edge.model import ModelContract
from training.licences import CORPUS_TERMS, NAMES
from training.split import TEST, TRAIN, VALIDATION

LANGUAGES = {"en": "English", "pl": "Polish", "tr": "Turkish", "am": "Amharic", "zh": "Mandarin"}
WEAK_UA = 0.45  # a held-out corpus below this restricted UA is named as one where the model should not be trusted


def _scores_table(metrics: dict, role: str) -> list[str]:
    rows = [
        "| corpus | clips | float UA | int8 UA | int8 UA, restricted to the corpus's labels | int8 WA |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    f, q = metrics[role]["float"], metrics[role]["int8"]
    for name in f:
        if name == "mean":
            continue
        rows.append(
            f"| {name} | {f[name]['clips']} | {f[name]['ua'] * 100:.1f} | {q[name]['ua'] * 100:.1f} | "
            f"{q[name].get('ua_restricted', q[name]['ua']) * 100:.1f} | {q[name]['wa'] * 100:.1f} |"
        )
    return rows


def _data_table(contract: ModelContract, data: dict, corpora: list[str] | None = None) -> list[str]:
    per_corpus = contract.training_data.get("corpus_labels", {})
    rows = ["| corpus | language | speakers trained on | held out | labels | terms |", "|---|---|---:|---|---|---|"]
    for corpus in corpora if corpora is not None else contract.training_data.get("corpora", []):
        trained = [s for s in data[TRAIN]["speakers"] if s.startswith(f"{corpus}_")]
        held = [
            s[len(corpus) + 1 :]
            for role in (VALIDATION, TEST)
            for s in data.get(role, {}).get("speakers", [])
            if s.startswith(f"{corpus}_")
        ]
        language = LANGUAGES.get(contract.training_data.get("corpus_languages", {}).get(corpus, ""), "")
        rows.append(
            f"| {NAMES.get(corpus, corpus)} | {language} | {len(trained)} | {', '.join(held) or '-'} | "
            f"{', '.join(per_corpus.get(corpus, []))} | {CORPUS_TERMS.get(corpus, ('', 'owner'))[1]} |"
        )
    return rows


def _crossval_lines(crossval: dict | None, base: dict | None = None) -> list[str]:
    if not crossval and base and base.get("leave_one_corpus_out"):
        crossval, whose = base["leave_one_corpus_out"], f"Of the base model, {base['name']}, before adaptation: e"
    elif not crossval:
        return ["No leave-one-corpus-out figures were given to the converter (`python -m convert --crossval FILE`)."]
    else:
        whose = "E"
    differ = crossval.get("settings_differ") or []
    same = f"with these settings but {', '.join(differ)}" if differ else "with the same settings"
    lines = [
        f"{whose}ach corpus held out whole in turn (RAVDESS by speaker folds), one network trained on the rest {same} "
        "(`python -m training crossval`); restricted = the argmax over the labels that corpus has.",
        "",
        "| held out | clips | UA | restricted UA | restricted UA, each speaker enrolled |",
        "|---|---:|---:|---:|---:|",
    ]

    def enrolled(c: dict) -> str:
        return f"{c['ua_restricted_profile'] * 100:.1f}" if "ua_restricted_profile" in c else "-"

    for name, c in crossval["corpora"].items():
        lines.append(f"| {NAMES.get(name, name)} | {c['clips']} | {c['ua'] * 100:.1f} | {c['ua_restricted'] * 100:.1f} | {enrolled(c)} |")
    m = crossval["mean"]
    lines.append(f"| **mean** | | **{m['ua'] * 100:.1f}** | **{m['ua_restricted'] * 100:.1f}** | **{enrolled(m)}** |")
    lines += [
        "",
        "Enrolled: each held-out speaker's own unlabelled clips give the statistics the model normalises with (`python -m edge enroll`).",
    ]
    return lines


def adaptation_text(a: dict) -> str:
    """How a model was adapted (``report["adapt"]`` of ``python -m training adapt``), as a clause of the card."""
    stats = (
        f"statistics of the window itself (level, spread and movement of each coefficient; weight {a.get('stats_l2', 0):g})"
        if a.get("window_stats")
        else ""
    )
    if a.get("layers", "all") != "head":
        tuned = f"{a['layers']} layers fine-tuned, {a['epochs']} epochs at learning rate {a['learning_rate']:g}"
        return tuned + (f", then the last layer refitted jointly with a new input to it, {stats}" if stats else "")
    return (
        f"each network's last layer refitted on its frozen embeddings, held to the trained one with weight {a.get('head_l2', 0):g}"
        + (f", jointly with a new input to it, {stats}" if stats else "")
        + (
            f", from windows with and without their speaker's own statistics ({a['profiled_speakers']} speakers)"
            if a.get("profiled_speakers")
            else ""
        )
    )


def write_card(path: Path, contract: ModelContract, report: dict, crossval: dict | None = None) -> None:
    """Write the card beside the model."""
    m = contract.metrics
    data = report["data"]
    s = report["settings"]
    base = contract.training_data.get("adapted_from")
    languages = ", ".join(LANGUAGES.get(x, x) for x in contract.training_data.get("languages", []))
    weak = [name for name, c in (crossval or {}).get("corpora", {}).items() if c["ua_restricted"] < WEAK_UA]
    lines = [
        f"# Model card: {contract.name}",
        "",
        "Speech emotion recognition for Raspberry-Pi-class devices: a small CNN over MFCC windows, full int8.",
        "",
        "## What it does",
        f"- Input: a {contract.window_s:g} s window ({contract.window_frames} frames x {contract.frontend.n_ceps} MFCC) from the device's "
        f"own frontend (`edge.frontend`, {contract.frontend.n_mels} mel filters, 25 ms frames every 10 ms), "
        f"normalised `{contract.normalization.kind}`; a new window every {contract.hop_s:g} s.",
        f"- Output: probabilities over {', '.join(contract.labels)}.",
        f"- A clip's verdict is the mean over its speech windows (a window holds speech when at least "
        f"{contract.speech.min_speech_ratio:g} of its frames do). Network `{s['arch']}` with `{s.get('pooling', 'avg')}` pooling"
        + (f", {s['ensemble']} of them averaged" if s.get("ensemble", 1) > 1 else "")
        + f", {m['parameters']} parameters, {m['size_bytes'] / 1024:.0f} KB int8, "
        f"{m['latency_ms_per_window_1_thread']:.2f} ms per window on one core of the build machine.",
        "",
        "## Data",
        *(
            _adapted_data(contract, base, data)
            if base
            else [
                f"Acted emotional speech in {languages or 'the languages of the corpora'}: {len(data[TRAIN]['speakers'])} speakers trained on. "
                "Speaker-independent: validation and test speakers never appear in training.",
                "",
                *_data_table(contract, data),
            ]
        ),
        "",
        "Labels a corpus does not have were not counted against them: each window's loss was taken over its own corpus's labels "
        + ("(`corpus_labels`)." if s.get("corpus_labels", True) else "(off for this model).")
        + f" Training clips were augmented ({s['augment_variants']} copies each: noise, gain, time shift, pitch, tempo)"
        + (
            f"; each training window's mel axis was warped by {s['vtlp_range'][0]:g}-{s['vtlp_range'][1]:g}"
            if tuple(s.get("vtlp_range", (1, 1))) != (1, 1)
            else ""
        )
        + (f"; and coloured by a random microphone and room curve of up to {s['channel_db']:g} dB" if s.get("channel_db") else "")
        + ". "
        + (
            f"{s['profile_p'] * 100:.0f} % of the training windows were normalised with their own speaker's statistics (as a voice "
            "profile from `python -m edge enroll` gives them), the rest with the population's, so the model serves with and "
            "without a profile. "
            if s.get("profile_p")
            else ""
        )
        + {
            "corpus": "Labels were weighted to count equally within each corpus, each corpus keeping its share of the windows.",
            "global": "Labels were weighted to count equally over all training windows.",
        }.get(s.get("class_weights", "none"), "Labels were not weighted."),
        "",
        "## How well it does on corpora it never heard",
        "",
        *_crossval_lines(crossval, base),
        "",
        "## Metrics of this model (clip level, held-out speakers)",
        "",
        *_scores_table(m, VALIDATION),
        "",
        f"int8 vs float top-1 agreement on validation clips: {m['int8_float_agreement'][VALIDATION] * 100:.1f} %."
        + (
            " These are the adaptation clips themselves: no speaker was held out, so they say nothing of new voices."
            if m.get("validation_is_training")
            else ""
        ),
    ]
    if m.get("adapted"):
        a = m["adapted"]
        how = adaptation_text(a)
        lines += [
            "",
            f"Adapted from `{a['base']}` on the clips above: {how}; {a['augment_variants']} augmented copies per clip "
            "(`python -m training adapt`).",
        ]
    if TEST in m:
        lines += ["", "Test speakers (RAVDESS 15 and 16, looked at once):", "", *_scores_table(m, TEST)]
    lines += [
        "",
        "## Where it should not be trusted",
        "- Spontaneous emotion: every corpus is *acted* (read sentences or words in a studio); real emotion is subtler.",
        f"- Other languages and cultures than {languages or 'those trained on'}, children, elderly voices beyond TESS's one speaker, "
        "far-field microphones and heavy noise are untested or weak.",
        "- Calm is learnt from RAVDESS and TurEV-DB only; disgust from RAVDESS, SAVEE and TESS only (three English corpora).",
        "- Clips shorter than about 1 s (single words) carry little; the device repeats them to fill a window.",
    ]
    if weak:
        lines.append(
            "- Held-out corpora where it stayed below "
            f"{WEAK_UA * 100:.0f} % restricted UA: {', '.join(NAMES.get(w, w) for w in weak)}; expect as little on voices like those."
        )
    lines += [
        "- Not for decisions about people (hiring, policing, health, insurance): an emotion label from a voice is a guess, "
        "and trends of one person are not a diagnosis.",
        "",
        "## Licence",
        contract.licence,
        "",
        *[
            f"- {NAMES.get(c, c)}: {CORPUS_TERMS[c][0]}. {CORPUS_TERMS[c][1]}."
            for c in contract.training_data.get("corpora", [])
            if c in CORPUS_TERMS
        ],
        "",
        f"Rebuild: {'`python -m training adapt` with the same manifest and base' if base else '`make model`'} (see training/README.md). "
        f"Contract: `{contract.name}.json` (sha256 {contract.sha256[:16]}…).",
        "",
    ]
    path.write_text("\n".join(lines))


def _adapted_data(contract: ModelContract, base: dict, data: dict) -> list[str]:
    """An adapted model's data: what its base was trained on, then the clips it was adapted on."""
    base_data = base["data"]
    base_corpora = sorted(base_data[TRAIN]["clips"])
    own = sorted(set(data[TRAIN]["clips"]) | set(data.get(VALIDATION, {}).get("clips", {})))
    clips = sum(data[TRAIN]["clips"].values())
    held = data.get(VALIDATION, {}).get("speakers", [])
    return [
        f"Adapted from {base['name']}, which was trained on {len(base_data[TRAIN]['speakers'])} speakers of acted emotional speech "
        "(speaker-independent: its validation and test speakers never appeared in its training):",
        "",
        *_data_table(contract, base_data, base_corpora),
        "",
        f"then adapted on {clips} labelled clips of {len(data[TRAIN]['speakers'])} speaker(s)"
        + (f", with {', '.join(held)} held out to score it" if held else ", none held out")
        + ":",
        "",
        *_data_table(contract, data, own),
    ]
