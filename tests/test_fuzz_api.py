"""Fuzz the rest of the NumPy public API: ready-made models, Gaussian conversions, consistency
checks, tracking recipes, data helpers, learning (MLE, EM), the generic scan and the plots.

Arguments are drawn from a pool of good and bad values (NaN, inf, negative, zero, huge/tiny
magnitudes, strings, None, wrong shapes, empty arrays, integer/bool/float16 arrays, broadcast
and non-contiguous views). Outcome: a finite result or a BayesfiltError with "Fix:". Where it is
cheap, results are also checked against an independent computation.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bayesfilt
from bayesfilt import consistency, learn, models, plot, tracking
from bayesfilt import data as bdata
from bayesfilt.scan import scan
from fuzz_helpers import FUZZ, Tally, contract

NAN, INF = float("nan"), float("inf")
SCALARS = [1.0, 0.5, 2, 0.0, -1.0, NAN, INF, -INF, 1e-300, 1e300, 1e308, 5e-324, "1", None, True, [1.0, 2.0],
           np.float32(2.0), np.int64(3), np.array(1.5), np.array([1.5])]
INTS = [1, 2, 3, 0, -1, 2.5, "2", None, True, np.int32(2), 64]
FINITE_SCALARS = {repr(x) for x in SCALARS if isinstance(x, (int, float, np.floating, np.integer))
                  and not isinstance(x, bool) and np.isfinite(x)}


def _times(kind, T=6):
    rng = np.random.default_rng(T)
    base = np.cumsum(rng.uniform(0.1, 2.0, T))
    return {"ok": base, "int": np.arange(T), "dup": np.zeros(T), "dec": base[::-1], "nan": base * NAN,
            "empty": base[:0], "one": base[:1], "2d": base.reshape(2, -1), "str": ["a"] * T, "huge": base * 1e300,
            "tiny": base * 1e-300, "list": list(base), "strided": np.repeat(base, 2)[::2], "none": None}[kind]


TIMES = ["ok", "int", "dup", "dec", "nan", "empty", "one", "2d", "str", "huge", "tiny", "list", "strided", "none"]


def _finite(*xs):
    for x in xs:
        if isinstance(x, (str, type(None), bool)):
            continue
        try:
            a = np.asarray(x, dtype=float)
        except (TypeError, ValueError):
            continue
        if not np.isfinite(a).all():
            return False
    return True


def test_models_constructors(record_property):
    """Every ready-made model constructor over the scalar/int/times pools; a result must filter."""
    tally = Tally()

    @FUZZ
    @given(st.sampled_from(["cv", "ca", "cv_irr", "ca_irr", "rw", "ll", "llt", "time_steps"]),
           st.sampled_from(SCALARS), st.sampled_from(SCALARS), st.sampled_from(INTS), st.sampled_from(TIMES))
    def run(which, a, b, dim, tkind):
        t = _times(tkind)
        call = {
            "cv": lambda: models.constant_velocity(dt=a, q=b, r=1.0, dim=dim),
            "ca": lambda: models.constant_acceleration(dt=a, q=b, r=1.0, dim=dim),
            "cv_irr": lambda: models.constant_velocity_irregular(t, a, b, dim=dim),
            "ca_irr": lambda: models.constant_acceleration_irregular(t, a, b, dim=dim),
            "rw": lambda: models.random_walk(a, b, times=t, dim=dim),
            "ll": lambda: models.local_level(a, b, times=t),
            "llt": lambda: models.local_linear_trend(a, b, 0.1, times=t),
            "time_steps": lambda: models.time_steps(t),
        }[which]

        def check(res):
            if isinstance(res, bayesfilt.LinearGaussianSSM):
                T = res.num_timesteps or 3
                y = np.zeros((T, res.m))
                contract(lambda: bayesfilt.kalman_filter(res, y), finite_inputs=True, where=f"filter {which}",
                         allow_nan=("means", "covs", "predicted") if res.has_diffuse else ())
            else:
                assert res[0] == 0 and (res >= 0).all()

        tally.add(contract(call, finite_inputs=_finite(a, b, t), check=check, where=f"{which}({a!r}, {b!r}, {dim!r}, {tkind})",
                           allow_nan=("m0", "P0")))

    run()
    tally.report(record_property)


MATS = {"eye": np.eye(2), "diag_big": np.diag([1e300, 1.0]), "diag_tiny": np.diag([1e-300, 1.0]), "zero": np.zeros((2, 2)),
        "neg": -np.eye(2), "asym": np.array([[1.0, 0.5], [0.0, 1.0]]), "nan": np.eye(2) * NAN, "inf": np.eye(2) * INF,
        "wrong": np.eye(3), "int": np.eye(2, dtype=int), "f16": np.eye(2, dtype=np.float16), "list": [[2.0, 0.0], [0.0, 1.0]],
        "batch": np.stack([np.eye(2), 2 * np.eye(2)]), "empty": np.zeros((0, 0)), "str": "cov", "none": None,
        "fortran": np.asfortranarray(np.array([[2.0, 0.3], [0.3, 1.0]])), "bcast": np.broadcast_to(np.eye(2), (3, 2, 2))}
VECS = {"zero": np.zeros(2), "ok": np.array([1.0, -2.0]), "nan": np.array([NAN, 0.0]), "inf": np.array([INF, 0.0]),
        "wrong": np.zeros(3), "int": np.array([1, 2]), "big": np.array([1e300, 1e300]), "str": "m", "none": None,
        "batch": np.zeros((3, 2)), "empty": np.zeros(0), "bool": np.array([True, False])}


def test_gaussian_conversions(record_property):
    """to_information / to_moment round trips; a result equals the explicit inverse."""
    tally = Tally()

    @FUZZ
    @given(st.sampled_from(sorted(VECS)), st.sampled_from(sorted(MATS)), st.booleans())
    def run(vk, mk, info):
        v, M = VECS[vk], MATS[mk]
        g = bayesfilt.InfoGaussian(v, M) if info else bayesfilt.Gaussian(v, M)
        fn = bayesfilt.to_moment if info else bayesfilt.to_information

        def check(res):
            A = np.asarray(M, float)
            out = res.cov if info else res.prec
            ref = np.linalg.inv(A)
            np.testing.assert_allclose(out, 0.5 * (ref + np.swapaxes(ref, -1, -2)), rtol=1e-8, atol=1e-300)

        tally.add(contract(lambda: fn(g), finite_inputs=_finite(v, M) and vk not in ("big",),
                           check=check if mk in ("eye", "fortran", "list", "int", "batch") else None,
                           where=f"{fn.__name__}({vk}, {mk})"))
        tally.add(contract(lambda: fn(None), finite_inputs=True, where="None"))

    run()
    tally.report(record_property)


def test_consistency_fuzz(record_property):
    """nees, nis, chi2_bounds, check_average with generated good and bad arguments."""
    tally = Tally()
    model = models.constant_velocity(dim=1, q=0.1)
    _, y = model.simulate(8, seed=0)
    fr = bayesfilt.kalman_filter(model, y)

    @FUZZ
    @given(st.sampled_from(["nees", "nis", "chi2", "avg"]), st.sampled_from(sorted(VECS)), st.sampled_from(sorted(MATS)),
           st.sampled_from(SCALARS), st.sampled_from(SCALARS))
    def run(which, vk, mk, s1, s2):
        v, M = VECS[vk], MATS[mk]
        if which == "nees":
            call, fin = (lambda: consistency.nees(v, np.zeros(2) if vk != "batch" else np.zeros((3, 2)), M)), _finite(v, M)
            fin = fin and mk not in ("diag_big", "diag_tiny") and vk != "big"
        elif which == "nis":
            yy = {"ok": y, "zero": y[:3], "nan": y * NAN, "str": "y", "none": None, "wrong": np.zeros((8, 2))}.get(vk, y)
            res = {"eye": fr, "none": None, "str": "r", "batch": bayesfilt.rts_smoother(model, fr)}.get(mk, fr)
            call, fin = (lambda: consistency.nis(model, yy, res)), True
        elif which == "chi2":
            call, fin = (lambda: consistency.chi2_bounds(s1, 1 if isinstance(s2, str) else 2, 0.95)), True
        else:
            call, fin = (lambda: consistency.check_average(v, s1)), _finite(v)

        def check(res):
            if which == "nees" and vk == "ok" and mk == "eye":
                assert np.isclose(res, 5.0)
            if which == "chi2":
                lo, hi = res
                assert 0 <= lo <= hi

        tally.add(contract(call, finite_inputs=fin, check=check, where=f"{which}({vk}, {mk}, {s1!r})"))

    run()
    tally.report(record_property)


def test_tracking_and_data_fuzz(record_property):
    """track / tracking_model / initial_noise_guess / speed_course and the lon-lat helpers."""
    tally = Tally()
    rng = np.random.default_rng(0)
    POS = {"ok": np.cumsum(rng.standard_normal((6, 2)), 0), "nan_some": np.where(rng.random((6, 2)) < 0.3, NAN, 1.0),
           "nan_all": np.full((6, 2), NAN), "1d": np.zeros(6), "3col": np.zeros((6, 3)), "short": np.zeros((3, 2)),
           "huge": np.full((6, 2), 1e300), "str": "pos", "int": np.arange(12).reshape(6, 2), "inf": np.full((6, 2), INF)}

    @FUZZ
    @given(st.sampled_from(["track", "model", "guess", "speed", "lonlat", "enlonlat", "cog"]),
           st.sampled_from(["cv", "ca", "local-level", "bogus", None]), st.sampled_from(TIMES), st.sampled_from(sorted(POS)),
           st.sampled_from(SCALARS), st.booleans())
    def run(which, kind, tk, pk, s, smooth):
        t, p = _times(tk), POS[pk]
        call = {
            "track": lambda: tracking.track(kind, t, p, s, 1.0, smooth=smooth),
            "model": lambda: tracking.tracking_model(kind, t, p, 1.0, s),
            "guess": lambda: tracking.initial_noise_guess(kind, [(t, p)]),
            "speed": lambda: tracking.speed_course(p, np.broadcast_to(np.eye(2), np.shape(p)[:-1] + (2, 2))
                                                   if isinstance(p, np.ndarray) and p.ndim == 2 else p),
            "lonlat": lambda: bdata.lonlat_to_east_north(p[..., 0] if isinstance(p, np.ndarray) and p.ndim == 2 else p,
                                                         t, s, 40.0),
            "enlonlat": lambda: bdata.east_north_to_lonlat(t, t, -74.0, 40.0),
            "cog": lambda: bdata.fix_cog(t),
        }[which]
        fin = _finite(t, p, s) and pk not in ("huge",) and tk not in ("huge",)
        if which == "speed":
            fin = fin and pk not in ("nan_some", "nan_all")
            allow = ("[1]", "[3]")                                 # speed/course std at zero speed: documented NaN
        else:
            allow = ()
        if which in ("lonlat", "enlonlat", "cog"):
            fin = fin and tk not in ("huge", "tiny") and pk not in ("huge",)
        tally.add(contract(call, finite_inputs=fin, allow_nan=allow + ("velocity", "speed", "course"),
                           where=f"{which}({kind}, {tk}, {pk}, {s!r})"))

    run()
    tally.report(record_property)


def test_learn_fuzz(record_property):
    """fit_mle and em with generated starting values, data, options (few iterations)."""
    tally = Tally()
    truth = models.local_level(1.0, 0.5, diffuse=False, P0=np.eye(1))
    _, y0 = truth.simulate(25, seed=3)
    Y = {"ok": y0, "nan_some": np.where(np.arange(25)[:, None] % 3 == 0, NAN, y0), "nan_all": y0 * NAN, "empty": y0[:0],
         "one": y0[:1], "huge": y0 * 1e200, "str": "y", "int": np.round(y0).astype(int), "3d": y0[None], "wrong_m": np.c_[y0, y0]}
    THETA = {"ok": [1.0, 1.0], "nan": [NAN, 1.0], "neg": [-1.0, 1.0], "zero": [0.0, 1.0], "empty": [], "huge": [1e300, 1.0],
             "tiny": [1e-300, 1.0], "str": "ab", "long": [1.0, 1.0, 1.0], "2d": [[1.0, 1.0]]}

    def build(th):
        return models.local_level(th[0], th[1], diffuse=False, P0=np.eye(1))

    @FUZZ
    @given(st.sampled_from(["mle", "em"]), st.sampled_from(sorted(Y)), st.sampled_from(sorted(THETA)),
           st.sampled_from(["log", None, "bogus", ("log", "identity")]), st.sampled_from(["L-BFGS-B", "Nelder-Mead", "nope"]),
           st.sampled_from([0, 1, 2, -1, 2.5, ("Q",), ("R", "m0"), ("Z",), "Q"]))
    def run(which, yk, tk, transforms, method, opt):
        y = Y[yk]
        if which == "mle":
            call = lambda: learn.fit_mle(build, y, THETA[tk], transforms=transforms, method=method, maxiter=3,
                                         stderr=False)
        else:
            n_iter = opt if not isinstance(opt, (tuple, str)) else 2
            lrn = opt if isinstance(opt, (tuple, str)) else ("Q", "R")
            call = lambda: learn.em(truth, y, n_iter=n_iter, learn=lrn, progress=False)
        fin = yk not in ("huge",) and tk not in ("huge", "tiny")
        tally.add(contract(call, finite_inputs=fin, allow_nan=("stderr", "cov"), where=f"{which}({yk}, {tk}, {transforms}, {method}, {opt})"))

    run()
    tally.report(record_property)


def test_generic_scan_fuzz(record_property):
    """scan(): every schedule equals the cumulative sum / matrix product; bad arguments are named errors."""
    tally = Tally()

    @FUZZ
    @given(st.integers(0, 40), st.sampled_from(["sequential", "tree", "chunked", "bogus"]),
           st.sampled_from([None, 1, 3, 100, 0, -2, 1.5]), st.booleans(), st.sampled_from(["tree", "sequential", "x"]),
           st.sampled_from(["vec", "mat", "pytree", "ragged", "none", "scalar", "bad_combine"]))
    def run(T, schedule, chunk, reverse, inner, kind):
        rng = np.random.default_rng(T)
        if kind == "vec":
            el, comb = rng.standard_normal((T, 3)), (lambda a, b: a + b)
            ref = np.cumsum(el[::-1], 0)[::-1] if reverse else np.cumsum(el, 0)
        elif kind == "mat":
            el = 0.5 * rng.standard_normal((T, 2, 2))
            comb = (lambda a, b: a @ b) if reverse else (lambda a, b: b @ a)
            ref, acc = [], np.eye(2)
            for M in (el[::-1] if reverse else el):
                acc = M @ acc
                ref.append(acc)
            ref = np.array(ref[::-1] if reverse else ref).reshape(el.shape)
        elif kind == "pytree":
            el, comb = (rng.standard_normal(T), rng.standard_normal((T, 2))), (lambda a, b: (a[0] + b[0], a[1] + b[1]))
            ref = None
        elif kind == "ragged":
            el, comb, ref = (np.zeros(T), np.zeros(T + 1)), (lambda a, b: a), None
        elif kind == "none":
            el, comb, ref = None, (lambda a, b: a), None
        elif kind == "scalar":
            el, comb, ref = np.float64(1.0), (lambda a, b: a + b), None
        else:
            el, comb, ref = np.ones(T), "add", None

        def check(res):
            if ref is not None and T > 0:
                np.testing.assert_allclose(res, ref, rtol=1e-10, atol=1e-12)

        tally.add(contract(lambda: scan(el, comb, schedule, reverse=reverse, chunk_size=chunk, inner=inner),
                           finite_inputs=True, check=check, where=f"scan({T}, {schedule}, {chunk}, {kind})"))

    run()
    tally.report(record_property)


def test_plot_fuzz(record_property):
    """Every plot function with generated series (mismatched, empty, NaN, strings, wrong shapes)."""
    tally = Tally()
    S = {"ok": np.arange(6.0), "short": np.arange(3.0), "empty": np.zeros(0), "nan": np.full(6, NAN), "str": "abc",
         "2d": np.zeros((6, 2)), "3d": np.zeros((6, 2, 2)), "cov": np.tile(np.eye(2), (6, 1, 1)), "none": None,
         "neg": -np.ones(6), "int": np.arange(6), "big": np.full(6, 1e300)}

    @FUZZ
    @given(st.sampled_from(["series", "track", "overview", "ellipse", "nis", "nees", "postvar"]),
           st.sampled_from(sorted(S)), st.sampled_from(sorted(S)), st.sampled_from(INTS), st.sampled_from(SCALARS))
    def run(which, k1, k2, every, prob):
        a, b = S[k1], S[k2]
        call = {
            "series": lambda: plot.series_1d(S["ok"], a, a, b),
            "track": lambda: plot.track_2d(observations=a, estimates=a, covs=b, every=every),
            "overview": lambda: plot.tracks_overview([{"observations": a, "estimates": b}]),
            "ellipse": lambda: plot.covariance_ellipse(a if k1 != "ok" else np.zeros(2), b if k2 != "ok" else np.eye(2),
                                                       prob=prob),
            "nis": lambda: plot.nis_plot(a, every, prob=0.95, times=b),
            "nees": lambda: plot.nees_plot(a, 2, times=b),
            "postvar": lambda: plot.posterior_variance(a, marks=b if k2 in ("ok", "int", "none") else None),
        }[which]
        tally.add(contract(call, finite_inputs=False, where=f"{which}({k1}, {k2}, {every!r}, {prob!r})"))

    run()
    tally.report(record_property)


@pytest.mark.parametrize("name", ["FilterResult", "SmootherResult", "LinearGaussianSSM"])
def test_containers_reject_nonsense(name):
    """Containers built from nonsense never reach the filters silently."""
    model = models.constant_velocity(dim=1)
    with pytest.raises(bayesfilt.BayesfiltError):
        if name == "LinearGaussianSSM":
            bayesfilt.LinearGaussianSSM(m0="x", P0=np.eye(1), F=np.eye(1), Q=np.eye(1), H=np.eye(1), R=np.eye(1))
        elif name == "FilterResult":
            bayesfilt.rts_smoother(model, bayesfilt.FilterResult(*(np.zeros((2, 5)),) * 6))
        else:
            consistency.nis(model, np.zeros((3, 1)), bayesfilt.SmootherResult(np.zeros((3, 2)), np.zeros((3, 2, 2)),
                                                                              np.zeros((2, 2, 2))))


@pytest.mark.parametrize("case", ["speed_none", "speed_empty", "speed_str", "holdout_every0", "holdout_every_float",
                                  "holdout_offset_neg", "holdout_kind"])
def test_vessel_checks_bad_arguments(case):
    vs = bdata.load_ais()[:1]
    call = {
        "speed_none": lambda: tracking.speed_check(None, "cv", 1e-3, 9.0),
        "speed_empty": lambda: tracking.speed_check([], "cv", 1e-3, 9.0),
        "speed_str": lambda: tracking.speed_check("vessels", "cv", 1e-3, 9.0),
        "holdout_every0": lambda: tracking.holdout_check(vs, "cv", 1e-3, 9.0, every=0),
        "holdout_every_float": lambda: tracking.holdout_check(vs, "cv", 1e-3, 9.0, every=2.5),
        "holdout_offset_neg": lambda: tracking.holdout_check(vs, "cv", 1e-3, 9.0, offset=-1),
        "holdout_kind": lambda: tracking.holdout_check(vs, "bogus", 1e-3, 9.0),
    }[case]
    assert contract(call, finite_inputs=True, where=case) == "error"
