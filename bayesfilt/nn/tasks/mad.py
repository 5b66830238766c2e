"""The MAD synthetic suite (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
Architectures") with the settings of the KLA paper (arXiv 2602.10743, single block, d_model 128).

Our concrete layouts (seeded, NumPy only; IGNORE = -100 marks unlabelled positions):

- in-context recall (the generator of MAD's reference code, mad-lab, rewritten here; multi-query):
  keys are tokens 0..7, values 8..15. Each sequence draws its own map key -> value (a value drawn
  uniformly per key, so two keys may share one) and is L/2 - 1 pairs (key, value) with keys drawn
  uniformly (they repeat), then a final query pair: a key drawn uniformly from the keys the row has
  shown, with its value. The row is the first L - 1 of these L tokens (the query's key is its last
  input; rows have L - 1 positions, as in the reference) and position t predicts token t + 1.
  Training rows are labelled with the next token at every position (MAD trains the recall tasks as
  language models); test rows only where a key's value follows and the key was shown before: the
  repeated keys and the final query (always recallable). L is even and >= 4.
- fuzzy recall (the generator of MAD's reference code, mad-lab, rewritten here): vocabulary 16 =
  key tokens 0..6, value tokens 7..14 and a pad token (15). A key is an ordered span of 1-3
  distinct key tokens, a value an ordered span of 1-3 distinct value tokens; each sequence draws
  its own map key -> value as keys first appear. One probe pair is placed at a random point and
  repeated at the end; the sequence is left-padded to L (L >= 13). Training sequences mix key spans of 1-3
  tokens and are labelled for next-token prediction at every position (MAD trains the recall tasks
  as language models); test sequences use keys of 3 tokens only and label the value tokens of keys
  seen before (the final probe's among them). As in the reference, a probe whose first occurrence
  did not fit before the end is still scored.
- noisy recall: as in-context recall (vocabulary 32), but each of the L/2 - 1 two-token slots before
  the query holds, with probability 0.2, two noise tokens drawn uniformly (with repetition) from
  16..31 instead of a pair; one slot drawn per row always holds a pair (the reference draws that slot
  among all L/2 slots, the query's included, so it can miss; ours never does). About 19% of the L
  tokens are noise. Training rows: the next token everywhere, noise included; test rows: as recall
  (noise positions unlabelled).
- selective copy: vocabulary 16 = 14 data tokens (0..13), blank (14) and copy marker (15).
  L = 256: a context of L - 17 positions holding 16 data tokens with the L - 33 blanks spread
  before them as in MAD's reference code (each blank goes in front of a uniformly chosen data
  token, so the last data token sits just before the marker), the marker, then 16 blank slots
  labelled with the 16 data tokens in order.
- compression: L = 32: 31 random tokens from 15 data tokens (0..14) then the compression token
  (15). The model's hidden state at the compression token is decoded by a 2-layer MLP
  (widths 240, 120) into each of the 31 tokens (targets [N, 31]; readout "compression").
- memorisation: vocabulary 256 split keys 0..127, values 128..255; one map key -> value fixed by
  the seed for the whole task (to be stored in the weights). 256 training sequences of 16
  (key, value) pairs; every key position is labelled with its value. The test split draws new
  sequences from the same map.
"""

from __future__ import annotations

import itertools

import numpy as np

from ...errors import value_error
from .base import IGNORE, Split, Task, check_args, rng_for

#: Task id per MAD task, used to keep their random streams apart.
MAD_TASKS = {"in_context_recall": 11, "fuzzy_recall": 12, "noisy_recall": 13, "selective_copy": 14,
             "compression": 15, "memorization": 16}


def _recall_split(rng, n, length, train: bool, n_keys=8, n_values=8, noise_vocab=0, frac_noise=0.0):
    """MAD's in-context recall, multi-query, and its noisy variant (module docstring): [N, L - 1] rows.

    L/2 - 1 slots of two tokens, each a (key, value) pair or, with probability ``frac_noise``, two noise
    tokens (one slot drawn per row is always a pair), then a final query pair whose key is one of the
    row's keys; the row is the first L - 1 tokens and position t is labelled with token t + 1."""
    n_slots = length // 2 - 1
    rows = np.arange(n)[:, None]                                          # [N, 1]
    kv = rng.integers(n_keys, n_keys + n_values, size=(n, n_keys))        # [N, K] this row's map key -> value
    keys = rng.integers(0, n_keys, size=(n, n_slots))                     # [N, S] the key of each slot
    values = kv[rows, keys]                                               # [N, S]
    noise = np.zeros((n, n_slots), dtype=bool)                            # [N, S] slot holds two noise tokens
    if frac_noise > 0:
        noise = rng.random((n, n_slots)) < frac_noise
        noise[np.arange(n), rng.integers(0, n_slots, size=n)] = False     # one pair per row at least
    pair = ~noise
    body = np.stack([keys, values], axis=-1)                              # [N, S, 2]
    if frac_noise > 0:
        junk = rng.integers(n_keys + n_values, n_keys + n_values + noise_vocab, size=(n, n_slots, 2))
        body = np.where(noise[..., None], junk, body)
    hits = (keys[..., None] == np.arange(n_keys)) & pair[..., None]       # [N, S, K] key k shown in slot s
    shown = hits.any(axis=1)                                              # [N, K] keys the row shows
    query = np.where(shown, rng.random((n, n_keys)), -1.0).argmax(axis=1)  # [N] uniform over the shown keys
    answer = kv[np.arange(n), query]                                      # [N]
    tokens = np.concatenate([body.reshape(n, 2 * n_slots), query[:, None], answer[:, None]], axis=1)  # [N, L]
    x = tokens[:, :-1]
    if train:
        return Split(x, tokens[:, 1:].copy())                            # next token everywhere (MAD)
    earlier = np.cumsum(hits, axis=1, dtype=np.int32) - hits              # [N, S, K] times shown before slot s
    repeat = pair & (np.take_along_axis(earlier, keys[..., None], axis=2)[..., 0] > 0)   # [N, S]
    y = np.full((n, length - 1), IGNORE, dtype=np.int64)
    y[:, 0:2 * n_slots:2] = np.where(repeat, values, IGNORE)              # a repeated key: its value comes next
    y[:, -1] = answer                                                     # the query: always a shown key
    return Split(x, y)


def _motifs(n_tokens: int, size: int) -> np.ndarray:
    """[P, size] every ordered span of ``size`` distinct tokens of 0..n_tokens-1 (P = n!/(n-size)!)."""
    return np.array(list(itertools.permutations(range(n_tokens), size)), dtype=np.int64).reshape(-1, size)


def _fuzzy_split(rng, n, length, train: bool, n_key_tok=7, n_value_tok=8, max_key=3, max_value=3):
    """MAD's fuzzy in-context recall (module docstring): keys of 1..max_key tokens from 0..n_key_tok-1
    (test: max_key only), values of 1..max_value tokens from the next n_value_tok ids, pad = the id after."""
    pad = n_key_tok + n_value_tok
    keys = {s: _motifs(n_key_tok, s) for s in range(1, max_key + 1)}
    values = {s: n_key_tok + _motifs(n_value_tok, s) for s in range(1, max_value + 1)}
    key_sizes = list(range(1, max_key + 1)) if train else [max_key]
    x = np.empty((n, length), dtype=np.int64)
    y = np.full((n, length), IGNORE, dtype=np.int64)

    def draw(table, sizes):
        motifs = table[sizes[int(rng.integers(len(sizes)))]]
        return tuple(int(t) for t in motifs[int(rng.integers(len(motifs)))])

    for i in range(n):
        k_probe, v_probe = draw(keys, key_sizes), draw(values, list(values))
        kvp = len(k_probe) + len(v_probe)
        probe_at = int(rng.integers(length - 2 * kvp))          # where the probe pair first appears
        seq, lab, kv, presented = [], [], {}, set()
        while len(seq) < length - kvp - (max_key + max_value):  # room left for one more pair and the probe
            k, v_new = draw(keys, key_sizes), draw(values, list(values))
            if k_probe not in presented and len(seq) >= probe_at:
                k, v_new = k_probe, v_probe                     # the probe's first, unscored occurrence
            v = kv.setdefault(k, v_probe if k == k_probe else v_new)
            seq += [*k, *v]
            lab += [IGNORE] * len(k) + (list(v) if k in presented else [IGNORE] * len(v))
            presented.add(k)
        seq += [*k_probe, *v_probe]                             # the query: the probe again, its value scored
        lab += [IGNORE] * len(k_probe) + list(v_probe)
        n_pad = length + 1 - len(seq)                           # >= 2: the loop stopped below length - kvp
        seq, lab = [pad] * n_pad + seq, [IGNORE] * n_pad + lab  # length + 1 tokens: inputs and next tokens
        x[i] = seq[:-1]
        y[i] = seq[1:] if train else lab[1:]                    # position t predicts token t + 1
    return Split(x, y)


def _selective_copy_split(rng, n, length, vocab, n_copy):
    blank, marker = vocab - 2, vocab - 1
    ctx = length - n_copy - 1
    x = np.full((n, length), blank, dtype=np.int64)
    y = np.full((n, length), IGNORE, dtype=np.int64)
    for i in range(n):
        before = rng.multinomial(ctx - n_copy, np.full(n_copy, 1.0 / n_copy))   # blanks in front of each data token
        pos = np.arange(n_copy) + np.cumsum(before)
        data = rng.integers(0, vocab - 2, size=n_copy)
        x[i, pos] = data
        x[i, ctx] = marker
        y[i, ctx + 1:] = data                                          # the slots after the marker: the data in order
    return Split(x, y)


def _compression_split(rng, n, length, vocab):
    x = rng.integers(0, vocab - 1, size=(n, length), dtype=np.int64)
    y = x[:, :-1].copy()                                               # reconstruct every token before the marker
    x[:, -1] = vocab - 1                                               # the compression token
    return Split(x, y)


def _memorization_split(rng, kv, n, length, n_keys):
    n_pairs = length // 2
    keys = rng.integers(0, n_keys, size=(n, n_pairs))
    x = np.empty((n, length), dtype=np.int64)
    y = np.full((n, length), IGNORE, dtype=np.int64)
    x[:, 0::2] = keys
    x[:, 1::2] = kv[keys]
    y[:, 0::2] = kv[keys]                                              # every key is labelled with its stored value
    return Split(x, y)


def mad_task(name: str, *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
             length: int | None = None) -> Task:
    """A MAD task with the KLA paper's settings (override ``n_train``/``n_test``/``length`` for tiny runs).

    Args:
        name: one of :data:`MAD_TASKS`.
        seed: random seed; the same seed always gives the same data.
        n_train, n_test: numbers of sequences (defaults: 12,800 / 1,280; memorisation 256 / 256).
        length: L (defaults: recall tasks 128, selective copy 256, compression and memorisation 32). In-context
            and noisy recall generate L tokens and keep the first L - 1 as the row (``settings["row_length"]``).

    Returns:
        the :class:`~bayesfilt.nn.tasks.Task` (train and test splits, vocabulary, readout, settings).

    Example:
        >>> t = mad_task("in_context_recall", n_train=4, n_test=2, seed=0)
        >>> t.vocab_size, t.train.inputs.shape
        (16, (4, 127))
    """
    if name not in MAD_TASKS:
        raise value_error("name", f"unknown MAD task {name!r}", f"pass one of {sorted(MAD_TASKS)}")
    check_args(seed, n_train=n_train, n_test=n_test, length=length)
    tid = MAD_TASKS[name]
    n_train = (256 if name == "memorization" else 12_800) if n_train is None else n_train
    n_test = (256 if name == "memorization" else 1_280) if n_test is None else n_test
    default_len = {"selective_copy": 256, "compression": 32, "memorization": 32}.get(name, 128)
    length = default_len if length is None else length
    if length < 4:
        raise value_error("length", f"must be >= 4, got {length}", "pass a longer sequence length")
    if name in ("in_context_recall", "noisy_recall", "memorization") and length % 2:
        raise value_error("length", f"{name} is made of (key, value) pairs: the length must be even, got {length}",
                          f"pass length={length + 1}")
    settings = dict(name=name, seed=seed, n_train=n_train, n_test=n_test, length=length)
    readout, n_classes = "sequence", None
    if name in ("in_context_recall", "noisy_recall"):
        noise = 16 if name == "noisy_recall" else 0
        frac = 0.2 if name == "noisy_recall" else 0.0
        make = lambda r, nn, tr: _recall_split(r, nn, length, tr, 8, 8, noise, frac)    # noqa: E731
        vocab = 16 + noise
        settings.update(keys=8, values=8, noise_vocab=noise, frac_noise=frac, noise_unit=2, multi_query=True,
                        row_length=length - 1, train_labels="next token",
                        test_labels="the value after each repeated key and after the final query",
                        generator="mad-lab")
    elif name == "fuzzy_recall":
        if length < 13:                                               # the probe's place is drawn below L - 2 (3 + 3)
            raise value_error("length", f"fuzzy recall needs length >= 13 (room for a probe pair of up to 3 + 3 "
                              f"tokens twice), got {length}", "pass length >= 13")
        make = lambda r, nn, tr: _fuzzy_split(r, nn, length, tr)     # noqa: E731 (train and test differ)
        vocab = 16
        settings.update(key_tokens=7, value_tokens=8, pad_token=15, span=(1, 3), test_key_span=3,
                        train_labels="next token", generator="mad-lab")
    elif name == "selective_copy":
        if length < 33:                                               # 16 data tokens + marker + 16 slots
            raise value_error("length", f"selective copy needs length >= 33, got {length}", "pass length >= 33")
        make = lambda r, nn, tr: _selective_copy_split(r, nn, length, 16, 16)   # noqa: E731
        vocab = 16
        settings.update(n_copy=16)
    elif name == "compression":
        make = lambda r, nn, tr: _compression_split(r, nn, length, 16)   # noqa: E731
        vocab, readout = 16, "compression"
        settings.update(decoder_widths=(240, 120))
    else:
        kv = 128 + rng_for(seed, tid, 2).integers(0, 128, size=128)    # the fixed map key -> value
        make = lambda r, nn, tr: _memorization_split(r, kv, nn, length, 128)     # noqa: E731
        vocab = 256
        settings.update(keys=128, values=128)
    n_classes = vocab if n_classes is None else n_classes
    return Task(name=name, train=make(rng_for(seed, tid, 0), n_train, True),
                test=make(rng_for(seed, tid, 1), n_test, False),
                vocab_size=vocab, n_classes=n_classes, readout=readout, settings=settings)
