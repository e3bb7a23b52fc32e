"""Voice profiles in use: read one for a model without ever waiting on a file, describe it, and keep an adapted one saved.

The profile itself (its statistics, file format and atomic save) is ``edge.profile``; the commands
(``enroll``, ``profile``, ``classify``/``serve``/``run``/``info --profile``) and the service use this module.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge.files import read_regular, what_is
from edge.profile import PROFILE_FORMAT, ProfileError, VoiceProfile

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 3.0  # stopping waits this long at most for the last save
NEVER = "never (not adapted since enrolment)"  # how text output shows an "updated" of None


def load_profile(path: str | Path, contract=None) -> VoiceProfile:
    """The profile at ``path``, checked against ``contract`` when given; ProfileError in one sentence otherwise.

    A path that is not a regular file (a folder, a FIFO, a device) is refused before it is opened.
    """
    kind = what_is(path)
    if kind is not None:
        raise ProfileError(f"{path} is {kind}, not a profile; give the file `python -m edge enroll --out` wrote")
    return VoiceProfile.load(path, contract)


def is_profile_file(path: str) -> bool:
    """A regular file that begins as a profile does (its "format" line), whether or not the rest can be read."""
    try:
        head = read_regular(path, 256)
    except OSError:
        return False
    return f'"format": "{PROFILE_FORMAT}"'.encode() in head


def in_use(path: str, profile: VoiceProfile) -> str:
    """One line for the commands that judge against a profile: which, and how much speech it holds."""
    return f"judged against the voice profile {path} ({profile.speech_s:.0f} s of speech)"


def describe(profile: VoiceProfile, contract=None) -> dict:
    """What ``info --profile`` and ``profile show`` print: how much speech, when, and which model it belongs to.

    ``updated`` is None when adaptation never changed it; ``prior_s`` is there when it still holds some of
    the population's statistics (a profile the device began learning without enrolment). Given the model's
    ``contract``, ``fits_model`` says whether that model takes it and, when not, ``does_not_fit`` why.
    """
    out = {
        "speech_s": profile.speech_s,
        "created": profile.created,
        "updated": profile.updated or None,
        **({"prior_s": profile.prior_s} if profile.prior_s else {}),
        "model_sha256": profile.model_sha256,
        "frontend": profile.frontend,
        "coefficients": len(profile.mean),
    }
    if contract is not None:
        try:
            profile.check(contract, "this model")
            out["fits_model"] = True
        except ProfileError as exc:
            out["fits_model"] = False
            out["does_not_fit"] = str(exc).removeprefix("this model: ")
    return out


def health(classifier) -> dict | None:
    """The health event's "profile": in use or not, how much speech it holds now, whether it is adapting."""
    profile = classifier.current_profile()
    if profile is None:
        return None
    return {"speech_s": profile.speech_s, "adapting": classifier.adapt is not None, "updated": profile.updated or None}


class ProfileKeeper:
    """Saves the profile a running classifier adapts, atomically, every ``interval_s`` and on ``close``.

    ``tick`` runs in the audio loop: when a save is due it takes the profile as adapted now (a few
    dozen numbers) and hands it to a thread of its own, which writes it; the loop never waits on the
    disk. A save is a temporary file, fsync and rename (``edge.profile.write_atomically``): a power cut
    or a SIGKILL during one leaves the previous profile or the new one, never a broken file. A failed
    save is logged in one sentence and tried again at the next interval; it never stops the service.
    """

    def __init__(self, classifier, path: str | Path, interval_s: float, clock=time.monotonic) -> None:
        self.classifier = classifier
        self.path = Path(path)
        self.interval_s = interval_s
        self._clock = clock
        self._next = clock() + interval_s
        self._saved = self._key(classifier.current_profile())
        self.saves = 0
        self._pending: VoiceProfile | None = None  # the newest profile handed over and not yet written
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._writer: threading.Thread | None = None  # started at the first save: one writer, never two

    @staticmethod
    def _key(profile: VoiceProfile | None):
        return None if profile is None else (profile.mean, profile.std, profile.speech_s)

    def tick(self, now: float | None = None) -> None:
        """In the audio loop: when a save is due, hand the profile as adapted now to the writer thread."""
        now = self._clock() if now is None else now
        if now >= self._next:
            self._next = now + self.interval_s
            self._hand_over(self.classifier.current_profile())

    def close(self) -> None:
        """Save the profile as adapted now and wait (at most CLOSE_TIMEOUT_S) for it to be written."""
        profile = self.classifier.current_profile()
        if self._writer is None:  # nothing was handed over yet: no thread to wait for
            self._write(profile)
            return
        self._hand_over(profile, last=True)
        self._writer.join(CLOSE_TIMEOUT_S)
        if self._writer.is_alive():
            log.warning(
                "the voice profile %s was not saved within %.0f s of stopping (the disk is slow or busy)", self.path, CLOSE_TIMEOUT_S
            )

    def _hand_over(self, profile: VoiceProfile | None, last: bool = False) -> None:
        with self._lock:
            self._pending = profile
            self._stopping = self._stopping or last
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="profile-saver", daemon=True)
            self._writer.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                profile, self._pending = self._pending, None
                last = self._stopping  # set with the last profile: this is it
            self._write(profile)
            if last:
                return

    def _write(self, profile: VoiceProfile | None) -> None:
        """Write ``profile`` if it changed since the last save."""
        if profile is None or self._key(profile) == self._saved:
            return
        try:
            profile.save(self.path)
        except (OSError, ProfileError) as exc:
            log.error("cannot save the voice profile %s (%s); the adapted statistics are kept in memory", self.path, exc)
            return
        self._saved = self._key(profile)
        self.saves += 1
        log.debug("voice profile saved to %s (%.0f s of speech)", self.path, profile.speech_s)
