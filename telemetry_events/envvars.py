"""Settings from the environment: each declared once, read typed, failing with the variable's name on a bad value.

A setting is declared once, as a `Setting` (its variable, default, range, meaning and the deployables that read
it), in the module that owns the value. Each deployable's settings module builds its one frozen dataclass from
those declarations, once, at start: the dataclass takes its defaults from them, and checks the rules between
settings itself. The settings tables of README.md and docs/gateway.md are written from the same declarations by
scripts/write_settings_tables.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from typing import Generic, TypeVar

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def text(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, "").strip() or default


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingError(f"{name}={env[name]!r} is not a boolean (use true or false)")


def integer(
    env: Mapping[str, str], name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a whole number") from None
    _check_range(name, value, minimum, maximum)
    return value


def seconds(
    env: Mapping[str, str], name: str, default: float, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A duration in seconds: a plain number, or a number with a unit suffix s, m, h or d."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(raw[-1].lower(), 0)
    number = raw[:-1] if scale else raw
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a duration (for example 30, 90s, 5m, 24h or 30d)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingError(f"{name}={raw!r} is not a finite duration")
    _check_range(name, value, minimum, maximum)
    return value


def choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise SettingError(f"{name}={env[name]!r} must be one of: {', '.join(allowed)}")
    return raw


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={value:g} is below the minimum of {minimum:g}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={value:g} is above the maximum of {maximum:g}")


class Deployable(StrEnum):
    FUNCTIONS = "functions"  # the three Cloud Functions and the telemetry-export command line
    GATEWAY = "gateway"  # python -m gateway_run


FUNCTIONS = frozenset({Deployable.FUNCTIONS})
GATEWAY = frozenset({Deployable.GATEWAY})
BOTH = FUNCTIONS | GATEWAY

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable, declared once: the value it gives when unset, its range, and what it means.

    Attributes:
        name: the environment variable.
        default: the value when the variable is unset or blank, and the settings dataclass's field default.
        meaning: one line, as the settings tables show it (the range is added to it there).
        read_by: the deployables that read it.
        shown_default: what the tables show as the default, where the value alone would mislead.
    """

    name: str
    default: T
    _: KW_ONLY
    meaning: str
    read_by: frozenset[Deployable]
    shown_default: str = ""

    def read(self, env: Mapping[str, str]) -> T:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Text(Setting[str]):
    verbatim: bool = False  # kept as written, surrounding spaces included (a password)

    def read(self, env: Mapping[str, str]) -> str:
        if self.verbatim:
            return env.get(self.name, "") or self.default
        return text(env, self.name, self.default)


@dataclass(frozen=True, kw_only=True)
class Flag(Setting[bool]):
    def read(self, env: Mapping[str, str]) -> bool:
        return flag(env, self.name, self.default)


@dataclass(frozen=True, kw_only=True)
class Integer(Setting[int]):
    minimum: int | None = None
    maximum: int | None = None
    unit: str = ""  # "bytes": the tables write sizes in KiB and MiB too
    # Computes the default when the process starts (the tables then show `shown_default`); `default` stays the
    # field default of a settings object built in code.
    default_at_start: Callable[[], int] | None = None

    def read(self, env: Mapping[str, str]) -> int:
        default = self.default_at_start() if self.default_at_start else self.default
        return integer(env, self.name, default, self.minimum, self.maximum)


@dataclass(frozen=True, kw_only=True)
class Seconds(Setting[float]):
    minimum: float | None = None
    maximum: float | None = None

    def read(self, env: Mapping[str, str]) -> float:
        return seconds(env, self.name, self.default, self.minimum, self.maximum)


@dataclass(frozen=True, kw_only=True)
class Choice(Setting[str]):
    allowed: tuple[str, ...]

    def read(self, env: Mapping[str, str]) -> str:
        return choice(env, self.name, self.default, self.allowed)
