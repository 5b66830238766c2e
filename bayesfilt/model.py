"""The linear-Gaussian state-space model, as one frozen dataclass.

Model (docs/math/notation.md)::

    x_1 ~ N(m0, P0)
    x_t = F_t x_{t-1} + b_t + w_t,   w_t ~ N(0, Q_t),   t = 2..T
    y_t = H_t x_t + d_t + v_t,       v_t ~ N(0, R_t),   t = 1..T

A time-varying parameter (named in ``time_varying``) carries a time axis of length
T just before its core axes; entry t of a time-varying F, b or Q maps x_{t-1} to x_t,
so its first entry is unused. Parameters may also carry leading batch axes, which
broadcast against the batch axes of the observations ``y`` of shape (..., T, m).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .errors import type_error, value_error
from .validation import DEFAULT_RTOL, as_float_array, as_int, as_real_scalar, check_finite, check_psd, check_symmetric

#: Core rank (without time or batch axes) of each parameter.
CORE_RANK = {"m0": 1, "P0": 2, "F": 2, "b": 1, "Q": 2, "H": 2, "d": 1, "R": 2}
#: Parameters that may be declared time-varying.
TIME_VARYING_NAMES = ("F", "b", "Q", "H", "d", "R")


@dataclass(frozen=True)
class LinearGaussianSSM:
    """A linear-Gaussian state-space model (see the module docstring for the equations).

    Args:
        m0: prior mean of x_1, shape (..., n).
        P0: prior covariance of x_1, shape (..., n, n), positive semi-definite.
        F: transition matrix, shape (..., [T,] n, n).
        Q: process-noise covariance, shape (..., [T,] n, n), positive semi-definite.
        H: observation matrix, shape (..., [T,] m, n).
        R: observation-noise covariance, shape (..., [T,] m, m), positive definite.
        b: optional transition offset, shape (..., [T,] n); default zero.
        d: optional observation offset, shape (..., [T,] m); default zero.
        time_varying: names of the parameters that carry a time axis (declared, never
            guessed from the number of dimensions), e.g. ``("F", "Q")``.
        diffuse: ``True`` for an exactly diffuse prior on every state (Durbin & Koopman),
            or a boolean mask of shape (n,) for the diffuse states; their entries in
            ``m0`` and ``P0`` are ignored (P0's rows and columns for them must be zero).

    Example:
        >>> import numpy as np, bayesfilt
        >>> model = bayesfilt.LinearGaussianSSM(m0=np.zeros(1), P0=np.eye(1), F=np.eye(1),
        ...     Q=0.1 * np.eye(1), H=np.eye(1), R=np.eye(1))
        >>> x, y = model.simulate(5, seed=0)
        >>> y.shape
        (5, 1)
    """

    m0: np.ndarray
    P0: np.ndarray
    F: np.ndarray
    Q: np.ndarray
    H: np.ndarray
    R: np.ndarray
    b: np.ndarray | None = None
    d: np.ndarray | None = None
    time_varying: frozenset = field(default_factory=frozenset)
    diffuse: object = False

    def __post_init__(self) -> None:
        tv = self.time_varying
        if isinstance(tv, str):
            tv = (tv,)
        tv = frozenset(tv)
        unknown = tv - set(TIME_VARYING_NAMES)
        if unknown:
            raise value_error("time_varying", f"names unknown parameters {sorted(unknown)}",
                              f"use a subset of {TIME_VARYING_NAMES}")
        object.__setattr__(self, "time_varying", tv)
        for name in CORE_RANK:
            val = getattr(self, name)
            if val is None:
                if name in ("b", "d"):
                    if name in tv:
                        raise value_error("time_varying", f"declares {name} time-varying but {name} is None",
                                          f"pass {name} with a time axis or drop it from time_varying")
                    continue
                raise value_error(name, "is None", f"pass the {name} array")
            arr = as_float_array(val, name)
            need = CORE_RANK[name] + (1 if name in tv else 0)
            if arr.ndim < need:
                axes = "(T, " if name in tv else "("
                raise value_error(name, f"has shape {arr.shape}, needs at least {need} axes",
                                  f"pass shape (..., {axes[1:]}core axes) with core rank {CORE_RANK[name]}"
                                  + (" and a leading time axis since it is declared time-varying" if name in tv else ""))
            object.__setattr__(self, name, arr)
        n = self.m0.shape[-1]
        m = self.H.shape[-2]
        if n == 0 or m == 0:
            raise value_error("H" if m == 0 else "m0", f"gives a model with {n} states and {m} observation "
                              "components", "pass at least one state and one observed component")
        expect = {"m0": (n,), "P0": (n, n), "F": (n, n), "Q": (n, n), "H": (m, n), "R": (m, m),
                  "b": (n,), "d": (m,)}
        lengths = set()
        for name, core in expect.items():
            arr = getattr(self, name)
            if arr is None:
                continue
            k = len(core)
            if arr.shape[arr.ndim - k:] != core:
                raise value_error(name, f"has core shape {arr.shape[arr.ndim - k:]}, expected {core} "
                                  f"(n={n} states from m0, m={m} observations from H)",
                                  "make all parameters agree on n and m")
            if name in self.time_varying:
                lengths.add(arr.shape[arr.ndim - k - 1])
        if len(lengths) > 1:
            raise value_error("time_varying", f"time-varying parameters have different lengths {sorted(lengths)}",
                              "give every time-varying parameter the same number of steps T")
        try:
            np.broadcast_shapes(*(self._batch_shape_of(nm) for nm in expect if getattr(self, nm) is not None))
        except ValueError:
            raise value_error("model", "parameters have batch shapes that do not broadcast",
                              "give leading batch axes that broadcast against each other") from None
        dif = self.diffuse
        if isinstance(dif, (bool, np.bool_)):
            mask = np.full(n, bool(dif))
        else:
            mask = np.asarray(dif)
            if mask.dtype != bool or mask.shape != (n,):
                raise value_error("diffuse", f"has dtype {mask.dtype} and shape {mask.shape}",
                                  f"pass True/False or a boolean mask of shape ({n},)")
        object.__setattr__(self, "diffuse", mask if mask.any() else False)

    # ----------------------------------------------------------------- shapes
    @property
    def n(self) -> int:
        """State dimension."""
        return self.m0.shape[-1]

    @property
    def m(self) -> int:
        """Observation dimension."""
        return self.H.shape[-2]

    @property
    def num_timesteps(self) -> int | None:
        """T of the time-varying parameters, or None for a time-invariant model."""
        for name in self.time_varying:
            arr = getattr(self, name)
            return arr.shape[arr.ndim - CORE_RANK[name] - 1]
        return None

    @property
    def diffuse_mask(self) -> np.ndarray:
        """Boolean mask (n,) of the exactly diffuse states (all False when none)."""
        if self.diffuse is False:
            return np.zeros(self.n, dtype=bool)
        return self.diffuse

    @property
    def has_diffuse(self) -> bool:
        """Whether any state has an exactly diffuse prior."""
        return self.diffuse is not False

    def _batch_shape_of(self, name: str) -> tuple:
        arr = getattr(self, name)
        k = CORE_RANK[name] + (1 if name in self.time_varying else 0)
        return arr.shape[: arr.ndim - k]

    def _contents(self) -> tuple:
        """Every parameter's name, dtype, shape and bytes: equal tuples mean equal parameters."""
        parts = []
        for name in CORE_RANK:
            arr = getattr(self, name)
            if arr is not None:
                parts.append((name, arr.dtype.str, arr.shape, np.ascontiguousarray(arr).tobytes()))
        return tuple(parts)

    def _fingerprint(self) -> int:
        """Hash of :meth:`_contents` (what validate's checks depend on)."""
        return hash(self._contents())

    def _kept(self, name: str, key):
        """The value kept under ``name`` (a ``*_memo`` entry of ``__dict__``, like a cached_property) by
        :meth:`_keep` with an equal ``key``, else None."""
        memo = self.__dict__.get(name)
        return memo[1] if memo is not None and memo[0] == key else None

    def _keep(self, name: str, key, value) -> None:
        """Keep ``value`` under ``name`` (ending in ``_memo``: not pickled) for calls with an equal ``key``;
        one value per name (the last)."""
        assert name.endswith("_memo"), name
        self.__dict__[name] = (key, value)

    def __getstate__(self) -> dict:
        """Pickle and deepcopy the fields and plain memos, not the memos of device tensors (``*_memo``
        entries of ``__dict__``, e.g. the Triton kernels' uploaded parameters): a CUDA tensor in the
        pickle would need a GPU to load it."""
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_memo")}

    @functools.cached_property
    def batch_shape(self) -> tuple:
        """Broadcast batch shape of all parameters (``()`` for an unbatched model; computed once per model)."""
        return np.broadcast_shapes(*(self._batch_shape_of(nm) for nm in CORE_RANK if getattr(self, nm) is not None))

    @property
    def dtype(self) -> np.dtype:
        """Common floating dtype of the parameters."""
        return np.result_type(*(getattr(self, nm) for nm in CORE_RANK if getattr(self, nm) is not None))

    # ----------------------------------------------------------------- access
    def param(self, name: str, t: int) -> np.ndarray | None:
        """The parameter ``name`` at time index ``t`` (0-based), without its time axis.

        Args:
            name: one of m0, P0, F, b, Q, H, d, R.
            t: 0-based time index (used only for a time-varying parameter).

        Returns:
            The array at step t (a time-invariant parameter is returned whole); None for an
            absent offset ``b``/``d``.

        Example:
            >>> import numpy as np, bayesfilt
            >>> model = bayesfilt.models.constant_velocity(dim=1)
            >>> model.param("F", 3).shape
            (2, 2)
        """
        arr = getattr(self, name)
        if arr is None or name not in self.time_varying:
            return arr
        k = CORE_RANK[name]
        return arr[(Ellipsis, t) + (slice(None),) * k]

    def replace(self, **changes) -> "LinearGaussianSSM":
        """A copy with some fields replaced (``dataclasses.replace``).

        Args:
            **changes: new values of fields, by name (e.g. ``Q=...``).

        Returns:
            A new, re-checked :class:`LinearGaussianSSM`.

        Example:
            >>> import numpy as np, bayesfilt
            >>> bayesfilt.models.constant_velocity(dim=1).replace(R=np.eye(1) * 4.0).R
            array([[4.]])
        """
        return dataclasses.replace(self, **changes)

    def astype(self, dtype) -> "LinearGaussianSSM":
        """A copy with every parameter cast to ``dtype``.

        Args:
            dtype: a floating NumPy dtype (np.float32 or np.float64).

        Returns:
            A new :class:`LinearGaussianSSM` whose arrays have that dtype.

        Example:
            >>> import numpy as np, bayesfilt
            >>> bayesfilt.models.constant_velocity(dim=1).astype(np.float32).F.dtype
            dtype('float32')
        """
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise type_error("dtype", f"is {dtype!r}", "pass a floating dtype such as np.float32 or np.float64") from None
        if dt.kind != "f":
            raise type_error("dtype", f"is {dt}", "pass a floating dtype such as np.float32 or np.float64")
        changes = {nm: getattr(self, nm).astype(dt) for nm in CORE_RANK if getattr(self, nm) is not None}
        return self.replace(**changes)

    def symmetrized(self) -> "LinearGaussianSSM":
        """A copy with P0, Q and R replaced by (A + A^T) / 2.

        Returns:
            A new :class:`LinearGaussianSSM` with exactly symmetric covariances.

        Example:
            >>> import numpy as np, bayesfilt
            >>> m = bayesfilt.models.constant_velocity(dim=1)
            >>> bool((m.symmetrized().Q == m.Q).all())
            True
        """
        return self.replace(**{nm: 0.5 * (getattr(self, nm) + np.swapaxes(getattr(self, nm), -1, -2))
                               for nm in ("P0", "Q", "R")})

    # ------------------------------------------------------------- validation
    def validate(self, *, rtol: float = DEFAULT_RTOL, num_timesteps: int | None = None) -> "LinearGaussianSSM":
        """Check finiteness, symmetry and definiteness; return ``self`` for chaining.

        P0 and Q must be positive semi-definite (singular is valid), R positive definite.
        Diffuse states must have zero rows and columns in P0.
        Args:
            rtol: relative tolerance for symmetry and for eigenvalues counted as zero.
            num_timesteps: when given, must equal T of the time-varying parameters.

        Returns:
            ``self``, unchanged.

        Raises:
            BayesfiltValueError: naming the parameter, the offending entry and the fix.

        Example:
            >>> import bayesfilt
            >>> bayesfilt.models.constant_velocity(dim=1).validate().n
            2
        """
        # the parameter checks below are a pure function of the arrays' contents and rtol: a model
        # that passed them with the same contents (fingerprint) passes again, without the ~70 µs of
        # NumPy calls on every filter call (arrays changed in place give another fingerprint)
        rtol = as_real_scalar(rtol, "rtol", low=0.0, fix="pass a small non-negative tolerance, e.g. 1e-8")
        key = (float(rtol), self._fingerprint())
        if self.__dict__.get("_validated") != key:
            for name in CORE_RANK:
                arr = getattr(self, name)
                if arr is not None:
                    check_finite(arr, name)
            for name in ("P0", "Q", "R"):
                check_symmetric(getattr(self, name), name, rtol)
            check_psd(self.P0, "P0", strict=False, rtol=rtol)
            check_psd(self.Q, "Q", strict=False, rtol=rtol)
            check_psd(self.R, "R", strict=True, rtol=rtol)
            self.__dict__["_validated"] = key                      # memo, like a cached_property
        if self.has_diffuse:
            mask = self.diffuse_mask
            if np.any(self.P0[..., mask, :] != 0) or np.any(self.P0[..., :, mask] != 0):
                raise value_error("P0", "has non-zero rows/columns for diffuse states",
                                  "set P0's rows and columns of the diffuse states to 0 (their variance is infinite)")
        T = self.num_timesteps
        if num_timesteps is not None and T is not None and T != num_timesteps:
            raise value_error("y", f"has {num_timesteps} time steps but the time-varying parameters "
                              f"{sorted(self.time_varying)} have {T}",
                              "pass observations and time-varying parameters of the same length T")
        return self

    # ------------------------------------------------------------- simulation
    def simulate(self, T: int, seed=None, batch_shape: Iterable[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Draw states and observations from the model.

        Args:
            T: number of time steps (>= 1; must equal the time-varying length, if any).
            seed: seed for ``numpy.random.default_rng``.
            batch_shape: leading batch shape of the draws (broadcast with the model's).

        Returns:
            ``(x, y)`` with shapes (*batch, T, n) and (*batch, T, m). Diffuse states are
            drawn from N(m0, P0) with their P0 entries (zero), i.e. they start at m0.
        """
        T = as_int(T, "T", low=1, fix="pass a positive integer number of time steps")
        if self.num_timesteps is not None and T != self.num_timesteps:
            raise value_error("T", f"is {T} but the time-varying parameters have {self.num_timesteps} steps",
                              f"pass T={self.num_timesteps}")
        self.validate()                                 # (the length is checked above, named T)
        shape = tuple(batch_shape) if isinstance(batch_shape, Iterable) and not isinstance(batch_shape, str) else None
        if shape is None or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
                                    for s in shape):
            raise value_error("batch_shape", f"is {batch_shape!r}", "pass a tuple of non-negative ints")
        rng = np.random.default_rng(seed)
        try:
            batch = tuple(np.broadcast_shapes(shape, self.batch_shape))
        except ValueError:
            raise value_error("batch_shape", f"is {shape}, which does not broadcast with the model's batch "
                              f"shape {self.batch_shape}", "pass a shape that broadcasts with it, or ()") from None
        n, m = self.n, self.m
        x = np.empty(batch + (T, n))
        y = np.empty(batch + (T, m))

        def draw(mean, cov, size):
            w, V = np.linalg.eigh(np.broadcast_to(cov, batch + cov.shape[-2:]))
            root = V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]    # cov = root root^T
            z = rng.standard_normal(batch + (size,))
            return mean + np.einsum("...ij,...j->...i", root, z)

        for t in range(T):
            if t == 0:
                xt = draw(self.m0, self.P0, n)                                      # x_1 ~ N(m0, P0)
            else:
                b = self.param("b", t)
                mean = np.einsum("...ij,...j->...i", self.param("F", t), xt)
                xt = draw(mean + (0 if b is None else b), self.param("Q", t), n)   # x_t = F x_{t-1} + b + w
            d = self.param("d", t)
            ymean = np.einsum("...ij,...j->...i", self.param("H", t), xt)
            y[..., t, :] = draw(ymean + (0 if d is None else d), self.param("R", t), m)  # y_t = H x_t + d + v
            x[..., t, :] = xt
        return x, y
