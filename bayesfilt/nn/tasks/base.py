"""The container every task generator returns (NumPy only; no torch needed to build data)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...validation import as_int

#: Target value marking a position that carries no label (the torch cross-entropy default).
IGNORE = -100


@dataclass(frozen=True)
class Split:
    """One split of a task.

    Attributes:
        inputs: [N, L] int64 token ids in ``[0, vocab_size)``.
        targets: [N, L] int64 labels in ``[0, n_classes)`` or :data:`IGNORE` (for the
            ``"compression"`` readout: [N, L - 1], every position labelled).

    Example:
        >>> import numpy as np
        >>> len(Split(np.zeros((3, 4), np.int64), np.zeros((3, 4), np.int64)))
        3
    """

    inputs: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class Task:
    """A seeded, deterministic synthetic task: train and test splits plus what a model needs.

    Attributes:
        name: the registry name (e.g. ``"a5"``, ``"in_context_recall"``).
        train, test: the :class:`Split` s.
        vocab_size: size of the input vocabulary.
        n_classes: size of the output vocabulary.
        readout: ``"sequence"`` (a label per position, from the LM head) or ``"compression"``
            (the hidden state at the last position is decoded by an MLP into every earlier token).
        settings: the generator's arguments, for the record.

    Example:
        >>> from bayesfilt.nn.tasks import make_task
        >>> t = make_task("a5", length=3, n_train=4, n_test=2)
        >>> t.name, t.vocab_size, t.readout
        ('a5', 60, 'sequence')
    """

    name: str
    train: Split
    test: Split
    vocab_size: int
    n_classes: int
    readout: str = "sequence"
    settings: dict = field(default_factory=dict)


def check_args(seed, **sizes) -> None:
    """Refuse a seed that is not an int >= 0 and sizes (n, length, n_train, ...) that are not ints
    >= 1 (None: the default), naming the argument. NumPy ints are fine; a float seed such as 1.5
    was silently read as 1 and a negative size failed inside NumPy."""
    as_int(seed, "seed", low=0, fix="pass a seed >= 0")
    for arg, val in sizes.items():
        if val is not None:
            as_int(val, arg, low=1, fix=f"pass {arg} >= 1")


def rng_for(seed: int, task_id: int, split: int) -> np.random.Generator:
    """A generator for (seed, task, split): splits and tasks never share random streams."""
    return np.random.default_rng([int(seed), int(task_id), int(split)])
