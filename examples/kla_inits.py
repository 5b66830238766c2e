"""KLA's initialisations side by side: what each one starts the filter with.

Builds :class:`bayesfilt.nn.KLALayer` under four configurations and prints, per configuration, the
discretised decay ā and process noise p̄ over the lanes, and the mean output variance of an untrained
layer at a few positions of one random sequence:

- the paper's defaults (a_s = s + 1 per state, p = 0.01 everywhere, Λv input-dependent from the start);
- ``a_init="constant"``: a = 1 in every lane, as in the authors' released code;
- the authors' newer code: a = 1 as above, ``p_init_rule="3a-dt"`` (p = 3·a·Δ per lane) and
  ``lambda_v_init=d_state`` (Λv the same for every token at the start);
- ``process_noise=False``: p = 0, the paper's ablation.

The same choices are ``bayesfilt train --a-init``, ``--p-init-rule``, ``--lambda-v-init`` and
``--no-process-noise``; docs/kla.md says what they did on A5 and fuzzy recall.

    python examples/kla_inits.py
"""

import torch

from bayesfilt.nn import KLAConfig, KLALayer

D_MODEL, D_STATE, LENGTH = 64, 16, 64

CONFIGS = {
    "paper": KLAConfig(d_state=D_STATE),
    "a = 1": KLAConfig(d_state=D_STATE, a_init="constant"),
    "newer code": KLAConfig(d_state=D_STATE, a_init="constant", p_init_rule="3a-dt", lambda_v_init=float(D_STATE)),
    "p = 0": KLAConfig(d_state=D_STATE, process_noise=False),
}


def spread(x: torch.Tensor) -> str:
    """min / median / max of a tensor, three significant digits."""
    return f"{float(x.min()):.3g} / {float(x.median()):.3g} / {float(x.max()):.3g}"


def main():
    x = torch.randn(1, LENGTH, D_MODEL, generator=torch.Generator().manual_seed(1))
    print(f"d_model {D_MODEL}, d_state {D_STATE}; ā and p̄ as min / median / max over the lanes")
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)                                 # the same Δ draws and weights for every config
        layer = KLALayer(D_MODEL, cfg)
        with torch.no_grad():
            a_bar, p_bar = layer.discretize()
            _, var = layer(x, return_variance=True)
        per_t = ", ".join(f"t={t}: {float(var[0, t].mean()):.3g}" for t in (0, 8, LENGTH - 1))
        print(f"{name:>10}: ā {spread(a_bar)}; p̄ {spread(p_bar)}; mean output variance {per_t}")


if __name__ == "__main__":
    main()
