"""Clip lists as CSV files: a user's manifest read in, and the clip table written and read back.

A manifest is the user's own list (``path,label[,speaker][,corpus]``, paths relative to the CSV):
every row must be usable, and the first that is not raises ManifestError naming the row and the
value. The clip table (TABLE_COLUMNS) is what ``python -m training load`` writes for the clips
found, and what ``--table`` reads back instead of walking the folders again.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from edge.model import LABEL
from training.corpora import EMOTIONS, LANGUAGES, Clip, LoadReport, probe

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("path", "corpus", "speaker", "gender", "label", "duration_s", "rate_hz", "language")

# Words a user's manifest may use for the eight labels.
LABEL_ALIASES = {
    **{e: e for e in EMOTIONS},
    "fear": "fearful",
    "afraid": "fearful",
    "anger": "angry",
    "mad": "angry",
    "surprise": "surprised",
    "joy": "happy",
    "happiness": "happy",
    "sadness": "sad",
    "disgusted": "disgust",
    "calmness": "calm",
}


class ManifestError(ValueError):
    """A manifest row that cannot be used, named by file, row and value."""


def load_manifest(path: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """A CSV of ``path,label[,speaker][,corpus]`` (header optional; paths relative to the CSV).

    With a header, the optional columns ``gender`` and ``language`` are read as well.

    Any row that cannot be used raises ManifestError naming the row and the value, because a
    user's own list is meant to be exactly right, unlike a corpus's thousands of names.
    """
    report = report if report is not None else LoadReport()
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(
            f'manifest {path} is not UTF-8 text: save it as "CSV UTF-8" (a spreadsheet\'s export) or give a .csv file'
        ) from None
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    # A spreadsheet set to a language that writes decimal commas exports CSV with semicolons (or tabs).
    delimiter = next((d for d in (";", "\t") if d in first_line and "," not in first_line), ",")
    numbered = [
        (n, row) for n, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1) if row and any(c.strip() for c in row)
    ]
    if numbered and [c.strip().lower() for c in numbered[0][1][:2]] == ["path", "label"]:
        header, numbered = [c.strip().lower() for c in numbered[0][1]], numbered[1:]
    else:
        header = ["path", "label", "speaker", "corpus"]
        if numbered and _looks_like_header(numbered[0][1], path.parent):
            raise ManifestError(
                f"{path.name} row 1 looks like a header ({','.join(numbered[0][1])}): "
                "the header must be path,label[,speaker][,corpus], or leave it out"
            )
    if not numbered:
        raise ManifestError(f"manifest {path} has no clips: one row per clip, path,label[,speaker][,corpus]")
    clips, rows_of, own_labels = [], {}, set()
    for number, row in numbered:
        values = dict(zip(header, (c.strip() for c in row), strict=False))
        where = f"{path.name} row {number}"
        if len(row) < 2 or not values.get("path") or not values.get("label"):
            raise ManifestError(f"{where}: expected at least path and label, got {','.join(row)!r}")
        label = LABEL_ALIASES.get(values["label"].lower(), values["label"].lower())
        if not LABEL.match(label):
            raise ManifestError(
                f"{where}: label {values['label']!r} is not a name of letters, digits, '_' or '-' "
                f"(the eight emotions are {', '.join(EMOTIONS)}; aliases such as fear, surprise, joy are understood)"
            )
        if label not in EMOTIONS and label not in own_labels:  # a label of the user's own, or a typo: say which, once
            own_labels.add(label)
            log.warning(
                "%s: label %r is not one of the eight emotions (%s): it becomes a label of its own",
                where,
                values["label"],
                ", ".join(EMOTIONS),
            )
        audio = Path(values["path"]).expanduser()
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise ManifestError(f"{where}: audio file {values['path']!r} not found (looked for {audio})")
        corpus = values.get("corpus") or "manifest"
        speaker = f"{corpus}_{values.get('speaker') or 'unknown'}"
        probed = probe(audio, corpus, report)
        if probed is None:
            raise ManifestError(f"{where}: {values['path']!r} is not a readable audio file (WAV, FLAC, Ogg Opus)")
        if audio.resolve() in rows_of:  # it would count twice as much, and one of the two rows is a mistake
            raise ManifestError(f"{where}: {values['path']!r} is already row {rows_of[audio.resolve()]}; give each clip once")
        rows_of[audio.resolve()] = number
        gender = values.get("gender", "").lower() or "unknown"
        language = values.get("language", "").lower() or LANGUAGES.get(corpus, "")
        clips.append(Clip(str(audio.resolve()), corpus, speaker, gender, label, round(probed[0], 4), probed[1], language))
        report.loaded[corpus] = report.loaded.get(corpus, 0) + 1
    return clips


def _looks_like_header(row: list[str], folder: Path) -> bool:
    """A first row of words, not a clip: no audio file by its first cell's name, and no label in its second."""
    cells = [c.strip().lower() for c in row]
    if len(cells) < 2 or "." in cells[0] or "/" in cells[0] or (folder / row[0].strip()).exists():
        return False
    return cells[1] not in LABEL_ALIASES


def save_table(clips: Iterable[Clip], path: str | os.PathLike) -> None:
    """Write the clip table as CSV with the columns of TABLE_COLUMNS."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TABLE_COLUMNS)
        for clip in clips:
            writer.writerow(dataclasses.astuple(clip))


def load_table(path: str | os.PathLike) -> list[Clip]:
    """Read a table written by save_table (tables written before the language column still load)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(TABLE_COLUMNS) - {"language"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a clip table (missing columns {', '.join(sorted(missing))})")
        return [
            Clip(
                r["path"],
                r["corpus"],
                r["speaker"],
                r["gender"],
                r["label"],
                float(r["duration_s"]),
                int(r["rate_hz"]),
                r.get("language") or LANGUAGES.get(r["corpus"], ""),
            )
            for r in reader
        ]
