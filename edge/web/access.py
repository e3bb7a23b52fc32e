"""Who may use the page: the token every request must carry, and the loopback rule without one.

Without a token the page listens on loopback only and answers only requests addressed to
``localhost``, ``127.x`` or ``[::1]``, which stops DNS rebinding. With a token, every request
carries it. Standard library only: the service's configuration checks a token with this module
before anything starts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat

from edge.files import read_regular, why
from edge.settings import HttpSettings

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16  # 16 characters of base64 are 96 bits: beyond guessing over a network


def read_token(path: str) -> str:
    """The token in a file (its first line, surrounding whitespace ignored); ValueError with one sentence if unusable."""
    try:
        info = os.stat(path)
        lines = read_regular(path).decode("utf-8").strip().splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path} ({why(exc)}); give a file holding the token on its first line") from None
    except UnicodeDecodeError:
        raise ValueError(f"the token file {path} is not UTF-8 text; put the token on its first line") from None
    if not lines:
        raise ValueError(f"the token file {path} is empty; put a long random string in it")
    token = strong_token(lines[0].strip(), f"the token in {path}")
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("the token file %s is readable by other users; chmod 600 it", path)
    return token


def strong_token(token: str, what: str) -> str:
    """``token`` if it is long enough to guard a page; ValueError naming ``what`` (never the token) otherwise."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{what} has {len(token)} characters; use at least {MIN_TOKEN_CHARS} (e.g. head -c 24 /dev/urandom | base64)")
    return token


def http_token(settings: HttpSettings) -> str | None:
    """The service's web token from [http] token_file (its first line) or token, or None for no token.

    ValueError with one sentence if the file cannot be read or the token is too short to guard a page.
    """
    if settings.token_file:
        return read_token(settings.token_file)
    if not settings.token:
        return None
    return strong_token(settings.token.strip(), "the [http] token")


def given_token(authorization: str, query_token: str | None) -> str | None:
    """The token a request carries: ``Authorization: Bearer <token>``, else ``?token=``."""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return query_token


def loopback_host(host: str) -> bool:
    """Whether a Host header ("name", "name:port", "[::1]:port") names this machine's loopback."""
    if host.startswith("[") and "]" in host:
        name = host[1 : host.index("]")]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    return is_loopback(name)


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine only (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
