"""Corpus loaders: RAVDESS, CREMA-D, SAVEE, TESS, nEMO, TurEV-DB, ESD and ASED into one list of ``Clip`` rows.

Every loader walks a folder in either the original layout (WAV) or the copies in
``../shared/data`` (FLAC, Ogg Opus), reads the label, speaker and gender from the names, and
returns ``Clip`` rows plus a ``LoadReport`` that counts what it could not use (malformed names,
unreadable files, RAVDESS song clips) instead of failing on them. Speaker ids carry the
corpus as a prefix (``ravdess_07``, ``savee_DC``, ``nemo_EB0``) so they are unique across corpora.

A corpus has its own label set (nEMO has no calm and no disgust, TurEV-DB four labels):
``corpus_labels`` reads it off the clips, and training treats a label a corpus lacks as
unknown for its clips, never as evidence against that label.

A user's CSV manifest and the saved clip table are ``training.manifest``.
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

log = logging.getLogger(__name__)

# The labels the built-in corpora are mapped to, in the order models have always listed them.
# A run's label set comes from its data (``labels_of``); a manifest may bring labels of its own.
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

AUDIO_SUFFIXES = (".wav", ".flac", ".opus", ".ogg")
CORPORA = ("ravdess", "crema_d", "savee", "tess", "nemo", "turev", "esd", "ased")
# The language spoken in each corpus (ISO 639-1); ESD's speakers 0001-0010 speak Mandarin.
LANGUAGES = {"ravdess": "en", "crema_d": "en", "savee": "en", "tess": "en", "nemo": "pl", "turev": "tr", "esd": "en", "ased": "am"}

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
NEMO_EMOTIONS = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprised",
}
NEMO_GENDERS = {"EB0": "female", "IC0": "female", "KD0": "female", "MK0": "female"}  # KS0, MP0, SM0, TP0, WR0 are male
# TurEV-DB's "sakin" is a quiet, relaxed delivery, which is what RAVDESS's actors were asked for as
# "calm" (distinct from their neutral): it maps to calm. That also gives calm a second corpus, so the
# model cannot learn calm as "sounds like a RAVDESS recording".
TUREV_EMOTIONS = {"angry": "angry", "calm": "calm", "happy": "happy", "sad": "sad"}
TUREV_CODES = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}  # kızgın, sakin, mutlu, hüzünlü
ESD_EMOTIONS = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprised"}
ASED_EMOTIONS = {"neutral": "neutral", "fearful": "fearful", "happy": "happy", "sad": "sad", "angry": "angry"}
ASED_CODES = {"n": "neutral", "f": "fearful", "h": "happy", "s": "sad", "a": "angry"}
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
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
SAVEE_FLAT_NAME = re.compile(r"^([A-Z]{2})_([a-z]{1,2})(\d\d)$")
SAVEE_ORIGINAL_NAME = re.compile(r"^([a-z]{1,2})(\d\d)$")
TESS_FOLDER = re.compile(r"^([A-Za-z]{3})_(.+)$")
NEMO_NAME = re.compile(r"^([A-Z]{2}\d)_([a-z]+)_(\d+)$")
TUREV_NAME = re.compile(r"^(\d{4})_([a-z]{2})_(.+)$")
ESD_NAME = re.compile(r"^(\d{4})_(\d{6})$")
ASED_NAME = re.compile(r"^([A-Za-z])\d+-(\d+)-(\d+)-(\d\d)-(\d+)$")
ASED_FOLDER = re.compile(r"^\d*([A-Za-z]+)$")


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
    """One of EMOTIONS for the built-in corpora; a manifest may use labels of its own."""
    duration_s: float = 0.0
    """Length of the file in seconds."""
    rate_hz: int = 0
    """Sample rate of the file."""
    language: str = ""
    """Language spoken (ISO 639-1, e.g. en, pl), empty if unknown."""


def label_order(labels: Iterable[str]) -> tuple[str, ...]:
    """Labels in the usual order: the eight emotions as EMOTIONS lists them, then any others alphabetically."""
    have = set(labels)
    return tuple(e for e in EMOTIONS if e in have) + tuple(sorted(have - set(EMOTIONS)))


def labels_of(clips: Iterable[Clip]) -> tuple[str, ...]:
    """The label set of some clips (a run's labels when its settings name none)."""
    return label_order(c.label for c in clips)


def corpus_labels(clips: Iterable[Clip]) -> dict[str, tuple[str, ...]]:
    """The labels each corpus has, read off its clips: what counts as evidence for its clips."""
    found: dict[str, set[str]] = {}
    for clip in clips:
        found.setdefault(clip.corpus, set()).add(clip.label)
    return {corpus: label_order(have) for corpus, have in sorted(found.items())}


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


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def probe(path: Path, corpus: str, report: LoadReport) -> tuple[float, int] | None:
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
    language = LANGUAGES.get(corpus, "")
    for path, speaker, gender, label in rows:
        probed = probe(path, corpus, report)
        if probed is not None:
            clips.append(Clip(str(path.resolve()), corpus, speaker, gender, label, round(probed[0], 4), probed[1], language))
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


def _word(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def load_nemo(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """nEMO (Polish): <SPK>_<emotion>_<n>.(wav|opus), e.g. EB0_anger_10; nine speakers, gender from the corpus's list."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        m = NEMO_NAME.match(path.stem)
        if not m or m.group(2) not in NEMO_EMOTIONS:
            _malformed(report, "nemo", path)
            continue
        speaker = m.group(1)
        rows.append((path, f"nemo_{speaker}", NEMO_GENDERS.get(speaker, "male"), NEMO_EMOTIONS[m.group(2)]))
    return _finish(rows, "nemo", report)


def load_turev(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """TurEV-DB (Turkish words): <Emotion>/<SPK>_<code>_<word>; the folder and the code (kz sk mt hl) must agree."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        m = TUREV_NAME.match(path.stem)
        coded = TUREV_CODES.get(m.group(2)) if m else None
        folder = TUREV_EMOTIONS.get(_word(path.parent.name))
        if coded is None or (folder is not None and folder != coded):
            _malformed(report, "turev", path)
            continue
        rows.append((path, f"turev_{m.group(1)}", "unknown", coded))
    return _finish(rows, "turev", report)


def load_esd(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """ESD: <SPK>/<Emotion>/[train|test|evaluation/]<SPK>_<NNNNNN>; speakers 0011-0020 English, 0001-0010 Mandarin."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        m = ESD_NAME.match(path.stem)
        label = next((ESD_EMOTIONS[_word(p.name)] for p in path.parents if _word(p.name) in ESD_EMOTIONS), None)
        if not m or label is None:
            _malformed(report, "esd", path)
            continue
        rows.append((path, f"esd_{m.group(1)}", "male" if m.group(1) == "0020" else "unknown", label))
    clips = _finish(rows, "esd", report)
    return [dataclasses.replace(c, language="zh") if int(c.speaker[4:]) <= 10 else c for c in clips]


def load_ased(root: str | os.PathLike, report: LoadReport | None = None) -> list[Clip]:
    """ASED (Amharic): <NN><Emotion>/<e><n>-<sentence>-<repetition>-<gender>-<speaker>; speaker is the last field."""
    report = report if report is not None else LoadReport()
    rows = []
    for path in _audio_files(Path(root)):
        m = ASED_NAME.match(path.stem)
        folder = ASED_FOLDER.match(path.parent.name)
        from_folder = ASED_EMOTIONS.get(folder.group(1).lower()) if folder else None
        coded = ASED_CODES.get(m.group(1).lower()) if m else None
        if coded is None or (from_folder is not None and from_folder != coded):
            _malformed(report, "ased", path)
            continue
        gender = {"01": "female", "02": "male"}.get(m.group(4), "unknown")
        rows.append((path, f"ased_{int(m.group(5)):02d}", gender, coded))
    return _finish(rows, "ased", report)


LOADERS = {
    "ravdess": load_ravdess,
    "crema_d": load_crema_d,
    "savee": load_savee,
    "tess": load_tess,
    "nemo": load_nemo,
    "turev": load_turev,
    "esd": load_esd,
    "ased": load_ased,
}


def corpus_of_folder(name: str) -> str | None:
    """Which corpus a folder name announces: 'RAVDESS', 'Crema-D', 'AudioWAV', 'savee', 'TESS Toronto...', 'nEMO', 'TurEV-DB', 'ESD', 'ASED_V1'."""
    key = re.sub(r"[^a-z]", "", name.lower())
    if "ravdess" in key:
        return "ravdess"
    if "crema" in key or key == "audiowav":
        return "crema_d"
    if "savee" in key:
        return "savee"
    if "tess" in key or "toronto" in key:
        return "tess"
    if key.startswith("nemo"):
        return "nemo"
    if key.startswith("turev"):
        return "turev"
    if key == "esd" or key.startswith("esd") or "emotionalspeechdataset" in key:
        return "esd"
    if key.startswith("ased") or "amharic" in key:
        return "ased"
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
