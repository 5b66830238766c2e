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
    """Build a :class:`BayesfiltValueError` whose message names ``arg``, the problem and the fix."""
    return BayesfiltValueError(f"{arg}: {problem}. Fix: {fix}.")


def type_error(arg: str, problem: str, fix: str) -> BayesfiltTypeError:
    """Build a :class:`BayesfiltTypeError` whose message names ``arg``, the problem and the fix."""
    return BayesfiltTypeError(f"{arg}: {problem}. Fix: {fix}.")
