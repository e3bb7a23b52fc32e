"""Every choice that shapes a training run: ``TrainSettings``, checked once, read from settings.json and ``--set``.

A run folder's ``settings.json`` is ``TrainSettings.to_dict()``; ``from_dict`` reads it back (older runs'
files too), and ``with_overrides`` applies the command line's ``--set key=value`` (``augment.key=value``
and ``speech.key=value`` for the settings of their own, NESTED). Imports nothing heavy: no keras here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from edge.frontend import FrontendSettings
from edge.speech import SpeechSettings
from training.augment import AugmentSettings
from training.network import ARCHITECTURES, POOLINGS

CLASS_WEIGHTS = ("none", "global", "corpus")
NORMALIZATIONS = ("global", "window", "none", "window_mean", "both")


@dataclass(frozen=True)
class TrainSettings:
    """Every choice that shapes the model; saved beside it so a run can be repeated exactly."""

    n_mels: int = 40
    """Mel filters in the frontend."""
    n_ceps: int = 40
    """Cepstral coefficients per frame (the model's input width)."""
    lifter: int = 0
    """Frontend sine lifter (0 = off)."""
    window_s: float = 3.0
    """Window the device classifies, in seconds."""
    hop_s: float = 0.5
    """Hop between the device's windows, in seconds (a multiple of 10 ms)."""
    train_hop_s: float = 0.5
    """Hop between training windows, in seconds; smaller gives more, overlapping windows."""
    train_corpora: tuple[str, ...] = ()
    """Corpora whose training speakers are trained on; empty = every corpus loaded (the others are only evaluated)."""
    labels: tuple[str, ...] = ()
    """The model's labels; empty = every label of the training clips (the eight emotions first, in their usual order)."""
    corpus_labels: bool = True
    """Score each window only among its corpus's own labels (a label the corpus lacks is not evidence
    against it); False = the plain softmax cross-entropy over every label."""
    normalization: str = "both"
    """global (the training windows' mean and spread), window (each window on its own), window_mean (the
    window's mean removed, the training spread divided out), both (global and window side by side) or none
    (edge.model.Normalization)."""
    speech: SpeechSettings = SpeechSettings()
    """The speech gate: which frames and windows count as speech (the device uses the same, from the contract)."""
    augment_variants: int = 2
    """Augmented copies of each training clip, besides the clip itself."""
    augment: AugmentSettings = AugmentSettings()
    """How the copies are made."""
    arch: str = "cnn1d"
    """Network: cnn1d, cnn1d_deep, cnn2d or dscnn (training.network)."""
    width: int = 16
    """Base number of filters."""
    pooling: str = "avgmax"
    """avg, or avgmax: the last feature maps' average and maximum over time (training.network)."""
    dropout: float = 0.3
    """Dropout before the last layer."""
    epochs: int = 8
    """Passes over the training windows."""
    batch_size: int = 64
    """Windows per gradient step."""
    learning_rate: float = 2e-3
    """Peak learning rate of Adam; decays with a cosine to zero."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy (spread over the window's corpus's labels)."""
    class_weights: str = "corpus"
    """none; global: weight each label inversely to its share of the training windows; corpus: the same
    within each corpus, each corpus keeping its share (calm, in RAVDESS only, then no longer outweighs
    RAVDESS's scarce neutral because SAVEE and TESS have plenty of neutral)."""
    corpus_balance: float = 0.0
    """0 = every window counts the same; 1 = every corpus counts the same in total."""
    speaker_balance: float = 0.0
    """0 = every window counts the same; 1 = every speaker counts the same within their corpus."""
    mixup_alpha: float = 0.0
    """Beta(alpha, alpha) mixup of window pairs and their labels; 0 disables it."""
    time_mask_frames: int = 0
    """SpecAugment: blank (to the mean) one random span of up to this many frames per training window."""
    coeff_mask: int = 0
    """SpecAugment: blank one random band of up to this many coefficients per training window."""
    vtlp_range: tuple[float, float] = (0.85, 1.15)
    """Vocal tract length perturbation: frequency-warp factors drawn per training window, each
    epoch anew ((1.0, 1.0) = off; needs n_ceps == n_mels)."""
    vtlp_p: float = 0.8
    """Share of training windows that get a warp."""
    channel_db: float = 0.0
    """Microphone and room colouring: a smooth random curve over the mel bands, up to about this
    many dB, added to each training window's log-mel spectrum at batch time (0 = off; needs n_ceps == n_mels)."""
    channel_p: float = 0.8
    """Share of training windows that get a colouring."""
    profile_p: float = 0.5
    """Share of training windows normalised against their speaker's own statistics (a voice profile, as
    ``python -m edge enroll`` measures it) instead of the population's; the rest see the population's, as the
    device does without a profile. Only for normalisations that carry statistics (global, both, window_mean)."""
    profile_clips: tuple[int, int] = (3, 30)
    """How many of the speaker's recorded clips each such profile is measured on (drawn per window): a few
    sentences, as at enrolment, up to a long acquaintance."""
    seed: int = 42
    """Seed for the network's initialisation and the order of windows."""
    ensemble: int = 2
    """Networks trained with seeds seed, seed+1, ...; the shipped model averages their probabilities."""

    @property
    def frontend(self) -> FrontendSettings:
        return FrontendSettings(n_mels=self.n_mels, n_ceps=self.n_ceps, lifter=self.lifter)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Refuse combinations that would fail only after the features are extracted."""
        if self.arch not in ARCHITECTURES or self.pooling not in POOLINGS:
            raise ValueError(
                f"arch={self.arch!r} pooling={self.pooling!r}: arch must be one of {', '.join(ARCHITECTURES)} "
                f"and pooling one of {', '.join(POOLINGS)}"
            )
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights={self.class_weights!r} is not one of {', '.join(CLASS_WEIGHTS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
        for name, ok, says in (
            ("epochs", self.epochs >= 1, "1 or more"),
            ("ensemble", self.ensemble >= 1, "1 or more"),
            ("batch_size", self.batch_size >= 1, "1 or more"),
            ("width", self.width >= 1, "1 or more"),
            ("augment_variants", self.augment_variants >= 0, "0 or more"),
            ("window_s", self.window_s >= 0.1, "at least 0.1 s"),
            ("learning_rate", self.learning_rate > 0, "above 0"),
            ("dropout", 0 <= self.dropout < 1, "from 0 up to, not including, 1"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "from 0 up to, not including, 1"),
            ("mixup_alpha", self.mixup_alpha >= 0, "0 or more"),
            *(
                (k, 0 <= getattr(self, k) <= 1, "from 0 to 1")
                for k in ("vtlp_p", "channel_p", "profile_p", "corpus_balance", "speaker_balance")
            ),
        ):
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: use {says}")
        for name in ("hop_s", "train_hop_s"):  # the device cuts windows on 10 ms frames
            value = getattr(self, name)
            if value <= 0 or abs(value * 100 - round(value * 100)) > 1e-6:
                raise ValueError(f"{name}={value!r} is not allowed: use a positive multiple of 0.01 s (the frame hop), such as 0.5")
        warps = {"vtlp_range": tuple(self.vtlp_range) != (1.0, 1.0), "channel_db": self.channel_db > 0}
        on = [k for k, v in warps.items() if v]
        if on and (self.n_ceps != self.n_mels or self.lifter):
            raise ValueError(
                f"{' and '.join(on)} work on the mel axis, which needs n_ceps equal to n_mels and lifter=0 "
                f"(got n_ceps={self.n_ceps}, n_mels={self.n_mels}, lifter={self.lifter}); "
                "set vtlp_range=[1,1] and channel_db=0 to turn them off"
            )

    @classmethod
    def from_dict(cls, data: dict) -> TrainSettings:
        data = dict(data)
        if isinstance(data.get("class_weights"), bool):  # settings.json of runs before the per-corpus choice
            data["class_weights"] = "global" if data["class_weights"] else "none"
        for name, kind in NESTED.items():
            if isinstance(data.get(name), dict):
                data[name] = kind(**{k: _tuple(v) for k, v in data[name].items()})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**{k: _tuple(v) for k, v in data.items()})

    def with_overrides(self, pairs: Sequence[str]) -> TrainSettings:
        """Apply ``key=value`` strings (values parsed as JSON, else taken as text); augment.key=value and speech.key=value too."""
        changes: dict = {}
        nested: dict[str, dict] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ValueError(f"--set expects key=value, got {pair!r}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            outer, dot, inner = key.strip().partition(".")
            if dot:
                if outer not in NESTED:
                    raise ValueError(f"--set {key}: only {', '.join(NESTED)} have settings of their own")
                nested.setdefault(outer, {})[inner] = _typed(key.strip(), raw, _tuple(value), _default(NESTED[outer], inner))
            else:
                changes[outer] = _typed(outer, raw, _tuple(value), _default(type(self), outer))
        for outer, values in nested.items():
            try:
                changes[outer] = dataclasses.replace(getattr(self, outer), **values)
            except TypeError:
                known = ", ".join(f.name for f in dataclasses.fields(NESTED[outer]))
                raise ValueError(f"unknown {outer} settings in {', '.join(values)}; known are {known}") from None
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; known are {', '.join(sorted(known))}")
        out = dataclasses.replace(self, **changes)
        out.check()  # now, not after the features are read
        return out


NESTED = {"augment": AugmentSettings, "speech": SpeechSettings}


def _default(cls, name: str):
    """The class's default for a field (its type is the setting's: a settings.json may hold 0 where 0.3 is meant), or None."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return None


def _typed(key: str, raw: str, value, current):
    """``value`` (parsed from ``raw``) as the type the setting has now, or ValueError in one sentence: a wrong type
    would otherwise be accepted and read as something else ("no" is true)."""
    if current is None:  # an unknown key: named by the caller
        return value
    if dataclasses.is_dataclass(current):
        raise ValueError(
            f"--set {key}={raw}: {key} is a table; set its keys one by one, such as {key}.{dataclasses.fields(current)[0].name}=..."
        )
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"--set {key}={raw}: use true or false")
    elif isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"--set {key}={raw}: use a whole number")
    elif isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"--set {key}={raw}: use a number")
        return float(value)
    elif isinstance(current, str):
        if not isinstance(value, str):
            raise ValueError(f"--set {key}={raw}: use a word (quotes not needed)")
    elif isinstance(current, tuple):
        if not isinstance(value, tuple):
            numbers = bool(current) and isinstance(current[0], (int, float))
            example = f"[{', '.join(str(v) for v in current)}]" if numbers else '["angry","sad"]'
            raise ValueError(f"--set {key}={raw}: use a JSON list, such as '{key}={example}' (quoted for the shell)")
        if (
            current
            and isinstance(current[0], (int, float))
            and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise ValueError(f"--set {key}={raw}: use a list of numbers")
        if current and isinstance(current[0], str) and not all(isinstance(v, str) for v in value):
            raise ValueError(f"--set {key}={raw}: use a list of words")
    return value


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value
