"""Clip lists as CSV files: a user's manifest read in, and the clip table written and read back.

A manifest is the user's own list (``path,label[,speaker][,corpus]``, paths relative to the CSV):
every row must be usable, and the first that is not raises ManifestError naming the row and the
value. The clip table (TABLE_COLUMNS) is what ``python -m training load`` writes for the clips
found, and what ``--table`` reads back instead of walking the folders again.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from edge.model import LABEL
from training.corpora import EMOTIONS, LANGUAGES, Clip, LoadReport, probe

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
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        header, rows, first = [c.strip().lower() for c in rows[0]], rows[1:], 2
    else:
        header, first = list(("path", "label", "speaker", "corpus")), 1
    clips = []
    for number, row in enumerate(rows, start=first):
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
        audio = Path(values["path"]).expanduser()
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise ManifestError(f"{where}: audio file {values['path']!r} not found (looked for {audio})")
        corpus = values.get("corpus") or "manifest"
        speaker = f"{corpus}_{values.get('speaker') or 'unknown'}"
        probed = probe(audio, corpus, report)
        if probed is None:
            raise ManifestError(f"{where}: {values['path']!r} is not a readable audio file (WAV, FLAC, Ogg Opus)")
        gender = values.get("gender", "").lower() or "unknown"
        language = values.get("language", "").lower()
        clips.append(Clip(str(audio.resolve()), corpus, speaker, gender, label, round(probed[0], 4), probed[1], language))
        report.loaded[corpus] = report.loaded.get(corpus, 0) + 1
    return clips


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
