"""The speaker-independent split: validation and test speakers never appear in training.

RAVDESS (20 actors here): 4 validation actors (2 male, 2 female) for every tuning decision,
and 2 test actors (1 male, 1 female) looked at only for the final report. SAVEE (3 male
speakers here): one validation speaker. TESS has only two speakers, both female, who say
the same 200 words: YAF (young) is held out for validation, so the TESS figure is a real
cross-speaker one, and OAF (older) trains. Every other speaker (a CREMA-D copy, a user's
manifest) trains unless named in the split.
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

    validation: tuple[str, ...] = ("ravdess_17", "ravdess_18", "ravdess_19", "ravdess_20", "savee_JK", "tess_YAF")
    """Speakers every tuning decision is judged on."""
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


def crossval_splits(clips: Sequence[Clip], folds: int = 3, base: Split | None = None) -> list[Split]:
    """Speaker folds over RAVDESS for tuning: each fold validates on a share of the actors.

    The actors that are not test speakers of ``base`` are taken in order as (odd, even) pairs,
    one male and one female, and pair i goes to fold i % folds; with actors 1-14 and 17-20
    that is (1, 2, 7, 8, 13, 14), (3, 4, 9, 10, 17, 18), (5, 6, 11, 12, 19, 20). Each fold
    also validates on base's other validation speakers (SAVEE JK, TESS YAF) and keeps its test
    speakers, so every figure stays speaker-independent and the test actors stay unseen.
    """
    base = base or Split()
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    actors = sorted({c.speaker for c in clips if c.corpus == "ravdess" and c.speaker not in base.test})
    if len(actors) < folds:
        raise ValueError(f"{len(actors)} RAVDESS actors outside the test speakers cannot make {folds} folds")
    pairs = [actors[i : i + 2] for i in range(0, len(actors), 2)]
    others = tuple(s for s in base.validation if not s.startswith("ravdess_"))
    return [
        Split(validation=tuple(a for i, pair in enumerate(pairs) if i % folds == k for a in pair) + others, test=base.test)
        for k in range(folds)
    ]
