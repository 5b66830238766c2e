"""The exceptions bayesfilt raises at its public boundary.

Every error is a subclass of :class:`BayesfiltError`, and also of the built-in
``ValueError`` or ``TypeError`` so that generic handlers keep working. Messages
name the argument, the offending value (or where it is) and the fix.
"""

from __future__ import annotations


class BayesfiltError(Exception):
    """Base class of every error bayesfilt raises on purpose."""


class BayesfiltValueError(BayesfiltError, ValueError):
    """An argument has the right type but an invalid value (shape, range, definiteness)."""


class BayesfiltTypeError(BayesfiltError, TypeError):
    """An argument has the wrong type or dtype."""


def value_error(arg: str, problem: str, fix: str) -> BayesfiltValueError:
    """Build a :class:`BayesfiltValueError` whose message names ``arg``, the problem and the fix.

    Args:
        arg: the argument's name.
        problem: what is wrong, with the offending value or its location.
        fix: what the caller should do instead.

    Returns:
        The error (to be raised by the caller).

    Example:
        >>> str(value_error("R", "is -1", "pass a positive variance"))
        'R: is -1. Fix: pass a positive variance.'
    """
    return BayesfiltValueError(f"{arg}: {problem}. Fix: {fix}.")


def type_error(arg: str, problem: str, fix: str) -> BayesfiltTypeError:
    """Build a :class:`BayesfiltTypeError` whose message names ``arg``, the problem and the fix.

    Args:
        arg: the argument's name.
        problem: what is wrong, with the offending value or its location.
        fix: what the caller should do instead.

    Returns:
        The error (to be raised by the caller).

    Example:
        >>> str(type_error("y", "is a str", "pass an array"))
        'y: is a str. Fix: pass an array.'
    """
    return BayesfiltTypeError(f"{arg}: {problem}. Fix: {fix}.")
