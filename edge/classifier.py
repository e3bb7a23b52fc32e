"""Streaming emotion classification: audio chunks in, one result per completed window out.

One path serves the microphone, files and training alike:

    chunk ─▶ Resampler ─▶ StreamingFrontend ─▶ frame ring ─▶ window every hop ─▶ Model
                                         └─▶ SpeechDetector ─┘

Window i covers frames [i*hop, i*hop + window) and its times come from the sample
counter, never the clock. ``make_windows`` cuts the same windows from a whole clip's
frames; training imports it so the model sees exactly what the device sees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from edge.audio import AudioError, audio_blocks, check_signal, check_totals
from edge.frontend import Frontend, FrontendSettings, StreamingFrontend
from edge.model import Model, probs_dict
from edge.pcm import int16_to_float
from edge.profile import Adaptation, SpeechStats, VoiceProfile, utc_now
from edge.resample import Resampler
from edge.speech import SpeechDetector, SpeechSettings, window_has_speech

log = logging.getLogger(__name__)

# Shorter clips are refused: a window is filled by repeating the clip, and a few syllables'
# worth (0.5 s) is the least that repeating still leaves recognisable as speech.
MIN_CLIP_S = 0.5


@dataclass(frozen=True)
class WindowResult:
    """The verdict on one window of audio."""

    start_s: float
    """Window start in seconds from the first sample of the stream."""
    end_s: float
    """Window end in seconds (start of the last frame plus its length)."""
    probs: np.ndarray
    """Probability per label, in ``labels`` order."""
    speech: bool
    """Whether the window held enough speech to be worth a verdict."""
    speech_ratio: float
    """Share of the window's frames that the speech detector marked as speech."""
    labels: tuple[str, ...]
    """The model's labels (its contract's order)."""

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    def to_dict(self) -> dict:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "label": self.label,
            "probs": probs_dict(self.probs, self.labels),
            "speech": self.speech,
        }


@dataclass(frozen=True)
class ClipResult:
    """The verdict on a whole clip: the mean over its speech windows."""

    probs: np.ndarray
    """Probability per label: the mean over the speech windows (all windows if none held speech)."""
    duration_s: float
    """Length of the clip in seconds."""
    speech: bool
    """Whether any window held speech."""
    windows: tuple[WindowResult, ...]
    """Every window's verdict, in order."""
    labels: tuple[str, ...]
    """The model's labels (its contract's order)."""

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    @property
    def top_prob(self) -> float:
        return float(np.max(self.probs))

    def to_dict(self, path: str | None = None) -> dict:
        out = {} if path is None else {"path": path}
        out.update(label=self.label, probs=probs_dict(self.probs, self.labels), duration_s=round(self.duration_s, 3), speech=self.speech)
        return out


def clip_probs(window_probs: np.ndarray, speech: np.ndarray) -> tuple[np.ndarray, bool]:
    """A clip's verdict from its windows: the mean over the speech windows, or over all windows
    when none holds speech; and whether any did. The device, training and evaluation all use it."""
    window_probs, speech = np.asarray(window_probs), np.asarray(speech, dtype=bool)
    chosen = window_probs[speech] if speech.any() else window_probs
    return chosen.mean(axis=0), bool(speech.any())


def make_windows(frames: np.ndarray, window_frames: int, hop_frames: int, pad: bool = True) -> np.ndarray:
    """Windows of shape (n, window_frames, coefficients) starting every ``hop_frames``.

    A clip shorter than one window is repeated end to end to fill it (``pad=True``): the
    window then holds only the speaker's own sound, never an artificial silence.
    """
    n = frames.shape[0]
    if n < window_frames:
        if not pad or n == 0:
            return np.zeros((0, window_frames, frames.shape[1]), dtype=frames.dtype)
        frames = np.resize(frames, (window_frames, frames.shape[1]))  # np.resize repeats rows
        n = window_frames
    count = 1 + (n - window_frames) // hop_frames
    view = np.lib.stride_tricks.sliding_window_view(frames, window_frames, axis=0)  # (n-w+1, C, w)
    return np.ascontiguousarray(view[: (count - 1) * hop_frames + 1 : hop_frames].transpose(0, 2, 1))


def clip_windows(
    audio16k: np.ndarray,
    frontend: FrontendSettings | Frontend,
    window_s: float,
    hop_s: float,
    speech: SpeechSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Un-normalised windows (n, frames, coefficients) of a whole 16 kHz clip and each one's speech ratio.

    The batch twin of StreamingClassifier for training and evaluation: the same frames,
    the same window positions, the same speech flags, and short clips padded the same way.
    Pass a ``Frontend`` instead of its settings to reuse its precomputed matrices.
    """
    fe = frontend if isinstance(frontend, Frontend) else Frontend(frontend)
    mfcc, log_energy = fe.features(audio16k)
    flags = SpeechDetector(fe.settings, speech).process(log_energy, audio16k)
    return frame_windows(mfcc, flags, fe.settings.window_frames(window_s), fe.settings.hop_frames(hop_s))


def frame_windows(mfcc: np.ndarray, speech_flags: np.ndarray, window_frames: int, hop_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of a clip's frames and each window's share of speech frames (the second half of clip_windows)."""
    return make_windows(mfcc, window_frames, hop_frames), speech_ratios(speech_flags, window_frames, hop_frames)


def speech_ratios(speech_flags: np.ndarray, window_frames: int, hop_frames: int) -> np.ndarray:
    """Each window's share of speech frames, for the windows ``make_windows`` cuts."""
    return make_windows(np.asarray(speech_flags, np.float32)[:, None], window_frames, hop_frames)[:, :, 0].mean(axis=1)


class StreamingClassifier:
    """Feed audio chunks of any size; get a WindowResult for every window they complete."""

    def __init__(
        self,
        model: Model | None = None,
        speech: SpeechSettings | None = None,
        profile: VoiceProfile | None = None,
        adapt: Adaptation | None = None,
    ) -> None:
        """``speech`` overrides the speech gate the model's contract names (the one it was trained with).

        ``profile`` normalises against one person's voice instead of the training population's; with
        ``adapt`` the statistics keep learning from the speech frames heard (``edge.profile.Adaptation``),
        starting from the profile, or from the population's with the weight of ``adapt.prior_s`` of speech.
        ``reset()`` starts a new stream but keeps what adaptation learnt.
        """
        self.model = model if model is not None else Model()
        c = self.model.contract
        self.labels = c.labels
        self.frontend_settings = c.frontend
        self.window_frames = c.window_frames
        self.hop_frames = c.hop_frames
        self._frontend = StreamingFrontend(c.frontend)
        self._speech = SpeechDetector(c.frontend, speech or c.speech)
        if profile is not None:
            profile.check(c, "profile")
        self.profile = profile
        self.adapt = adapt
        self._stats = _starting_stats(c, profile, adapt) if adapt is not None else None
        self._started = utc_now()  # a profile adaptation starts afresh was made now
        self._learnt = False  # adaptation has counted speech since it started
        self._normalization = c.normalization.with_profile(profile.mean, profile.std) if profile else c.normalization
        self.reset()

    @property
    def normalization(self):
        """What windows are normalised with now: the contract's, against the profile, or against the adapted statistics."""
        return self._normalization

    def current_profile(self) -> VoiceProfile | None:
        """The profile as adaptation has it now (to save), or the profile given; None without either."""
        if self._stats is None:
            return self.profile
        created = self.profile.created if self.profile else self._started
        learnt = utc_now() if self._learnt else (self.profile.updated if self.profile else "")
        return replace(VoiceProfile.from_stats(self._stats, self.model.contract, created), updated=learnt)

    @property
    def speech_settings(self) -> SpeechSettings:
        return self._speech.settings

    def reset(self) -> None:
        """Clear every buffer and counter; the next chunk starts a new stream at 0 s."""
        self._frontend.reset()
        self._speech.reset()
        self._resampler: Resampler | None = None
        self._frames = np.zeros((0, self.frontend_settings.n_ceps), dtype=np.float32)
        self._flags = np.zeros(0, dtype=bool)
        self._first_frame = 0  # absolute index of self._frames[0]
        self._next_window = 0  # absolute frame index where the next window starts

    @property
    def sample_rate_hz(self) -> int | None:
        """Rate of the stream being fed, fixed by the first chunk."""
        return None if self._resampler is None else self._resampler.in_rate_hz

    @property
    def seconds_seen(self) -> float:
        """Audio fed so far, in seconds of the frontend's clock."""
        return self._frontend.samples_seen / self.frontend_settings.sample_rate_hz

    def process(self, chunk: np.ndarray, sample_rate_hz: int) -> list[WindowResult]:
        """Add a chunk (int16, or float in [-1, 1]) at ``sample_rate_hz``; return completed windows."""
        audio = np.asarray(chunk)
        if audio.dtype == np.int16:
            audio = int16_to_float(audio)
        elif not np.issubdtype(audio.dtype, np.floating):
            raise TypeError(f"audio chunks must be int16 or float32, got {audio.dtype}")
        if audio.ndim != 1:
            raise ValueError(f"audio chunks must be mono 1-D arrays, got shape {audio.shape}")
        if self._resampler is None:
            self._resampler = Resampler(sample_rate_hz, self.frontend_settings.sample_rate_hz)
        elif sample_rate_hz != self._resampler.in_rate_hz:
            raise ValueError(
                f"the stream started at {self._resampler.in_rate_hz} Hz and cannot change to {sample_rate_hz} Hz; call reset() first"
            )
        return self._consume(self._resampler.process(audio))

    def flush(self, pad_short: bool = False) -> list[WindowResult]:
        """End of stream: let the resampler's tail through (windows still need full length).

        With ``pad_short``, a stream too short for even one window is repeated end to end to
        fill one (``make_windows``' padding, as training pads short clips) and classified.
        """
        if self._resampler is None:
            return []
        results = self._consume(self._resampler.flush())
        if pad_short and self._next_window == 0 and len(self._frames):
            window = make_windows(self._frames, self.window_frames, self.hop_frames)
            results = self._results(window, [0], [float(self._flags.mean())])
        return results

    def _consume(self, audio16k: np.ndarray) -> list[WindowResult]:
        mfcc, log_energy = self._frontend.process(audio16k)
        flags = self._speech.process(log_energy, audio16k)  # every sample, also those that complete no frame
        if mfcc.shape[0] == 0:
            return []
        if self._stats is not None and flags.any():
            self._stats.decay(self.adapt.decay(int(flags.sum()), self.frontend_settings.hop_ms))
            self._stats.add(mfcc, flags)
            self._learnt = True
            self._normalization = self.model.contract.normalization.with_profile(self._stats.mean, self._stats.std)
        self._frames = np.concatenate((self._frames, mfcc))
        self._flags = np.concatenate((self._flags, flags))
        end = self._first_frame + self._frames.shape[0]
        starts = []
        while self._next_window + self.window_frames <= end:
            starts.append(self._next_window)
            self._next_window += self.hop_frames
        results = self._classify(starts)
        # Keep only the frames a future window can still use.
        drop = min(self._next_window - self._first_frame, self._frames.shape[0])
        if drop > 0:
            self._frames = self._frames[drop:]
            self._flags = self._flags[drop:]
            self._first_frame += drop
        return results

    def _classify(self, starts: list[int]) -> list[WindowResult]:
        if not starts:
            return []
        offsets = [s - self._first_frame for s in starts]
        windows = np.stack([self._frames[o : o + self.window_frames] for o in offsets])
        ratios = [float(self._flags[o : o + self.window_frames].mean()) for o in offsets]
        return self._results(windows, starts, ratios)

    def _results(self, windows: np.ndarray, starts: list[int], ratios: list[float]) -> list[WindowResult]:
        s = self.frontend_settings
        probs = self.model.predict(windows, self._normalization)
        span = (self.window_frames - 1) * s.hop_samples + s.win_samples
        return [
            WindowResult(
                start_s=start * s.hop_samples / s.sample_rate_hz,
                end_s=(start * s.hop_samples + span) / s.sample_rate_hz,
                probs=p,
                speech=window_has_speech(ratio, self._speech.settings),
                speech_ratio=ratio,
                labels=self.labels,
            )
            for start, p, ratio in zip(starts, probs, ratios, strict=True)
        ]

    def classify_clip(self, audio: np.ndarray, sample_rate_hz: int, name: str = "audio") -> ClipResult:
        """Classify a whole clip through the streaming path, then average its speech windows.

        Starts from a clean state and leaves one behind. A clip shorter than one window
        is repeated to fill it (``flush(pad_short=True)``); one shorter than MIN_CLIP_S is refused
        with an AudioError naming it (``name``). When no window holds speech, the average
        is over all windows and ``speech`` is False.
        """
        x, rate = check_signal(audio, sample_rate_hz, name)
        return self.classify_blocks([(x, rate)], name)

    def classify_file(self, path: str, max_duration_s: float | None = None) -> ClipResult:
        """Read a file (any rate, any channels) block by block and classify it; raises AudioError if unusable.

        Memory does not grow with the file's length: it is decoded a second at a time (``edge.audio.audio_blocks``).
        """
        return self.classify_blocks(audio_blocks(path, str(path), max_duration_s), str(path))

    def classify_blocks(self, blocks: Iterable[tuple[np.ndarray, int]], name: str = "audio") -> ClipResult:
        """Classify a clip given as (samples, rate) blocks of one rate, as ``classify_clip`` does the whole clip."""
        self.reset()
        results: list[WindowResult] = []
        samples, peak, rate = 0, 0.0, 0
        try:
            for block, rate in blocks:
                if block.size:
                    samples += block.size
                    peak = max(peak, float(np.max(np.abs(block))))
                    results += self.process(block, rate)
            check_totals(samples, peak, rate, name)
            if samples < MIN_CLIP_S * rate:
                raise AudioError(
                    f"{name}: the clip lasts {samples / rate * 1000:.0f} ms; at least {MIN_CLIP_S:g} s of audio is needed to classify it"
                )
            results += self.flush(pad_short=True)
        finally:
            self.reset()
        probs, speech = clip_probs([r.probs for r in results], [r.speech for r in results])
        return ClipResult(probs=probs, duration_s=samples / rate, speech=speech, windows=tuple(results), labels=self.labels)


def _starting_stats(contract, profile: VoiceProfile | None, adapt: Adaptation) -> SpeechStats:
    """Where adaptation starts: the profile, or the population's statistics weighted as ``adapt.prior_s`` of speech."""
    if profile is not None:
        return profile.stats(contract.frontend.hop_ms)
    n = contract.frontend.n_ceps
    norm = contract.normalization
    mean = np.asarray(norm.mean, np.float64) if len(norm.mean) == n else np.zeros(n)
    std = np.asarray(norm.std, np.float64) if len(norm.std) == n else np.ones(n)
    count = adapt.prior_s * 1000 / contract.frontend.hop_ms
    return SpeechStats(n, count, mean * count, (std**2 + mean**2) * count, prior=count)
