"""Where each corpus comes from and on what terms: a model trained on them carries these."""

from __future__ import annotations

from collections.abc import Iterable

# corpus: (citation, licence)
CORPUS_TERMS = {
    "ravdess": ("Livingstone & Russo (2018), PLoS ONE 13(5): e0196391", "CC BY-NC-SA 4.0"),
    "tess": ("Pichora-Fuller & Dupuis (2020), University of Toronto, Borealis", "CC BY-NC-ND 4.0"),
    "savee": ("Haq & Jackson (2009/2010), University of Surrey", "free for research use"),
    "crema_d": ("Cao et al. (2014), IEEE Transactions on Affective Computing 5(4)", "Open Database License / Database Contents License"),
    "nemo": ("Christop (2024), nEMO: Dataset of Emotional Speech in Polish, LREC-COLING 2024", "CC BY-NC-SA 4.0"),
    "turev": ("Canpolat, Ormanoğlu & Zeyrek (2020), Turkish Emotion Voice Database (TurEV-DB)", "CC BY-NC-ND 4.0"),
    "esd": ("Zhou, Sisman, Liu & Li (2021), Emotional Voice Conversion: Theory, Databases and ESD", "research use only"),
    "ased": ("Retta et al. (2023), A New Amharic Speech Emotion Dataset and Classification Benchmark, ACM TALLIP", "research use"),
}
NAMES = {
    "ravdess": "RAVDESS",
    "tess": "TESS",
    "savee": "SAVEE",
    "crema_d": "CREMA-D",
    "nemo": "nEMO",
    "turev": "TurEV-DB",
    "esd": "ESD",
    "ased": "ASED",
}


def licence_text(corpora: Iterable[str]) -> str:
    """One paragraph for the contract: the corpora a model derives from, their terms, and what follows."""
    parts = []
    for corpus in sorted(set(corpora)):
        citation, terms = CORPUS_TERMS.get(corpus, ("a user's own recordings", "the owner's terms"))
        parts.append(f"{NAMES.get(corpus, corpus)} ({citation}; {terms})")
    return (
        "Derived from " + "; ".join(parts) + ". The most restrictive of these terms apply: non-commercial research use only, "
        "no derivatives beyond this model, with attribution to every corpus."
    )
