"""Decoding a language model one token at a time, with its uncertainty.

:func:`decode_step` runs a :class:`~bayesfilt.nn.KLALanguageModel` on new tokens given the
per-block states (KLA: a conv cache and the filter's (λ, η), O(1) memory per sequence;
attention: a KV cache that grows with the context) and can also return the KLA layers'
posterior variance. :func:`generate` samples a continuation (temperature, top-k, seed) and
records, for every generated token, the model's predictive entropy

    H_t = -Σ_v p_t(v) log2 p_t(v),   p_t = softmax(logits_t)      (bits; the untempered model)

and the mean posterior variance of the KLA layers at the position that predicted it

    s_t = mean over KLA blocks b and channels d of Var_b[t, d]

where Var_b is the variance of block b's mixer output (:class:`~bayesfilt.nn.KLALayer` with
``return_variance=True``: the filter's readout variance through gate and output projection;
docs/math/kla.md). :func:`plot_generation` draws both over the generated text.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import type_error, value_error
from ..validation import as_int, as_real_scalar, check_bool
from ..scan.graph import warm_and_capture
from .layer import KLALayer, KLALayerState


def kla_block_count(model) -> int:
    """How many blocks of ``model`` have a :class:`~bayesfilt.nn.KLALayer` mixer.

    Args:
        model: a :class:`~bayesfilt.nn.KLALanguageModel`.

    Returns:
        the count (0 for a pure attention model; 1 for the hybrid).

    Example:
        >>> from bayesfilt.nn import KLALanguageModel, KLAConfig
        >>> kla_block_count(KLALanguageModel(5, 8, 3, mixer="hybrid", kla_config=KLAConfig(d_state=2)))
        1
    """
    return sum(isinstance(b.mixer, KLALayer) for b in model.blocks)


def decode_step(model, tokens: torch.Tensor, states: list, *, return_variance: bool = False, validate: bool = True):
    """Continue the sequences that ``states`` summarise by ``tokens`` (prefill any L, or decode L = 1).

    The same computation as ``model(tokens, states)``, block by block
    (``x += mixer(norm1(x)); x += mlp(norm2(x))``), additionally collecting the KLA mixers'
    output variance when asked.

    Args:
        model: a stateful :class:`~bayesfilt.nn.KLALanguageModel` (mixers "kla", "attention" or "hybrid").
        tokens: [B, L] token ids.
        states: per-block states (``model.init_state(B)`` or a previous call's).
        return_variance: also return the KLA layers' mean posterior variance.
        validate: check the ids (one device sync); False skips it (benchmarks, trusted ids).

    Returns:
        ``(logits [B, L, V], new_states)``; with ``return_variance``: ``(logits, new_states, var)``
        where var is [B, L] (the mean over KLA blocks and channels), or None when the model has
        no KLA block.

    Example:
        >>> import torch
        >>> from bayesfilt.nn import KLALanguageModel, KLAConfig
        >>> lm = KLALanguageModel(5, 8, 2, kla_config=KLAConfig(d_state=2))
        >>> logits, states, var = decode_step(lm, torch.tensor([[1, 2, 3]]), lm.init_state(1), return_variance=True)
        >>> logits.shape, var.shape
        (torch.Size([1, 3, 5]), torch.Size([1, 3]))
    """
    if not isinstance(states, list) or len(states) != len(model.blocks):
        raise value_error("states", f"must be a list of {len(model.blocks)} block states",
                          "pass model.init_state(batch) or the states a previous call returned")
    if validate:
        model._check_tokens(tokens)
    x = model.embed(tokens)
    new, variances = [], []
    for block, state in zip(model.blocks, states):
        h = block.norm1(x)
        if return_variance and isinstance(block.mixer, KLALayer):
            m, var, state = block.mixer(h, state=state, return_variance=True)
            v = var.mean(-1)                                           # mean over channels: [B, L]
            variances.append(v if v.dtype == torch.float64 else v.float())
        else:
            m, state = block.mixer(h, state=state)
        x = x + m                                                      # x += mixer(norm1(x))
        x = x + block.mlp(block.norm2(x))                              # x += mlp(norm2(x))
        new.append(state)
    logits = model.head(model.norm(x))
    if not return_variance:
        return logits, new
    var = torch.stack(variances).mean(0) if variances else None        # mean over KLA blocks
    return logits, new, var


def _check_cuda_graph(model, cuda_graph, device) -> bool:
    """The ``cuda_graph`` argument of the generate functions, checked (errors name it): True only for a model
    whose mixers are all KLA, on a CUDA ``device``, whose head predicts token ids only (a graph step does not
    check the ids it is given)."""
    cuda_graph = check_bool(cuda_graph, "cuda_graph")
    if not cuda_graph:
        return False
    if kla_block_count(model) != len(model.blocks):
        raise value_error("cuda_graph", f"is True for mixer {model.mixer_name!r}",
                          "pass cuda_graph=False (CUDA graphs decode models whose mixers are all KLA)")
    if device.type != "cuda":
        raise value_error("cuda_graph", f"is True on device {device}",
                          "pass cuda_graph=False, or move the model and the prompt to a CUDA device")
    if _ids_need_check(model):
        raise value_error("cuda_graph", f"is True for a head of {model.n_classes} classes over {model.vocab_size} "
                          "token ids", "pass cuda_graph=False")
    return True


def _ids_need_check(model) -> bool:
    """Whether an id sampled from ``model``'s logits can lie outside its vocabulary (more head classes than
    token ids), so that decoding it must check it."""
    return model.n_classes > model.vocab_size


#: token id dtypes a graph step takes (model._check_tokens takes any integer dtype too)
_ID_DTYPES = frozenset({torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8})


def _map_tensors(fn, x):
    """``x`` (a tensor, or lists and tuples of them, named tuples kept) with ``fn`` applied to every tensor."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_map_tensors(fn, v) for v in x))
    if isinstance(x, (tuple, list)):
        return type(x)(_map_tensors(fn, v) for v in x)
    return x


def _tensors(x) -> list:
    """Every tensor in ``x`` (lists and tuples of tensors), in order."""
    out = []
    _map_tensors(out.append, x)
    return out


def capture_decode_step(model, states: list, *, return_variance: bool = False):
    """Capture one decoding step of a KLA language model (one token per sequence) as a CUDA graph.

    A decoding step launches tens of small kernels per block, so a Python loop of :func:`decode_step`
    calls is bound by the host's time per launch, not by the GPU (benchmarks/kla_decode.py). The
    returned ``step`` replays the whole step as one graph: it copies the token ids into the graph's
    input and replays; the graph computes :func:`decode_step` on them and writes the new states over
    its own copies of ``states``, so the next call continues from there. Same kernels and inputs as
    :func:`decode_step` (``validate=False``), so the same logits.

    Args:
        model: a :class:`~bayesfilt.nn.KLALanguageModel` whose mixers are all :class:`KLALayer` (an
            attention KV cache grows every token, which a graph cannot), on a CUDA device.
        states: the per-block states to continue from (``model.init_state(B)`` or a prefill's); copied,
            never modified. The graph reads the model's parameters where they are: an in-place update
            shows in the next step, replacing them (``model.to(...)``) invalidates the graph. Captured
            under ``torch.autocast``, the graph computes in autocast's dtype and casts the weights itself
            (autocast's weight cache is off during the capture, so no cached cast that the context frees
            on exit is read): replays need no autocast context.
        return_variance: the step also returns the KLA layers' mean posterior variance [B, 1].

    Returns:
        ``(step, live_states)``: ``step(tokens)`` takes [B, 1] ids on the model's device (in range:
        they are not checked, an id outside the vocabulary is a device-side error) and returns the
        logits [B, 1, V] (with ``return_variance``: ``(logits, var)``), tensors of the graph that the
        next call overwrites (clone to keep them); ``live_states`` are the graph's states, advanced by
        every call (what :func:`decode_step` would have returned after the same tokens).

    Raises:
        BayesfiltValueError / BayesfiltTypeError: a mixer is not a KLALayer, the states do not fit the
            model, or they are not on the model's CUDA device; from ``step``: tokens of another shape,
            device or a non-integer dtype.

    Example:
        >>> import torch
        >>> from bayesfilt.nn import KLALanguageModel, KLAConfig
        >>> lm = KLALanguageModel(5, 8, 2, kla_config=KLAConfig(d_state=2)).cuda()     # doctest: +SKIP
        >>> logits, states = decode_step(lm, torch.tensor([[1, 2]], device="cuda"), lm.init_state(1))  # doctest: +SKIP
        >>> step, live = capture_decode_step(lm, states)                            # doctest: +SKIP
        >>> logits = step(torch.tensor([[3]], device="cuda"))                       # doctest: +SKIP
    """
    others = sorted({type(b.mixer).__name__ for b in model.blocks if not isinstance(b.mixer, KLALayer)})
    if others:
        raise value_error("model", f"has {', '.join(others)} mixers", "capture models whose mixers are all "
                          "KLALayer (mixer='kla'), or decode the others with decode_step")
    if not isinstance(states, list) or len(states) != len(model.blocks) or not all(
            isinstance(s, KLALayerState) for s in states):
        raise value_error("states", f"must be a list of {len(model.blocks)} KLALayerState",
                          "pass model.init_state(batch) or the states a previous call returned")
    leaves = _tensors(states)
    device = leaves[0].device
    if device.type != "cuda" or any(t.device != device for t in leaves):
        raise type_error("states", f"are on {sorted({str(t.device) for t in leaves})}",
                         "move the model and its states to one CUDA device (CUDA graphs need one)")
    model_device = next(model.parameters()).device
    if model_device != device:
        raise value_error("states", f"are on {device} but the model is on {model_device}",
                          "move the model and its states to one CUDA device")
    B = states[0].conv.shape[0]
    live = _map_tensors(torch.clone, states)
    tokens_in = torch.zeros(B, 1, dtype=torch.long, device=device)
    # on the states' device: torch.cuda.graph captures the current device's stream (work on another device
    # would run once, outside the graph, and every replay would return the capture's logits)
    # under autocast: its weight cache off, so that the graph casts the weights itself (a cached cast is
    # freed when the user's autocast context exits, and a replay would read freed memory)
    amp = (torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)
           if torch.is_autocast_enabled("cuda") else contextlib.nullcontext())

    def body():
        out = decode_step(model, tokens_in, live, return_variance=return_variance, validate=False)
        for dst, src in zip(_tensors(live), _tensors(out[1])):
            dst.copy_(src)                              # the new states over the live ones (inside the graph)
        return out

    # the warm-up steps (outside the graph) advance live: it starts again from the caller's states
    with torch.no_grad(), torch.cuda.device(device), amp:
        graph, out = warm_and_capture(body, device, warmup=2)
        for dst, src in zip(_tensors(live), _tensors(states)):
            dst.copy_(src)
    result = (out[0], out[2]) if return_variance else out[0]

    def step(tokens: torch.Tensor):
        if not isinstance(tokens, torch.Tensor) or tokens.shape != (B, 1) or tokens.device != device:
            raise value_error("tokens", f"is {getattr(tokens, 'shape', type(tokens).__name__)} on "
                              f"{getattr(tokens, 'device', '?')}", f"pass [B, 1] = [{B}, 1] ids on {device}")
        if tokens.dtype not in _ID_DTYPES:                # copy_ would truncate floats to ids silently
            raise type_error("tokens", f"has dtype {tokens.dtype}", "pass integer ids (e.g. tokens.long())")
        tokens_in.copy_(tokens)
        graph.replay()
        return result

    return step, live


def state_nbytes(states) -> int:
    """Bytes held by decoding states (every tensor inside, nested tuples and lists included).

    Args:
        states: what :meth:`~bayesfilt.nn.KLALanguageModel.init_state` or :func:`decode_step` returns.

    Returns:
        the total size in bytes.

    Example:
        >>> import torch
        >>> state_nbytes([(torch.zeros(2, 3), [torch.zeros(4, dtype=torch.float64)])])
        56
    """
    return sum(t.numel() * t.element_size() for t in _tensors(states))


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last axis, in bits: ``-Σ p log2 p``.

    Args:
        logits: [..., V].

    Returns:
        [...] tensor (float32 or float64).

    Example:
        >>> import torch
        >>> round(float(entropy_bits(torch.zeros(8))), 5)
        3.0
    """
    logp = F.log_softmax(logits.float() if logits.dtype not in (torch.float32, torch.float64) else logits, dim=-1)
    return -(logp.exp() * logp).sum(-1) / math.log(2)


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from softmax(logits / temperature) restricted to the top k.

    Args:
        logits: [B, V].
        temperature: > 0 to sample; 0 for greedy (argmax).
        top_k: keep only the k most likely tokens (None: all).
        generator: torch generator (reproducible draws).

    Returns:
        [B, 1] int64 token ids.

    Example:
        >>> import torch
        >>> sample_next(torch.tensor([[0.0, 5.0, 1.0]]), temperature=0).tolist()
        [[1]]
    """
    temperature = as_real_scalar(temperature, "temperature", low=0.0, fix="pass 0 (greedy) or e.g. 0.8")
    if top_k is not None:
        top_k = as_int(top_k, "top_k", low=1, fix="pass e.g. 10, or None")
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    try:
        return torch.multinomial(probs, 1, generator=generator)
    except RuntimeError as exc:                                 # NaN/inf logits (a diverged model)
        raise value_error("logits", f"give no valid distribution ({exc})",
                          "check the model for NaN/inf outputs, or decode greedily (temperature 0)") from None


@dataclass(frozen=True)
class Generation:
    """A sampled continuation and the model's uncertainty at each generated token.

    Attributes:
        prompt_ids: [L0] ids of the prompt.
        ids: [N] generated ids.
        entropy_bits: [N] predictive entropy (bits) of the distribution each token was drawn from.
        kla_variance: [N] mean posterior variance of the KLA layers at the predicting position,
            or None (no KLA block, or a model without stateful decoding).
        stateful: True when decoding went through the layer states (else the prefix was recomputed).
        state_bytes: bytes held by the decoding states after the last token (0 if not stateful).

    Example:
        >>> import numpy as np
        >>> g = Generation(np.array([1]), np.array([2, 3]), np.array([1.0, 0.5]), None, True, 64)
        >>> len(g.ids)
        2
    """

    prompt_ids: np.ndarray
    ids: np.ndarray
    entropy_bits: np.ndarray
    kla_variance: np.ndarray | None
    stateful: bool
    state_bytes: int


@torch.no_grad()
def generate(model, prompt_ids, n_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0, device=None, cuda_graph: bool = False) -> Generation:
    """Sample ``n_tokens`` after ``prompt_ids`` and record the uncertainty of every step.

    Stateful models (KLA, attention, hybrid) prefill the prompt once and then decode one token
    per step through their states (KLA: constant memory; attention: a KV cache). Models without
    state support (the flash-linear-attention wrappers) recompute the whole prefix each step.

    Args:
        model: a :class:`~bayesfilt.nn.KLALanguageModel`.
        prompt_ids: [L0] token ids (L0 >= 1).
        n_tokens: N >= 0 tokens to generate.
        temperature: sampling temperature (0: greedy).
        top_k: sample among the k most likely tokens (None: all).
        seed: seed of the sampling generator.
        device: where to run (default: the model's device).
        cuda_graph: decode through one CUDA graph per step (:func:`capture_decode_step`; KLA-only
            models on CUDA): the same tokens, less host time per token.

    Returns:
        :class:`Generation`.

    Example:
        >>> import torch
        >>> from bayesfilt.nn import KLALanguageModel, KLAConfig
        >>> lm = KLALanguageModel(5, 8, 1, kla_config=KLAConfig(d_state=2))
        >>> g = generate(lm, [1, 2], 4, seed=0)
        >>> len(g.ids), g.kla_variance.shape, g.stateful
        (4, (4,), True)
    """
    n_tokens = as_int(n_tokens, "n_tokens", low=0, fix="pass how many tokens to generate")
    seed = as_int(seed, "seed", low=0, fix="pass a seed in [0, 2**63)")
    if seed >= 2**63:                                   # torch.Generator takes a signed 64-bit seed
        raise value_error("seed", f"is {seed}", "pass a seed in [0, 2**63)")
    prompt = np.asarray(prompt_ids)
    if prompt.ndim != 1 or prompt.size < 1 or not np.issubdtype(prompt.dtype, np.integer):
        raise value_error("prompt_ids", f"must be a non-empty 1-D sequence of integer ids, got shape {prompt.shape} "
                          f"and dtype {prompt.dtype}", "pass at least one integer token id")
    device = next(model.parameters()).device if device is None else torch.device(device)
    cuda_graph = _check_cuda_graph(model, cuda_graph, device)
    check_ids = _ids_need_check(model)
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.as_tensor(prompt.astype(np.int64), device=device)[None]
    want_var = kla_block_count(model) > 0
    ids, ents, vars_ = [], [], []
    stateful = model.stateful
    try:
        if stateful:
            out = decode_step(model, x, model.init_state(1, device=device), return_variance=want_var)
            logits, states, var = out if want_var else (*out, None)
            if cuda_graph:
                step, states = capture_decode_step(model, states, return_variance=want_var)
        else:
            states, var, logits = None, None, model(x)
        seq = x
        # the per-token records stay on the device until the end (no sync per token); copies, since a graph
        # step overwrites its outputs (var) at the next replay
        for _ in range(n_tokens):
            last = logits[:, -1]
            ents.append(entropy_bits(last)[:1])
            if var is not None:
                vars_.append(var[:1, -1].clone())
            nxt = sample_next(last, temperature=temperature, top_k=top_k, generator=gen)
            ids.append(nxt[0])
            if cuda_graph:                              # (want_var: every mixer is KLA here)
                logits, var = step(nxt)
            elif stateful:
                out = decode_step(model, nxt, states, return_variance=want_var, validate=check_ids)
                logits, states, var = out if want_var else (*out, None)
            else:
                seq = torch.cat([seq, nxt], dim=1)
                logits = model(seq)
    finally:
        model.train(was_training)
    return Generation(prompt.astype(np.int64), _host(ids, np.int64), _host(ents, np.float64),
                      _host(vars_, np.float64) if want_var and stateful else None, stateful,
                      state_nbytes(states) if stateful else 0)


def _host(parts: list, dtype) -> np.ndarray:
    """The one-element device tensors ``parts`` as one NumPy array of ``dtype`` (one transfer)."""
    if not parts:
        return np.zeros(0, dtype=dtype)
    return torch.cat(parts).cpu().numpy().astype(dtype)


def plot_generation(text: str, entropy, variance=None, path: str | os.PathLike | None = None, *,
                    title: str | None = None):
    """Predictive entropy (and the KLA posterior variance) over the generated characters.

    Draws with :func:`bayesfilt.plot.generation_uncertainty` (a ``Figure`` built without pyplot;
    the global matplotlib backend is never changed) and optionally saves it.

    Args:
        text: the N generated characters (x-axis labels; spaces drawn as ␣, line ends as \\n).
        entropy: [N] entropy in bits.
        variance: [N] mean KLA posterior variance, or None (then one panel).
        path: save the figure there (.png, .pdf, .svg, ...); None: only return it.
        title: figure title.

    Returns:
        the matplotlib Figure.

    Example:
        >>> fig = plot_generation("ab", [1.0, 2.0], [0.1, 0.2])
        >>> len(fig.axes)
        2
    """
    from ..plot import generation_uncertainty          # lazily: plotting is a consumer above nn/

    fig = generation_uncertainty(text, entropy, variance, title=title)
    if path is not None:
        fig.savefig(Path(path), dpi=120)
    return fig


__all__ = ["Generation", "capture_decode_step", "decode_step", "entropy_bits", "generate", "kla_block_count",
           "plot_generation", "sample_next", "state_nbytes"]
