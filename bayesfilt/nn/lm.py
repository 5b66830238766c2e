"""A small language model around swappable sequence mixers: KLA, softmax attention, GLA, Gated DeltaNet.

Architecture: token embedding -> N pre-norm blocks ``x += mixer(RMSNorm(x)); x += SwiGLU(RMSNorm(x))``
-> RMSNorm -> LM head. Mixers come from :data:`MIXERS` (or any factory you pass):

- ``"kla"``: :class:`~bayesfilt.nn.KLALayer` (stateful decoding: O(1) memory per token);
- ``"attention"``: causal softmax attention through PyTorch SDPA with rotary positions and a KV cache;
- ``"gla"``, ``"gdn"``: flash-linear-attention's GatedLinearAttention and GatedDeltaNet, only when the
  optional ``fla`` package is installed (``pip install bayesfilt[fla]``; it needs a CUDA GPU to run);
  ``"gla_recurrent"``: the same GLA layer on fla's fused recurrent kernel (fast to compile).

Posterior-sampled training ("KLA+", arXiv 2602.10743): :meth:`KLALanguageModel.loss` with
``posterior_samples=K`` averages the loss over K samples y ~ N(y, y_var) of the last block's mixer output.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import type_error, value_error
from ..validation import as_int, as_real_scalar
from .config import KLAConfig
from .decode import _check_cuda_graph, _ids_need_check, capture_decode_step, decode_step
from .layer import KLALayer


def labelled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions (targets -100 are ignored), and 0 with zero gradients
    when no position is labelled (the plain mean is then NaN, which the training loops would take for a
    divergence). Equal to ``F.cross_entropy(..., ignore_index=-100)`` otherwise (the same sum over the same count).

    Args:
        logits: [..., C] scores (computed in float32).
        targets: [...] class ids or -100.

    Returns:
        the scalar loss.

    Example:
        >>> import torch
        >>> float(labelled_cross_entropy(torch.zeros(2, 3, 4), torch.full((2, 3), -100)))
        0.0
    """
    targets = targets.flatten()
    total = F.cross_entropy(logits.flatten(0, -2).float(), targets, ignore_index=-100, reduction="sum")
    return total / (targets != -100).sum().clamp_min(1)


class KVCache(NamedTuple):
    """Keys and values seen so far by a :class:`CausalSelfAttention` mixer (its decoding state).

    Attributes:
        k: the cached keys, rotary-encoded at their positions, [B, H, T, d_head] (H heads,
            T tokens seen so far).
        v: the cached values, [B, H, T, d_head].

    Example:
        >>> import torch
        >>> att = CausalSelfAttention(16, n_heads=2)
        >>> cache = att.init_state(3)
        >>> cache.k.shape
        torch.Size([3, 2, 0, 8])
        >>> y, cache = att(torch.randn(3, 5, 16), state=cache)
        >>> cache.k.shape, cache.v.shape
        (torch.Size([3, 2, 5, 8]), torch.Size([3, 2, 5, 8]))
    """

    k: torch.Tensor
    v: torch.Tensor


def _rope(x: torch.Tensor, offset: int) -> torch.Tensor:
    """Rotary position embedding of x [B, H, L, d] for positions offset..offset+L-1."""
    d = x.shape[-1]
    half = d // 2
    inv = 1.0 / (10000 ** (torch.arange(half, device=x.device, dtype=torch.float32) / half))
    pos = torch.arange(offset, offset + x.shape[-2], device=x.device, dtype=torch.float32)
    ang = pos[:, None] * inv[None, :]                                   # [L, d/2]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:2 * half]
    rot = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([rot, x[..., 2 * half:]], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal softmax attention (SDPA) with rotary positions and a KV cache.

    ``forward(x)`` -> y; ``forward(x, state=cache)`` -> (y, new_cache) (prefill any L, or decode).
    The query, key and value projections are one bias-free linear map, followed by a bias-free
    output projection.

    Args:
        d_model: width of the input and output; d_head = d_model / n_heads.
        n_heads: number of heads H; must divide ``d_model``.

    Example:
        >>> import torch
        >>> att = CausalSelfAttention(16, n_heads=2)
        >>> att(torch.randn(1, 5, 16)).shape
        torch.Size([1, 5, 16])

        Prefilling 4 tokens and then decoding 2 more with the cache gives the full pass:

        >>> x = torch.randn(2, 6, 16)
        >>> y1, cache = att(x[:, :4], state=att.init_state(2))
        >>> y2, cache = att(x[:, 4:], state=cache)
        >>> torch.allclose(torch.cat([y1, y2], dim=1), att(x), atol=1e-5)
        True
    """

    def __init__(self, d_model: int, n_heads: int = 4) -> None:
        super().__init__()
        as_int(n_heads, "n_heads", low=1, fix="pass a positive divisor of d_model")
        if d_model % n_heads:
            raise value_error("n_heads", f"{n_heads} does not divide d_model={d_model}", "pick a divisor of d_model")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, *, device=None, dtype=None) -> KVCache:
        """An empty KV cache for ``batch`` sequences.

        Args:
            batch: number of sequences B.
            device: where the cache lives (default: the parameters' device).
            dtype: its dtype (default: the parameters' dtype).

        Returns:
            :class:`KVCache` with k and v of shape [B, H, 0, d_head].
        """
        device = self.qkv.weight.device if device is None else device
        dtype = self.qkv.weight.dtype if dtype is None else dtype
        empty = torch.zeros(batch, self.n_heads, 0, self.d_head, device=device, dtype=dtype)
        return KVCache(empty, empty.clone())

    def forward(self, x: torch.Tensor, state: KVCache | None = None):
        """Attend causally over ``x`` (and over the cache, when ``state`` is given).

        With a cache holding T0 earlier tokens, the new tokens take positions T0..T0+L-1 and
        each attends to all cached tokens and to the new ones up to itself.

        Args:
            x: [B, L, d_model] inputs.
            state: a :class:`KVCache` from :meth:`init_state` or a previous call (None: no cache).

        Returns:
            y [B, L, d_model]; with ``state``: ``(y, new_cache)``, the cache grown by L tokens.
        """
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        offset = 0 if state is None else state.k.shape[-2]
        q, k = _rope(q, offset), _rope(k, offset)
        if state is not None:
            k = torch.cat([state.k.to(k.dtype), k], dim=-2)
            v = torch.cat([state.v.to(v.dtype), v], dim=-2)
        if offset == 0:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:                                                          # new queries see the cache and their past
            T = k.shape[-2]
            mask = torch.ones(L, T, dtype=torch.bool, device=x.device).tril(diagonal=offset)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = self.out(o.transpose(1, 2).reshape(B, L, self.d_model))
        return y if state is None else (y, KVCache(k, v))


class _FLAMixer(nn.Module):
    """Wraps a flash-linear-attention layer (no state support: generate() recomputes the prefix)."""

    stateful = False

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor):
        out = self.layer(x)
        return out[0] if isinstance(out, tuple) else out


def fla_available() -> bool:
    """Whether the optional flash-linear-attention package (``fla``) is importable.

    The ``"gla"`` and ``"gdn"`` mixers need it (it only finds the package; it does not import it
    or check for a CUDA GPU).

    Returns:
        True when ``fla`` can be imported.

    Example:
        >>> fla_available() in (True, False)
        True
    """
    return importlib.util.find_spec("fla") is not None


def _make_kla(d_model: int, layer_idx: int, *, kla_config: KLAConfig | None = None, **_) -> nn.Module:
    return KLALayer(d_model, kla_config)


def _make_attention(d_model: int, layer_idx: int, *, n_heads: int = 4, **_) -> nn.Module:
    return CausalSelfAttention(d_model, n_heads)


def _make_gla(d_model: int, layer_idx: int, *, n_heads: int = 4, fla_mode: str = "chunk", **_) -> nn.Module:
    if not fla_available():
        raise value_error("mixer", "'gla' and 'gla_recurrent' need flash-linear-attention (fla), which is not installed",
                          "pip install 'bayesfilt[fla]' (needs a CUDA GPU), or pick mixer='kla' or 'attention'")
    from fla.layers import GatedLinearAttention
    return _FLAMixer(GatedLinearAttention(hidden_size=d_model, num_heads=n_heads, layer_idx=layer_idx, mode=fla_mode))


def _make_gla_recurrent(d_model: int, layer_idx: int, **options) -> nn.Module:
    """GLA computed by fla's fused recurrent kernel: the same layer and maths as ``"gla"`` (chunked
    kernel); it compiles in seconds where the chunked kernels autotune for minutes, which suits
    short synthetic tasks."""
    return _make_gla(d_model, layer_idx, **dict(options, fla_mode="fused_recurrent"))


def _make_gdn(d_model: int, layer_idx: int, *, n_heads: int = 4, **_) -> nn.Module:
    if not fla_available():
        raise value_error("mixer", "'gdn' needs flash-linear-attention, which is not installed",
                          "pip install 'bayesfilt[fla]' (needs a CUDA GPU), or pick mixer='kla' or 'attention'")
    from fla.layers import GatedDeltaNet
    return _FLAMixer(GatedDeltaNet(hidden_size=d_model, num_heads=n_heads, head_dim=max(d_model // n_heads, 16),
                                   layer_idx=layer_idx))


def _make_hybrid(d_model: int, layer_idx: int, *, n_layers: int = 1, **options) -> nn.Module:
    """A Transformer whose last block's mixer is KLA (arXiv 2602.10743's hybrid; docs/lm.md)."""
    return (_make_kla if layer_idx == n_layers - 1 else _make_attention)(d_model, layer_idx, **options)


#: Mixer name -> factory ``(d_model, layer_idx, **options) -> nn.Module``.
MIXERS: dict[str, Callable[..., nn.Module]] = {"kla": _make_kla, "attention": _make_attention,
                                               "gla": _make_gla, "gla_recurrent": _make_gla_recurrent,
                                               "gdn": _make_gdn, "hybrid": _make_hybrid}


class SwiGLU(nn.Module):
    """The MLP of a block: ``W_down (SiLU(W_gate x) * W_up x)``."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class Block(nn.Module):
    """Pre-norm block: ``x += mixer(norm(x)); x += mlp(norm(x))``."""

    def __init__(self, d_model: int, mixer: nn.Module, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(d_model)
        self.mixer = mixer
        self.norm2 = nn.RMSNorm(d_model)
        self.mlp = SwiGLU(d_model, mlp_hidden)

    def forward(self, x, state=None):
        if state is None:
            x = x + self.mixer(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        m, state = self.mixer(self.norm1(x), state=state)
        x = x + m
        return x + self.mlp(self.norm2(x)), state


class KLALanguageModel(nn.Module):
    """Embedding, ``n_layers`` pre-norm blocks (mixer + SwiGLU), RMSNorm and an LM head.

    Args:
        vocab_size: input vocabulary size.
        d_model: width.
        n_layers: number of blocks.
        mixer: a name in :data:`MIXERS` ("kla", "attention", "gla", "gla_recurrent", "gdn"; "hybrid": attention
            blocks, the last block KLA) or a factory
            ``(d_model, layer_idx, **options) -> nn.Module``.
        kla_config: :class:`KLAConfig` for KLA mixers (paper defaults if None).
        n_heads: heads for attention / GLA / GDN mixers.
        mlp_ratio: MLP hidden width / d_model (SwiGLU; default 8/3, i.e. ~4x parameters of a GELU MLP).
        n_classes: output size of the head (default: vocab_size).

    Example:
        >>> import torch
        >>> from bayesfilt.nn import KLAConfig, KLALanguageModel
        >>> lm = KLALanguageModel(10, 16, 2, kla_config=KLAConfig(d_state=4))
        >>> lm(torch.randint(0, 10, (2, 7))).shape
        torch.Size([2, 7, 10])
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, *, mixer: str | Callable = "kla",
                 kla_config: KLAConfig | None = None, n_heads: int = 4, mlp_ratio: float = 8 / 3,
                 n_classes: int | None = None) -> None:
        super().__init__()
        for arg, val in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers),
                         ("n_classes", 1 if n_classes is None else n_classes)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise value_error(arg, f"must be a positive int, got {val!r}", f"pass a positive integer {arg}")
        as_real_scalar(mlp_ratio, "mlp_ratio", low=0.0, low_open=True,
                       fix="pass e.g. 8 / 3 (the SwiGLU hidden width is mlp_ratio * d_model)")
        if isinstance(mixer, str):
            if mixer not in MIXERS:
                raise value_error("mixer", f"unknown mixer {mixer!r}", f"pass one of {sorted(MIXERS)} or a factory")
            factory = MIXERS[mixer]
        elif callable(mixer):
            factory = mixer
        else:
            raise type_error("mixer", f"must be a name or a callable, got {type(mixer).__name__}",
                             f"pass one of {sorted(MIXERS)}")
        self.mixer_name = mixer if isinstance(mixer, str) else getattr(mixer, "__name__", "custom")
        self.vocab_size, self.d_model, self.n_layers = vocab_size, d_model, n_layers
        self.n_classes = vocab_size if n_classes is None else n_classes
        hidden = max(1, int(round(mlp_ratio * d_model)))
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, factory(d_model, i, kla_config=kla_config, n_heads=n_heads,
                                   **({"n_layers": n_layers} if isinstance(mixer, str) else {})), hidden)
            for i in range(n_layers))
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, self.n_classes, bias=False)

    @property
    def stateful(self) -> bool:
        """Whether every mixer supports stateful decoding (KLA and attention do; the fla wrappers don't)."""
        return all(getattr(b.mixer, "stateful", True) and hasattr(b.mixer, "init_state") for b in self.blocks)

    def init_state(self, batch: int, *, device=None) -> list:
        """One state per block (KLA: conv cache + filter state; attention: an empty KV cache).

        Args:
            batch: B.
            device: where the states live (default: the parameters' device).

        Returns:
            list of per-block states, to pass to :meth:`forward`.
        """
        if not self.stateful:
            raise value_error("mixer", f"{self.mixer_name!r} has no stateful decoding here",
                              "use mixer 'kla' or 'attention' for stateful decoding")
        return [b.mixer.init_state(batch, device=device) for b in self.blocks]

    def _check_tokens(self, tokens, name: str = "tokens", *, high: int | None = None, ignore: int | None = None):
        """Validate a [B, L] integer tensor of ids in [0, high) (``ignore`` also allowed); one device sync."""
        high = self.vocab_size if high is None else high
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
            raise value_error(name, f"must be a [B, L] integer tensor, got {getattr(tokens, 'shape', tokens)!r}",
                              f"pass {name} of shape [B, L]")
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise type_error(name, f"has dtype {tokens.dtype}", f"pass integer ids (e.g. {name}.long())")
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise value_error(name, f"has shape {tuple(tokens.shape)}", "pass B >= 1 and L >= 1")
        ok = (tokens >= 0) & (tokens < high)
        if ignore is not None:
            ok |= tokens == ignore
        if not bool(ok.all()):
            bad = tokens[~ok][0]
            raise value_error(name, f"holds id {int(bad)} outside [0, {high})",
                              f"pass ids in [0, {high})" + (f" or {ignore} for unlabelled" if ignore is not None else ""))

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final normalised hidden states (before the head).

        Args:
            tokens: [B, L] token ids.

        Returns:
            [B, L, d_model] tensor.
        """
        self._check_tokens(tokens)
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x)
        return self.norm(x)

    def forward(self, tokens: torch.Tensor, states: list | None = None):
        """Logits of every position.

        Args:
            tokens: [B, L] token ids.
            states: per-block states from :meth:`init_state` or a previous call (prefill or decode).

        Returns:
            logits [B, L, n_classes]; with ``states``: ``(logits, new_states)``.
        """
        self._check_tokens(tokens)
        if states is None:
            return self.head(self.hidden(tokens))
        if not isinstance(states, (list, tuple)) or len(states) != len(self.blocks):
            raise value_error("states", f"must be a list of {len(self.blocks)} per-block states, got "
                              f"{type(states).__name__} of length {len(states) if hasattr(states, '__len__') else '?'}",
                              "pass model.init_state(batch) or the states a previous call returned")
        x = self.embed(tokens)
        new = []
        for b, s in zip(self.blocks, states):
            x, s = b(x, state=s)
            new.append(s)
        return self.head(self.norm(x)), new

    def posterior_variance(self, tokens: torch.Tensor, kind: str = "output") -> torch.Tensor:
        """The KLA mixers' variance, averaged over channels.

        Args:
            tokens: [B, L] token ids.
            kind: ``"output"``: the variance each layer returns (through gate and out_proj);
                ``"filter"``: the filters' own posterior variance Σ_s q² / λ_t, before the gate.

        Returns:
            [n_layers, B, L] tensor (raises a clear error when a mixer is not a :class:`KLALayer`).
        """
        self._check_tokens(tokens)
        if kind not in ("output", "filter"):
            raise value_error("kind", f"unknown kind {kind!r}", "pass 'output' or 'filter'")
        x = self.embed(tokens)
        out = []
        for b in self.blocks:
            if not isinstance(b.mixer, KLALayer):
                raise value_error("mixer", f"{self.mixer_name!r} has no posterior variance", "use mixer='kla'")
            h = b.norm1(x)
            m, var = b.mixer(h, return_variance=True)
            if kind == "filter":
                var = b.mixer.filter_readout(h)[1]
            out.append(var.mean(-1))
            x = x + m
            x = x + b.mlp(b.norm2(x))
        return torch.stack(out)

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, *, posterior_samples: int = 0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over labelled positions (targets -100 are ignored; 0 when none is) and the logits.

        With ``posterior_samples = K > 0`` ("KLA+") the last block's mixer output is sampled K
        times from N(y, y_var) (reparameterised) and the loss is the mean over the samples;
        the returned logits are those of the mean y.

        Args:
            tokens: [B, L] token ids.
            targets: [B, L] labels (-100: unlabelled).
            posterior_samples: K (0: the plain loss).
            generator: torch generator for the posterior samples (reproducible KLA+).

        Returns:
            ``(loss, logits)``.
        """
        self._check_tokens(tokens)
        self._check_tokens(targets, "targets", high=self.n_classes, ignore=-100)
        if targets.shape != tokens.shape:
            raise value_error("targets", f"has shape {tuple(targets.shape)}, tokens {tuple(tokens.shape)}",
                              "pass one label per token (-100 where unlabelled)")
        targets = targets.long()
        posterior_samples = as_int(posterior_samples, "posterior_samples", low=0, fix="pass K >= 0 (0: the plain loss)")
        if posterior_samples == 0:
            logits = self(tokens)
            return labelled_cross_entropy(logits, targets), logits
        last = self.blocks[-1]
        if not isinstance(last.mixer, KLALayer):
            raise value_error("posterior_samples", "needs a KLA mixer in the last block", "use mixer='kla' or 0")
        x = self.embed(tokens)
        for b in self.blocks[:-1]:
            x = b(x)
        mean, var = last.mixer(last.norm1(x), return_variance=True)
        std = var.clamp_min(0).sqrt()
        total = 0.0
        logits = None
        for i in range(posterior_samples + 1):
            if i == 0:
                m = mean
            else:
                eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
                m = mean + std.to(mean.dtype) * eps                    # y ~ N(y, y_var), reparameterised
            h = x + m
            h = h + last.mlp(last.norm2(h))
            lg = self.head(self.norm(h))
            if i == 0:
                logits = lg
                continue
            total = total + labelled_cross_entropy(lg, targets)
        return total / posterior_samples, logits

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0,
                 generator: torch.Generator | None = None, cuda_graph: bool = False) -> torch.Tensor:
        """Continue ``prompt`` [B, L0] by ``max_new_tokens`` tokens: greedy (temperature 0) or sampled.

        Stateful mixers (KLA, attention) prefill once and then decode one token per step from
        their states (KLA: O(1) memory per token; attention: a growing KV cache). Mixers without
        state support recompute the whole prefix each step.

        Args:
            prompt: [B, L0] token ids.
            max_new_tokens: how many tokens to append.
            temperature: 0 for greedy decoding, > 0 to sample from softmax(logits / temperature).
            generator: torch generator for sampling.
            cuda_graph: decode each token by replaying one CUDA graph of the whole step
                (:func:`bayesfilt.nn.decode.capture_decode_step`; every mixer KLA, CUDA): the same tokens
                with a fraction of the host time per token (benchmarks/kla_decode.py).

        Returns:
            [B, L0 + max_new_tokens] token ids.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise value_error("max_new_tokens", f"must be an int >= 0, got {max_new_tokens!r}", "pass a non-negative count")
        as_real_scalar(temperature, "temperature", low=0.0,
                       fix="pass 0 for greedy decoding or a positive temperature to sample")
        self._check_tokens(prompt, "prompt")
        cuda_graph = _check_cuda_graph(self, cuda_graph, prompt.device)
        check_ids = _ids_need_check(self)
        out = prompt
        if self.stateful:
            states = self.init_state(prompt.shape[0], device=prompt.device)
            logits, states = self(prompt, states)
            if cuda_graph:
                step, states = capture_decode_step(self, states)
        else:
            states, logits = None, self(prompt)
        for _ in range(max_new_tokens):
            last = logits[:, -1].float()
            if temperature > 0:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            else:
                nxt = last.argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if cuda_graph:
                logits = step(nxt)
            elif states is not None:
                logits, states = decode_step(self, nxt, states, validate=check_ids)
            else:
                logits = self(out)
        return out


class CompressionDecoder(nn.Module):
    """MAD compression readout: a 2-layer MLP (widths 240, 120) decoding token i from (h, position i).

    Position i has a learned embedding that is added to the state h; the sum goes through
    Linear -> GELU -> Linear -> GELU -> Linear to the logits of the token at position i.

    Args:
        d_model: width of the state h.
        n_positions: number of positions to decode (the compressed sequence length).
        n_classes: output vocabulary size.
        widths: hidden widths of the two GELU layers.

    Example:
        >>> import torch
        >>> dec = CompressionDecoder(16, n_positions=31, n_classes=16)
        >>> dec(torch.randn(2, 16)).shape
        torch.Size([2, 31, 16])
    """

    def __init__(self, d_model: int, n_positions: int, n_classes: int, widths: tuple[int, int] = (240, 120)) -> None:
        super().__init__()
        self.pos = nn.Embedding(n_positions, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, widths[0]), nn.GELU(), nn.Linear(widths[0], widths[1]),
                                 nn.GELU(), nn.Linear(widths[1], n_classes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Decode every position from one state.

        Args:
            h: [B, d_model], the hidden state at the compression token.

        Returns:
            logits [B, n_positions, n_classes].
        """
        return self.mlp(h[:, None, :] + self.pos.weight[None])


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (those with ``requires_grad``; frozen ones are left out).

    Args:
        module: any ``torch.nn.Module``.

    Returns:
        The total number of elements of its trainable parameters.

    Example:
        >>> from torch import nn
        >>> count_parameters(nn.Linear(3, 2))                 # 3 * 2 weights + 2 biases
        8
        >>> count_parameters(CausalSelfAttention(16, n_heads=2))   # 16 * 48 + 16 * 16
        1024
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["CausalSelfAttention", "CompressionDecoder", "KLALanguageModel", "KVCache", "MIXERS", "count_parameters",
           "labelled_cross_entropy", "fla_available"]
