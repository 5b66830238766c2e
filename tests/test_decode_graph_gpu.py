"""Decoding through one CUDA graph per step (bayesfilt.nn.decode.capture_decode_step) on a CUDA device
(run through the device tool): the same logits, states and tokens as decoding without the graph."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from bayesfilt.nn import KLAConfig, KLALanguageModel  # noqa: E402
from bayesfilt.nn.decode import capture_decode_step, decode_step, generate  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (device tool)")]

V = 37


def _lm(layers=3, seed=0):
    torch.manual_seed(seed)
    lm = KLALanguageModel(V, 64, layers, kla_config=KLAConfig(d_state=16))
    for b in lm.blocks:                                   # process noise away from its init
        with torch.no_grad():
            b.mixer.p_raw.uniform_(-2.0, 1.0)
    return lm.cuda().eval()


@torch.no_grad()
def test_graph_steps_equal_decode_steps():
    """Ten graph replays: logits, variance and live states equal decode_step's token by token (the same
    kernels on the same inputs), and the states passed in are left as they were."""
    lm = _lm()
    prompt = torch.randint(0, V, (2, 9), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    _, states = decode_step(lm, prompt, lm.init_state(2))
    before = [t.clone() for t in _flat(states)]
    step, live = capture_decode_step(lm, states, return_variance=True)
    ref_states = states
    tok = torch.randint(0, V, (2, 10), device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    for i in range(10):
        logits, var = step(tok[:, i:i + 1])
        ref_logits, ref_states, ref_var = decode_step(lm, tok[:, i:i + 1], ref_states, return_variance=True)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(var, ref_var, rtol=1e-6, atol=1e-7)
        for a, b in zip(_flat(live), _flat(ref_states)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(_flat(states), before))
    with pytest.raises(Exception, match="tokens"):
        step(tok[:1, :1])


@torch.no_grad()
def test_graph_captured_under_autocast_replays_outside_it():
    """Captured under bf16 autocast, the graph casts the weights itself: replays after the context has exited
    (and freed its cached casts) give decode_step's bf16 logits."""
    lm = _lm(layers=2, seed=5)
    prompt = torch.randint(0, V, (1, 6), device="cuda", generator=torch.Generator("cuda").manual_seed(6))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, states = decode_step(lm, prompt, lm.init_state(1))
        step, _ = capture_decode_step(lm, states)
    torch.cuda.empty_cache()
    ref_states = states
    for i in range(6):
        tok = torch.full((1, 1), (3 * i + 1) % V, device="cuda")
        logits = step(tok).clone()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ref, ref_states = decode_step(lm, tok, ref_states)
        torch.testing.assert_close(logits.float(), ref.float(), rtol=2e-2, atol=2e-2)


def test_generate_with_graphs_gives_the_same_tokens():
    lm = _lm(layers=2, seed=3)
    prompt = torch.tensor([[1, 5, 7]], device="cuda")
    plain = lm.generate(prompt, 40)
    graphed = lm.generate(prompt, 40, cuda_graph=True)
    assert torch.equal(plain, graphed)
    a = generate(lm, [1, 5, 7], 30, seed=4)
    b = generate(lm, [1, 5, 7], 30, seed=4, cuda_graph=True)
    assert (a.ids == b.ids).all()
    assert abs(a.entropy_bits - b.entropy_bits).max() < 1e-5
    assert abs(a.kla_variance - b.kla_variance).max() <= 1e-5 * abs(a.kla_variance).max()
    assert a.state_bytes == b.state_bytes


def _flat(states):
    from bayesfilt.nn.decode import _tensors
    return _tensors(states)


def test_generate_cli_with_cuda_graph_prints_the_same_text(tmp_path, capsys):
    """`bayesfilt generate --cuda-graph` on a trained KLA checkpoint prints the text it prints without."""
    from bayesfilt.cli import main
    from bayesfilt.nn.text import lm_task
    from bayesfilt.nn.train import TrainConfig, train
    cfg = TrainConfig(task="lm", length=24, n_train=32, n_test=2, mixer="kla", layers=2, d_model=16, d_state=2,
                      steps=2, batch_size=2, eval_every=2, warmup=1)
    train(cfg, tmp_path / "run", progress=False, task=lm_task(seed=0, length=24, n_train=32, n_test=2,
                                                               cache_dir=tmp_path / "cache"))
    texts = []
    for extra in ([], ["--cuda-graph"]):
        capsys.readouterr()
        assert main(["generate", str(tmp_path / "run"), "--device", "cuda", "--tokens", "30", "--seed", "2",
                     "--show-uncertainty", *extra]) == 0
        texts.append(capsys.readouterr().out.split("\n# mixer")[0])   # the text, before the uncertainty table
    assert texts[0] == texts[1] and len(texts[0]) >= 30
