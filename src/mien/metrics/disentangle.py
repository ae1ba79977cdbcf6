"""Disentanglement scores of a representation, from codes (N x D), the factor values of the same
items and the data set's factor schema (design.md, Factor schema): BetaVAE score (Higgins et al.
2017), FactorVAE score (Kim & Mnih 2018), MIG (Chen et al. 2018; Zou thesis Eq. 2.36-2.37), SAP
(Kumar et al. 2018), DCI disentanglement/completeness/informativeness (Eastwood & Williams
2018), modularity and explicitness (Ridgeway & Mozer 2018).

Continuous factors (and codes, for mutual information) are discretised into ``bins``
equal-width bins, as in disentanglement_lib. Factors that take a single value (held fixed)
are dropped. The BetaVAE and FactorVAE scores need batches in which one factor is fixed: they
are drawn observationally, as random items that share the (binned) value of that factor, so
every score works on codes of any data set that exposes its factors.
"""

from __future__ import annotations

import numpy as np

from mien.data.factors import Factor
from mien.errors import DataError


def prepare(codes, factors, schema: list[Factor], bins: int = 20):
    """codes (N x D float64), the kept factors, their values (N x K) and binned values (N x K int).
    ``factors``: a dict name -> N values (the ``factors`` of a world batch) or an N x len(schema) array."""
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim != 2 or len(z) < 10:
        raise DataError(f"codes must be an N x D array with N >= 10, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise DataError("codes contain NaN or infinite values; check the model")
    if not isinstance(factors, dict):
        arr = np.asarray(factors)
        if arr.ndim != 2 or arr.shape[1] != len(schema):
            raise DataError(f"factor values must be N x {len(schema)} (the schema order), got shape {arr.shape}")
        factors = {f.name: arr[:, i] for i, f in enumerate(schema)}
    kept, values, binned = [], [], []
    for f in schema:
        if f.name not in factors:
            continue
        v = np.asarray(factors[f.name], dtype=np.float64).reshape(-1)
        if len(v) != len(z):
            raise DataError(f"factor {f.name!r} has {len(v)} values for {len(z)} codes")
        if np.unique(v).size < 2:
            continue
        kept.append(f)
        values.append(v)
        binned.append(v.astype(np.int64) if f.discrete else discretise(v, bins))
    if not kept:
        raise DataError("no factor of the schema varies in the data; nothing to score")
    return z, kept, np.stack(values, 1), np.stack(binned, 1)


def discretise(x: np.ndarray, bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins 0..bins-1 of a 1-d array."""
    edges = np.histogram(x, bins)[1]
    return np.digitize(x, edges[1:-1])


def _mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between every column of a (N x P ints) and of b (N x Q ints),
    from joint histograms."""
    a, b = a - a.min(0), b - b.min(0)
    out = np.zeros((a.shape[1], b.shape[1]))
    for i, x in enumerate(a.T):
        px = np.bincount(x) / len(x)
        for j, y in enumerate(b.T):
            ny = y.max() + 1
            joint = np.bincount(x * ny + y, minlength=len(px) * ny).reshape(len(px), ny) / len(x)
            py = joint.sum(0)
            nz = joint > 0
            out[i, j] = (joint[nz] * np.log(joint[nz] / np.outer(px, py)[nz])).sum()
    return out


def _entropy(v: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of v (N x K ints): H(v) = I(v; v)."""
    return np.array([_mutual_info(c[:, None], c[:, None])[0, 0] for c in v.T])


def mig(codes, factors, schema, bins: int = 20) -> float:
    """Mutual Information Gap (Zou Eq. 2.37): mean over factors of the gap between the two codes
    with the largest mutual information with it, divided by the factor's entropy."""
    z, _, _, v = prepare(codes, factors, schema, bins)
    if z.shape[1] < 2:
        raise DataError("MIG needs at least two code dimensions")
    m = _mutual_info(np.stack([discretise(c, bins) for c in z.T], 1), v)  # D x K
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / _entropy(v)))


def _score_matrix(z: np.ndarray, kept: list[Factor], values: np.ndarray) -> np.ndarray:
    """D x K: R^2 of each code for each factor (squared correlation; for a categorical factor the
    correlation ratio eta^2, the R^2 of its one-hot regression)."""
    zc = (z - z.mean(0)) / (z.std(0) + 1e-12)
    out = np.zeros((z.shape[1], len(kept)))
    for k, f in enumerate(kept):
        v = values[:, k]
        if f.kind == "categorical":
            _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
            means = np.stack([np.bincount(inverse, weights=c) / counts for c in zc.T], 0)  # D x values
            out[:, k] = (means ** 2 * counts).sum(1) / len(v)
        else:
            vc = (v - v.mean()) / (v.std() + 1e-12)
            out[:, k] = (zc * vc[:, None]).mean(0) ** 2
    return out


def sap(codes, factors, schema, bins: int = 20) -> float:
    """Separated Attribute Predictability: mean over factors of the difference between the two
    largest per-code R^2 scores (:func:`_score_matrix`)."""
    z, kept, values, _ = prepare(codes, factors, schema, bins)
    top = np.sort(_score_matrix(z, kept, values), axis=0)[::-1]
    return float(np.mean(top[0] - top[1])) if len(top) > 1 else 0.0


def _split(n: int, seed: int, train: float = 0.8, cap: int = 2500):
    perm = np.random.default_rng(seed).permutation(n)[: min(n, int(cap / train))]
    cut = int(train * len(perm))
    return perm[:cut], perm[cut:]


def _one_minus_entropy(r: np.ndarray) -> np.ndarray:
    """1 - H_n(p) for each column p of a non-negative n x m matrix normalised to sum 1, with the
    entropy in base n (Eastwood & Williams 2018; 1 when n = 1)."""
    p = r + 1e-11  # as disentanglement_lib, so an all-zero column reads as uniform
    p = p / p.sum(0)
    n = len(p)
    return 1 + (p * np.log(p)).sum(0) / np.log(n) if n > 1 else np.ones(p.shape[1])


def dci(codes, factors, schema, bins: int = 20, seed: int = 0) -> dict[str, float]:
    """DCI (Eastwood & Williams 2018): a random forest per factor (classifier for discrete,
    regressor for continuous) that considers every code at each split gives the importance matrix
    R (D x K). Disentanglement D = sum_i rho_i (1 - H_K(P_i.)) with rho_i = sum_k R_ik / sum R;
    completeness C = mean_k (1 - H_D(P~_.k)), the paper's plain mean over factors (equal to
    disentanglement_lib's factor-importance weighting, as each forest's importances sum to 1);
    informativeness: mean held-out accuracy or R^2 (clipped at 0)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    z, kept, values, _ = prepare(codes, factors, schema, bins)
    tr, te = _split(len(z), seed)
    r, info = np.zeros((z.shape[1], len(kept))), []
    for k, f in enumerate(kept):
        y = values[:, k]
        cls = RandomForestClassifier if f.discrete else RandomForestRegressor
        model = cls(n_estimators=30, max_depth=6, max_features=None, random_state=seed, n_jobs=1).fit(z[tr], y[tr])
        r[:, k] = model.feature_importances_
        info.append(max(0.0, model.score(z[te], y[te])))
    rho = r.sum(1) / r.sum() if r.sum() > 0 else np.full(len(r), 1 / len(r))
    return {"disentanglement": float((_one_minus_entropy(r.T) * rho).sum()),
            "completeness": float(np.mean(_one_minus_entropy(r))), "informativeness": float(np.mean(info))}


def modularity(codes, factors, schema, bins: int = 20) -> float:
    """Modularity (Ridgeway & Mozer 2018; disentanglement_lib): per code i, with m_ik its
    mutual information with factor k and theta_i = max_k m_ik, 1 - delta_i where
    delta_i = (sum_k m_ik^2 - theta_i^2) / (theta_i^2 (K - 1)): the template keeps one maximum
    only, so a code as informative about two factors is not modular. A code with no information
    scores 0; the mean is over all codes."""
    z, _, _, v = prepare(codes, factors, schema, bins)
    sq = np.sort(_mutual_info(np.stack([discretise(c, bins) for c in z.T], 1), v) ** 2, axis=1)
    theta2, rest = sq[:, -1], sq[:, :-1].sum(1)
    live = theta2 > 0
    delta = rest / np.where(live, theta2 * max(sq.shape[1] - 1, 1), 1.0)
    return float(np.mean(np.where(live, 1 - delta, 0.0)))


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U), ties averaged."""
    from scipy.stats import rankdata

    n_pos = positive.sum()
    n_neg = len(positive) - n_pos
    return float((rankdata(score)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def explicitness(codes, factors, schema, bins: int = 20, seed: int = 0) -> float:
    """Explicitness: mean over factors of the held-out one-vs-rest ROC AUC (averaged over the
    factor's values) of a logistic regression from all codes to the (binned) factor value."""
    from sklearn.linear_model import LogisticRegression

    z, _, _, v = prepare(codes, factors, schema, bins)
    z = (z - z.mean(0)) / (z.std(0) + 1e-12)
    tr, te = _split(len(z), seed)
    aucs = []
    for y in v.T:
        classes = np.unique(y[tr])
        if len(classes) < 2:
            continue
        p = LogisticRegression(max_iter=300).fit(z[tr], y[tr]).predict_proba(z[te])
        scores = [_auc(y[te] == c, p[:, i]) for i, c in enumerate(classes) if 0 < (y[te] == c).sum() < len(te)]
        if scores:
            aucs.append(np.mean(scores))
    return float(np.mean(aucs)) if aucs else 0.0


def _fixed_factor_batches(v: np.ndarray, n: int, shape: tuple, rng) -> tuple[np.ndarray, list[np.ndarray]]:
    """n index arrays of ``shape``, each drawn from the items that share the binned value of a
    random factor (the factor of each batch, the arrays)."""
    ks, batches = rng.integers(0, v.shape[1], n), []
    for k in ks:
        group = np.flatnonzero(v[:, k] == v[rng.integers(0, len(v)), k])
        batches.append(rng.choice(group, size=shape, replace=True))
    return ks, batches


def beta_vae_score(codes, factors, schema, bins: int = 20, n_train: int = 800, n_test: int = 400,
                   batch: int = 64, seed: int = 0) -> float:
    """BetaVAE score: held-out accuracy of a linear classifier that predicts which factor was
    fixed from the mean absolute code difference of ``batch`` pairs sharing that factor."""
    from sklearn.linear_model import LogisticRegression

    z, _, _, v = prepare(codes, factors, schema, bins)
    z = z / (z.std(0) + 1e-12)
    ks, pairs = _fixed_factor_batches(v, n_train + n_test, (2, batch), np.random.default_rng(seed))
    x = np.array([np.abs(z[a] - z[b]).mean(0) for a, b in pairs])
    clf = LogisticRegression(max_iter=1000).fit(x[:n_train], ks[:n_train])
    return float(clf.score(x[n_train:], ks[n_train:]))


def factor_vae_score(codes, factors, schema, bins: int = 20, n_train: int = 800, n_test: int = 400,
                     batch: int = 64, seed: int = 0) -> float:
    """FactorVAE score: with codes divided by their std, each batch sharing one factor votes
    (argmin per-code variance, factor); a majority-vote classifier from code to factor is
    fitted on the training votes and its accuracy on the test votes returned. Collapsed codes
    (std < 1e-8) never win a vote."""
    z, _, _, v = prepare(codes, factors, schema, bins)
    std = z.std(0)
    active = std > 1e-8
    if not active.any():
        return 0.0
    z = z / np.where(active, std, 1.0)
    rng = np.random.default_rng(seed)
    ks, groups = _fixed_factor_batches(v, n_train + n_test, (batch,), rng)
    dims = np.array([np.argmin(np.where(active, z[g].var(0), np.inf)) for g in groups])
    votes = np.zeros((z.shape[1], v.shape[1]), dtype=np.int64)
    np.add.at(votes, (dims[:n_train], ks[:n_train]), 1)
    return float(np.mean(votes.argmax(1)[dims[n_train:]] == ks[n_train:]))


def disentanglement_suite(codes, factors, schema, bins: int = 20, seed: int = 0) -> dict[str, float]:
    """Every score of this module, by registry name."""
    out = {"beta_vae": beta_vae_score(codes, factors, schema, bins, seed=seed),
           "factor_vae": factor_vae_score(codes, factors, schema, bins, seed=seed),
           "mig": mig(codes, factors, schema, bins), "sap": sap(codes, factors, schema, bins)}
    out.update({f"dci_{k}": v for k, v in dci(codes, factors, schema, bins, seed).items()})
    out["modularity"] = modularity(codes, factors, schema, bins)
    out["explicitness"] = explicitness(codes, factors, schema, bins, seed)
    return out
