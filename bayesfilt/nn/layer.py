"""The Kalman Linear Attention layer: a drop-in sequence mixer that also returns its uncertainty.

Block (DESIGN.md "Layer"; KLA paper, arXiv 2602.10743; docs/kla.md)::

    x -> in_proj -> (z, gate)                                   [B, L, M] each, M = expand * d_model
    z -> causal depthwise conv (kernel K) -> SiLU -> u          u: [B, L, M]
    u -> sensor projection -> v, raw, k, q                      v, raw: [B, L, M]; k, q: [B, L, S]
    Λv = 1 / (softplus(raw) + 1e-4);  k, q <- k / |k|, q / |q|
    (y, y_var) = kla_scan(v, Λv, k, q, ā, p̄)                    the per-lane information filter
    y <- y + skip ⊙ u                                           skip: [M], learned per channel (init 1);
                                                                the variance is unchanged
    y <- y * SiLU(gate);   y_var <- y_var * SiLU(gate)^2
    out = out_proj(y);     out_var = y_var @ (W_out^2)^T          [B, L, d_model]

with ā = exp(-a Δ) and p̄ = p (1 - exp(-2 a Δ)) / (2 a) (exact Ornstein-Uhlenbeck discretisation).
When the scan runs on Triton, the convolution and its SiLU of a fresh sequence run as one fused
kernel per direction on [B, L, M] (``bayesfilt.nn.kernels.conv``); otherwise, and with a state,
F.conv1d on the transposed input (the reference it is tested against).

Deviation from DESIGN.md ("y += skip·z (learned scalar)"): the skip here is a learned
per-channel vector ``skip`` of shape [M] and multiplies u = SiLU(conv(z)), the branch the
sensor projection reads, not the raw z. This is Mamba's D skip (per channel, on the
post-convolution input of the recurrence); a learned scalar is the special case of equal
entries, at M - 1 fewer parameters. ``KLAConfig(skip=False)`` removes the term.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import type_error, value_error
from .config import KLAConfig
from .functional import KLAState, _resolve_backend, kla_scan, kla_step
from .reference import causal_conv1d_reference


class KLALayerState(NamedTuple):
    """Everything a :class:`KLALayer` carries between calls when decoding.

    Attributes:
        conv: [B, M, K - 1], the last K - 1 inputs of the causal convolution.
        kla: the filter's :class:`~bayesfilt.nn.functional.KLAState` (lam, eta: [B, M, S]).

    Example:
        >>> from bayesfilt.nn import KLAConfig, KLALayer
        >>> s = KLALayer(8, KLAConfig(d_state=4)).init_state(2)
        >>> tuple(s.conv.shape), tuple(s.kla.lam.shape)
        ((2, 16, 3), (2, 16, 4))
    """

    conv: torch.Tensor
    kla: KLAState


class KLALayer(nn.Module):
    """Kalman Linear Attention mixer: ``[B, L, d_model] -> [B, L, d_model]`` plus its variance.

    Return types (they never depend on the config):

    - ``layer(x)`` -> ``y``
    - ``layer(x, return_variance=True)`` -> ``(y, y_var)``
    - ``layer(x, state=s)`` -> ``(y, new_state)``
    - ``layer(x, state=s, return_variance=True)`` -> ``(y, y_var, new_state)``

    A forward with a state continues the sequence the state summarises: any L (prefill) or
    L = 1 (decode). Prefill followed by decode equals the full-sequence forward.

    Skip (when ``config.skip``): ``y += skip ⊙ u`` with the parameter ``skip`` of shape
    [d_inner] (one weight per channel, initialised to 1) and u = SiLU(conv(z)), before the gate
    and out_proj; the variance is unchanged. DESIGN.md writes a learned scalar times z; see
    the module docstring for this deviation and its reason.

    Args:
        d_model: width of the input and output.
        config: :class:`KLAConfig` (defaults: the paper's).

    Example:
        >>> import torch
        >>> from bayesfilt.nn import KLAConfig, KLALayer
        >>> layer = KLALayer(32, KLAConfig(d_state=4))
        >>> y, y_var = layer(torch.randn(2, 10, 32), return_variance=True)
        >>> y.shape, bool((y_var >= 0).all())
        (torch.Size([2, 10, 32]), True)
    """

    def __init__(self, d_model: int, config: KLAConfig | None = None) -> None:
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int):
            raise type_error("d_model", f"must be an int, got {d_model!r}", "pass the model width as an int")
        if d_model < 1:
            raise value_error("d_model", f"must be >= 1, got {d_model}", "pass a positive width")
        config = KLAConfig() if config is None else config
        if not isinstance(config, KLAConfig):
            raise type_error("config", f"must be a KLAConfig, got {type(config).__name__}",
                             "pass bayesfilt.nn.KLAConfig(...)")
        self.d_model = d_model
        self.config = config
        M, S, K = config.d_inner(d_model), config.d_state, config.conv_kernel
        self.d_inner, self.d_state, self.conv_kernel = M, S, K
        self.in_proj = nn.Linear(d_model, 2 * M, bias=config.bias)
        self.conv_weight = nn.Parameter(torch.empty(M, K))
        self.conv_bias = nn.Parameter(torch.zeros(M))
        self.sensor = nn.Linear(M, 2 * M + 2 * S)
        self.log_dt = nn.Parameter(torch.empty((M, S) if config.dt_per_state else (M,)))   # Δ = exp(log_dt) > 0
        self.log_a = nn.Parameter(torch.empty(M, S))                   # a = exp(log_a) > 0
        if config.process_noise:
            self.p_raw = nn.Parameter(torch.empty(M, S))               # p = softplus(p_raw) >= 0
        else:
            self.register_parameter("p_raw", None)                     # p = 0: the linear ablation
        self.skip = nn.Parameter(torch.ones(M)) if config.skip else None
        self.out_proj = nn.Linear(M, d_model, bias=config.bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as the paper: Δ log-uniform in [dt_min, dt_max], a per ``a_init``, p per ``p_init_rule``
        (p = p_init by default), and, with ``lambda_v_init``, Λv constant over tokens."""
        cfg = self.config
        nn.init.kaiming_uniform_(self.conv_weight, a=math.sqrt(5))
        fan_in = self.conv_kernel
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.conv_bias, -bound, bound)
        u = torch.rand(self.log_dt.shape)                              # one draw per channel (or lane)
        self.log_dt.copy_(math.log(cfg.dt_min) + u * (math.log(cfg.dt_max) - math.log(cfg.dt_min)))
        if cfg.a_init == "s4d-real":
            a = torch.arange(1, self.d_state + 1, dtype=torch.float32).expand(self.d_inner, -1)
        else:
            a = torch.full((self.d_inner, self.d_state), cfg.a_init_value)
        self.log_a.copy_(torch.log(a))
        if self.p_raw is not None:
            if cfg.p_init_rule == "3a-dt":
                dt = torch.exp(self.log_dt)                            # Δ, [M, S] or [M]
                p0 = (3.0 * a * (dt if dt.ndim == 2 else dt[:, None])).clamp(min=1e-12)   # p = 3 a Δ per lane
            else:
                p0 = torch.full_like(a, max(cfg.p_init, 1e-12))        # p = p_init
            self.p_raw.copy_(torch.where(p0 < 20, torch.log(torch.expm1(p0.clamp(max=20))), p0))   # softplus^-1(p)
        if cfg.lambda_v_init is not None:
            M = self.d_inner                                           # rows M..2M of sensor give raw
            self.sensor.weight[M:2 * M].zero_()                        # Λv starts the same for every token
            self.sensor.bias[M:2 * M].fill_(math.log(math.expm1(1.0 / cfg.lambda_v_init - cfg.precision_floor)))
            # softplus(raw) + floor = 1 / Λv  =>  raw = softplus^-1(1 / lambda_v_init - floor)
        if self.skip is not None:
            self.skip.fill_(1.0)

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ā, p̄ [M, S] from the learned a, p, Δ (exact Ornstein-Uhlenbeck discretisation).

        Returns:
            ``(a_bar, p_bar)``: ā = exp(-a Δ) in (0, 1] and p̄ = p (1 - exp(-2 a Δ)) / (2 a) >= 0.
        """
        a = torch.exp(self.log_a)                                      # a > 0
        dt = torch.exp(self.log_dt)                                    # Δ > 0, [M, S] or [M]
        dt = dt if dt.ndim == 2 else dt[:, None]
        a_bar = torch.exp(-a * dt)                                     # ā = exp(-a Δ)
        if self.p_raw is None:
            return a_bar, torch.zeros_like(a_bar)                      # p̄ = 0
        p = F.softplus(self.p_raw)                                     # p >= 0
        p_bar = p * -torch.expm1(-2 * a * dt) / (2 * a)                # p̄ = p (1 - exp(-2aΔ)) / (2a)
        return a_bar, p_bar

    def init_state(self, batch: int, *, device=None, dtype=None) -> KLALayerState:
        """The state before the first token: zero conv cache, λ_0 = init_precision, η_0 = 0.

        Args:
            batch: B.
            device, dtype: of the state (default: the parameters' device; float32, or
                float64 if the parameters are float64).

        Returns:
            :class:`KLALayerState` with conv [B, M, K - 1] and kla (lam, eta) [B, M, S].
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise value_error("batch", f"must be a positive int, got {batch!r}", "pass the batch size B")
        device = self.log_a.device if device is None else device
        if dtype is None:
            dtype = torch.float64 if self.log_a.dtype == torch.float64 else torch.float32
        conv = torch.zeros(batch, self.d_inner, self.conv_kernel - 1, device=device, dtype=dtype)
        return KLALayerState(conv, self._prior(batch, device, dtype))

    def _prior(self, batch: int, device, dtype) -> KLAState:
        """The filter's state before the first token: lam_0 = init_precision, eta_0 = 0, [B, M, S]."""
        shape = (batch, self.d_inner, self.d_state)
        return KLAState(torch.full(shape, self.config.init_precision, device=device, dtype=dtype),
                        torch.zeros(shape, device=device, dtype=dtype))

    def _sensor(self, x: torch.Tensor, state: KLALayerState | None):
        """in_proj, causal conv + SiLU, sensor projection: (u, gate, conv input, scan inputs)."""
        B, L, _ = x.shape
        M, S, K = self.d_inner, self.d_state, self.conv_kernel
        if state is not None and (tuple(state.conv.shape) != (B, M, K - 1) or tuple(state.kla.lam.shape) != (B, M, S)):
            raise value_error("state", f"holds conv {tuple(state.conv.shape)} and lam {tuple(state.kla.lam.shape)} for "
                              f"x of batch {B}", f"pass a state from init_state({B}) or from a call with the same batch")
        z, gate = self.in_proj(x).split(M, dim=-1)                     # [B, L, M] each
        if state is None and self._triton_conv(z):
            # u = SiLU(conv(z)) fused on [B, L, M] (no transposes; docs/kla_kernels.md, "Causal convolution ...")
            from .kernels.conv import causal_conv1d_triton
            u, full = causal_conv1d_triton(z, self.conv_weight, self.conv_bias, silu=True), None
        else:
            cache = None if state is None else state.conv.to(z.dtype)      # the K - 1 inputs before z
            full = None if cache is None else torch.cat([cache, z.transpose(1, 2)], dim=-1)   # [B, M, K - 1 + L]
            if L == 1 and full is not None and full.device.type == "cpu":  # one decode token: Σ_j w_j z_{t-K+1+j} + b
                pre = (full * self.conv_weight.to(full.dtype)).sum(-1) + self.conv_bias.to(full.dtype)
                u = F.silu(pre).unsqueeze(1)                           # (CPU conv1d costs 8x this per token)
            else:
                u = causal_conv1d_reference(z, self.conv_weight, self.conv_bias, cache=cache)   # u: [B, L, M]
        v, raw, k, q = self.sensor(u).split([M, M, S, S], dim=-1)
        scan_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        v, raw, k, q = v.to(scan_dtype), raw.to(scan_dtype), k.to(scan_dtype), q.to(scan_dtype)
        lambda_v = 1.0 / (F.softplus(raw) + self.config.precision_floor)   # Λv = 1 / (softplus + 1e-4)
        if self.config.qk_norm:
            k = F.normalize(k, dim=-1)                                 # k / |k|
            q = F.normalize(q, dim=-1)                                 # q / |q|
        a_bar, p_bar = self.discretize()
        return u, gate, full, (v, lambda_v, k, q, a_bar.to(scan_dtype), p_bar.to(scan_dtype))

    def _triton_conv(self, z: torch.Tensor) -> bool:
        """Whether the convolution of a fresh sequence runs as the fused Triton kernel: when the scan
        runs on Triton (``backend`` "triton", or "auto" on CUDA with triton installed), z is on CUDA
        (or Triton interprets) and z is not float64 (the kernel computes in float32). Otherwise, and
        with a state (whose cache feeds the first K - 1 taps),
        :func:`~bayesfilt.nn.reference.causal_conv1d_reference`, which the kernel is tested against
        (so that a backend Triton cannot serve fails in the scan with its own message)."""
        if z.dtype == torch.float64 or _resolve_backend(self.config.backend, z.device) != "triton":
            return False
        from ..scan._triton import interpreting
        if not (z.is_cuda or interpreting()):
            return False
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True

    def filter_readout(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The filter's own readout, before skip, gate and out_proj (a fresh sequence).

        Args:
            x: [B, L, d_model] input.

        Returns:
            ``(y, y_var)`` [B, L, M]: y = Σ_s q μ_t and the posterior variance Σ_s q² / λ_t.

        Example:
            >>> import torch
            >>> from bayesfilt.nn import KLAConfig, KLALayer
            >>> y, y_var = KLALayer(8, KLAConfig(d_state=4)).filter_readout(torch.randn(1, 5, 8))
            >>> y_var.shape
            torch.Size([1, 5, 16])
        """
        _, _, _, inputs = self._sensor(x, None)
        y, y_var, _ = kla_scan(*inputs, initial_state=self._fresh_state(inputs[0]), backend=self.config.backend,
                               validate=False, adjoint=self._adjoint)
        return y, y_var

    @property
    def _adjoint(self) -> str:
        """The scan backward's form (``kla_scan(..., adjoint=)``): "moment" without process noise (p = 0,
        where the information form's adjoint overflows: docs/math/kla.md section 7), else "information"."""
        return "information" if self.config.process_noise else "moment"

    def _fresh_state(self, v: torch.Tensor) -> KLAState | None:
        """The filter's state before the first token for a fresh sequence: None (kla_scan's own
        lam_0 = 1, eta_0 = 0) when ``init_precision`` is 1, else lam_0 = init_precision, eta_0 = 0,
        as :meth:`init_state` gives (so a forward without a state equals one from ``init_state``)."""
        return None if self.config.init_precision == 1.0 else self._prior(v.shape[0], v.device, v.dtype)

    def forward(self, x: torch.Tensor, state: KLALayerState | None = None, *, return_variance: bool = False):
        """Mix ``x`` in time.

        Args:
            x: [B, L, d_model] input.
            state: a :class:`KLALayerState` to continue from (prefill any L, or decode L = 1);
                None starts a fresh sequence and returns no state.
            return_variance: also return the output variance [B, L, d_model]. Without it the scan
                runs without the variance (``kla_scan(..., variance=False)``: the Triton kernels skip
                y_var and its gradient; the output and gradients are the same).

        Returns:
            ``y``; ``(y, y_var)``; ``(y, new_state)``; or ``(y, y_var, new_state)`` (class docstring).
        """
        if not isinstance(x, torch.Tensor):
            raise type_error("x", f"must be a torch.Tensor, got {type(x).__name__}", "pass a [B, L, d_model] tensor")
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise value_error("x", f"has shape {tuple(x.shape)}", f"pass [B, L, {self.d_model}]")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise value_error("x", f"has shape {tuple(x.shape)} (no batch or no tokens)", "pass B >= 1 and L >= 1")
        if not torch.is_floating_point(x):
            raise type_error("x", f"has dtype {x.dtype}", "pass a floating tensor (e.g. x.float())")
        pdtype = self.in_proj.weight.dtype
        if x.dtype != pdtype and not torch.is_autocast_enabled(x.device.type):
            raise type_error("x", f"has dtype {x.dtype} but the layer's parameters are {pdtype}",
                             f"cast with x.to({pdtype}) or layer.to({x.dtype}), or run under torch.autocast")
        if state is not None and not isinstance(state, KLALayerState):
            raise type_error("state", f"must be a KLALayerState, got {type(state).__name__}",
                             "pass layer.init_state(batch) or the state a previous call returned")
        L = x.shape[1]
        u, gate, full, (v, lambda_v, k, q, a_bar, p_bar) = self._sensor(x, state)
        backend = self.config.backend
        if state is None:
            # variance on demand: without return_variance the scan skips y_var (None here)
            y, y_var, final = kla_scan(v, lambda_v, k, q, a_bar, p_bar, initial_state=self._fresh_state(v),
                                       variance=bool(return_variance), backend=backend, validate=False,
                                       adjoint=self._adjoint)
        else:
            init = KLAState(state.kla.lam.to(v.dtype), state.kla.eta.to(v.dtype))
            if L == 1:
                y, y_var, final = kla_step(v[:, 0], lambda_v[:, 0], k[:, 0], q[:, 0], a_bar, p_bar, init,
                                           backend=backend, validate=False)
                y, y_var = y.unsqueeze(1), y_var.unsqueeze(1)
            else:
                y, y_var, final = kla_scan(v, lambda_v, k, q, a_bar, p_bar, initial_state=init, backend=backend,
                                           variance=bool(return_variance), validate=False, adjoint=self._adjoint)
        K = self.conv_kernel
        if self.skip is not None:
            y = y + self.skip.to(y.dtype) * u.to(y.dtype)              # y += skip * u
        if self.config.gating:
            g = F.silu(gate).to(y.dtype)
            y = y * g                                                  # y *= SiLU(gate)
            if return_variance:                                        # (two [B, L, M] passes saved otherwise)
                y_var = y_var * g * g                                  # y_var *= SiLU(gate)^2
        out = self.out_proj(y.to(x.dtype))
        result = [out]
        if return_variance:
            w2 = self.out_proj.weight.to(y_var.dtype) ** 2
            result.append(F.linear(y_var, w2))                         # Var(W y) = (W∘W) Var(y), channels taken independent
        if state is not None:
            # a copy: a view would keep the whole [B, C, K - 1 + L] prefill buffer alive in the state
            new_conv = full[..., full.shape[-1] - (K - 1):].to(state.conv.dtype, copy=True)
            result.append(KLALayerState(new_conv, KLAState(final.lam.to(state.kla.lam.dtype),
                                                           final.eta.to(state.kla.eta.dtype))))
        return result[0] if len(result) == 1 else tuple(result)
