"""Typed checks of the values a caller passes: one vocabulary for every config and option.

Each check takes the parameter's name as the caller spells it (``chunk_s``, ``grid.f0_hz``)
and the value; it returns the value as a plain ``float``/``int``/``tuple`` or raises
:class:`steerlab.errors.ConfigError` (a ``ValueError``; or the subclass given as ``error``)
with one line ``NAME must be EXPECTED, got VALUE`` and ``.parameters == (NAME,)``, so a front
end can name its own spelling of the parameter (the CLI names its flag, see
``steerlab/cli/errors.py``). An unknown name lists the valid ones and the nearest match
(:func:`did_you_mean`), the same way everywhere. The artifact schema (:mod:`steerlab.schema`)
words its expectations the same way for the keys of the files steerlab reads.

Numbers are real numbers (Python's or numpy's), never ``bool``; integers likewise. Checks do
not convert silently: ``1.0`` is not an integer, ``"3"`` is not a number.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

from steerlab.errors import ConfigError

ErrorType = type[ConfigError]


def nearest(name: str, valid: Iterable[str]) -> str | None:
    """The entry of ``valid`` closest to ``name`` (difflib's ratio >= 0.6), or None."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return close[0] if close else None


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the nearest valid name, or ``""`` when none is close."""
    close = nearest(name, valid)
    return f" Did you mean {close!r}?" if close is not None else ""


def is_integer(value: Any) -> bool:
    """An ``int`` or numpy integer, not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (``int``, ``float`` or numpy scalar), not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def show(value: Any) -> str:
    """A value as an error message quotes it: numbers plainly (``0.5``, ``nan``), anything
    else by ``repr``, cut to 60 characters."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        text = str(int(value)) if isinstance(value, numbers.Integral) else repr(float(value))
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(name: str, expected: str, value: Any, error: ErrorType = ConfigError) -> ConfigError:
    """The error ``NAME must be EXPECTED, got VALUE`` (to raise)."""
    return error(f"{name} must be {expected}, got {show(value)}", parameter=name)


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _within(v: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    return (low is None or (v > low if low_open else v >= low)) and (
        high is None or (v < high if high_open else v <= high)
    )


def _number(
    name: str,
    value: Any,
    low: float | None,
    high: float | None,
    low_open: bool,
    high_open: bool,
    unit: str,
    none: bool,
    error: ErrorType,
) -> float | None:
    if none and value is None:
        return None
    words = "a number" if low is not None and high is not None else "a finite number"
    words = ("None or " if none else "") + words + _bounds(low, high, low_open, high_open)
    if unit:
        words += f" ({unit})"
    if not is_number(value) or not _within(float(value), low, high, low_open, high_open):
        raise fail(name, words, value, error)
    return float(value)


def number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
    error: ErrorType = ConfigError,
) -> float:
    """A finite number in the given bounds (``low_open``/``high_open``: the bound itself is
    excluded), as a ``float``. ``unit`` is named in the message (``"Hz"``, ``"s"``)."""
    return cast(float, _number(name, value, low, high, low_open, high_open, unit, False, error))


def number_or_none(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
    error: ErrorType = ConfigError,
) -> float | None:
    """``None`` or a number that passes :func:`number` with the same bounds."""
    return _number(name, value, low, high, low_open, high_open, unit, True, error)


def positive(name: str, value: Any, *, unit: str = "", error: ErrorType = ConfigError) -> float:
    """A finite number ``> 0``, as a ``float``."""
    return number(name, value, low=0, low_open=True, unit=unit, error=error)


def non_negative(name: str, value: Any, *, unit: str = "", error: ErrorType = ConfigError) -> float:
    """A finite number ``>= 0``, as a ``float``."""
    return number(name, value, low=0, unit=unit, error=error)


def fraction(name: str, value: Any, *, error: ErrorType = ConfigError) -> float:
    """A number in ``(0, 1]`` (a share of something that must not be empty), as a ``float``."""
    return number(name, value, low=0, high=1, low_open=True, error=error)


def _integer(name: str, value: Any, low: int | None, high: int | None, none: bool, error: ErrorType) -> int | None:
    if none and value is None:
        return None
    if not is_integer(value) or not _within(int(value), low, high, False, False):
        raise fail(name, ("None or " if none else "") + "an integer" + _bounds(low, high, False, False), value, error)
    return int(value)


def integer(
    name: str, value: Any, *, low: int | None = None, high: int | None = None, error: ErrorType = ConfigError
) -> int:
    """An integer in ``[low, high]``, as an ``int``."""
    return cast(int, _integer(name, value, low, high, False, error))


def integer_or_none(
    name: str, value: Any, *, low: int | None = None, high: int | None = None, error: ErrorType = ConfigError
) -> int | None:
    """``None`` or an integer that passes :func:`integer` with the same bounds."""
    return _integer(name, value, low, high, True, error)


def boolean(name: str, value: Any, *, error: ErrorType = ConfigError) -> bool:
    """``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise fail(name, "True or False", value, error)
    return value


def unknown(
    name: str, value: Any, valid: Collection[Any], *, what: str | None = None, error: ErrorType = ConfigError
) -> ConfigError:
    """The error ``unknown WHAT 'x'. Did you mean 'y'? Valid values: ...`` (to raise), with
    ``WHAT`` defaulting to the parameter's name."""
    listed = ", ".join(map(str, valid))
    return error(
        f"unknown {what or name} {value!r}.{did_you_mean(str(value), map(str, valid))} Valid values: {listed}",
        parameter=name,
    )


def choice(
    name: str, value: Any, valid: Collection[Any], *, what: str | None = None, error: ErrorType = ConfigError
) -> Any:
    """One of ``valid``; else the error of :func:`unknown`."""
    if value not in valid:
        raise unknown(name, value, valid, what=what, error=error)
    return value


def sequence(name: str, value: Any, *, nonempty: bool = False, error: ErrorType = ConfigError) -> tuple:
    """A list or tuple (not a string), as a tuple; ``nonempty``: with at least one element."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise fail(name, "a list", value, error)
    if nonempty and not value:
        raise error(f"{name} must not be empty", parameter=name)
    return tuple(value)


def distinct(name: str, values: Iterable[Any], *, error: ErrorType = ConfigError) -> tuple:
    """``values`` as a tuple, none of them listed twice."""
    values = tuple(values)
    if len(set(values)) != len(values):
        raise error(f"{name} lists a value twice: {list(values)}", parameter=name)
    return values


def choices(
    name: str, value: Any, valid: Collection[Any], *, nonempty: bool = False, error: ErrorType = ConfigError
) -> tuple:
    """A list of distinct entries of ``valid`` (see :func:`choice`), as a tuple."""
    values = sequence(name, value, nonempty=nonempty, error=error)
    for v in values:
        choice(name, v, valid, error=error)
    return distinct(name, values, error=error)


def mapping(name: str, value: Any, *, error: ErrorType = ConfigError) -> Mapping:
    """A mapping (a dict, a TOML table)."""
    if not isinstance(value, Mapping):
        raise fail(name, "a mapping", value, error)
    return value
