"""Configuration of the Kalman Linear Attention (KLA) layer.

The defaults follow the KLA paper (arXiv 2602.10743) and DESIGN.md ("KLA", "Layer").
The configuration is a frozen dataclass validated on construction; it holds no torch
objects, so it can be built, printed and serialised without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import type_error, value_error

#: The backends ``bayesfilt.nn.functional.kla_scan`` accepts, as far as the layer is concerned.
BACKENDS = ("auto", "reference", "torch", "triton")

#: How the continuous decay rates a are initialised.
A_INITS = ("s4d-real", "constant")

#: How the continuous process noise p is initialised: ``p_init`` everywhere, or 3·a·Δ per lane.
P_INIT_RULES = ("constant", "3a-dt")


@dataclass(frozen=True)
class KLAConfig:
    """Hyper-parameters of :class:`~bayesfilt.nn.KLALayer` (validated; every field has the paper's default).

    The layer runs, per channel m of d_inner = expand * d_model and per state s of d_state,
    a scalar Kalman filter in information form (DESIGN.md "KLA"; docs/kla.md). Its
    time-invariant dynamics come from an Ornstein-Uhlenbeck process discretised exactly:
    ā = exp(-a Δ), p̄ = p (1 - exp(-2 a Δ)) / (2 a), with learned a > 0, p >= 0, Δ > 0.

    Attributes:
        d_state: S, the number of filter states per channel (paper: 16).
        expand: d_inner / d_model, the width of the filtered channels (paper: 2).
        conv_kernel: width of the causal depthwise convolution before the sensor
            projection (paper: 4).
        dt_min: lower end of the log-uniform initialisation of the step Δ (paper: 0.001).
        dt_max: upper end of the log-uniform initialisation of the step Δ (paper: 0.1).
        dt_per_state: learn one step Δ per lane (m, s), ``[d_inner, d_state]``, the shape of the
            authors' released code (``kla_layer.py``; softplus-parametrised there, exp here),
            instead of one per channel, ``[d_inner]`` (default False, Mamba's choice;
            docs/notes_a5.md section 5.1). Each is drawn log-uniform in [dt_min, dt_max].
        a_init: initialisation of the continuous decay rate a > 0 per state:
            ``"s4d-real"`` sets a_s = s + 1 for s = 0..S-1 (as in S4D/Mamba), ``"constant"``
            sets a = ``a_init_value`` everywhere. Default ``"s4d-real"``; the paper's text
            reachable here does not state it, and the authors' released code
            (github.com/vaisakh-shaj/kalman-linear-attention, ``kla_layer.py``) starts every lane
            at a = 1, i.e. ``"constant"`` (docs/notes_a5.md, section 5).
        a_init_value: the value of a when ``a_init == "constant"`` (default 1.0; must be > 0).
        p_init: initial continuous process-noise intensity p >= 0 (paper: 0.01).
        p_init_rule: ``"constant"`` (default) starts p = ``p_init`` in every lane, as the paper's
            text; ``"3a-dt"`` starts each lane at p = 3·a·Δ from its own initial a and Δ (coupled
            only at initialisation; ``p_init`` is then unused), the rule of the authors' newer code
            (docs/notes_a5.md section 5.12).
        process_noise: learn p (True, the paper's KLA) or fix p = 0, which makes the filter
            a linear fixed-gate recurrence (the paper's ablation, about -4.7 MAD points).
        qk_norm: L2-normalise keys and queries over the state axis (paper: True).
        gating: multiply the output by SiLU(gate) (paper: True).
        skip: add ``skip ⊙ u`` to the filter readout, with ``skip`` a learned vector of one
            weight per channel ([d_inner], initialised to 1) and u = SiLU(conv(z)) the
            convolved input that the sensor projection reads; the variance is unchanged
            (default True). DESIGN.md writes a learned scalar times z: the per-channel vector on
            u is Mamba's D skip and holds the scalar as the case of equal entries.
        precision_floor: the 1e-4 in Λv = 1 / (softplus(raw) + 1e-4), which bounds the
            value precision above by 1 / precision_floor (paper: 1e-4; must be > 0).
        lambda_v_init: ``None`` (default) leaves the value precision's rows of the sensor projection
            at the default ``nn.Linear`` initialisation, so Λv starts input-dependent; a value c > 0
            starts those rows at zero weights with the bias that gives Λv = c for every token (they are
            learned from there). The authors' newer code starts at c = d_state, which with
            L2-normalised keys makes Λv·Σ_s k_s² = d_state (docs/notes_a5.md section 5.12). Must be
            below 1 / precision_floor.
        init_precision: λ_0, the prior precision of each lane at the start of a sequence
            (DESIGN.md default 1.0; must be > 0).
        bias: whether in_proj and out_proj carry a bias (default False, as in Mamba).
        backend: which ``kla_scan`` backend to call: ``"auto"`` (Triton on CUDA, torch
            elsewhere), ``"reference"`` (sequential, float64-exact), ``"torch"``, ``"triton"``.

    Example:
        >>> from bayesfilt.nn.config import KLAConfig
        >>> cfg = KLAConfig(d_state=8)
        >>> cfg.d_inner(64)
        128
    """

    d_state: int = 16
    expand: int = 2
    conv_kernel: int = 4
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_per_state: bool = False
    a_init: str = "s4d-real"
    a_init_value: float = 1.0
    p_init: float = 0.01
    p_init_rule: str = "constant"
    process_noise: bool = True
    qk_norm: bool = True
    gating: bool = True
    skip: bool = True
    precision_floor: float = 1e-4
    lambda_v_init: float | None = None
    init_precision: float = 1.0
    bias: bool = False
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("d_state", "expand", "conv_kernel"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("dt_min", "dt_max", "a_init_value", "p_init", "precision_floor", "init_precision"):
            _check_float(name, getattr(self, name))
        for name in ("dt_min", "dt_max", "a_init_value", "precision_floor", "init_precision"):
            if not getattr(self, name) > 0:
                raise value_error(f"KLAConfig.{name}", f"must be > 0, got {getattr(self, name)!r}",
                                  f"pass a positive {name}")
        if self.dt_min > self.dt_max:
            raise value_error("KLAConfig.dt_min", f"{self.dt_min!r} is larger than dt_max={self.dt_max!r}",
                              "pass dt_min <= dt_max (paper: 0.001 and 0.1)")
        if self.p_init < 0:
            raise value_error("KLAConfig.p_init", f"must be >= 0, got {self.p_init!r}",
                              "pass a non-negative process-noise intensity (paper: 0.01)")
        for name in ("dt_per_state", "process_noise", "qk_norm", "gating", "skip", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise type_error(f"KLAConfig.{name}", f"must be a bool, got {getattr(self, name)!r}",
                                 f"pass {name}=True or {name}=False")
        if self.a_init not in A_INITS:
            raise value_error("KLAConfig.a_init", f"unknown initialisation {self.a_init!r}",
                              f"pass one of {A_INITS}")
        if self.p_init_rule not in P_INIT_RULES:
            raise value_error("KLAConfig.p_init_rule", f"unknown rule {self.p_init_rule!r}",
                              f"pass one of {P_INIT_RULES}")
        if self.lambda_v_init is not None:
            _check_float("lambda_v_init", self.lambda_v_init)
            if not 0 < self.lambda_v_init < 1 / self.precision_floor:
                raise value_error("KLAConfig.lambda_v_init", f"must be in (0, 1 / precision_floor = "
                                  f"{1 / self.precision_floor:g}), got {self.lambda_v_init!r}",
                                  "pass None (input-dependent start) or a precision such as d_state")
        if self.backend not in BACKENDS:
            raise value_error("KLAConfig.backend", f"unknown backend {self.backend!r}",
                              f"pass one of {BACKENDS}")

    def d_inner(self, d_model: int) -> int:
        """M, the number of filtered channels for a layer of width ``d_model``.

        Args:
            d_model: the layer's width.

        Returns:
            ``expand * d_model``.
        """
        return self.expand * d_model

    def to_dict(self) -> dict:
        """The fields as a plain dict.

        Returns:
            dict of field name -> value (JSON-serialisable).
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "KLAConfig":
        """Build a config from :meth:`to_dict`'s output; unknown keys raise a clear error.

        Args:
            d: field name -> value.

        Returns:
            The validated :class:`KLAConfig`.
        """
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise value_error("KLAConfig", f"unknown fields {extra}", f"use only {sorted(known)}")
        return cls(**d)


def _check_int(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(f"KLAConfig.{name}", f"must be an int, got {value!r} ({type(value).__name__})",
                         f"pass an integer {name}")
    if value < minimum:
        raise value_error(f"KLAConfig.{name}", f"must be >= {minimum}, got {value}",
                          f"pass {name} >= {minimum}")


def _check_float(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(f"KLAConfig.{name}", f"must be a real number, got {value!r} ({type(value).__name__})",
                         f"pass a float {name}")
    if not math.isfinite(value):
        raise value_error(f"KLAConfig.{name}", f"must be finite, got {value!r}", f"pass a finite {name}")
