"""Optional dependencies of the subcommands: a missing one is a named error, not a traceback."""

from __future__ import annotations


def require_torch():
    """Import and return torch, or raise a BayesfiltError saying how to install it.

    Example:
        >>> torch = require_torch()                              # doctest: +SKIP
    """
    try:
        import torch
    except ImportError:
        from ..errors import value_error
        raise value_error("torch", "is not installed", "pip install 'bayesfilt[torch]'") from None
    return torch
