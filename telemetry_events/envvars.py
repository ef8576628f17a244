"""Reading typed settings from the environment, failing with the variable's name on a bad value.

Each deployable keeps one frozen settings dataclass built with these readers, once, at start.
"""

from __future__ import annotations

from collections.abc import Mapping

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
