"""Files the device reads or replaces: regular files only, and never a wait on one.

A path in a configuration or on the command line may name anything: a folder, a FIFO that
nobody writes (opening it to read waits forever), a socket, a device such as /dev/null (which
an atomic save, a rename over the path, would replace with a regular file). ``what_is`` says
what a path is in words, and ``read_regular`` reads a file without ever blocking on one that
is not regular. Standard library only: the configuration checks paths with this module.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
SMALL_FILE_BYTES = 1 << 20  # a password, a token, a queue of alerts or a profile: far less than this


class NotRegularFileError(OSError):
    """A path that exists and is not a regular file, with one sentence saying what it is."""


def what_is(path: str | os.PathLike) -> str | None:
    """None for a regular file, a symlink to one, or nothing there; otherwise what the path is, e.g. "a FIFO (named pipe)"."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a dangling symlink, or not reachable: the caller's open says which
        return None
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in KINDS if test(mode)), "not a regular file")


def refuse_unless_regular(path: str | os.PathLike) -> None:
    """NotRegularFileError when ``path`` exists and is not a regular file (a symlink to one is followed)."""
    kind = what_is(path)
    if kind is not None:
        raise NotRegularFileError(f"{path} is {kind}, not a regular file")


def read_regular(path: str | os.PathLike, limit: int = SMALL_FILE_BYTES) -> bytes:
    """The first ``limit`` bytes of a regular file, opened without blocking; NotRegularFileError or OSError otherwise.

    The path is looked at before it is opened (opening some devices does something) and the open
    file again after (the path may have changed in between); O_NONBLOCK keeps a FIFO from waiting.
    """
    refuse_unless_regular(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader or a power cut sees the old file or the new one, never half of one.

    The data goes to a temporary file beside it, is fsynced and renamed over it, and the folder is
    fsynced so the rename lasts. NotRegularFileError when ``path`` exists and is not a regular file
    (the rename would replace a device or a FIFO); OSError when it cannot be written, and then no
    temporary file is left behind. A missing folder is made.
    """
    path = Path(path)
    refuse_unless_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # a file system whose folders cannot be opened or synced
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def why(exc: OSError) -> str:
    """An OSError in a few words: its own sentence for NotRegularFileError, else the system's reason."""
    if isinstance(exc, NotRegularFileError):
        return str(exc)
    return exc.strerror.lower() if exc.strerror else str(exc)


def why_unwritable(path: str | os.PathLike) -> str | None:
    """None when ``write_atomically`` could write ``path``; otherwise why not, in a few words. Nothing is written.

    An atomic save makes a temporary file in the folder and renames it over the path, so it is the
    folder that must be writable (a read-only mount says so too), or, when the folder is still to be
    made, the nearest one that exists.
    """
    path = Path(path)
    kind = what_is(path)
    if kind is not None:
        return f"it is {kind}, not a regular file"
    folder = path.parent
    while not os.path.exists(folder) and folder != folder.parent:  # os.path: False, not PermissionError, behind a closed folder
        if os.path.islink(folder):  # a dangling link: mkdir would fail on it
            return f"{folder} is a broken link"
        folder = folder.parent
    if not os.path.isdir(folder):
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} cannot be written by this user (or is on a read-only file system)"
    return None
