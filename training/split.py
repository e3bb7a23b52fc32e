"""The speaker-independent split: validation and test speakers never appear in training.

RAVDESS (20 actors here): 4 validation actors (2 male, 2 female) and 2 test actors (1 male,
1 female) looked at only for the final report. SAVEE (3 male speakers here): one validation
speaker. TESS has only two speakers, both female, who say the same 200 words: YAF (young) is
held out for validation, so the TESS figure is a real cross-speaker one, and OAF (older)
trains. nEMO, TurEV-DB and ASED give one, one and two validation speakers (MP0, 7895, 05 and 10:
a man, a speaker with all four labels, a woman and a man); ESD's one speaker and a user's manifest
train whole. How well the model does on a corpus it never heard is what ``training.crossval``'s
leave-one-corpus-out protocol measures, and settings are chosen there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from training.corpora import Clip

TRAIN, VALIDATION, TEST = "train", "validation", "test"


@dataclass(frozen=True)
class Split:
    """Speaker ids held out of training, by role."""

    validation: tuple[str, ...] = (
        "ravdess_17",
        "ravdess_18",
        "ravdess_19",
        "ravdess_20",
        "savee_JK",
        "tess_YAF",
        "nemo_MP0",
        "turev_7895",
        "ased_05",
        "ased_10",
    )
    """Speakers the shipped model is scored on and the int8 conversion is checked on: a few of every corpus
    with more than one speaker (settings are chosen by ``training.crossval``, not here)."""
    test: tuple[str, ...] = ("ravdess_15", "ravdess_16")
    """Speakers looked at only once, for the final report."""

    def __post_init__(self) -> None:
        both = set(self.validation) & set(self.test)
        if both:
            raise ValueError(f"speakers cannot be both validation and test: {', '.join(sorted(both))}")

    def role(self, clip: Clip) -> str:
        if clip.speaker in self.validation:
            return VALIDATION
        if clip.speaker in self.test:
            return TEST
        return TRAIN

    def select(self, clips: Sequence[Clip], role: str) -> list[Clip]:
        return [c for c in clips if self.role(c) == role]

    def describe(self, clips: Sequence[Clip]) -> dict:
        """Speakers and clip counts per role and corpus, for the contract and the model card."""
        out: dict = {}
        for role in (TRAIN, VALIDATION, TEST):
            chosen = self.select(clips, role)
            out[role] = {
                "speakers": sorted({c.speaker for c in chosen}),
                "clips": {corpus: sum(c.corpus == corpus for c in chosen) for corpus in sorted({c.corpus for c in chosen})},
            }
        return out

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}
