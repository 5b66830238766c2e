"""Fuzz the torch side: kla_scan / kla_step, KLAConfig, KLALayer, KLALanguageModel, tasks,
TrainConfig and checkpoints, with generated bad and edge inputs.

Inputs: wrong ranks and sizes, L = 0 and L = 1, NaN/inf, zero/negative precisions, a_bar
outside (0, 1], negative p_bar, huge/tiny magnitudes (float32 range), float16/bfloat16/int/
float64 mixes, numpy arrays, non-contiguous and expanded (broadcast) tensors. Outcome: a
finite result or a BayesfiltError with "Fix:". Benign kla_scan cases are also checked against
the float64 sequential reference (bayesfilt.nn.reference.kla_scan_reference).
"""

import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bayesfilt
from bayesfilt.nn import KLAConfig, KLALanguageModel, KLALayer, KLAState, kla_scan, kla_step
from bayesfilt.nn.checkpoint import load_checkpoint, save_checkpoint
from bayesfilt.nn.reference import kla_scan_reference
from bayesfilt.nn.tasks import make_task
from bayesfilt.nn.train import TrainConfig
from fuzz_helpers import FUZZ, Tally, contract

NAMES = ("v", "lambda_v", "k", "q", "a_bar", "p_bar")
CORRUPT = ["none", "none", "none", "nan", "inf", "bf16", "f16", "int", "f64", "numpy", "rank", "size", "noncontig",
           "expand", "huge", "tiny", "zero", "neg", "gt1", "requires_grad", "list"]


def _inputs(seed, B, L, M, S, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    x = dict(v=r(B, L, M), lambda_v=torch.rand(B, L, M, generator=g, dtype=torch.float64) + 0.1, k=r(B, L, S), q=r(B, L, S),
             a_bar=torch.rand(M, S, generator=g, dtype=torch.float64) * 0.5 + 0.5,
             p_bar=torch.rand(M, S, generator=g, dtype=torch.float64) * 0.1)
    return {k: v.to(dtype) for k, v in x.items()}


def _corrupt(x, how):
    """(new tensor, still finite?) for one corruption kind."""
    if how == "nan":
        y = x.clone(); y.view(-1)[0] = float("nan"); return y, False
    if how == "inf":
        y = x.clone(); y.view(-1)[-1] = float("inf"); return y, False
    return {"bf16": x.bfloat16(), "f16": x.half(), "int": x.round().long(), "f64": x.double(), "numpy": x.float().numpy(),
            "rank": x[0], "size": torch.cat([x, x[..., :1]], -1), "noncontig": x.transpose(-1, -2).contiguous().transpose(-1, -2),
            "expand": x[..., :1].expand_as(x), "huge": x * 1e30, "tiny": x * 1e-30, "zero": x * 0, "neg": -x.abs() - 0.5,
            "gt1": x.abs() + 1.5, "requires_grad": x.clone().requires_grad_(), "list": x.tolist(), "none": x}[how], True


@st.composite
def scan_case(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    B, L, M, S = draw(st.integers(1, 2)), draw(st.sampled_from([1, 2, 7])), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    x = _inputs(seed, B, L, M, S, dtype)
    name, how = draw(st.sampled_from(NAMES)), draw(st.sampled_from(CORRUPT))
    x[name], finite = _corrupt(x[name], how)
    state = draw(st.sampled_from(["none", "ok", "neg", "nan", "shape", "tuple", "huge"]))
    st_obj = {"none": None, "ok": KLAState(torch.ones(B, M, S) * 2, torch.zeros(B, M, S)),
              "neg": KLAState(-torch.ones(B, M, S), torch.zeros(B, M, S)),
              "nan": KLAState(torch.ones(B, M, S), torch.full((B, M, S), float("nan"))),
              "shape": KLAState(torch.ones(B, M), torch.zeros(B, M)), "tuple": (1.0, 2.0),
              "huge": KLAState(torch.full((B, M, S), 1e30), torch.zeros(B, M, S))}[state]
    if state == "nan":
        finite = False
    opts = dict(prior_readout=draw(st.booleans()), backend=draw(st.sampled_from(["auto", "reference", "torch", "triton", "gpu"])))
    return x, st_obj, opts, finite, (name, how, state, str(dtype), L)


def _check_against_reference(x, state, opts, where):
    def check(res):
        y, y_var, fin = res
        if opts["backend"] not in ("auto", "reference", "torch"):
            return
        d = {k: torch.as_tensor(v).double() for k, v in x.items()}
        B, _, M = d["v"].shape
        S = d["k"].shape[-1]
        lam0 = torch.ones(B, M, S, dtype=torch.float64) if state is None else state.lam.double()
        eta0 = torch.zeros(B, M, S, dtype=torch.float64) if state is None else state.eta.double()
        ry, rv, rl, re = kla_scan_reference(d["v"], d["lambda_v"], d["k"], d["q"], d["a_bar"], d["p_bar"], lam0, eta0,
                                            prior_readout=opts["prior_readout"])
        tol = {torch.float64: 1e-10, torch.float32: 2e-4, torch.bfloat16: 5e-2}[x["v"].dtype]
        for got, ref, nm in ((y, ry, "y"), (y_var, rv, "y_var"), (fin.lam, rl, "lam"), (fin.eta, re, "eta")):
            g = got.double()
            err = (g - ref).norm() / max(ref.norm(), 1e-30)
            assert err <= tol or (g - ref).abs().max() <= tol, f"{where}: {nm} off the reference by {float(err):.3g}"
    return check


def test_kla_scan_fuzz(record_property):
    tally = Tally()

    @FUZZ
    @given(scan_case())
    def run(case):
        x, state, opts, finite, tag = case
        benign = tag[1] in ("none", "noncontig", "expand", "f64", "tiny", "zero") and tag[2] in ("none", "ok")
        if tag[1] == "zero" and tag[0] in ("lambda_v", "a_bar"):
            benign = False
        tally.add(contract(lambda: kla_scan(*(x[n] for n in NAMES), initial_state=state, **opts), finite_inputs=finite,
                           check=_check_against_reference(x, state, opts, str(tag)) if benign else None,
                           where=f"kla_scan{tag}"))

    run()
    tally.report(record_property)


def test_kla_step_fuzz(record_property):
    """kla_step: one token; must equal kla_scan over L = 1 with the same state when it runs."""
    tally = Tally()

    @FUZZ
    @given(scan_case())
    def run(case):
        x, state, opts, finite, tag = case
        tok = {k: (v[:, 0] if k in ("v", "lambda_v", "k", "q") and hasattr(v, "ndim") and v.ndim == 3 else v)
               for k, v in x.items()}

        def check(res):
            if tag[1] != "none" or tag[2] not in ("none", "ok") or opts["backend"] == "reference":
                return
            y, yv, st1 = kla_scan(*(x[n][:, :1] if n in ("v", "lambda_v", "k", "q") else x[n] for n in NAMES),
                                  initial_state=state, prior_readout=opts["prior_readout"], backend="reference")
            torch.testing.assert_close(res[0], y[:, 0], rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(res[2].lam.double(), st1.lam.double(), rtol=1e-3, atol=1e-4)

        tally.add(contract(lambda: kla_step(*(tok[n] for n in NAMES), state, **opts), finite_inputs=finite, check=check,
                           where=f"kla_step{tag}"))

    run()
    tally.report(record_property)


CONFIG_VALUES = [0, 1, 4, -1, 2.5, "4", None, True, float("nan"), float("inf"), 1e-30, 1e30]


def test_config_layer_lm_fuzz(record_property):
    """KLAConfig fields, KLALayer inputs, KLALanguageModel tokens and targets."""
    tally = Tally()
    fields = ["d_state", "expand", "conv_kernel", "dt_min", "dt_max", "a_init_value", "p_init", "precision_floor",
              "init_precision", "process_noise", "backend", "a_init"]
    layer = KLALayer(8, KLAConfig(d_state=4))
    lm = KLALanguageModel(11, 8, 1, kla_config=KLAConfig(d_state=2))

    @FUZZ
    @given(st.sampled_from(["config", "layer", "lm", "loss", "postvar"]), st.sampled_from(fields),
           st.sampled_from(CONFIG_VALUES), st.sampled_from(["ok", "L0", "B0", "2d", "wrong_d", "int", "bf16", "f64", "nan",
                                                              "huge", "numpy", "noncontig", "expand", "oov", "neg", "float"]))
    def run(which, field, value, kind):
        torch.manual_seed(0)
        if which == "config":
            call, fin = (lambda: KLAConfig(**{field: value})), True
        elif which == "layer":
            x = torch.randn(2, 5, 8)
            xx = {"ok": x, "L0": x[:, :0], "B0": x[:0], "2d": x[0], "wrong_d": x[..., :7], "int": x.long(), "bf16": x.bfloat16(),
                  "f64": x.double(), "nan": x * float("nan"), "huge": x * 1e30, "numpy": x.float().numpy(),
                  "noncontig": x.transpose(0, 1).contiguous().transpose(0, 1), "expand": x[:1].expand(3, 5, 8),
                  "oov": x, "neg": -x, "float": x}[kind]
            call, fin = (lambda: layer(xx, return_variance=True)), kind not in ("nan", "huge")
        else:
            t = torch.randint(0, 11, (2, 6))
            tt = {"ok": t, "L0": t[:, :0], "B0": t[:0], "2d": t, "wrong_d": t[:, :3], "int": t.int(), "bf16": t.bfloat16(),
                  "f64": t.double(), "nan": t, "huge": t * 10**6, "numpy": t.numpy(), "noncontig": t.t().contiguous().t(),
                  "expand": t[:1].expand(3, 6), "oov": t + 11, "neg": t - 20, "float": t.float()}[kind]
            if which == "lm":
                call = lambda: lm(tt)
            elif which == "postvar":
                call = lambda: lm.posterior_variance(tt)
            else:
                call = lambda: lm.loss(t, tt)
            fin = True
        tally.add(contract(call, finite_inputs=fin, where=f"{which}({field}={value!r}, {kind})"))

    run()
    tally.report(record_property)


def test_task_and_train_config_fuzz(record_property):
    tally = Tally()
    names = ["a5", "s5", "in_context_recall", "fuzzy_recall", "noisy_recall", "selective_copy", "compression",
             "memorization", "zz", None]
    tfields = ["steps", "batch_size", "lr", "weight_decay", "warmup", "grad_clip", "eval_every", "target_acc", "patience",
               "seed", "layers", "d_model", "posterior_samples", "dtype", "mixer", "length"]

    @FUZZ
    @given(st.sampled_from(["task", "config"]), st.sampled_from(names), st.sampled_from(tfields),
           st.sampled_from(CONFIG_VALUES + ["float32", "bfloat16", "kla", "attention"]))
    def run(which, name, field, value):
        if which == "task":
            length = value if field == "length" else 8
            call = lambda: make_task(name, seed=value if field == "seed" else 0, length=length, n_train=16, n_test=8)
        else:
            call = lambda: TrainConfig(task=name if name else "a5", **{field: value})
        tally.add(contract(call, finite_inputs=True, where=f"{which}({name}, {field}={value!r})"))

    run()
    tally.report(record_property)


def test_checkpoint_corruption_fuzz(tmp_path, record_property):
    """Any truncation, bit flip, or garbage gives a named error; the intact file loads identically."""
    tally = Tally()
    path = tmp_path / "ck.pt"
    payload = {"w": torch.arange(12.0).reshape(3, 4), "step": 7, "history": [{"loss": 0.5}]}
    save_checkpoint(path, payload)
    raw = path.read_bytes()

    @FUZZ
    @given(st.sampled_from(["truncate", "flip", "append", "garbage", "empty", "header", "intact"]),
           st.integers(0, len(raw) - 1), st.integers(0, 7))
    def run(kind, pos, bit):
        bad = {"truncate": raw[:pos], "flip": raw[:pos] + bytes([raw[pos] ^ (1 << bit)]) + raw[pos + 1:],
               "append": raw + b"x" * (bit + 1), "garbage": os.urandom(pos % 200), "empty": b"", "header": raw[:pos % 80],
               "intact": raw}[kind]
        p = tmp_path / f"c_{kind}.pt"
        p.write_bytes(bad)

        def check(res):
            assert bad == raw, f"{kind} at {pos}: a damaged checkpoint loaded"
            torch.testing.assert_close(res["w"], payload["w"])
            assert res["step"] == 7 and res["history"] == payload["history"]

        tally.add(contract(lambda: load_checkpoint(p), finite_inputs=True, check=check, where=f"load({kind}@{pos})"))

    run()
    tally.report(record_property)


def test_checkpoint_payload_code_is_never_executed(tmp_path):
    """A checksummed payload that would run code on unpickling is refused (weights_only loading)."""
    import hashlib
    import io
    import pickle

    from bayesfilt.nn.checkpoint import MAGIC

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    body = pickle.dumps({"x": Evil()})
    buf = io.BytesIO()
    torch.save({"x": 1}, buf)                      # a real torch file, then replace its data.pkl would be
    p = tmp_path / "evil.pt"                       # overkill: a raw pickle with a valid header suffices
    p.write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    with pytest.raises(bayesfilt.BayesfiltError, match="Fix:"):
        load_checkpoint(p)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", ["layer_state_batch", "lm_states_len", "lm_states_type", "gen_float", "gen_str",
                                  "gen_neg", "check_shape", "check_dtype", "check_device", "init_state_zero"])
def test_decode_and_tools_bad_arguments(case):
    layer = KLALayer(8, KLAConfig(d_state=2))
    lm = KLALanguageModel(11, 8, 2, kla_config=KLAConfig(d_state=2))
    from bayesfilt.nn import check_backends
    call = {
        "layer_state_batch": lambda: layer(torch.randn(3, 1, 8), state=layer.init_state(2)),
        "lm_states_len": lambda: lm(torch.randint(0, 11, (2, 1)), states=lm.init_state(2)[:1]),
        "lm_states_type": lambda: lm(torch.randint(0, 11, (2, 1)), states="s"),
        "gen_float": lambda: lm.generate(torch.randint(0, 11, (1, 2)), 2.5),
        "gen_str": lambda: lm.generate(torch.randint(0, 11, (1, 2)), "2"),
        "gen_neg": lambda: lm.generate(torch.randint(0, 11, (1, 2)), -1),
        "check_shape": lambda: check_backends(["torch"], shape=(2, 2)),
        "check_dtype": lambda: check_backends(["torch"], dtype=torch.int32),
        "check_device": lambda: check_backends(["torch"], device="nowhere"),
        "init_state_zero": lambda: layer.init_state(0),
    }[case]
    assert contract(call, finite_inputs=True, where=case) == "error"


@pytest.mark.parametrize("case", ["tok_unknown", "tok_decode_oob", "windows_len0", "windows_offset_neg", "split_block0",
                                  "gen_prompt_oob", "gen_prompt_empty", "gen_temp_nan", "gen_topk0", "sample_nan",
                                  "bpc_short", "corpus_missing"])
def test_text_and_decode_bad_arguments(case):
    from bayesfilt.nn import decode, text
    lm = KLALanguageModel(3, 8, 1, kla_config=KLAConfig(d_state=2))
    ids = np.arange(60) % 3
    call = {
        "tok_unknown": lambda: text.CharTokenizer("abc").encode("abz"),
        "tok_decode_oob": lambda: text.CharTokenizer("abc").decode([0, 5]),
        "windows_len0": lambda: text.TokenWindows(ids, 0),
        "windows_offset_neg": lambda: text.windows_split(ids, 5, offset=-1),
        "split_block0": lambda: text.split_text("abc", block_chars=0),
        "gen_prompt_oob": lambda: decode.generate(lm, [0, 7], 2),
        "gen_prompt_empty": lambda: decode.generate(lm, [], 2),
        "gen_temp_nan": lambda: decode.generate(lm, [0, 1], 2, temperature=float("nan")),
        "gen_topk0": lambda: decode.generate(lm, [0, 1], 2, top_k=0),
        "sample_nan": lambda: decode.sample_next(torch.full((2, 3), float("nan"))),
        "bpc_short": lambda: text.bits_per_char(lm, ids[:5], length=10),
        "corpus_missing": lambda: text.load_corpus("/nonexistent/corpus.txt"),
    }[case]
    assert contract(call, finite_inputs=True, where=case) == "error"
