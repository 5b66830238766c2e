"""float64 check of docs/math/kla.md §7 (the adjoint in moment form) against autograd.

The equations of §7, written once more as a plain loop (independent of the Triton kernels, which
tests/test_kla_triton.py checks against the float64 reference), are compared with torch.autograd of the
covariance-form forward: posterior and prior readouts, p = 0 and p > 0, a in (0.05, 1] with a = 1,
a gradient on the final state with saturated lanes, time cut into 1-5 chunks whose summary maps give
each chunk's incoming adjoint.

Forward: the covariance form as the kernels compute it; final state (lam_L, eta_L) saturated at
LAM (a small value here, so that some lanes saturate). Adjoint: the §7 equations as a plain loop,
time cut into chunks whose summary maps (cww, cwm, cmm, offsets) give each chunk's incoming adjoint.
"""
import pytest

torch = pytest.importorskip("torch")


def forward(v, lv, k, q, a, p, lam0, eta0, prior, LAM):
    # v, lv [B,L,M]; k, q [B,L,S]; a, p [M,S]; lam0, eta0 [B,M,S]
    B, L, M = v.shape
    w = 1.0 / lam0                                            # w_0 = 1/lam_0
    mu = eta0 / lam0                                          # mu_0 = eta_0/lam_0
    ys, yvs = [], []
    for t in range(L):
        phi = lv[:, t, :, None] * k[:, t, None, :] ** 2       # phi_t = Lv_t k_t^2
        u = lv[:, t, :, None] * v[:, t, :, None] * k[:, t, None, :]   # u_t = Lv_t v_t k_t
        P = a * a * w + p                                     # P_t = a^2 w_{t-1} + p
        g = 1.0 / (1.0 + phi * P)                             # g_t
        amu = a * mu
        w = P * g                                             # w_t = P_t g_t
        mu = amu + w * (u - phi * amu)                        # mu_t = a mu_{t-1} + w_t nu_t
        qq = q[:, t, None, :]
        if prior:
            ys.append((qq * a * mu).sum(-1)); yvs.append((qq * qq * (a * a * w + p)).sum(-1))
        else:
            ys.append((qq * mu).sum(-1)); yvs.append((qq * qq * w).sum(-1))
    lamL = 1.0 / torch.clamp(w, min=1.0 / LAM)               # lam_L = 1/max(w_L, 1/LAM)
    return torch.stack(ys, 1), torch.stack(yvs, 1), lamL, mu * lamL, w


def adjoint(v, lv, k, q, a, p, lam0, eta0, prior, LAM, gy, gyv, glL, geL, NC, sat_rule="doc"):
    B, L, M = v.shape
    S = k.shape[-1]
    # recompute the states w_t, mu_t (t = 0..L)
    ws, mus = [1.0 / lam0], [eta0 / lam0]
    for t in range(L):
        phi = lv[:, t, :, None] * k[:, t, None, :] ** 2
        u = lv[:, t, :, None] * v[:, t, :, None] * k[:, t, None, :]
        P = a * a * ws[-1] + p
        g = 1.0 / (1.0 + phi * P)
        amu = a * mus[-1]
        wn = P * g
        ws.append(wn); mus.append(amu + wn * (u - phi * amu))
    # final-state adjoint -> (w_L, mu_L)
    lamL = 1.0 / torch.clamp(ws[-1], min=1.0 / LAM)
    muL = mus[-1]
    sat = (lamL >= 0.5 * LAM) if sat_rule == "code" else (ws[-1] <= 1.0 / LAM)
    HwL = torch.where(sat, torch.zeros_like(lamL), -lamL ** 2 * (glL + muL * geL))   # dL/dw_L
    HmL = lamL * geL                                                                  # dL/dmu_L

    def step(t, Hw, Hm, summ=None, grads=None):
        """token t (1-based): adjoint of (w_t, mu_t) from later steps -> of (w_{t-1}, mu_{t-1})."""
        wp, mup = ws[t - 1], mus[t - 1]
        lvt, vt = lv[:, t - 1, :, None], v[:, t - 1, :, None]
        kt, qt = k[:, t - 1, None, :], q[:, t - 1, None, :]
        gyt, gyvt = gy[:, t - 1, :, None], gyv[:, t - 1, :, None]
        phi = lvt * kt ** 2
        u = lvt * vt * kt
        P = a * a * wp + p
        g = 1.0 / (1.0 + phi * P)
        w = P * g
        nu = u - phi * a * mup
        mu = a * mup + w * nu
        c, cv = (a, a * a) if prior else (1.0, 1.0)
        Hm_t = Hm + gyt * qt * c                          # readout injections
        Hw_t = Hw + gyvt * qt ** 2 * cv
        X = Hw_t + Hm_t * nu                              # X_t
        GP = g ** 2 * X                                   # dL/dP_t
        Hw_o = a * a * GP                                 # dL/dw_{t-1}
        Hm_o = a * g * Hm_t                               # dL/dmu_{t-1}
        if summ is not None:
            cww, cwm, cmm = summ
            al = a * a * g * g
            summ = (al * cww, al * cwm + al * nu * cmm, a * g * cmm)
        if grads is not None:
            Gu = w * Hm_t                                 # dL/du_t
            Gphi = -w * (w * X + a * mup * Hm_t)          # dL/dphi_t
            ga = GP * 2 * a * wp + Hm_t * g * mup         # via P_t and mu_t
            gp = GP.clone()
            if prior:
                ga = ga + gyt * qt * mu + gyvt * qt ** 2 * 2 * a * w
                gp = gp + gyvt * qt ** 2
                Xq = gyt * a * mu + 2 * qt * gyvt * (a * a * w + p)
            else:
                Xq = gyt * mu + 2 * qt * gyvt * w
            grads["a"] += ga.sum(0); grads["p"] += gp.sum(0)
            grads["v"][:, t - 1] = lv[:, t - 1] * (Gu * kt).sum(-1)
            grads["lv"][:, t - 1] = (Gphi * kt ** 2).sum(-1) + v[:, t - 1] * (Gu * kt).sum(-1)
            grads["k"][:, t - 1] = (lvt * (2 * kt * Gphi + vt * Gu)).sum(1)
            grads["q"][:, t - 1] = Xq.sum(1)
        return Hw_o, Hm_o, summ

    # chunks [c*LC, min((c+1)*LC, L)) (tokens 1-based t = start+1 .. end)
    LC = -(-L // NC)
    bounds = [(c * LC, min((c + 1) * LC, L)) for c in range(NC)]
    # pass 1 (MODE 1): each chunk's summary: (Hw, Hm)_start = [[cww, cwm],[0, cmm]] (Hw, Hm)_end + (ow, om)
    summaries = []
    for (s0, s1) in bounds:
        one, zero = torch.ones(B, M, S), torch.zeros(B, M, S)
        Hw, Hm, summ = zero, zero, (one, zero, one)
        for t in range(s1, s0, -1):
            Hw, Hm, summ = step(t, Hw, Hm, summ=summ)
        summaries.append((*summ, Hw, Hm))
    # pass 2 (MODE 0): incoming adjoint of chunk c by composing chunks NC-1 .. c+1, then the sweep
    grads = {"v": torch.zeros_like(v), "lv": torch.zeros_like(v), "k": torch.zeros_like(k), "q": torch.zeros_like(q),
             "a": torch.zeros_like(a), "p": torch.zeros_like(p)}
    incoming = []
    for c in range(NC):
        Hw, Hm = HwL, HmL
        for cc in range(NC - 1, c, -1):
            cww, cwm, cmm, ow, om = summaries[cc]
            Hw, Hm = cww * Hw + cwm * Hm + ow, cmm * Hm + om
        incoming.append((Hw, Hm))
    for c in range(NC - 1, -1, -1):
        Hw, Hm = incoming[c]
        s0, s1 = bounds[c]
        for t in range(s1, s0, -1):
            Hw, Hm, _ = step(t, Hw, Hm, grads=grads)
        if c > 0:      # consistency: the sweep's outgoing adjoint = the composed incoming of chunk c-1
            grads.setdefault("chunk_err", []).append(max(
                float(((Hw - incoming[c - 1][0]).abs() / (Hw.abs() + 1e-300)).max()),
                float(((Hm - incoming[c - 1][1]).abs() / (Hm.abs() + 1e-300)).max())))
    w0, mu0 = ws[0], mus[0]
    grads["lam0"] = -w0 * (w0 * Hw + mu0 * Hm)             # dL/dlam_0
    grads["eta0"] = w0 * Hm                                # dL/deta_0
    grads["satfrac"] = float(sat.double().mean())
    grads["band"] = int(((lamL >= 0.5 * LAM) & (ws[-1] > 1.0 / LAM)).sum())
    return grads


def relerr(x, y):
    return float((x - y).abs().max() / y.abs().max().clamp_min(1e-300))


def run(B, L, M, S, a_lo, p_on, prior, NC, seed, LAM=1e12):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *sh: torch.randn(*sh, generator=gen)
    v, lv = r(B, L, M), torch.exp(0.5 * r(B, L, M))
    k, q = r(B, L, S), r(B, L, S)
    a = a_lo + (1.0 - a_lo) * torch.rand(M, S, generator=gen)
    a[0, 0] = 1.0                                           # include a = 1
    p = (0.05 * torch.rand(M, S, generator=gen)) if p_on else torch.zeros(M, S)
    lam0, eta0 = torch.exp(r(B, M, S)), r(B, M, S)
    gy, gyv, glL, geL = r(B, L, M), r(B, L, M), r(B, M, S), r(B, M, S)
    xs = [x.clone().requires_grad_() for x in (v, lv, k, q, a, p, lam0, eta0)]
    y, yv, lamL, etaL, wL = forward(*xs, prior, LAM)
    loss = (gy * y).sum() + (gyv * yv).sum() + (glL * lamL).sum() + (geL * etaL).sum()
    ref = torch.autograd.grad(loss, xs)
    mine = adjoint(v, lv, k, q, a, p, lam0, eta0, prior, LAM, gy, gyv, glL, geL, NC)
    names = ["v", "lv", "k", "q", "a", "p", "lam0", "eta0"]
    errs = {n: relerr(mine[n], g) for n, g in zip(names, ref)}
    return errs, max(mine.get("chunk_err", [0.0])), mine["satfrac"], mine["band"]


@pytest.mark.parametrize("prior", [False, True])
@pytest.mark.parametrize("p_on", [False, True])
@pytest.mark.parametrize("L,NC,a_lo,seed", [(37, 4, 0.05, 1), (24, 3, 0.5, 2), (1, 1, 0.05, 3), (50, 5, 0.05, 4)])
def test_moment_adjoint_equations_match_autograd(prior, p_on, L, NC, a_lo, seed):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        errs, chunk_err, _, _ = run(2, L, 3, 4, a_lo, p_on, prior, NC, seed)
    finally:
        torch.set_default_dtype(old)
    assert max(errs.values()) < 1e-12, errs
    assert chunk_err < 1e-12
