"""A5/S5 word problems: the test split holds new words only, and its labels are right.

The group product is recomputed with an independent implementation (permutations of 5 as tuples,
parity from the cycle count); the reference for "new" is a plain Python set of training words.
"""

from itertools import permutations

import numpy as np
import pytest

from bayesfilt.nn.tasks import make_task, word_problem


def _even(p):
    seen, cycles = set(), 0
    for i in range(5):
        if i not in seen:
            cycles += 1
            while i not in seen:
                seen.add(i)
                i = p[i]
    return (5 - cycles) % 2 == 0


A5 = sorted(p for p in permutations(range(5)) if _even(p))


def _running_products(word):
    """Labels of one word: P_t = g_t ∘ P_{t-1}, i.e. g_1 is applied first (reading order)."""
    state, out = list(range(5)), []
    for tok in word:
        state = [A5[tok][v] for v in state]                  # apply g_t after everything so far
        out.append(A5.index(tuple(state)))
    return out


@pytest.mark.parametrize("length,n_train", [(3, 200_000), (4, 200_000), (3, 5_000)])
def test_test_words_are_not_training_words(length, n_train):
    task = make_task("a5", length=length, n_train=n_train, n_test=2000, seed=0)
    train = {tuple(r) for r in task.train.inputs.tolist()}
    test = [tuple(r) for r in task.test.inputs.tolist()]
    assert len(test) == 2000 and task.test.targets.shape == (2000, length)
    assert not any(w in train for w in test)                  # before the fix: 1188 of 2000 at length 3
    rows = np.random.default_rng(0).choice(2000, 200, replace=False)
    for i in rows:
        assert task.test.targets[i].tolist() == _running_products(task.test.inputs[i])


def test_split_deterministic_and_unchanged_for_long_words():
    a = make_task("a5", length=3, n_train=50_000, n_test=500, seed=4)
    b = make_task("a5", length=3, n_train=50_000, n_test=500, seed=4)
    np.testing.assert_array_equal(a.test.inputs, b.test.inputs)
    np.testing.assert_array_equal(a.test.targets, b.test.targets)
    long = make_task("a5", length=12, n_train=1000, n_test=300, seed=2)
    np.testing.assert_array_equal(long.test.inputs, word_problem("a5", 300, 12, seed=2, split=1).inputs)


def test_too_few_new_words_keeps_the_plain_test_stream():
    """Length 2 with 100,000 training words: all 3,600 pairs are training words; length 1 likewise."""
    for length, n_train in ((2, 100_000), (1, 512)):
        task = make_task("a5", length=length, n_train=n_train, n_test=100)
        np.testing.assert_array_equal(task.test.inputs, word_problem("a5", 100, length, seed=0, split=1).inputs)
    assert make_task("a5", length=1, n_train=8, n_test=4).test.inputs.shape == (4, 1)
