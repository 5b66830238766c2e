"""Decoding through layer states equals the full forward (float64, CPU); sampling, uncertainty, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scipy.stats import entropy as scipy_entropy  # noqa: E402

from bayesfilt.cli import main  # noqa: E402
from bayesfilt.errors import BayesfiltError  # noqa: E402
from bayesfilt.nn import KLAConfig, KLALanguageModel  # noqa: E402
from bayesfilt.nn.decode import (decode_step, entropy_bits, generate, kla_block_count, plot_generation,  # noqa: E402
                                 sample_next, state_nbytes)
from bayesfilt.nn.lm import CausalSelfAttention, _FLAMixer  # noqa: E402
from bayesfilt.nn.text import lm_task  # noqa: E402
from bayesfilt.nn.train import TrainConfig, train  # noqa: E402

V = 11


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(mixer, layers=2, seed=0):
    torch.manual_seed(seed)
    lm = KLALanguageModel(V, 16, layers, mixer=mixer, n_heads=2, kla_config=KLAConfig(d_state=3))
    for b in lm.blocks:                                                # exercise process noise away from its init
        if hasattr(b.mixer, "p_raw") and b.mixer.p_raw is not None:
            with torch.no_grad():
                b.mixer.p_raw.uniform_(-2.0, 1.0)
    return lm.double().eval()


@pytest.mark.parametrize("mixer", ["kla", "hybrid", "attention"])
def test_state_decoding_equals_the_full_forward_float64(mixer):
    lm = _model(mixer)
    tokens = torch.randint(0, V, (2, 23), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = torch.softmax(lm(tokens), -1)                           # the whole sequence at once
        logits, states = decode_step(lm, tokens[:, :9], lm.init_state(2, device="cpu"))
        steps = [torch.softmax(logits, -1)]
        for t in range(9, 23):                                         # then one token at a time
            logits, states = decode_step(lm, tokens[:, t:t + 1], states)
            steps.append(torch.softmax(logits, -1))
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-10, atol=1e-12)


def test_decoded_variance_equals_the_full_posterior_variance_float64():
    lm = _model("kla", layers=3)
    tokens = torch.randint(0, V, (1, 17), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = lm.posterior_variance(tokens).mean(0)                   # [B, L], mean over blocks
        _, states, var = decode_step(lm, tokens[:, :5], lm.init_state(1, device="cpu"), return_variance=True)
        out = [var]
        for t in range(5, 17):
            _, states, var = decode_step(lm, tokens[:, t:t + 1], states, return_variance=True)
            out.append(var)
    torch.testing.assert_close(torch.cat(out, 1), ref, rtol=1e-10, atol=1e-14)
    assert bool((ref > 0).all())


def test_greedy_generation_equals_recomputing_the_prefix():
    lm = _model("hybrid", layers=2)
    prompt = [1, 4, 2]
    g = generate(lm, prompt, 15, temperature=0)
    seq = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(15):                                            # independent path: full forward each step
            seq = torch.cat([seq, lm(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert g.ids.tolist() == seq[0, 3:].tolist()
    assert g.stateful and g.kla_variance.shape == (15,) and kla_block_count(lm) == 1
    assert generate(lm, prompt, 15, temperature=1.0, top_k=1, seed=5).ids.tolist() == g.ids.tolist()


def test_models_without_state_support_recompute_the_prefix_and_agree():
    lm = _model("attention", layers=2)
    wrapped = KLALanguageModel(V, 16, 2, mixer=lambda d, i, **kw: _FLAMixer(CausalSelfAttention(d, 2))).double()
    sd = {k.replace(".mixer.", ".mixer.layer."): v for k, v in lm.state_dict().items()}
    wrapped.load_state_dict(sd)
    assert not wrapped.stateful
    a, b = generate(lm, [3, 1], 12, seed=7), generate(wrapped, [3, 1], 12, seed=7)
    assert a.ids.tolist() == b.ids.tolist() and not b.stateful and b.kla_variance is None and b.state_bytes == 0
    np.testing.assert_allclose(a.entropy_bits, b.entropy_bits, rtol=1e-9)
    assert a.kla_variance is None                                      # no KLA block


def test_sampling_is_seeded_and_entropy_is_the_model_distributions():
    lm = _model("kla")
    g1, g2, g3 = generate(lm, [0], 30, seed=1), generate(lm, [0], 30, seed=1), generate(lm, [0], 30, seed=2)
    assert g1.ids.tolist() == g2.ids.tolist() and g1.ids.tolist() != g3.ids.tolist()
    seq = torch.tensor([[0] + g1.ids.tolist()])
    with torch.no_grad():
        p = torch.softmax(lm(seq), -1)[0, :30].numpy()
    np.testing.assert_allclose(g1.entropy_bits, [scipy_entropy(row, base=2) for row in p], rtol=1e-8)
    logits = torch.tensor([[0.0, 3.0, 2.0, -1.0]])
    draws = {int(sample_next(logits, top_k=2, generator=torch.Generator().manual_seed(s))) for s in range(40)}
    assert draws == {1, 2}
    assert float(entropy_bits(torch.zeros(1, 16))) == pytest.approx(4.0)
    with pytest.raises(BayesfiltError, match="temperature"):
        sample_next(logits, temperature=-1)
    with pytest.raises(BayesfiltError, match="n_tokens"):
        generate(lm, [0], -1)
    # a NumPy temperature is a number (it was refused), True is not (it was taken as 1); a seed past
    # 64 bits and float ids are named errors (a bare OverflowError, a message without the dtype)
    assert sample_next(logits, temperature=np.float32(0.5), generator=torch.Generator().manual_seed(0)).numel() == 1
    for call, name in ((lambda: sample_next(logits, temperature=True), "temperature"),
                       (lambda: generate(lm, [0], 2, seed=2**70), "seed"),
                       (lambda: generate(lm, [1.0], 2), "float")):
        with pytest.raises(BayesfiltError, match=name):
            call()


def test_kla_state_memory_is_constant_and_the_kv_cache_grows():
    for mixer, grows in (("kla", False), ("attention", True)):
        lm = _model(mixer)
        sizes = []
        with torch.no_grad():
            logits, states = decode_step(lm, torch.tensor([[1, 2]]), lm.init_state(1, device="cpu"))
            for t in range(8):
                logits, states = decode_step(lm, torch.tensor([[t % V]]), states)
                sizes.append(state_nbytes(states))
        assert (sizes[-1] > sizes[0]) == grows and (len(set(sizes)) == 1) == (not grows)


def test_plot_generation(tmp_path):
    fig = plot_generation("ab c\n", [1.0, 2.0, 0.5, 1.0, 3.0], [0.1, 0.2, 0.3, 0.2, 0.1], tmp_path / "g.png")
    assert len(fig.axes) == 2 and (tmp_path / "g.png").stat().st_size > 1000
    assert len(plot_generation("ab", [1.0, 2.0]).axes) == 1
    with pytest.raises(BayesfiltError, match="entropy"):
        plot_generation("abc", [1.0])


def test_plot_generation_uses_no_pyplot_and_keeps_the_backend(tmp_path):
    """plot.py's rule: a Figure built directly; no pyplot state, no global backend switch."""
    import subprocess
    import sys
    code = ("import sys, matplotlib; matplotlib.use('svg'); "
            "from bayesfilt.nn.decode import plot_generation; "
            "from matplotlib.figure import Figure; "
            f"fig = plot_generation('ab', [1.0, 2.0], [0.1, 0.2], {str(tmp_path / 'g.png')!r}); "
            "assert isinstance(fig, Figure), type(fig); "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "g.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lmrun")
    cache = tmp_path_factory.mktemp("cache")
    cfg = TrainConfig(task="lm", length=24, n_train=32, n_test=2, mixer="kla", layers=2, d_model=16, d_state=2,
                      steps=2, batch_size=2, eval_every=2, warmup=1)
    task = lm_task(seed=0, length=24, n_train=32, n_test=2, cache_dir=cache)
    train(cfg, out, progress=False, task=task)
    return out


def test_generate_cli_prints_n_characters_and_the_uncertainty(lm_run, tmp_path, capsys):
    png = tmp_path / "u.png"
    rc = main(["generate", str(lm_run), "--prompt", "1:1 In the", "--tokens", "12", "--seed", "3",
               "--show-uncertainty", "--plot", str(png)])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1:1 In the")
    rows = [ln for ln in out if ln[:5].strip().isdigit()]
    assert len(rows) == 12
    ent = [float(r.split()[-2]) for r in rows]
    var = [float(r.split()[-1]) for r in rows]
    assert all(0 <= e <= math.log2(75) + 1e-6 for e in ent) and all(v > 0 for v in var)
    assert png.stat().st_size > 1000
    rc = main(["generate", str(lm_run / "checkpoint.pt"), "--prompt", "Amen", "--tokens", "7"])
    text = capsys.readouterr().out.splitlines()[0]
    assert rc == 0 and text.startswith("Amen") and len("\n".join([text])) >= 4


def test_generate_cli_errors(lm_run, tmp_path, capsys):
    assert main(["generate", str(lm_run), "--plot", str(tmp_path / "x.txt")]) == 2
    assert main(["generate", str(lm_run), "--prompt", "€"]) == 2
    assert main(["generate", str(tmp_path / "nothing")]) == 2
    a5 = tmp_path / "a5"
    train(TrainConfig(task="a5", length=3, n_train=8, n_test=4, d_model=8, d_state=2, steps=1, batch_size=2,
                      eval_every=1, warmup=1), a5, progress=False)
    assert main(["generate", str(a5)]) == 2
    assert main(["generate", str(lm_run), "--cuda-graph"]) == 2                # CUDA graphs on --device cpu
    err = capsys.readouterr().err
    assert "--plot" in err and "vocabulary" in err and "'lm'" in err
    assert "--cuda-graph: needs --device cuda" in err
    assert "--prompt: holds the character '€'" in err                  # the option, not "text"


def test_capture_decode_step_refuses_what_a_graph_cannot_run():
    """CUDA graphs: KLA-only models on a CUDA device; the errors name the argument and the fix."""
    from bayesfilt.nn.decode import capture_decode_step
    kla = _model("kla")
    with pytest.raises(BayesfiltError, match="states.*CUDA"):
        capture_decode_step(kla, kla.init_state(1))                       # CPU states
    hybrid = _model("hybrid")
    with pytest.raises(BayesfiltError, match="model.*CausalSelfAttention.*KLALayer"):
        capture_decode_step(hybrid, hybrid.init_state(1))
    with pytest.raises(BayesfiltError, match="states"):
        capture_decode_step(kla, kla.init_state(1)[:1])
    with pytest.raises(BayesfiltError, match="states.*KLALayerState"):
        capture_decode_step(kla, [s.kla for s in kla.init_state(1)])        # not the layers' state type
    for bad in ("yes", 1):
        with pytest.raises(BayesfiltError, match="cuda_graph"):
            generate(kla, [1, 2], 3, cuda_graph=bad)
        with pytest.raises(BayesfiltError, match="cuda_graph"):
            kla.generate(torch.tensor([[1, 2]]), 3, cuda_graph=bad)


def test_state_tree_helpers_keep_the_structure():
    from bayesfilt.nn.decode import _map_tensors, _tensors
    states = _model("hybrid").init_state(2)
    copy = _map_tensors(torch.clone, states)
    assert type(copy) is list and [type(s) for s in copy] == [type(s) for s in states]
    flat, flat_copy = _tensors(states), _tensors(copy)
    assert len(flat) == len(flat_copy) > 0
    assert all(torch.equal(a, b) and (a.numel() == 0 or a.data_ptr() != b.data_ptr()) for a, b in zip(flat, flat_copy))


def test_generate_errors_name_cuda_graph_and_still_check_ids_outside_the_vocabulary():
    """cuda_graph=True where no graph can decode (a CPU device, attention blocks, a head with more classes
    than token ids): the error names cuda_graph. The plain paths skip the per-token id check only where a
    sampled id is always a token: a head of V + 1 classes still gets the named error for id V."""
    kla, hybrid = _model("kla"), _model("hybrid")
    prompt = torch.tensor([[1, 2]])
    for model, what in ((kla, "on device cpu"), (hybrid, "for mixer 'hybrid'")):
        with pytest.raises(BayesfiltError, match=f"cuda_graph: is True {what}"):
            generate(model, [1, 2], 3, cuda_graph=True)
        with pytest.raises(BayesfiltError, match=f"cuda_graph: is True {what}"):
            model.generate(prompt, 3, cuda_graph=True)
    torch.manual_seed(0)
    wide = KLALanguageModel(V, 16, 1, kla_config=KLAConfig(d_state=3), n_classes=V + 1).double()
    wide.head = torch.nn.Linear(16, V + 1).double()
    with torch.no_grad():                                     # the extra class always wins
        wide.head.weight.zero_()
        wide.head.bias.zero_()
        wide.head.bias[V] = 100.0
    with pytest.raises(BayesfiltError, match=f"tokens: holds id {V} outside"):
        wide.generate(prompt, 2)
    with pytest.raises(BayesfiltError, match=f"tokens: holds id {V} outside"):
        generate(wide, [1, 2], 2, temperature=0.0)
