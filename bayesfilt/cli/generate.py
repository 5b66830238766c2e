"""``bayesfilt generate CHECKPOINT``: continue a prompt with a model trained by ``bayesfilt train lm``.

Decoding goes through the layer states (KLA: O(1) memory per token; attention: a KV cache;
see :mod:`bayesfilt.nn.decode`). ``--show-uncertainty`` prints every generated character with
the model's predictive entropy (bits) and the KLA layers' mean posterior variance; ``--plot``
draws both over the generated text.
"""

from __future__ import annotations

import os
from pathlib import Path

PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def register(sub) -> None:
    """Add the ``generate`` subcommand."""
    p = sub.add_parser("generate", help="generate text with a model trained by 'bayesfilt train lm'",
                       description="Continue --prompt by --tokens characters with a checkpoint of 'bayesfilt train "
                                   "lm' (a run folder or its checkpoint.pt); optionally show the model's "
                                   "uncertainty at each character.")
    p.add_argument("checkpoint", help="a run folder of 'bayesfilt train lm', or its checkpoint.pt")
    p.add_argument("--prompt", default="1:1 In the beginning", help="text to continue (default: %(default)r)")
    p.add_argument("--tokens", type=int, default=200, help="characters to generate (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely characters")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--show-uncertainty", action="store_true",
                   help="print each character with its predictive entropy and the KLA posterior variance")
    p.add_argument("--plot", default=None, help="draw entropy and variance over the generated text into this file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="decode each character by replaying one CUDA graph of the model (KLA models, --device cuda): "
                        "the same characters with less host time per character")
    p.set_defaults(func=run)


def _checkpoint_path(arg: str) -> Path:
    path = Path(arg)
    return path / "checkpoint.pt" if path.is_dir() else path


def load_lm(checkpoint: str | os.PathLike, device: str = "cpu"):
    """The language model and tokenizer of a ``bayesfilt train lm`` checkpoint.

    Args:
        checkpoint: the run folder or its ``checkpoint.pt``.
        device: where to put the model.

    Returns:
        ``(model, tokenizer, config)``: a :class:`~bayesfilt.nn.KLALanguageModel` in eval mode, the
        :class:`~bayesfilt.nn.text.CharTokenizer` of the shipped corpus, the run's TrainConfig.
    """
    from dataclasses import replace

    from ..errors import value_error
    from ..nn.checkpoint import load_checkpoint
    from ..nn.lm import KLALanguageModel
    from ..nn.text import LM_TASK, CharTokenizer, load_corpus
    from ..nn.train import TrainConfig

    ck = load_checkpoint(_checkpoint_path(checkpoint), map_location=device)
    if not isinstance(ck.get("config"), dict) or not isinstance(ck.get("model"), dict):
        raise value_error("checkpoint", f"{str(checkpoint)!r} holds no model and config",
                          "pass a checkpoint written by 'bayesfilt train lm'")
    try:
        cfg = TrainConfig(**ck["config"])
    except TypeError as exc:                                           # written by another version of TrainConfig
        raise value_error("checkpoint", f"its settings do not fit this version's TrainConfig ({exc})",
                          "generate with the bayesfilt version that trained it") from None
    if cfg.task != LM_TASK:
        raise value_error("checkpoint", f"was trained on task {cfg.task!r}, not {LM_TASK!r}",
                          "pass a checkpoint of 'bayesfilt train lm'")
    cfg = replace(cfg, device=device, backend="auto" if cfg.backend == "triton" and device == "cpu" else cfg.backend)
    state = {k[len("lm."):]: v for k, v in ck["model"].items() if k.startswith("lm.")}
    vocab, n_classes = state["embed.weight"].shape[0], state["head.weight"].shape[0]
    tok = CharTokenizer.from_text(load_corpus())
    if vocab != tok.vocab_size:
        raise value_error("checkpoint", f"has a vocabulary of {vocab}, the corpus {tok.vocab_size}",
                          "pass a checkpoint trained on the shipped corpus")
    model = KLALanguageModel(vocab, cfg.d_model, cfg.layers, mixer=cfg.mixer, kla_config=cfg.kla_config(),
                             n_heads=cfg.n_heads, n_classes=n_classes)
    model.load_state_dict(state)
    return model.to(device).eval(), tok, cfg


def run(args) -> int:
    """Generate, print the text (and the per-character uncertainty), optionally plot it."""
    from ._deps import require_torch
    torch = require_torch()

    from ..errors import value_error
    from ..nn.decode import generate, kla_block_count, plot_generation

    if args.tokens < 0:
        raise value_error("--tokens", f"is {args.tokens}", "pass a count >= 0")
    if not args.prompt:
        raise value_error("--prompt", "is empty", "pass at least one character to continue")
    if args.plot is not None:
        plot = Path(args.plot)
        if plot.suffix.lower() not in PLOT_FORMATS:
            raise value_error("--plot", f"has extension {plot.suffix!r}", f"use one of {PLOT_FORMATS}")
        if plot.exists() and not args.force:
            raise value_error("--plot", f"{str(plot)!r} exists", "pass --force to overwrite it, or another file")
        if plot.is_dir():
            raise value_error("--plot", f"{str(plot)!r} is a folder", "pass a file name")
        if not plot.resolve().parent.is_dir():
            raise value_error("--plot", f"the folder of {str(plot)!r} does not exist", "create it or pick another file")
    try:
        dev = torch.device(args.device)
    except (RuntimeError, TypeError):
        raise value_error("--device", f"is {args.device!r}", "pass cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise value_error("--device", f"is {args.device!r} but no CUDA device is available", "pass --device cpu")
    if args.cuda_graph and dev.type != "cuda":
        raise value_error("--cuda-graph", f"needs --device cuda, got --device {args.device!r}",
                          "pass --device cuda, or drop --cuda-graph")
    model, tok, cfg = load_lm(args.checkpoint, args.device)
    if args.cuda_graph and kla_block_count(model) != len(model.blocks):
        raise value_error("--cuda-graph", f"needs a model whose blocks are all KLA; this one's mixer is {cfg.mixer!r}",
                          "drop --cuda-graph")
    g = generate(model, tok.encode(args.prompt, arg="--prompt"), args.tokens, temperature=args.temperature, top_k=args.top_k,
                 seed=args.seed, cuda_graph=args.cuda_graph)
    text = tok.decode(g.ids)
    print(args.prompt + text)
    if args.show_uncertainty:
        n_kla = kla_block_count(model)
        print(f"\n# mixer {cfg.mixer}, {cfg.layers} blocks ({n_kla} KLA); decoding "
              f"{'through layer states' if g.stateful else 'by recomputing the prefix'}; "
              f"state after the last token: {g.state_bytes} bytes")
        print(f"{'pos':>5}  {'char':<6} {'entropy_bits':>12}  {'kla_variance':>12}")
        for i, c in enumerate(text):
            var = f"{g.kla_variance[i]:12.5g}" if g.kla_variance is not None else f"{'-':>12}"
            print(f"{i:5d}  {repr(c):<6} {g.entropy_bits[i]:12.4f}  {var}")
        if len(text):
            mean_var = f"{g.kla_variance.mean():.5g}" if g.kla_variance is not None else "-"
            print(f"# mean entropy {g.entropy_bits.mean():.4f} bits/char; mean KLA variance {mean_var}")
    if args.plot is not None:
        plot_generation(text, g.entropy_bits, g.kla_variance, args.plot,
                        title=f"{cfg.mixer}: uncertainty after {args.prompt[-30:]!r}")
        print(f"# plot: {args.plot}")
    return 0
