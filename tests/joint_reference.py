"""Brute-force reference: the joint Gaussian of all states x_{1:T}, built directly from the model.

Independent of bayesfilt's recursions: the log joint density log p(x_{1:T}, y_{1:T}) is a
quadratic form in the stacked states z = (x_1, ..., x_T) (prior, transitions, observations),
so the posterior of z given the observed entries of y is N(Λ^{-1} η, Λ^{-1}) and the
log-likelihood is the Gaussian integral of exp(log joint). Diffuse states get zero prior
precision, i.e. the flat density 1. Needs Q_t invertible and P0 invertible on the
non-diffuse states. Cost O((nT)^3): small T only.
"""

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


def joint_posterior(model, y, diffuse=None):
    """Posterior of all states given ``y`` (T, m) with NaN = missing.

    Returns ``(mean (T, n), cov (T, n, T, n), loglik)``; ``diffuse`` is a mask (n,) or None.
    """
    T, n = y.shape[0], model.n
    mask = np.zeros(n, bool) if diffuse is None else np.asarray(diffuse, bool)
    Lam = np.zeros((T * n, T * n))
    eta = np.zeros(T * n)
    const = 0.0

    def blk(t):
        return slice(t * n, (t + 1) * n)

    nd = np.flatnonzero(~mask)                                 # prior N(m0, P0) on the non-diffuse states
    if nd.size:
        P0 = model.P0[np.ix_(nd, nd)]
        Pi = np.linalg.inv(P0)
        m0 = model.m0[nd]
        Lam[np.ix_(nd, nd)] += Pi
        eta[nd] += Pi @ m0
        const += -0.5 * (nd.size * LOG_2PI + np.linalg.slogdet(P0)[1] + m0 @ Pi @ m0)
    for t in range(1, T):                                      # x_t - F x_{t-1} - b ~ N(0, Q)
        F, Q = model.param("F", t), model.param("Q", t)
        b = model.param("b", t)
        b = np.zeros(n) if b is None else b
        Qi = np.linalg.inv(Q)
        J = np.hstack([-F, np.eye(n)])                         # residual = J (x_{t-1}, x_t) - b
        s = slice((t - 1) * n, (t + 1) * n)
        Lam[s, s] += J.T @ Qi @ J
        eta[s] += J.T @ Qi @ b
        const += -0.5 * (n * LOG_2PI + np.linalg.slogdet(Q)[1] + b @ Qi @ b)
    for t in range(T):                                         # y_t - H x_t - d ~ N(0, R), observed rows
        o = ~np.isnan(y[t])
        if not o.any():
            continue
        H, R = model.param("H", t)[o], model.param("R", t)[np.ix_(o, o)]
        d = model.param("d", t)
        r = y[t, o] - (0.0 if d is None else d[o])
        Ri = np.linalg.inv(R)
        Lam[blk(t), blk(t)] += H.T @ Ri @ H
        eta[blk(t)] += H.T @ Ri @ r
        const += -0.5 * (o.sum() * LOG_2PI + np.linalg.slogdet(R)[1] + r @ Ri @ r)
    cov = np.linalg.inv(Lam)
    mean = cov @ eta
    loglik = const + 0.5 * eta @ mean - 0.5 * np.linalg.slogdet(Lam)[1] + 0.5 * T * n * LOG_2PI
    return mean.reshape(T, n), cov.reshape(T, n, T, n), loglik


def filtered_reference(model, y, diffuse=None):
    """Filtered and predicted moments and per-step log-likelihood terms by brute force.

    Returns a dict with means, covs, predicted_means, predicted_covs (T, ...) and
    loglik_terms (T,); steps whose posterior is improper (not identified) are NaN.
    """
    T, n = y.shape[0], model.n
    out = {k: np.full((T, n), np.nan) for k in ("means", "predicted_means")}
    out.update({k: np.full((T, n, n), np.nan) for k in ("covs", "predicted_covs")})
    lls = np.full(T, np.nan)
    for t in range(T):
        for key, yy in (("", y[: t + 1]), ("predicted_", np.vstack([y[:t], np.full((1, y.shape[1]), np.nan)]))):
            try:
                mean, cov, ll = joint_posterior(model, yy, diffuse)
            except np.linalg.LinAlgError:
                continue
            out[key + "means"][t] = mean[t]
            out[key + "covs"][t] = cov[t, :, t, :]
            if key == "":
                lls[t] = ll
    out["loglik_cumulative"] = lls
    return out
