"""KLALanguageModel: mixers, stateful decoding (KLA states, attention KV cache), generate, KLA+ loss."""

import pytest

torch = pytest.importorskip("torch")

from bayesfilt.errors import BayesfiltError  # noqa: E402
from bayesfilt.nn import KLAConfig, KLALanguageModel  # noqa: E402
from bayesfilt.nn.lm import (MIXERS, CausalSelfAttention, CompressionDecoder, fla_available,  # noqa: E402
                             labelled_cross_entropy)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_lm(mixer="kla", layers=2, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return KLALanguageModel(11, 16, layers, mixer=mixer, kla_config=KLAConfig(d_state=4), n_heads=2).to(dtype)


@pytest.mark.parametrize("mixer", ["kla", "attention"])
def test_stateful_prefill_and_decode_equal_full_forward(mixer):
    lm = make_lm(mixer)
    tokens = torch.randint(0, 11, (2, 9))
    full = lm(tokens)
    states = lm.init_state(2)
    logits, states = lm(tokens[:, :4], states)
    parts = [logits]
    for t in range(4, 7):
        logits, states = lm(tokens[:, t:t + 1], states)
        parts.append(logits)
    logits, states = lm(tokens[:, 7:], states)               # a second prefill on top of a state
    parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-10, atol=1e-10)


def test_attention_is_causal():
    att = CausalSelfAttention(8, n_heads=2).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 4:] += 1.0
    torch.testing.assert_close(att(x)[:, :4], att(x2)[:, :4])


@pytest.mark.parametrize("mixer", ["kla", "attention"])
def test_generate_with_states_equals_recomputing_the_prefix(mixer):
    lm = make_lm(mixer, dtype=torch.float64)
    prompt = torch.randint(0, 11, (3, 5))
    out = lm.generate(prompt, 6)
    ref = prompt
    for _ in range(6):                                       # greedy decoding by re-running the full prefix
        ref = torch.cat([ref, lm(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(lm.generate(prompt, 4, temperature=1.0, generator=g1),
                       lm.generate(prompt, 4, temperature=1.0, generator=g2))


def test_kla_state_memory_is_constant_per_token():
    lm = make_lm("kla", dtype=torch.float32)
    states = lm.init_state(1)
    sizes = []
    tok = torch.zeros(1, 1, dtype=torch.long)
    for _ in range(5):
        _, states = lm(tok, states)
        sizes.append(sum(s.conv.numel() + s.kla.lam.numel() + s.kla.eta.numel() for s in states))
    assert len(set(sizes)) == 1


def test_posterior_sampled_loss():
    lm = make_lm("kla", dtype=torch.float32)
    x = torch.randint(0, 11, (2, 7))
    y = torch.randint(0, 11, (2, 7))
    y[:, :2] = -100
    plain, logits = lm.loss(x, y)
    torch.testing.assert_close(logits, lm(x))
    ref = torch.nn.functional.cross_entropy(lm(x).flatten(0, 1), y.flatten(), ignore_index=-100)
    torch.testing.assert_close(plain, ref)
    g = torch.Generator().manual_seed(0)
    sampled, logits2 = lm.loss(x, y, posterior_samples=3, generator=g)
    torch.testing.assert_close(logits2, logits)               # the logits are those of the mean
    assert torch.isfinite(sampled) and float(sampled.detach()) != float(plain.detach())
    sampled.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(0)
    again, _ = lm.loss(x, y, posterior_samples=3, generator=g)
    assert float(again.detach()) == float(sampled.detach())
    with pytest.raises(BayesfiltError, match="posterior_samples"):
        make_lm("attention").loss(x, y, posterior_samples=2)


def test_posterior_variance_shape_and_sign():
    lm = make_lm("kla", layers=3)
    var = lm.posterior_variance(torch.randint(0, 11, (2, 8)))
    assert var.shape == (3, 2, 8) and bool((var >= 0).all())
    with pytest.raises(BayesfiltError, match="mixer"):
        make_lm("attention").posterior_variance(torch.randint(0, 11, (2, 8)))


def test_mixer_registry_and_errors():
    assert {"kla", "attention", "gla", "gla_recurrent", "gdn"} <= set(MIXERS)
    with pytest.raises(BayesfiltError, match="mixer"):
        KLALanguageModel(5, 8, 1, mixer="mamba")
    with pytest.raises(BayesfiltError, match="n_layers"):
        KLALanguageModel(5, 8, 0)
    for kwargs, name in (({"n_classes": 0}, "n_classes"), ({"n_classes": 2.5}, "n_classes"),
                         ({"mlp_ratio": -3}, "mlp_ratio"), ({"mlp_ratio": float("nan")}, "mlp_ratio"),
                         ({"mixer": "attention", "n_heads": 0}, "n_heads")):
        with pytest.raises(BayesfiltError, match=name):
            KLALanguageModel(5, 8, 1, **kwargs)
    lm = KLALanguageModel(5, 8, 1)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(BayesfiltError, match="temperature"):
            lm.generate(torch.zeros(1, 3, dtype=torch.long), 2, temperature=bad)
    with pytest.raises(BayesfiltError, match="prompt"):                 # a list, not a tensor
        lm.generate([[1, 2]], 3)
    x = torch.zeros(1, 3, dtype=torch.long)
    for bad in (-2, 1.5):                                                # -2 gave the plain loss silently
        with pytest.raises(BayesfiltError, match="posterior_samples"):
            lm.loss(x, x, posterior_samples=bad)
    if not fla_available():
        for name in ("gla", "gla_recurrent", "gdn"):
            with pytest.raises(BayesfiltError, match="fla"):
                KLALanguageModel(5, 8, 1, mixer=name)
    custom = KLALanguageModel(5, 8, 1, mixer=lambda d, i, **kw: CausalSelfAttention(d, 2))
    assert custom(torch.randint(0, 5, (1, 3))).shape == (1, 3, 5)


def test_compression_decoder_widths():
    dec = CompressionDecoder(16, n_positions=31, n_classes=16)
    assert [m.out_features for m in dec.mlp if isinstance(m, torch.nn.Linear)] == [240, 120, 16]
    assert dec(torch.randn(2, 16)).shape == (2, 31, 16)


def test_posterior_variance_plot_from_model():
    from bayesfilt.plot import posterior_variance
    lm = make_lm("kla", layers=2)
    var = lm.posterior_variance(torch.randint(0, 11, (3, 10)))
    fig = posterior_variance(var, marks=[2, 5])
    line = fig.axes[0].lines[0]
    torch.testing.assert_close(torch.as_tensor(line.get_ydata()), var.detach().mean(dim=(0, 1)))
    with pytest.raises(BayesfiltError, match="variance"):
        posterior_variance(1.0)


def test_filter_posterior_variance():
    lm = make_lm("kla", layers=2)
    var = lm.posterior_variance(torch.randint(0, 11, (2, 8)), kind="filter")
    assert var.shape == (2, 2, 8) and bool((var > 0).all())
    with pytest.raises(BayesfiltError, match="kind"):
        lm.posterior_variance(torch.randint(0, 11, (2, 8)), kind="prior")


def test_labelled_cross_entropy_is_the_mean_and_zero_without_labels():
    """The mean over labelled positions bit for bit like F.cross_entropy (value and gradient, CPU); with no
    labelled position 0 and zero gradients instead of NaN (which the training loops took for a divergence)."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(3)
    lg = (torch.randn(3, 7, 5, generator=g) * 3).requires_grad_()
    t = torch.randint(0, 5, (3, 7), generator=g)
    t[torch.rand(3, 7, generator=g) < 0.5] = -100
    ref = lg.detach().clone().requires_grad_()
    want = F.cross_entropy(ref.flatten(0, 1), t.flatten(), ignore_index=-100)
    got = labelled_cross_entropy(lg, t)
    want.backward()
    got.backward()
    assert torch.equal(got, want) and torch.equal(lg.grad, ref.grad)
    lg.grad = None
    none = labelled_cross_entropy(lg, torch.full((3, 7), -100))
    none.backward()
    assert float(none) == 0.0 and torch.equal(lg.grad, torch.zeros_like(lg))
