"""The MAD synthetic suite (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
Architectures") with the settings of the KLA paper (arXiv 2602.10743, single block, d_model 128).

Our concrete layouts (seeded, NumPy only; IGNORE = -100 marks unlabelled positions):

- in-context recall: keys are tokens 0..7, values 8..15. Each sequence draws its own map
  key -> value and is L/2 pairs (key, value). Multi-query: every key position whose key
  occurred earlier in the sequence is labelled with its value (the next token).
- fuzzy recall: as recall, but each sequence uses 8 distinct, prefix-free key spans of 1-3 key
  tokens and value spans of 1-3 value tokens; once a key span repeats, its last token is
  labelled with the first value token and each value token with the next one.
- noisy recall: as recall, with 20% of the positions noise tokens from a separate noise vocabulary
  of 16 (tokens 16..31), inserted between pairs; noise positions are unlabelled.
- selective copy: vocabulary 16 = 14 data tokens (0..13), blank (14) and copy marker (15).
  L = 256: a context of L - 17 positions holding 16 data tokens at random positions (blank
  elsewhere), the marker, then 16 blank slots labelled with the 16 data tokens in order.
- compression: L = 32: 31 random tokens from 15 data tokens (0..14) then the compression token
  (15). The model's hidden state at the compression token is decoded by a 2-layer MLP
  (widths 240, 120) into each of the 31 tokens (targets [N, 31]; readout "compression").
- memorisation: vocabulary 256 split keys 0..127, values 128..255; one map key -> value fixed by
  the seed for the whole task (to be stored in the weights). 256 training sequences of 16
  (key, value) pairs; every key position is labelled with its value. The test split draws new
  sequences from the same map.
"""

from __future__ import annotations

import numpy as np

from ...errors import value_error
from .base import IGNORE, Split, Task, check_args, rng_for

#: Task id per MAD task, used to keep their random streams apart.
MAD_TASKS = {"in_context_recall": 11, "fuzzy_recall": 12, "noisy_recall": 13, "selective_copy": 14,
             "compression": 15, "memorization": 16}


def _recall_split(rng, n, length, n_keys, n_values, noise_vocab, frac_noise):
    vocab_kv = n_keys + n_values
    n_noise = int(round(frac_noise * length))
    if (length - n_noise) % 2:
        n_noise += 1
    n_pairs = (length - n_noise) // 2
    x = np.empty((n, length), dtype=np.int64)
    y = np.full((n, length), IGNORE, dtype=np.int64)
    for i in range(n):
        kv = rng.integers(n_keys, vocab_kv, size=n_keys)               # this sequence's map key -> value
        keys = rng.integers(0, n_keys, size=n_pairs)
        items = np.concatenate([np.zeros(n_pairs, bool), np.ones(n_noise, bool)])   # False: pair, True: noise
        rng.shuffle(items)
        seen = np.zeros(n_keys, bool)
        t, j = 0, 0
        for is_noise in items:
            if is_noise:
                x[i, t] = vocab_kv + rng.integers(0, noise_vocab)
                t += 1
            else:
                k = keys[j]
                j += 1
                x[i, t], x[i, t + 1] = k, kv[k]
                if seen[k]:
                    y[i, t] = kv[k]                                    # recall: the key's value comes next
                seen[k] = True
                t += 2
    return Split(x, y)


def _fuzzy_split(rng, n, length, n_keys_tok, n_values_tok, n_pairs_distinct=8, max_span=3):
    x = np.empty((n, length), dtype=np.int64)
    y = np.full((n, length), IGNORE, dtype=np.int64)
    for i in range(n):
        keys: list[tuple] = []
        while len(keys) < n_pairs_distinct:                            # distinct, prefix-free key spans
            span = tuple(rng.integers(0, n_keys_tok, size=rng.integers(1, max_span + 1)))
            if any(span[:len(k)] == k or k[:len(span)] == span for k in keys):
                continue
            keys.append(span)
        values = [tuple(n_keys_tok + rng.integers(0, n_values_tok, size=rng.integers(1, max_span + 1)))
                  for _ in keys]
        seq, lab, seen = [], [], set()
        while len(seq) < length:
            j = int(rng.integers(0, n_pairs_distinct))
            k, v = keys[j], values[j]
            lab.extend([IGNORE] * (len(k) - 1))
            lab.append(v[0] if j in seen else IGNORE)                  # last key token -> first value token
            lab.extend([v[m + 1] if j in seen else IGNORE for m in range(len(v) - 1)])
            lab.append(IGNORE)                                         # last value token: the next key is random
            seq.extend(k)
            seq.extend(v)
            seen.add(j)
        x[i] = seq[:length]
        y[i] = lab[:length]
        y[i, length - 1] = IGNORE                                      # its next token is cut off
    return Split(x, y)


def _selective_copy_split(rng, n, length, vocab, n_copy):
    blank, marker = vocab - 2, vocab - 1
    ctx = length - n_copy - 1
    x = np.full((n, length), blank, dtype=np.int64)
    y = np.full((n, length), IGNORE, dtype=np.int64)
    for i in range(n):
        pos = np.sort(rng.choice(ctx, size=n_copy, replace=False))
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
        length: L (defaults: recall tasks 128, selective copy 256, compression and memorisation 32).

    Returns:
        the :class:`~bayesfilt.nn.tasks.Task` (train and test splits, vocabulary, readout, settings).

    Example:
        >>> t = mad_task("in_context_recall", n_train=4, n_test=2, seed=0)
        >>> t.vocab_size, t.train.inputs.shape
        (16, (4, 128))
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
    if name in ("in_context_recall", "memorization") and length % 2:
        raise value_error("length", f"{name} is made of (key, value) pairs: the length must be even, got {length}",
                          f"pass length={length + 1}")
    settings = dict(name=name, seed=seed, n_train=n_train, n_test=n_test, length=length)
    readout, n_classes = "sequence", None
    if name in ("in_context_recall", "noisy_recall"):
        noise = 16 if name == "noisy_recall" else 0
        frac = 0.2 if name == "noisy_recall" else 0.0
        make = lambda r, nn: _recall_split(r, nn, length, 8, 8, noise, frac)    # noqa: E731
        vocab = 16 + noise
        settings.update(keys=8, values=8, noise_vocab=noise, frac_noise=frac, multi_query=True)
    elif name == "fuzzy_recall":
        make = lambda r, nn: _fuzzy_split(r, nn, length, 8, 8)       # noqa: E731
        vocab = 16
        settings.update(keys=8, values=8, span=(1, 3), distinct_keys=8)
    elif name == "selective_copy":
        if length < 33:                                               # 16 data tokens + marker + 16 slots
            raise value_error("length", f"selective copy needs length >= 33, got {length}", "pass length >= 33")
        make = lambda r, nn: _selective_copy_split(r, nn, length, 16, 16)   # noqa: E731
        vocab = 16
        settings.update(n_copy=16)
    elif name == "compression":
        make = lambda r, nn: _compression_split(r, nn, length, 16)   # noqa: E731
        vocab, readout = 16, "compression"
        settings.update(decoder_widths=(240, 120))
    else:
        kv = 128 + rng_for(seed, tid, 2).integers(0, 128, size=128)    # the fixed map key -> value
        make = lambda r, nn: _memorization_split(r, kv, nn, length, 128)     # noqa: E731
        vocab = 256
        settings.update(keys=128, values=128)
    n_classes = vocab if n_classes is None else n_classes
    return Task(name=name, train=make(rng_for(seed, tid, 0), n_train), test=make(rng_for(seed, tid, 1), n_test),
                vocab_size=vocab, n_classes=n_classes, readout=readout, settings=settings)
