"""Synthetic tasks for KLA: group word problems (A5, S5) and the MAD suite.

Every generator is NumPy-only, seeded and deterministic. :func:`make_task` is the one entry
point the training loop and the CLI use.
"""

from __future__ import annotations

from ...errors import value_error
from .base import IGNORE, Split, Task
from .mad import MAD_TASKS, mad_task
from .word_problems import GROUPS, group_elements, multiplication_table, word_problem, word_problem_task

#: Every task name :func:`make_task` knows.
TASKS = tuple(GROUPS) + tuple(MAD_TASKS)


def make_task(name: str, *, seed: int = 0, length: int | None = None, n_train: int | None = None,
              n_test: int | None = None, bos: bool = False) -> Task:
    """Build task ``name`` (see :data:`TASKS`) with the paper's settings unless overridden.

    Args:
        name: "a5", "s5" or a MAD task name.
        seed: random seed.
        length: sequence length (word problems default 16; MAD tasks their paper length).
        n_train, n_test: numbers of sequences (word problems default 100,000 / 2,000).
        bos: word problems only: a beginning-of-sequence token before every word (:func:`word_problem_task`).

    Returns:
        the :class:`Task`.

    Example:
        >>> make_task("a5", length=5, n_train=10, n_test=5).train.inputs.shape
        (10, 5)
    """
    if name in GROUPS:                                  # (both generators check seed and sizes: check_args)
        kw = {k: v for k, v in dict(length=length, n_train=n_train, n_test=n_test).items() if v is not None}
        return word_problem_task(name, seed=seed, bos=bos, **kw)
    if bos:
        raise value_error("bos", f"is for the word problems {GROUPS}, not {name!r}", "pass bos=False")
    if name in MAD_TASKS:
        return mad_task(name, seed=seed, length=length, n_train=n_train, n_test=n_test)
    raise value_error("task", f"unknown task {name!r}", f"pass one of {TASKS}")


__all__ = ["GROUPS", "IGNORE", "MAD_TASKS", "Split", "TASKS", "Task", "group_elements", "mad_task", "make_task",
           "multiplication_table", "word_problem", "word_problem_task"]
