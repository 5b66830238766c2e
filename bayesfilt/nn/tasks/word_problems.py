"""Group word problems (A5, S5): state tracking as in Merrill, Petty & Sabharwal (2024).

Tokens are group elements (permutations of {0..4}, sorted lexicographically; token 0 is the
identity). Each position's label is the product of the permutations read so far,

    P_1 = g_1,   P_t = g_t ∘ P_{t-1}   ((g ∘ P)[i] = g[P[i]]: P is applied first),

so the label at t is the permutation that the prefix g_1, ..., g_t applies in reading order.
A5 (60 even permutations) is the smallest non-solvable group: no constant-depth linear RNN or
transformer tracks it at every length (the KLA paper reports 1 block up to length 8, 2 up to 20).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import permutations

import numpy as np

from ...errors import type_error, value_error
from .base import IGNORE, Split, Task, check_args, rng_for

GROUPS = ("a5", "s5")


def _parity(p: tuple) -> int:
    inv = sum(1 for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] > p[j])
    return inv % 2


@lru_cache(maxsize=None)
def group_elements(group: str) -> tuple[tuple[int, ...], ...]:
    """The elements of ``group`` ("a5" or "s5") as permutation tuples, sorted; index = token id.

    Example:
        >>> len(group_elements("a5")), group_elements("s5")[0]
        (60, (0, 1, 2, 3, 4))
    """
    if group not in GROUPS:
        raise value_error("group", f"unknown group {group!r}", f"pass one of {GROUPS}")
    perms = sorted(permutations(range(5)))
    if group == "a5":
        perms = [p for p in perms if _parity(p) == 0]
    return tuple(perms)


@lru_cache(maxsize=None)
def multiplication_table(group: str) -> np.ndarray:
    """[n, n] int64 table with ``table[a, b]`` = token of ``g_a ∘ g_b`` (g_b applied first)."""
    elems = group_elements(group)
    index = {p: i for i, p in enumerate(elems)}
    arr = np.array(elems)
    table = np.empty((len(elems), len(elems)), dtype=np.int64)
    for a in range(len(elems)):
        for b in range(len(elems)):
            table[a, b] = index[tuple(arr[a][arr[b]])]                 # (g_a ∘ g_b)[i] = g_a[g_b[i]]
    table.setflags(write=False)
    return table


def word_problem(group: str, n: int, length: int, *, seed: int, split: int = 0) -> Split:
    """``n`` random words of ``length`` group elements and their running products.

    Args:
        group: "a5" or "s5".
        n: number of sequences.
        length: L, tokens per sequence (any L >= 1; the paper uses 3..20).
        seed: random seed; the same (seed, split) always gives the same data.
        split: 0 for training, 1 for test (independent streams; 2, 3, ... further test draws).

    Returns:
        :class:`Split` with inputs and targets [n, L] (every position labelled).

    Example:
        >>> s = word_problem("a5", 2, 5, seed=0)
        >>> s.inputs.shape, s.targets.shape
        ((2, 5), (2, 5))
    """
    check_args(seed, n=n, length=length)
    table = multiplication_table(group)
    rng = rng_for(seed, GROUPS.index(group) + 1, split)
    x = rng.integers(0, table.shape[0], size=(n, length), dtype=np.int64)
    y = np.empty_like(x)
    y[:, 0] = x[:, 0]                                                  # P_1 = g_1
    for t in range(1, length):
        y[:, t] = table[x[:, t], y[:, t - 1]]                          # P_t = g_t ∘ P_{t-1}
    return Split(x, y)


def word_problem_task(group: str = "a5", *, length: int = 16, n_train: int = 100_000, n_test: int = 2_000,
                      seed: int = 0, bos: bool = False) -> Task:
    """The word-problem task for ``group`` at one ``length`` (train and test splits).

    Args:
        group: "a5" or "s5".
        length: L.
        n_train, n_test: numbers of training and test sequences.
        seed: random seed.
        bos: prepend a beginning-of-sequence token (id = the group's order, 60 for A5) to every word, unlabelled,
            as Merrill et al.'s code does (its tokenizer puts [BOS] first). The words and their labels are the
            same; rows get L + 1 positions and the input vocabulary one more token. Attention needs it: without
            a first token of its own, the positions of a constant prefix (x, x, ...) hold identical values, so
            causal attention (rotary positions move only the scores) gives them identical outputs and cannot
            tell x from x ∘ x (docs/kla.md, A5).

    Returns:
        the :class:`~bayesfilt.nn.tasks.Task` (vocabulary = classes = the group's elements; with ``bos`` one more
        input token). No
        test word is also a training word (see :func:`_unseen_words`; from length 6 on this
        practically never changes the test split, at length 3 it replaces most of it), except
        where too few other words exist (length 1; length 2 with thousands of training words).

    Example:
        >>> t = word_problem_task("a5", length=4, n_train=8, n_test=4, seed=0)
        >>> t.vocab_size, t.n_classes, t.train.inputs.shape
        (60, 60, (8, 4))
    """
    check_args(seed, length=length, n_train=n_train, n_test=n_test)
    if not isinstance(bos, bool):
        raise type_error("bos", f"must be a bool, got {bos!r}", "pass True or False")
    n_el = len(group_elements(group))
    train = word_problem(group, n_train, length, seed=seed, split=0)
    test = _unseen_words(group, n_test, length, seed, train.inputs)
    if bos:
        train, test = _with_bos(train, n_el), _with_bos(test, n_el)
    return Task(name=group, train=train, test=test, vocab_size=n_el + bos, n_classes=n_el,
                settings=dict(group=group, length=length, n_train=n_train, n_test=n_test, seed=seed, bos=bos))


def _with_bos(split: Split, bos_id: int) -> Split:
    """``split`` with token ``bos_id`` before every row, unlabelled: inputs and targets [N, L + 1]."""
    n = split.inputs.shape[0]
    return Split(np.concatenate([np.full((n, 1), bos_id, dtype=np.int64), split.inputs], axis=1),
                 np.concatenate([np.full((n, 1), IGNORE, dtype=np.int64), split.targets], axis=1))


def _unseen_words(group: str, n: int, length: int, seed: int, seen: np.ndarray) -> Split:
    """``n`` test words of ``length`` that are not among the training words ``seen`` [N, L].

    Draws from the test stream (split 1; then splits 2, 3, ... while more are needed) and drops
    the words that occur in training, so the test score measures the product of new words, not
    recall of training words (Merrill et al. 2024 hold out a share of unique words the same way).
    At short lengths this matters: of 2,000 random length-3 words, 59% are among 200,000 random
    training words (60^3 = 216,000 words exist). Where no test word is a training word (long
    words) the split is exactly the plain test stream. Deterministic in its arguments.

    Where fewer than ``n`` words of ``length`` exist outside training (length 1, or length 2
    with thousands of training words), the test split is the plain test stream and overlaps
    training: such a task measures recall, not the group product on new words.
    """
    seen_set = {row.tobytes() for row in np.ascontiguousarray(seen, dtype=np.int64)}
    free = len(group_elements(group)) ** length - len(seen_set)                 # Python int: no overflow
    if free < n:                                                                # too few new words exist
        return word_problem(group, n, length, seed=seed, split=1)
    xs, ys, kept, extra = [], [], 0, 0
    while kept < n:
        draw = word_problem(group, n, length, seed=seed, split=1 + extra)
        new = np.fromiter((row.tobytes() not in seen_set for row in draw.inputs), dtype=bool, count=n)
        xs.append(draw.inputs[new])
        ys.append(draw.targets[new])
        kept += int(new.sum())
        extra += 1
    return Split(np.concatenate(xs)[:n], np.concatenate(ys)[:n])
