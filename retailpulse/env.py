"""Settings read from the environment. Each reader refuses a value it does not understand, naming
the variable and what it accepts: a typo stops the process at start-up (web, qcluster, manage.py)
rather than turning a setting off. An unset or empty variable takes the default."""

import os
import re

from django.core.exceptions import ImproperlyConfigured

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
NAME = re.compile(r"[A-Za-z0-9_]+")
RATE = re.compile(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)")


def _value(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _refused(name: str, value: str, accepted: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r}: expected {accepted}")


def env_str(name: str, default: str) -> str:
    return _value(name) or default


def env_bool(name: str, default: bool) -> bool:
    value = _value(name)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise _refused(name, value, f"one of {', '.join(TRUE + FALSE)}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = _value(name)
    if value is None:
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise _refused(name, value, f"a whole number of at least {minimum}")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    value = _value(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = None
    if (
        number is None or not minimum <= number < float("inf") or (maximum is not None and number > maximum)
    ):  # NaN fails
        accepted = (
            f"a number of at least {minimum:g}" if maximum is None else f"a number from {minimum:g} to {maximum:g}"
        )
        raise _refused(name, value, accepted)
    return number


def env_names(name: str, default: str) -> tuple[str, ...]:
    """A comma-separated list of names, upper-cased: `jpeg, png` is ("JPEG", "PNG")."""
    value = _value(name) or default
    names = tuple(item.strip().upper() for item in value.split(",") if item.strip())
    if not names or not all(NAME.fullmatch(item) for item in names):
        raise _refused(name, value, "a comma-separated list of names (letters, digits, _)")
    return names


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _value(name)
    if value is None:
        return default
    if value.lower() not in choices:
        listed = " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}"
        raise _refused(name, value, listed)
    return value.lower()


def env_range(name: str, default: str) -> tuple[float, float]:
    """`0.1-0.4` is a uniform range in seconds, `0` (or any single number) a fixed value."""
    value = _value(name) or default
    low, _, high = value.partition("-")
    try:
        low_s = float(low)
        high_s = float(high) if high else low_s
    except ValueError:
        low_s, high_s = -1.0, -1.0
    if not 0 <= low_s <= high_s < float("inf"):
        raise _refused(name, value, "LOW-HIGH seconds (0 <= LOW <= HIGH) or one number of seconds")
    return low_s, high_s


def env_rate(name: str) -> str:
    """A request rate as DRF's throttles read it (`120/min`), or empty for none."""
    value = _value(name)
    if value is None:
        return ""
    if not RATE.fullmatch(value):
        raise _refused(name, value, "requests per period, such as 120/min (s, min, hour or day), or nothing")
    return value
