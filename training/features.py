"""Features through the device's own frontend, cached on disk.

For every clip (and every augmented variant of a training clip) this stores the MFCC
frames and the per-frame speech flags that ``edge.classifier.clip_windows`` computes;
``edge.classifier.frame_windows`` then cuts the windows and speech ratios exactly as ``clip_windows``
does, for any window and hop, without touching the audio again. Entries are keyed by the
frontend and speech settings, the file (path and a digest of its bytes, so a copy of the corpora
with new times still hits) and the augmentation (settings and variant), so changing any of them
recomputes and a second run reads the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.audio import read_audio
from edge.frontend import Frontend, FrontendSettings
from edge.resample import resample
from edge.speech import SpeechDetector, SpeechSettings, cache_fields
from training.augment import Augmenter, AugmentSettings
from training.corpora import Clip

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what is stored changes


@dataclass(frozen=True)
class ClipFeatures:
    """The frames of one clip (or one augmented variant of it)."""

    clip: Clip
    variant: int
    """0 is the clip as recorded; 1.. are augmented copies."""
    mfcc: np.ndarray
    """(frames, n_ceps) float32, from the device's frontend."""
    speech: np.ndarray
    """(frames,) bool, the device's speech flag per frame."""


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str) -> str:
    """A digest of the file's bytes (BLAKE2b, 128 bits), computed once per process for each path, size and mtime."""
    stat = os.stat(path)
    memo = (path, stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        with open(path, "rb") as f:
            _DIGESTS[memo] = hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    return _DIGESTS[memo]


def cache_key(clip: Clip, frontend: FrontendSettings, speech: SpeechSettings, augment: AugmentSettings | None, variant: int) -> str:
    parts = {
        "version": CACHE_VERSION,
        "frontend": frontend.to_dict(),
        "speech": cache_fields(speech),  # what decides the flags; the gate of older entries keeps their keys
        "file": [clip.path, file_digest(clip.path)],  # the path seeds the augmentation; the bytes are the clip
        "augment": augment.to_dict() if augment is not None and variant > 0 else None,
        "variant": variant,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def clip_audio16k(path: str) -> np.ndarray:
    """A file as 16 kHz mono float32, through the device's reader and resampler."""
    x, rate = read_audio(path)
    return resample(x, rate).astype(np.float32)


def frames_of(audio16k: np.ndarray, frontend: Frontend, speech: SpeechSettings) -> tuple[np.ndarray, np.ndarray]:
    """(mfcc, speech flags) per frame: the first half of clip_windows."""
    mfcc, log_energy = frontend.features(audio16k)
    return mfcc, SpeechDetector(frontend.settings, speech).process(log_energy, audio16k)


class _Worker:
    """Everything one process needs to turn (clip, variant) into cached frames."""

    def __init__(self, frontend: FrontendSettings, speech: SpeechSettings, augment: AugmentSettings | None, cache_dir: Path) -> None:
        self.frontend_settings, self.speech, self.augment_settings, self.cache_dir = frontend, speech, augment, cache_dir
        self._frontend: Frontend | None = None
        self._augmenter: Augmenter | None = None

    def __call__(self, job: tuple[Clip, int]) -> tuple[np.ndarray, np.ndarray]:
        clip, variant = job
        path = self.cache_dir / f"{cache_key(clip, self.frontend_settings, self.speech, self.augment_settings, variant)}.npz"
        if path.exists():
            with np.load(path) as stored:
                return stored["mfcc"], stored["speech"]
        if self._frontend is None:
            self._frontend = Frontend(self.frontend_settings)
        audio = clip_audio16k(clip.path)
        if variant > 0:
            if self._augmenter is None:
                self._augmenter = Augmenter(self.augment_settings, self.cache_dir.parent / "noise")
            audio = self._augmenter(audio, clip.path, variant)
        mfcc, speech = frames_of(audio, self._frontend, self.speech)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, mfcc=mfcc, speech=speech)
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written entry
        return mfcc, speech


_worker: _Worker | None = None


def _init_worker(worker: _Worker) -> None:
    global _worker
    _worker = worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run(job: tuple[Clip, int]) -> tuple[np.ndarray, np.ndarray]:
    assert _worker is not None
    return _worker(job)


def extract(
    clips: Sequence[Clip],
    frontend: FrontendSettings,
    cache_dir: str | Path,
    variants: Sequence[int] = (0,),
    augment: AugmentSettings | None = None,
    speech: SpeechSettings | None = None,
    workers: int = 2,
    progress: bool = True,
) -> list[ClipFeatures]:
    """Frames of every clip for every variant (0 = unaugmented), from the cache when present."""
    from tqdm import tqdm

    speech = speech or SpeechSettings()
    if any(v > 0 for v in variants) and augment is None:
        raise ValueError("augmented variants need AugmentSettings")
    cache_dir = Path(cache_dir) / "features"
    cache_dir.mkdir(parents=True, exist_ok=True)
    worker = _Worker(frontend, speech, augment, cache_dir)
    jobs = [(clip, v) for clip in clips for v in variants]
    bar = dict(total=len(jobs), desc="features", unit="clip", disable=not progress, mininterval=2.0)
    if workers <= 1 or len(jobs) < 50:
        results = [worker(job) for job in tqdm(jobs, **bar)]
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(worker,)) as pool:
            results = list(tqdm(pool.map(_run, jobs, chunksize=16), **bar))
    return [ClipFeatures(clip, v, mfcc, flags) for (clip, v), (mfcc, flags) in zip(jobs, results, strict=True)]
