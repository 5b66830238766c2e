"""KLA as a drop-in sequence mixer that also reports how sure it is.

Replaces the mixer of a tiny pre-norm block with :class:`bayesfilt.nn.KLALayer`, runs a batch,
prints the output and its variance, then shows that streaming the same sequence token by token
through the layer's state gives the same result.

    python examples/kla_layer.py
"""

import torch
from torch import nn

from bayesfilt.nn import KLAConfig, KLALayer


class Block(nn.Module):
    """x + mixer(norm(x)): any [B, L, D] -> [B, L, D] mixer fits; here KLA."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.RMSNorm(d_model)
        self.mixer = KLALayer(d_model, KLAConfig(d_state=16))

    def forward(self, x, return_variance=False):
        out = self.mixer(self.norm(x), return_variance=return_variance)
        if return_variance:
            y, var = out
            return x + y, var
        return x + out


def main():
    torch.manual_seed(0)
    block = Block(64)
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        y, var = block(x, return_variance=True)
    print(f"output {tuple(y.shape)}, variance {tuple(var.shape)}, all variances >= 0: {bool((var >= 0).all())}")
    print("mean output variance at positions 0, 8, 16, 31:",
          [round(float(var[:, t].mean()), 5) for t in (0, 8, 16, 31)])

    torch.set_grad_enabled(False)
    layer = block.mixer                             # streaming: prefill 20 tokens, then decode one at a time
    state = layer.init_state(2)
    xs = block.norm(x)
    outs = []
    y0, state = layer(xs[:, :20], state=state)
    outs.append(y0)
    for t in range(20, 32):
        yt, state = layer(xs[:, t:t + 1], state=state)
        outs.append(yt)
    stream = torch.cat(outs, 1)
    full = layer(xs)
    print(f"streamed vs full forward: max |difference| = {float((stream - full).abs().max()):.2e}")
    print(f"state per sequence: conv cache {tuple(state.conv.shape[1:])}, "
          f"filter precision and information vector {tuple(state.kla.lam.shape[1:])} (independent of length)")


if __name__ == "__main__":
    main()
