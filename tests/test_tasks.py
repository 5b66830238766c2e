"""Task generators: determinism and semantics, checked by recomputing each label independently."""

from itertools import permutations

import numpy as np
import pytest

from bayesfilt.errors import BayesfiltError
from bayesfilt.nn.tasks import IGNORE, TASKS, group_elements, make_task, mad_task, word_problem

SMALL = dict(n_train=64, n_test=16)


@pytest.mark.parametrize("name", TASKS)
def test_seeded_and_deterministic(name):
    a, b, c = make_task(name, seed=1, **SMALL), make_task(name, seed=1, **SMALL), make_task(name, seed=2, **SMALL)
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(a, split).inputs, getattr(b, split).inputs)
        np.testing.assert_array_equal(getattr(a, split).targets, getattr(b, split).targets)
    assert not np.array_equal(a.train.inputs, c.train.inputs)
    assert not np.array_equal(a.train.inputs[:16], a.test.inputs)      # train and test streams differ
    assert a.train.inputs.dtype == np.int64 and a.train.inputs.min() >= 0 and a.train.inputs.max() < a.vocab_size
    lab = a.train.targets[a.train.targets != IGNORE]
    assert lab.size > 0 and lab.min() >= 0 and lab.max() < a.n_classes


def _compose(g, p):
    """(g ∘ p)[i] = g[p[i]]: p first, then g."""
    return tuple(g[p[i]] for i in range(len(p)))


def _even(p):
    seen, cycles = set(), 0
    for i in range(len(p)):
        if i not in seen:
            cycles += 1
            j = i
            while j not in seen:
                seen.add(j)
                j = p[j]
    return (len(p) - cycles) % 2 == 0


@pytest.mark.parametrize("group,size", [("a5", 60), ("s5", 120)])
def test_word_problem_labels_are_running_products(group, size):
    elems = group_elements(group)
    assert len(elems) == size == len(set(elems))
    assert set(elems) == {p for p in permutations(range(5)) if group == "s5" or _even(p)}
    split = word_problem(group, 50, 20, seed=3)
    for x, y in zip(split.inputs, split.targets):
        prod = tuple(range(5))
        for t in range(20):
            prod = _compose(elems[x[t]], prod)
            assert elems[y[t]] == prod


def test_word_problem_any_length_and_errors():
    assert word_problem("a5", 2, 100, seed=0).targets.shape == (2, 100)
    assert make_task("a5", length=3, **SMALL).train.inputs.shape == (64, 3)
    with pytest.raises(BayesfiltError, match="group"):
        word_problem("a4", 2, 3, seed=0)
    with pytest.raises(BayesfiltError, match="length"):
        word_problem("a5", 2, 0, seed=0)
    with pytest.raises(BayesfiltError, match="task"):
        make_task("nope")


@pytest.mark.parametrize("group", ["a5", "s5"])
def test_word_problem_bos(group):
    """bos=True puts token n (the group's order) before the same words, unlabelled; the labels are unchanged, the
    input vocabulary grows by one, the classes do not; any other task refuses it."""
    plain, bos = (make_task(group, length=5, seed=3, bos=b, **SMALL) for b in (False, True))
    n = len(group_elements(group))
    for a, b in ((plain.train, bos.train), (plain.test, bos.test)):
        assert b.inputs.shape == (a.inputs.shape[0], 6) and (b.inputs[:, 0] == n).all()
        np.testing.assert_array_equal(b.inputs[:, 1:], a.inputs)
        assert (b.targets[:, 0] == IGNORE).all()
        np.testing.assert_array_equal(b.targets[:, 1:], a.targets)
    assert (bos.vocab_size, bos.n_classes, plain.vocab_size) == (n + 1, n, n) and bos.settings["bos"] is True
    for bad in (dict(name="in_context_recall", bos=True), dict(name="a5", bos=1)):
        with pytest.raises(BayesfiltError, match="bos"):
            make_task(length=8, **SMALL, **bad)


def test_attention_needs_bos_for_a_constant_prefix():
    """Why bos exists: on a word starting x, x, every attention layer sees the same values at positions 1 and 2
    (rotary positions move only the scores), so the untrained model's outputs there are equal and it cannot
    answer both x and x o x; with a BOS token first they differ. KLA's filter tells the positions apart without
    it (its precision grows with every token)."""
    import torch

    from bayesfilt.nn.train import TaskModel, TrainConfig
    x = torch.tensor([[7, 7, 3, 9]])
    for mixer, bos, same in (("attention", False, True), ("attention", True, False), ("kla", False, False)):
        cfg = TrainConfig(task="a5", length=4, d_model=16, d_state=4, layers=2, mixer=mixer, bos=bos)
        task = make_task("a5", length=4, bos=bos, **SMALL)
        torch.manual_seed(0)
        model = TaskModel(cfg, task).eval()
        inp = torch.cat([torch.full((1, 1), 60), x], dim=1) if bos else x
        with torch.no_grad():
            out = model.lm(inp)[0, int(bos):]                   # the outputs at the word's positions 1, 2, ...
        assert torch.allclose(out[0], out[1], atol=1e-5) is same, (mixer, bos)
        assert not torch.allclose(out[1], out[2], atol=1e-5)    # the third token differs: always told apart


def _check_recall_rows(split, train, noise=False):
    """Walk every row of an in-context (or noisy) recall split as MAD's reference lays it out: two-token
    slots, each a (key 0..7, value 8..15) pair or (noisy) two noise tokens 16..31, then the query key as
    the last input. One map per row. Training: each position is labelled with the next token (the
    last with the query's value); test: exactly the key positions whose key was shown before in a pair,
    with that key's value (so every scored position is recallable), and the query."""
    x, y = split.inputs, split.targets
    if train:
        np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    for row, lab in zip(x, y):
        shown = {}
        for t in range(0, len(row) - 1, 2):
            key, val = row[t], row[t + 1]
            if key >= 16:
                assert noise and 16 <= key < 32 and 16 <= val < 32           # noise fills a whole slot
                if not train:
                    assert lab[t] == lab[t + 1] == IGNORE
                continue
            assert 0 <= key < 8 <= val < 16
            if not train:
                assert lab[t] == (shown[key] if key in shown else IGNORE) and lab[t + 1] == IGNORE
            assert shown.setdefault(key, val) == val
        query = row[-1]
        assert query in shown and lab[-1] == shown[query]                    # the query: a shown key


def test_in_context_recall_follows_mad_reference_layout():
    task = mad_task("in_context_recall", seed=0)
    assert (len(task.train), len(task.test), task.vocab_size, task.n_classes) == (12_800, 1_280, 16, 16)
    assert task.train.inputs.shape[1] == task.test.inputs.shape[1] == 127    # L - 1 of L = 128 tokens, as MAD
    assert task.settings["train_labels"] == "next token" and task.settings["generator"] == "mad-lab"
    small = mad_task("in_context_recall", seed=0, n_train=300, n_test=300)
    _check_recall_rows(small.train, train=True)
    _check_recall_rows(small.test, train=False)
    x = small.test.inputs
    assert (x[:, :-1:2] < 8).all()                                          # no noise: 63 pairs, then the query
    scored = (small.test.targets != IGNORE).sum(1)
    distinct = np.array([len(set(row[:-1:2])) for row in x])
    np.testing.assert_array_equal(scored, 63 - distinct + 1)                 # every repeated key and the query
    # the query is drawn from all shown keys, not tied to the last pair: it repeats the last key 1 time in 8
    assert 0.06 < np.mean(x[:, -1] == x[:, -3]) < 0.2
    assert set(np.unique(x[:, -1])) == set(range(8))


def test_noisy_recall_follows_mad_reference_layout():
    """Noise comes in two-token slots in place of pairs, each slot with probability 0.2 except one pair slot
    per row: 0.2 x 62 = 12.4 noise slots per row on average (binomial, sd 3.15), 19.4% of the 128 tokens."""
    task = mad_task("noisy_recall", seed=0, n_train=400, n_test=300)
    assert (task.vocab_size, task.n_classes, task.train.inputs.shape) == (32, 32, (400, 127))
    assert task.settings["frac_noise"] == 0.2 and task.settings["noise_vocab"] == 16
    _check_recall_rows(task.train, train=True, noise=True)
    _check_recall_rows(task.test, train=False, noise=True)
    slots = task.train.inputs[:, :-1:2]                                       # [N, 63] first token of each slot
    n_noise = (slots >= 16).sum(1)
    assert abs(n_noise.mean() - 12.4) < 5 * 3.15 / np.sqrt(400)
    assert 2.5 < n_noise.std() < 3.8 and n_noise.max() < 63                   # random per row; a pair always left
    noise_tokens = task.train.inputs[task.train.inputs >= 16]
    assert set(np.unique(noise_tokens)) == set(range(16, 32))
    first, second = task.train.inputs[:, 0:126:2], task.train.inputs[:, 1:126:2]
    assert 0.03 < np.mean(first[slots >= 16] == second[slots >= 16]) < 0.1     # two independent draws: 1 in 16 equal


def test_recall_smallest_length():
    """L = 4: one pair, then the query (always that pair's key, always scored); odd lengths are refused."""
    for name in ("in_context_recall", "noisy_recall"):
        task = mad_task(name, length=4, n_train=20, n_test=20)
        x, y = task.test.inputs, task.test.targets
        assert x.shape == (20, 3) and (x[:, 0] < 8).all() and (x[:, 2] == x[:, 0]).all()
        np.testing.assert_array_equal(y[:, 2], x[:, 1])
        assert (y[:, :2] == IGNORE).all()


def _fuzzy_pairs(tokens, pad=15, first_value=7):
    """The (key, value) spans of one fuzzy-recall row, after its left padding, with the index of each
    value span's first token: spans alternate between key tokens (< 7) and value tokens (7..14)."""
    start = 0
    while tokens[start] == pad:
        start += 1
    runs = []
    for t in range(start, len(tokens)):
        kind = tokens[t] >= first_value
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(int(tokens[t]))
        else:
            runs.append((kind, [int(tokens[t])], t))
    assert all(not k for k, _, _ in runs[0::2]) and all(v for v, _, _ in runs[1::2]) and len(runs) % 2 == 0
    return [(tuple(k), tuple(v), at) for (_, k, _), (_, v, at) in zip(runs[0::2], runs[1::2])]


def _check_fuzzy_split(split, key_sizes, test):
    for x, y in zip(split.inputs, split.targets):
        tokens = np.append(x, y[-1])                       # the last label is the row's last token
        label = np.append(IGNORE, y)                       # label[t]: what position t - 1 is scored on
        pairs = _fuzzy_pairs(tokens)
        kv = {}
        for j, (key, val, at) in enumerate(pairs):
            assert len(key) in key_sizes and 1 <= len(val) <= 3
            assert len(set(key)) == len(key) and len(set(val)) == len(val)     # spans of distinct tokens
            assert kv.setdefault(key, val) == val                              # one value per key in a row
            if test:                                       # scored: values of keys seen before, and the query
                recalled = key in [k for k, _, _ in pairs[:j]] or j == len(pairs) - 1
                want = list(val) if recalled else [IGNORE] * len(val)
                assert list(label[at:at + len(val)]) == want
                assert (label[at - len(key):at] == IGNORE).all()


def test_fuzzy_recall_follows_mad_reference_layout():
    task = mad_task("fuzzy_recall", seed=0, n_train=60, n_test=60)
    assert task.vocab_size == 16 and task.train.inputs.shape == (60, 128) and task.test.inputs.shape == (60, 128)
    _check_fuzzy_split(task.train, {1, 2, 3}, test=False)
    _check_fuzzy_split(task.test, {3}, test=True)
    train_pairs = [p for x, y in zip(task.train.inputs, task.train.targets) for p in _fuzzy_pairs(np.append(x, y[-1]))]
    test_pairs = [p for x, y in zip(task.test.inputs, task.test.targets) for p in _fuzzy_pairs(np.append(x, y[-1]))]
    assert {len(k) for k, _, _ in train_pairs} == {1, 2, 3}                 # training mixes key spans of 1-3 tokens
    assert {len(v) for _, v, _ in train_pairs} == {len(v) for _, v, _ in test_pairs} == {1, 2, 3}   # values: both
    x, y = task.train.inputs, task.train.targets
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])     # training: next-token labels everywhere (MAD)
    lab = task.test.targets != IGNORE
    assert lab[:, -1].all()                                # the query's last value token is always scored
    assert 1 <= lab.sum(1).mean() < 10                     # and few others: keys of 3 tokens rarely repeat
    # the probe pair appears before the query in most rows (the reference may not fit it in)
    before = [p[-1][0] in [k for k, _, _ in p[:-1]] for p in
              (_fuzzy_pairs(np.append(x, y[-1])) for x, y in zip(task.test.inputs, task.test.targets))]
    assert np.mean(before) > 0.8
    # its first appearance is at a uniform point of the row (the reference draws it below L - 2 x probe size)
    first = [next(at for k, _, at in p if k == p[-1][0]) / 128 for p in
             (_fuzzy_pairs(np.append(x, y[-1])) for x, y in zip(task.test.inputs, task.test.targets))]
    assert 0.3 < np.mean(first) < 0.7 and min(first) < 0.2 and max(first) > 0.8


def test_selective_copy():
    task = mad_task("selective_copy", seed=0, n_train=20, n_test=1)
    assert task.train.inputs.shape == (20, 256) and task.vocab_size == 16
    for x, y in zip(task.train.inputs, task.train.targets):
        marker = int(np.flatnonzero(x == 15)[0])
        assert marker == 256 - 17
        data = x[:marker][x[:marker] != 14]
        assert len(data) == 16
        np.testing.assert_array_equal(y[marker + 1:], data)
        assert (y[:marker + 1] == IGNORE).all() and (x[marker + 1:] == 14).all()


def test_selective_copy_spreads_blanks_as_mad_reference():
    """MAD's reference inserts each blank in front of a uniformly chosen data token: the blanks before each
    data token are multinomial (mean (L - 33) / 16 each) and none follow the last one."""
    x = mad_task("selective_copy", seed=1, n_train=400, n_test=1).train.inputs
    assert (x[:, 256 - 18] != 14).all()                   # the last data token sits just before the marker
    pos = np.array([np.flatnonzero(row[:256 - 17] != 14) for row in x])        # [N, 16] data positions
    gaps = np.diff(np.concatenate([np.full((len(x), 1), -1), pos], axis=1), axis=1) - 1
    mean = (256 - 33) / 16
    sd = np.sqrt((256 - 33) * (1 / 16) * (15 / 16))
    assert np.abs(gaps.mean(0) - mean).max() < 5 * sd / np.sqrt(len(x))      # every gap, 5 standard errors
    assert abs(gaps.std() - sd) < 0.1 * sd


def test_compression():
    task = mad_task("compression", seed=0, n_train=20, n_test=1)
    assert task.readout == "compression" and task.train.inputs.shape == (20, 32)
    assert (task.train.inputs[:, -1] == 15).all() and (task.train.inputs[:, :-1] < 15).all()
    np.testing.assert_array_equal(task.train.targets, task.train.inputs[:, :-1])
    assert task.settings["decoder_widths"] == (240, 120)


def test_memorization_fixed_map():
    task = mad_task("memorization", seed=0)
    assert (len(task.train), task.train.inputs.shape[1], task.vocab_size) == (256, 32, 256)
    kv = {}
    for split in (task.train, task.test):
        for x, y in zip(split.inputs, split.targets):
            keys, vals = x[0::2], x[1::2]
            assert (keys < 128).all() and (vals >= 128).all()
            np.testing.assert_array_equal(y[0::2], vals)
            assert (y[1::2] == IGNORE).all()
            for k, v in zip(keys, vals):
                assert kv.setdefault(k, v) == v            # one map for every sequence and both splits


def test_fuzzy_recall_length_bound():
    """The smallest L that leaves room for the probe pair (up to 3 + 3 tokens) twice; shorter is refused."""
    task = mad_task("fuzzy_recall", length=13, n_train=50, n_test=50)
    assert task.train.inputs.shape == (50, 13) and (task.train.inputs[:, 0] == 15).all()    # always some padding
    with pytest.raises(BayesfiltError, match="length >= 13"):
        mad_task("fuzzy_recall", length=12, n_train=2, n_test=1)


def test_selective_copy_length_bound():
    assert mad_task("selective_copy", length=33, n_train=2, n_test=1).train.inputs.shape == (2, 33)
    with pytest.raises(BayesfiltError, match="length >= 33"):
        mad_task("selective_copy", length=32, n_train=2, n_test=1)


@pytest.mark.parametrize("name", ["in_context_recall", "noisy_recall", "memorization"])
def test_pair_tasks_need_even_length(name):
    with pytest.raises(BayesfiltError, match="even"):
        mad_task(name, length=7, n_train=2, n_test=1)


def test_public_generators_check_their_arguments():
    """The exported generators check seed and sizes as make_task does (a float seed was read as
    its integer part, negative sizes failed inside NumPy, n_test=0 failed to concatenate) and
    accept NumPy integers."""
    from bayesfilt.nn.tasks import word_problem_task
    calls = [(mad_task, dict(name="in_context_recall", n_train=-1), "n_train"),
             (mad_task, dict(name="in_context_recall", seed=-1), "seed"),
             (mad_task, dict(name="in_context_recall", length=8.0), "length"),
             (word_problem, dict(group="a5", n=2, length=3, seed=1.5), "seed"),
             (word_problem_task, dict(n_test=0), "n_test")]
    for fn, kw, name in calls:
        with pytest.raises(BayesfiltError, match=name):
            fn(**kw)
    assert make_task("a5", length=np.int64(4), n_train=3, n_test=2).train.inputs.shape == (3, 4)
