"""Character-level language modelling on real text: corpus, fixed split, tokenizer, memory-mapped windows.

The corpus is the King James Bible (public domain), shipped compressed in the package as
``bayesfilt/data/kjv.txt.xz`` (4,303,854 ASCII characters; source and licence in
``bayesfilt/data/README.md``). Nothing downloads at run time.

Pipeline (docs/lm.md):

1. :func:`load_corpus` reads the text (the shipped file, or any ``.txt`` / ``.txt.xz`` you pass).
2. :func:`split_text` cuts it into blocks of about ``block_chars`` characters, each ending at a
   line end, and assigns block j to validation if ``j % 20 == 18``, to test if ``j % 20 == 19``,
   else to training (about 90 / 5 / 5 %). The split is a pure function of the text: fixed and
   disjoint (every character lies in exactly one split).
3. :class:`CharTokenizer` maps each character of the corpus's sorted alphabet to its index.
4. :func:`build_token_cache` writes each split's ids once as a ``uint8`` (``uint16`` past 256
   symbols) file in a cache folder, keyed by the text's SHA-256; :func:`load_lm_data` opens them
   with ``np.memmap`` (read-only), so a run reads only the windows it uses.
5. :class:`TokenWindows` presents a split as an ``[N, L]`` array of next-character windows
   (window i covers tokens ``offset + i L ... offset + (i + 1) L``; targets are the same
   windows shifted by one); indexing it returns ``int64`` arrays, which is all the training
   loop (:func:`bayesfilt.nn.train.train`) needs. :func:`lm_task` wraps the training and
   validation windows as the ``"lm"`` task; ``seed`` picks the training windows' offset.

Vocabulary of shapes: B batch, L context length, V vocabulary size.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import type_error, value_error
from .tasks import TASKS, Split, Task, make_task
from .tasks.base import rng_for

#: The task name of character-level language modelling in the training loop and the CLI.
LM_TASK = "lm"
#: Every task name the training loop accepts: the synthetic tasks and ``"lm"``.
ALL_TASKS = tuple(TASKS) + (LM_TASK,)
#: The shipped corpus (the King James Bible, public domain) inside the package.
CORPUS_FILE = Path(__file__).resolve().parent.parent / "data" / "kjv.txt.xz"
#: SHA-256 of the shipped corpus's decompressed text (checked when it is read).
CORPUS_SHA256 = "45cfa3e70b1a2a33a3179d0efae0e92cdaecc3c7f18d67fe726ed649b44abc67"
#: The split names, in corpus order of precedence.
SPLITS = ("train", "val", "test")
#: Default context length L of the ``"lm"`` task.
DEFAULT_LENGTH = 256


def load_corpus(path: str | os.PathLike | None = None) -> str:
    """The corpus text: the shipped King James Bible, or a ``.txt`` / ``.txt.xz`` file you name.

    Args:
        path: a UTF-8 text file, plain or xz-compressed (None: the shipped corpus, whose
            checksum is verified).

    Returns:
        the text (str).

    Example:
        >>> text = load_corpus()
        >>> len(text), text[:7]
        (4303854, 'Genesis')
    """
    shipped = path is None
    path = CORPUS_FILE if shipped else path
    if not isinstance(path, (str, os.PathLike)):
        raise type_error("path", f"is a {type(path).__name__}", "pass the path of a .txt or .txt.xz file")
    path = Path(path)
    if not path.is_file():
        raise value_error("path", f"no file at {str(path)!r}", "pass the path of a .txt or .txt.xz file")
    raw = path.read_bytes()
    if path.suffix == ".xz":
        try:
            raw = lzma.decompress(raw)
        except lzma.LZMAError as exc:
            raise value_error("path", f"{str(path)!r} is not a valid xz file ({exc})",
                              "pass an intact .txt.xz or a plain .txt") from None
    if shipped and hashlib.sha256(raw).hexdigest() != CORPUS_SHA256:
        raise value_error("corpus", f"{str(path)!r} does not match its recorded checksum",
                          "reinstall bayesfilt (the shipped corpus file is damaged)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise value_error("path", f"{str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                          "pass a UTF-8 text file") from None


def split_text(text: str, *, block_chars: int = 65536) -> dict[str, str]:
    """The fixed, disjoint train / validation / test split of ``text``.

    The text is cut into consecutive blocks, each ``block_chars`` characters long and then
    extended to the next line end; block j goes to ``val`` if ``j % 20 == 18``, to ``test`` if
    ``j % 20 == 19``, else to ``train``. Each split is its blocks joined in corpus order.

    Args:
        text: the corpus.
        block_chars: the block size (the shipped corpus gives 66 blocks: 60 train, 3 val, 3 test).

    Returns:
        dict ``{"train": str, "val": str, "test": str}``; their lengths add up to ``len(text)``.

    Example:
        >>> s = split_text("ab\\n" * 100, block_chars=6)
        >>> [len(s[k]) for k in ("train", "val", "test")]
        [276, 12, 12]
    """
    if not isinstance(text, str):
        raise type_error("text", f"is a {type(text).__name__}", "pass the corpus as a str")
    if isinstance(block_chars, bool) or not isinstance(block_chars, int) or block_chars < 1:
        raise value_error("block_chars", f"must be a positive int, got {block_chars!r}", "pass e.g. 65536")
    parts: dict[str, list[str]] = {k: [] for k in SPLITS}
    start, j = 0, 0
    while start < len(text):
        end = text.find("\n", min(start + block_chars, len(text)) - 1)
        end = len(text) if end < 0 else end + 1                         # the block ends after a line end
        name = "val" if j % 20 == 18 else "test" if j % 20 == 19 else "train"
        parts[name].append(text[start:end])
        start, j = end, j + 1
    return {k: "".join(v) for k, v in parts.items()}


@dataclass(frozen=True)
class CharTokenizer:
    """Characters to ids and back: id i is the i-th character of ``alphabet``.

    Attributes:
        alphabet: the distinct characters, in id order (sorted by code point when built by
            :meth:`from_text`).

    Example:
        >>> tok = CharTokenizer.from_text("hello world")
        >>> tok.vocab_size, tok.decode(tok.encode("hold")) == "hold"
        (8, True)
    """

    alphabet: str

    def __post_init__(self) -> None:
        if not isinstance(self.alphabet, str) or not self.alphabet:
            raise value_error("alphabet", f"must be a non-empty str, got {self.alphabet!r}",
                              "pass the characters of the vocabulary")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise value_error("alphabet", "repeats a character", "pass each character once")

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose alphabet is the sorted set of characters of ``text``.

        Args:
            text: the corpus.

        Returns:
            a :class:`CharTokenizer`.
        """
        if not isinstance(text, str) or not text:
            raise value_error("text", "must be a non-empty str", "pass the corpus text")
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        """V, the number of characters."""
        return len(self.alphabet)

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type holding every id (uint8 up to 256 symbols)."""
        return np.dtype(np.uint8 if self.vocab_size <= 256 else np.uint16 if self.vocab_size <= 65536 else np.uint32)

    def encode(self, text: str, *, arg: str = "text") -> np.ndarray:
        """The ids of ``text``'s characters.

        Args:
            text: a string over the alphabet.
            arg: the name errors give the text (e.g. a command-line option).

        Returns:
            [len(text)] array of :attr:`dtype`.
        """
        if not isinstance(text, str):
            raise type_error(arg, f"is a {type(text).__name__}", "pass a str")
        lut = {c: i for i, c in enumerate(self.alphabet)}
        try:
            return np.fromiter((lut[c] for c in text), dtype=self.dtype, count=len(text))
        except KeyError as exc:
            raise value_error(arg, f"holds the character {exc.args[0]!r}, which is not in the vocabulary",
                              "use only characters of the training corpus") from None

    def decode(self, ids) -> str:
        """The text of ``ids``.

        Args:
            ids: a sequence of ids in [0, V).

        Returns:
            str of ``len(ids)`` characters.
        """
        arr = np.asarray(ids).reshape(-1)
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= self.vocab_size):
            raise value_error("ids", f"must be integers in [0, {self.vocab_size})", "pass ids from this tokenizer")
        return "".join(self.alphabet[int(i)] for i in arr)


def _encode_fast(tok: CharTokenizer, text: str) -> np.ndarray:
    """encode() for long ASCII/Latin-1 texts: one table lookup over the bytes."""
    if all(ord(c) < 256 for c in tok.alphabet) and text.isascii():
        lut = np.full(256, -1, dtype=np.int64)                          # -1: not in the alphabet
        lut[[ord(c) for c in tok.alphabet]] = np.arange(tok.vocab_size)
        ids = lut[np.frombuffer(text.encode("latin-1"), dtype=np.uint8)]
        if (ids < 0).any():
            return tok.encode(text)                                      # raises naming the character
        return ids.astype(tok.dtype)
    return tok.encode(text)


def default_cache_dir() -> Path:
    """Where token files are cached unless a folder is given: ``$BAYESFILT_CACHE``, else
    ``$XDG_CACHE_HOME/bayesfilt``, else ``~/.cache/bayesfilt``.

    Returns:
        the folder (not created).

    Example:
        >>> default_cache_dir().name in ("bayesfilt",) or "BAYESFILT_CACHE" in os.environ
        True
    """
    if os.environ.get("BAYESFILT_CACHE"):
        return Path(os.environ["BAYESFILT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bayesfilt"


def build_token_cache(cache_dir: str | os.PathLike | None = None, *, corpus: str | os.PathLike | None = None) -> Path:
    """Tokenise the corpus's splits once into ``cache_dir`` (reused when already there).

    Writes a folder ``char-<first 16 hex of the text's SHA-256>`` holding ``train.bin``,
    ``val.bin``, ``test.bin`` (raw ids, :attr:`CharTokenizer.dtype`) and ``meta.json``
    (alphabet, dtype, split sizes, checksum). The folder is built under a temporary name and
    renamed into place, so a crash never leaves a half-written cache.

    Args:
        cache_dir: the cache folder (None: :func:`default_cache_dir`).
        corpus: a corpus file for :func:`load_corpus` (None: the shipped one).

    Returns:
        the path of the tokenised folder.

    Example:
        >>> import tempfile
        >>> build_token_cache(tempfile.mkdtemp()).name
        'char-45cfa3e70b1a2a33'
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise value_error("cache_dir", f"{str(cache_dir)!r} is a file", "pass a folder for the token cache")
    text = load_corpus(corpus)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    final = cache_dir / f"char-{sha[:16]}"
    if (final / "meta.json").is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tok = CharTokenizer.from_text(text)
    parts = split_text(text)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    try:
        sizes = {}
        for name in SPLITS:
            ids = _encode_fast(tok, parts[name])
            ids.tofile(tmp / f"{name}.bin")
            sizes[name] = int(ids.size)
        meta = {"alphabet": tok.alphabet, "dtype": tok.dtype.name, "sizes": sizes, "sha256": sha,
                "format": "bayesfilt char tokens 1"}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:                                                 # another process built it first
            if not (final / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@dataclass(frozen=True)
class LMData:
    """A tokenised corpus: the tokenizer and each split's ids, memory-mapped.

    Attributes:
        tokenizer: the :class:`CharTokenizer`.
        train, val, test: 1-D read-only ``np.memmap`` of ids.
        path: the cache folder they live in.

    Example:
        >>> import tempfile
        >>> d = load_lm_data(tempfile.mkdtemp())
        >>> d.tokenizer.vocab_size, d.train.size + d.val.size + d.test.size
        (75, 4303854)
    """

    tokenizer: CharTokenizer
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    path: Path = None

    def split(self, name: str) -> np.ndarray:
        """The ids of split ``name`` ("train", "val" or "test").

        Args:
            name: the split.

        Returns:
            1-D memmap of ids.
        """
        if name not in SPLITS:
            raise value_error("split", f"is {name!r}", f"pass one of {SPLITS}")
        return getattr(self, name)


def load_lm_data(cache_dir: str | os.PathLike | None = None, *, corpus: str | os.PathLike | None = None) -> LMData:
    """Open the tokenised corpus (building the cache first if needed).

    Args:
        cache_dir: the cache folder (None: :func:`default_cache_dir`).
        corpus: a corpus file (None: the shipped King James Bible).

    Returns:
        :class:`LMData` with memory-mapped splits.

    Example:
        >>> import tempfile
        >>> load_lm_data(tempfile.mkdtemp()).tokenizer.decode([28, 63])
        'Go'
    """
    path = build_token_cache(cache_dir, corpus=corpus)
    meta = json.loads((path / "meta.json").read_text())
    arrays = {}
    for name in SPLITS:
        f = path / f"{name}.bin"
        size = meta["sizes"][name]
        if not f.is_file() or f.stat().st_size != size * np.dtype(meta["dtype"]).itemsize:
            raise value_error("cache_dir", f"the token file {str(f)!r} is missing or has the wrong size",
                              f"delete {str(path)!r} so that it is rebuilt")
        arrays[name] = (np.memmap(f, dtype=meta["dtype"], mode="r", shape=(size,)) if size
                        else np.zeros(0, dtype=meta["dtype"]))
    return LMData(CharTokenizer(meta["alphabet"]), arrays["train"], arrays["val"], arrays["test"], path)


class TokenWindows:
    """A 1-D token array seen as ``[N, L]`` windows: ``windows[i] = ids[offset + i*L : offset + (i+1)*L + shift]``.

    With ``shift = 0`` these are the inputs; ``shift = 1`` gives the next-character targets.
    Indexing with an int, a slice or an integer array reads only those windows from the
    (memory-mapped) ids and returns ``int64`` arrays; ``np.asarray(windows)`` materialises all.

    Args:
        ids: 1-D array of token ids (e.g. a split of :class:`LMData`).
        length: L.
        offset: index of the first window's first token.
        count: number of windows (None: as many as fit, keeping one token for the last target).
        shift: 0 for inputs, 1 for targets.

    Example:
        >>> import numpy as np
        >>> w = TokenWindows(np.arange(10, dtype=np.uint8), 3, offset=1)
        >>> w.shape, w[[0, 1]].tolist(), TokenWindows(np.arange(10), 3, offset=1, shift=1)[0].tolist()
        ((2, 3), [[1, 2, 3], [4, 5, 6]], [2, 3, 4])
    """

    dtype = np.dtype(np.int64)
    ndim = 2

    def __init__(self, ids: np.ndarray, length: int, *, offset: int = 0, count: int | None = None,
                 shift: int = 0) -> None:
        if not isinstance(ids, np.ndarray) or ids.ndim != 1:
            raise value_error("ids", f"must be a 1-D array, got {getattr(ids, 'shape', type(ids).__name__)}",
                              "pass a split's 1-D id array")
        for name, v, lo in (("length", length, 1), ("offset", offset, 0), ("shift", shift, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise value_error(name, f"must be an int >= {lo}, got {v!r}", f"pass {name} >= {lo}")
        fit = max(0, (ids.size - offset - 1) // length)
        if count is None:
            count = fit
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= fit:
            raise value_error("count", f"must be an int in [0, {fit}], got {count!r}",
                              f"pass at most {fit} windows of length {length} from {ids.size} tokens")
        self.ids, self.length, self.offset, self.count, self.shift = ids, int(length), int(offset), int(count), int(shift)

    @property
    def shape(self) -> tuple[int, int]:
        """(N, L)."""
        return (self.count, self.length)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, idx):
        if isinstance(idx, tuple):
            rows = self[idx[0]]
            return rows[(slice(None),) + idx[1:]] if rows.ndim == 2 else rows[idx[1:]]
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(self.count))
        arr = np.asarray(idx)
        if arr.dtype == bool:
            arr = np.flatnonzero(arr)
        if not np.issubdtype(arr.dtype, np.integer):
            raise type_error("index", f"has dtype {arr.dtype}", "index windows with ints, slices or int arrays")
        if arr.size and (arr.min() < -self.count or arr.max() >= self.count):
            raise IndexError(f"window index out of range for {self.count} windows")
        arr = np.where(arr < 0, arr + self.count, arr)
        starts = self.offset + self.shift + arr[..., None] * self.length          # [..., 1]
        return np.asarray(self.ids[starts + np.arange(self.length)], dtype=np.int64)

    def __array__(self, dtype=None, copy=None):
        out = self[np.arange(self.count)]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"TokenWindows(N={self.count}, L={self.length}, offset={self.offset}, shift={self.shift})"


def windows_split(ids: np.ndarray, length: int, *, offset: int = 0, count: int | None = None) -> Split:
    """Inputs and next-character targets of ``ids`` as a :class:`~bayesfilt.nn.tasks.Split`.

    Args:
        ids: 1-D token ids.
        length: context length L.
        offset: first token of the first window.
        count: number of windows (None: all that fit).

    Returns:
        :class:`~bayesfilt.nn.tasks.Split` whose inputs/targets are :class:`TokenWindows`.

    Example:
        >>> import numpy as np
        >>> s = windows_split(np.arange(9), 4)
        >>> len(s), s.inputs[1].tolist(), s.targets[1].tolist()
        (2, [4, 5, 6, 7], [5, 6, 7, 8])
    """
    inputs = TokenWindows(ids, length, offset=offset, count=count)
    return Split(inputs, TokenWindows(ids, length, offset=offset, count=inputs.count, shift=1))


def lm_task(*, seed: int = 0, length: int | None = None, n_train: int | None = None, n_test: int | None = None,
            cache_dir: str | os.PathLike | None = None, corpus: str | os.PathLike | None = None) -> Task:
    """Character-level language modelling of the corpus as a :class:`~bayesfilt.nn.tasks.Task` named "lm".

    Training windows: consecutive, non-overlapping windows of the train split starting at an
    offset in [0, L) drawn from ``seed``; the "test" split of the task (what the training loop
    evaluates) is the *validation* split's windows from offset 0. The held-out test split is
    read with :func:`load_lm_data` (the benchmark reports it once, at the end).

    Args:
        seed: picks the training windows' offset.
        length: context length L (default 256).
        n_train: number of training windows (None: all, about 3.9e6 / L).
        n_test: number of validation windows (None: all, about 2.1e5 / L).
        cache_dir: token cache folder (None: :func:`default_cache_dir`).
        corpus: a corpus file (None: the shipped King James Bible).

    Returns:
        :class:`~bayesfilt.nn.tasks.Task` (vocab_size = n_classes = V, readout "sequence").

    Example:
        >>> import tempfile
        >>> t = lm_task(length=64, n_train=10, n_test=4, cache_dir=tempfile.mkdtemp())
        >>> t.train.inputs.shape, t.test.targets[:2].shape, t.vocab_size
        ((10, 64), (2, 64), 75)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise value_error("seed", f"must be a non-negative int, got {seed!r}", "pass seed >= 0")
    length = DEFAULT_LENGTH if length is None else length
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise value_error("length", f"must be a positive int, got {length!r}", "pass a context length >= 1")
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise value_error(name, f"must be a positive int or None, got {v!r}", f"pass {name} >= 1")
    data = load_lm_data(cache_dir, corpus=corpus)
    offset = int(rng_for(seed, 1000, 0).integers(length))
    fit_train = max(0, (data.train.size - offset - 1) // length)
    fit_val = max(0, (data.val.size - 1) // length)
    if fit_train < 1 or fit_val < 1:
        raise value_error("length", f"{length} leaves no window in a split ({data.val.size} validation tokens)",
                          "pass a shorter context length")
    train = windows_split(data.train, length, offset=offset, count=min(fit_train, n_train or fit_train))
    val = windows_split(data.val, length, count=min(fit_val, n_test or fit_val))
    V = data.tokenizer.vocab_size
    settings = {"length": length, "n_train": len(train), "n_test": len(val), "offset": offset,
                "corpus": "kjv" if corpus is None else str(corpus), "cache": str(data.path)}
    return Task(LM_TASK, train, val, V, V, "sequence", settings)


def make_any_task(name: str, *, seed: int = 0, length: int | None = None, n_train: int | None = None,
                  n_test: int | None = None, bos: bool = False) -> Task:
    """:func:`~bayesfilt.nn.tasks.make_task` plus ``"lm"`` (:func:`lm_task`, default cache folder).

    Args:
        name: a name in :data:`ALL_TASKS`.
        seed, length, n_train, n_test, bos: as in :func:`~bayesfilt.nn.tasks.make_task`.

    Returns:
        the :class:`~bayesfilt.nn.tasks.Task`.

    Example:
        >>> make_any_task("a5", length=3, n_train=4, n_test=2).name
        'a5'
    """
    if name == LM_TASK:
        if bos:
            raise value_error("bos", "is for the word problems, not the character LM task 'lm'", "pass bos=False")
        return lm_task(seed=seed, length=length, n_train=n_train, n_test=n_test)
    return make_task(name, seed=seed, length=length, n_train=n_train, n_test=n_test, bos=bos)


def cli_task(cfg, cache_dir: str | os.PathLike | None = None) -> Task | None:
    """The task a training config needs built up front: ``"lm"`` with ``cache_dir``; None otherwise.

    The ``train`` command passes it to :func:`~bayesfilt.nn.train.train` (which builds the
    synthetic tasks itself).

    Args:
        cfg: a :class:`~bayesfilt.nn.train.TrainConfig` (anything with task, seed, length, n_train, n_test).
        cache_dir: the token cache folder (None: :func:`default_cache_dir`).

    Returns:
        the :class:`~bayesfilt.nn.tasks.Task` for ``"lm"``, else None.

    Example:
        >>> from types import SimpleNamespace
        >>> cli_task(SimpleNamespace(task="a5")) is None
        True
    """
    if cfg.task != LM_TASK:
        return None
    return lm_task(seed=cfg.seed, length=cfg.length, n_train=cfg.n_train, n_test=cfg.n_test, cache_dir=cache_dir)


def bits_per_char(model, ids: np.ndarray, *, length: int = DEFAULT_LENGTH, batch_size: int = 32,
                  max_windows: int | None = None, device=None, autocast_dtype=None) -> float:
    """Mean cross-entropy in bits per character of ``model`` over the windows of ``ids``.

    Every window of L characters is scored independently (the first characters of a window
    have little context, as in training), so the number is comparable across mixers.

    Args:
        model: a :class:`~bayesfilt.nn.KLALanguageModel` (or anything mapping [B, L] ids to [B, L, V] logits).
        ids: 1-D ids (e.g. ``load_lm_data().test``).
        length: context length L.
        batch_size: windows per forward pass.
        max_windows: score only the first this many windows (None: all).
        device: where to run (default: the model's device).
        autocast_dtype: e.g. ``torch.bfloat16`` to score under autocast (None: off).

    Returns:
        bits per character (float).

    Example:
        >>> import numpy as np, torch
        >>> from bayesfilt.nn import KLALanguageModel, KLAConfig
        >>> lm = KLALanguageModel(5, 8, 1, kla_config=KLAConfig(d_state=2))
        >>> 0 < bits_per_char(lm, np.arange(50) % 5, length=8) < 10
        True
    """
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device if device is None else torch.device(device)
    w = windows_split(np.asarray(ids) if not isinstance(ids, np.memmap) else ids, length)
    n = len(w) if max_windows is None else min(max_windows, len(w))
    if n < 1:
        raise value_error("ids", f"holds {len(ids)} tokens: no window of length {length}", "pass more tokens")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = torch.from_numpy(w.inputs[i:min(n, i + batch_size)]).to(device)
            y = torch.from_numpy(w.targets[i:min(n, i + batch_size)]).to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                logits = model(x)
            total += float(F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum"))
            count += y.numel()
    model.train(was_training)
    return total / count / math.log(2)


__all__ = ["ALL_TASKS", "CORPUS_FILE", "CharTokenizer", "LMData", "LM_TASK", "TokenWindows", "bits_per_char",
           "build_token_cache", "cli_task", "default_cache_dir", "lm_task", "load_corpus", "load_lm_data", "make_any_task",
           "split_text", "windows_split"]
