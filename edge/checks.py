"""How a setting is checked: its type from the annotation, the values it allows, one sentence when it fails.

``edge.settings`` declares every setting as a field of a ``Checked`` dataclass, with ``setting(default,
allowed)`` where a type alone is not enough. Making the dataclass checks every field once; a value
that fails raises ConfigError, a sentence naming the key as the config file writes it, the value
and what to use instead. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A setting the service refuses, with one sentence naming the key, the value and what is allowed."""


@dataclass(frozen=True)
class Allowed:
    """The values a key may take: a test, and the words that complete "use ..." when a value fails it."""

    test: Callable[[Any], bool]
    says: str


def between(low: float, high: float, says: str) -> Allowed:
    return Allowed(lambda v: low <= v <= high, says)


def one_of(choices: tuple[str, ...]) -> Allowed:
    return Allowed(lambda v: v in choices, "one of " + ", ".join(c for c in choices if c))


NON_NEGATIVE = Allowed(lambda v: v >= 0, "a number of 0 or more")
PROBABILITY = Allowed(lambda v: 0 < v <= 1, "a number above 0 and at most 1")
RATIO = between(0, 1, "a number from 0 to 1")
PORT = between(0, 65535, "a port number from 0 to 65535")


def setting(default: Any = dataclasses.MISSING, allowed: Allowed | None = None, *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with the values it allows (beyond its type, which the annotation gives)."""
    return field(default=default, default_factory=factory, metadata={"allowed": allowed})


def show(value: Any) -> str:
    """A value as TOML writes it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def refuse(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{key} = {show(value)} is not allowed: {why}")


def checked(key: str, value: Any, kind: str, allowed: Allowed | None = None) -> Any:
    """``value`` as a ``kind`` ("bool", "int", "float" or "str") that ``allowed`` accepts, or ConfigError naming ``key``.

    An int written for a float key becomes a float; bool is never taken for a number.
    """
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool" and not isinstance(value, bool):
        raise refuse(key, value, "use true or false")
    if kind == "int" and not (number and isinstance(value, numbers.Integral)):
        raise refuse(key, value, "use a whole number")
    if kind == "float" and not number:
        raise refuse(key, value, "use a number")
    if kind == "float" and not math.isfinite(value):  # TOML has inf and nan: a cooldown of inf would never end
        raise refuse(key, value, "use a finite number")
    if kind == "str" and not isinstance(value, str):
        raise refuse(key, value, "use a string")
    if allowed is not None and not allowed.test(value):
        raise refuse(key, value, "use " + allowed.says)
    return {"bool": bool, "int": int, "float": float, "str": str}[kind](value)


@dataclass(frozen=True)
class Checked:
    """A frozen table of settings whose values are checked, by type and by ``allowed``, when it is made."""

    SECTION: ClassVar[str] = ""
    """The table in the config file, for the key in messages."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            kinds = [k.strip() for k in str(f.type).split("|")]
            value = getattr(self, f.name)
            if kinds[0] not in ("bool", "int", "float", "str") or (value is None and "None" in kinds):
                continue  # a nested table or a tuple (checked where it is made), or an optional key left out
            object.__setattr__(self, f.name, checked(self.key(f.name), value, kinds[0], f.metadata.get("allowed")))
        self.check()

    def check(self) -> None:
        """Rules between keys of the table; a table with such rules says them here."""

    def key(self, name: str) -> str:
        return f"{self.SECTION}.{name}"
