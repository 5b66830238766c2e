"""Decoding with states: KLA carries a fixed-size state per layer, attention a growing KV cache.

Generates from a small randomly initialised model three ways (KLA with states, KLA recomputing
the prefix, attention with its KV cache), checks that the stateful and recomputed KLA tokens
agree, and prints the state size per sequence as the generated length grows. On a CUDA device it
also decodes through one CUDA graph per token (``generate(..., cuda_graph=True)``), checks that the
tokens are the same and prints both rates.

    python examples/kla_decode.py
"""

import time

import torch

from bayesfilt.nn import KLAConfig, KLALanguageModel


def state_numel(states):
    total = 0
    for s in states:
        total += sum(t.numel() for t in (s.conv, s.kla.lam, s.kla.eta)) if hasattr(s, "kla") else s.k.numel() + s.v.numel()
    return total


def main():
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)                            # tiny shapes: one thread is fastest
    kla = KLALanguageModel(50, 64, 2, mixer="kla", kla_config=KLAConfig(d_state=16)).eval()
    att = KLALanguageModel(50, 64, 2, mixer="attention").eval()
    prompt = torch.randint(0, 50, (1, 16))

    out = kla.generate(prompt, 24)
    ref = prompt
    for _ in range(24):                                 # the same greedy decode, recomputing the whole prefix
        ref = torch.cat([ref, kla(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    print(f"KLA stateful generate == recomputing the prefix each token: {torch.equal(out, ref)}")

    for name, model in (("kla", kla), ("attention", att)):
        states = model.init_state(1)
        logits, states = model(prompt, states)
        sizes = []
        for t in range(32):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            logits, states = model(nxt, states)
            if t in (0, 15, 31):
                sizes.append(state_numel(states))
        print(f"{name:9s} state numbers after 1, 16, 32 generated tokens: {sizes}")

    if not torch.cuda.is_available():
        print("CUDA graphs: no CUDA device here (generate(..., cuda_graph=True) needs one)")
        return
    gpu = kla.cuda()
    prompt = prompt.cuda()
    rates, outs = {}, {}
    for graph in (False, True):
        gpu.generate(prompt, 8, cuda_graph=graph)      # compile / warm up
        torch.cuda.synchronize()
        start = time.perf_counter()
        outs[graph] = gpu.generate(prompt, 200, cuda_graph=graph)
        torch.cuda.synchronize()
        rates[graph] = 200 / (time.perf_counter() - start)
    print(f"CUDA: {rates[False]:.0f} tokens/s plain, {rates[True]:.0f} with cuda_graph=True; "
          f"same tokens: {torch.equal(outs[False], outs[True])}")


if __name__ == "__main__":
    main()
