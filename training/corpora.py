"""Corpus loaders: RAVDESS, CREMA-D, SAVEE, TESS and CSV manifests into one table of clips.

Every loader walks a folder in either the original layout (WAV) or the FLAC copies in
``../shared/data``, reads the label, speaker and gender from the names, and returns
``Clip`` rows plus a ``LoadReport`` that counts what it could not use (malformed names,
unreadable files, RAVDESS song clips) instead of failing on them. Speaker ids carry the
corpus as a prefix (``ravdess_07``, ``savee_DC``) so they are unique across corpora.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edge.model import EMOTIONS

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
CORPORA = ("ravdess", "crema_d", "savee", "tess")
TABLE_COLUMNS = ("path", "corpus", "speaker", "gender", "label", "duration_s", "rate_hz")

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SAVEE_EMOTIONS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprised"}
TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
}
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

RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
SAVEE_FLAT_NAME = re.compile(r"^([A-Z]{2})_([a-z]{1,2})(\d\d)$")
SAVEE_ORIGINAL_NAME = re.compile(r"^([a-z]{1,2})(\d\d)$")
TESS_FOLDER = re.compile(r"^([A-Za-z]{3})_(.+)$")


@dataclass(frozen=True)
class Clip:
    """One labelled recording: a row of the clip table."""

    path: str
    """Absolute path of the audio file."""
    corpus: str
    """ravdess, crema_d, savee, tess, or a manifest's corpus name."""
    speaker: str
    """Speaker id, prefixed with the corpus so that it is unique across corpora."""
    gender: str
    """male, female or unknown."""
    label: str
    """One of edge.model.EMOTIONS."""
    duration_s: float = 0.0
    """Length of the file in seconds."""
    rate_hz: int = 0
    """Sample rate of the file."""


@dataclass
class LoadReport:
    """What a loader found and what it could not use, per corpus."""

    loaded: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, list[str]] = field(default_factory=dict)
    """File names that do not follow the corpus's naming, per corpus."""
    unreadable: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    """Clips deliberately left out (RAVDESS song), per corpus."""

    def merge(self, other: LoadReport) -> LoadReport:
        for name in ("loaded", "skipped"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine[k] = mine.get(k, 0) + v
        for name in ("malformed", "unreadable"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine.setdefault(k, []).extend(v)
        return self

    def lines(self) -> list[str]:
        """One line per corpus, for logs and the exploration summary."""
        out = []
        for corpus in sorted(set(self.loaded) | set(self.malformed) | set(self.unreadable) | set(self.skipped)):
            bad, broken = self.malformed.get(corpus, []), self.unreadable.get(corpus, [])
            text = f"{corpus}: {self.loaded.get(corpus, 0)} clips"
            if self.skipped.get(corpus):
                text += f", {self.skipped[corpus]} skipped (song)"
            if bad:
                text += f", {len(bad)} malformed names (e.g. {Path(bad[0]).name})"
            if broken:
                text += f", {len(broken)} unreadable (e.g. {Path(broken[0]).name})"
            out.append(text)
        return out


class ManifestError(ValueError):
    """A manifest row that cannot be used, named by file, row and value."""


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _probe(path: Path, corpus: str, report: LoadReport) -> tuple[float, int] | None:
    """(duration_s, rate_hz) from the file header; None (and counted) if unreadable."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError) as exc:  # LibsndfileError is a RuntimeError
        log.debug("unreadable %s: %s", path, exc)
        report.unreadable.setdefault(corpus, []).append(str(path))
        return None
    return float(info.frames) / info.samplerate, int(info.samplerate)


def _finish(rows: list[tuple[Path, str, str, str]], corpus: str, report: LoadReport) -> list[Clip]:
    clips = []
    for path, speaker, gender, label in rows:
        probed = _probe(path, corpus, report)
        if probed is not None:
            clips.append(Clip(str(path.resolve()), corpus, speaker, gender, label, round(probed[0], 4), probed[1]))
    report.loaded[corpus] = report.loaded.get(corpus, 0) + len(clips)
    return clips


def _malformed(report: LoadReport, corpus: str, path: Path) -> None:
    report.malformed.setdefault(corpus, []).append(str(path))


def load_ravdess(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """RAVDESS speech: 03-01-EE-II-SS-RR-AA.(wav|flac); odd actors male, even female; song skipped."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        m = RAVDESS_NAME.match(path.stem)
        if not m or m.group(3) not in RAVDESS_EMOTIONS or int(m.group(7)) == 0:
            _malformed(report, "ravdess", path)
            continue
        if m.group(2) != "01":  # vocal channel 02 is song, with only six emotions
            report.skipped["ravdess"] = report.skipped.get("ravdess", 0) + 1
            continue
        actor = int(m.group(7))
        rows.append((path, f"ravdess_{actor:02d}", "male" if actor % 2 else "female", RAVDESS_EMOTIONS[m.group(3)]))
    return _finish(rows, "ravdess", report)


def _crema_d_genders(root: Path) -> dict[str, str]:
    """Actor id -> gender from VideoDemographics.csv beside the audio (or one of its parents)."""
    for folder in (root, *root.parents[:2]):
        found = sorted(folder.glob("VideoDemographics.csv"))
        if found:
            genders = {}
            with open(found[0], newline="", encoding="utf-8-sig") as f:
                for row in csv.DictReader(f):
                    sex = (row.get("Sex") or "").strip().lower()
                    genders[(row.get("ActorID") or "").strip()] = sex if sex in ("male", "female") else "unknown"
            return genders
    return {}


def load_crema_d(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """CREMA-D: AAAA_SSS_EEE_LL.wav (actor 1001-1091); gender from VideoDemographics.csv if present."""
    report = report if report is not None else LoadReport()
    root = Path(root)
    genders = _crema_d_genders(root)
    rows = []
    for path in _audio_files(root):
        m = CREMA_D_NAME.match(path.stem)
        if not m or m.group(3) not in CREMA_D_EMOTIONS:
            _malformed(report, "crema_d", path)
            continue
        actor = m.group(1)
        rows.append((path, f"crema_d_{actor}", genders.get(actor, "unknown"), CREMA_D_EMOTIONS[m.group(3)]))
    return _finish(rows, "crema_d", report)


def load_savee(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """SAVEE: flat SP_CCNN.(wav|flac) or the original AudioData/SP/CCNN.wav; four male speakers."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        flat = SAVEE_FLAT_NAME.match(path.stem)
        original = SAVEE_ORIGINAL_NAME.match(path.stem)
        if flat:
            speaker, code = flat.group(1), flat.group(2)
        elif original and re.fullmatch(r"[A-Z]{2}", path.parent.name):
            speaker, code = path.parent.name, original.group(1)
        else:
            _malformed(report, "savee", path)
            continue
        if code not in SAVEE_EMOTIONS:
            _malformed(report, "savee", path)
            continue
        rows.append((path, f"savee_{speaker}", "male", SAVEE_EMOTIONS[code]))
    return _finish(rows, "savee", report)


def _tess_label(text: str) -> str | None:
    return TESS_EMOTIONS.get(text.strip().lower().replace(" ", "_"))


def load_tess(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """TESS: <SPEAKER>_<word>_<emotion> inside <SPEAKER>_<emotion>/ (folder case varies); OAF and YAF, female."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        folder = TESS_FOLDER.match(path.parent.name)
        parts = path.stem.split("_")
        label = _tess_label(folder.group(2)) if folder else None
        if label is None and len(parts) >= 3:
            label = _tess_label(parts[-1])
        speaker = parts[0].upper() if len(parts) >= 3 and len(parts[0]) == 3 else (folder.group(1).upper() if folder else None)
        if label is None or speaker is None or not speaker.isalpha():
            _malformed(report, "tess", path)
            continue
        rows.append((path, f"tess_{speaker}", "female", label))
    return _finish(rows, "tess", report)


LOADERS = {"ravdess": load_ravdess, "crema_d": load_crema_d, "savee": load_savee, "tess": load_tess}


def corpus_of_folder(name: str) -> str | None:
    """Which corpus a folder name announces: 'RAVDESS', 'Crema-D', 'AudioWAV', 'savee', 'TESS Toronto...'."""
    key = re.sub(r"[^a-z]", "", name.lower())
    if "ravdess" in key:
        return "ravdess"
    if "crema" in key or key == "audiowav":
        return "crema_d"
    if "savee" in key:
        return "savee"
    if "tess" in key or "toronto" in key:
        return "tess"
    return None


def load_data(root: str | os.PathLike, corpora: Iterable[str] = CORPORA, report: LoadReport | None = None) -> list[Clip]:
    """Every known corpus found in the folders directly under ``root`` (e.g. ../shared/data)."""
    report = report if report is not None else LoadReport()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"the data folder {root} does not exist")
    wanted = set(corpora)
    clips: list[Clip] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        corpus = corpus_of_folder(folder.name)
        if corpus in wanted:
            log.info("loading %s from %s", corpus, folder)
            clips.extend(LOADERS[corpus](folder, report))
    return clips


def load_manifest(path: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """A CSV of ``path,label[,speaker][,corpus]`` (header optional; paths relative to the CSV).

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
        label = LABEL_ALIASES.get(values["label"].lower())
        if label is None:
            raise ManifestError(f"{where}: unknown label {values['label']!r}; use one of {', '.join(EMOTIONS)}")
        audio = Path(values["path"]).expanduser()
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise ManifestError(f"{where}: audio file {values['path']!r} not found (looked for {audio})")
        corpus = values.get("corpus") or "manifest"
        speaker = f"{corpus}_{values.get('speaker') or 'unknown'}"
        probed = _probe(audio, corpus, report)
        if probed is None:
            raise ManifestError(f"{where}: {values['path']!r} is not a readable WAV or FLAC file")
        clips.append(Clip(str(audio.resolve()), corpus, speaker, "unknown", label, round(probed[0], 4), probed[1]))
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
    """Read a table written by save_table."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(TABLE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a clip table (missing columns {', '.join(sorted(missing))})")
        return [
            Clip(r["path"], r["corpus"], r["speaker"], r["gender"], r["label"], float(r["duration_s"]), int(r["rate_hz"])) for r in reader
        ]
