"""Argument checks shared by the NumPy and the PyTorch models, with no dependencies of their own.

Sizes are any ``numbers.Integral`` (``int``, ``np.int64``, ...) and rates any ``numbers.Real``
(``float``, ``np.float32``, ...), because callers commonly write ``np.prod(x.shape[1:])``; ``bool``
is refused everywhere, since ``True`` as a size or a rate is a mistake, not a number. Each check
returns the value as a plain ``int`` or ``float``, or raises a ``ValueError`` whose one sentence
names the argument.
"""

import math
from collections.abc import Sequence
from numbers import Integral, Real


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (NumPy's included) and not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (NumPy's included), not a bool, and not NaN."""
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a positive integer, else a ValueError that names it."""
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_hidden_units(hidden_units: object) -> list[int]:
    """``hidden_units`` as a list of positive ints (empty: no hidden layer), else a ValueError.

    A list, a tuple or a 1-D array: an ordered sequence, so a set (no order) or a string is not.
    """
    ordered = isinstance(hidden_units, Sequence) or getattr(hidden_units, "ndim", None) == 1
    if (
        isinstance(hidden_units, str | bytes)
        or not ordered
        or not all(is_integer(h) and h > 0 for h in hidden_units)
    ):
        raise ValueError(f"hidden_units must be a list of positive integers, got {hidden_units!r}")
    return [int(h) for h in hidden_units]


def check_non_negative(name: str, value: object) -> float:
    """``value`` as a float if it is a real number >= 0, else a ValueError that names it."""
    if not is_real(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a real number > 0, else a ValueError that names it."""
    if not is_real(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_fraction(name: str, value: object) -> float:
    """``value`` as a float if it is a real number in [0, 1), else a ValueError (a dropout rate)."""
    if not is_real(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)
