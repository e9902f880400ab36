"""Empirical Bayes estimation of ComBat's batch effects (pure numerics).

The functions here work on the per-batch sufficient statistics of the standardized
data (batch mean and centred sum of squares of each feature), so the full
participants x features matrix never has to be held twice in memory. They follow
neuroCombat's R implementation (Johnson et al. 2007; Fortin et al. 2017, 2018):
``it.sol`` for the parametric prior and ``int.eprior`` for the non-parametric one.

References
----------
Johnson WE, Li C, Rabinovic A (2007). Adjusting batch effects in microarray expression
data using empirical Bayes methods. Biostatistics 8(1):118-127.
Fortin J-P et al. (2018). Harmonization of cortical thickness measurements across
scanners and sites. NeuroImage 167:104-120.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Relative change below which the parametric EB iteration stops (neuroCombat's ``conv``).
PARAMETRIC_CONVERGENCE = 1e-4
#: Safety limit on the parametric EB iterations (neuroCombat has none).
PARAMETRIC_MAX_ITERATIONS = 10_000
#: Bytes of float64 working memory used per block in the non-parametric prior.
NONPARAMETRIC_BLOCK_BYTES = 128 * 1024**2


def inverse_gamma_prior(delta_hat: np.ndarray) -> tuple[float, float]:
    """Method-of-moments inverse-gamma hyperparameters of the batch variances.

    Parameters
    ----------
    delta_hat : ndarray, shape (n_features,)
        Per-feature variance estimates of one batch.

    Returns
    -------
    a_prior, b_prior : float
        Shape and scale of the inverse-gamma prior (neuroCombat's ``aprior``/``bprior``).
        Both are ``inf`` when the variances do not vary (or there is only one): the
        prior is then a point mass at their mean, the limit of the moment estimates.
    """
    mean = float(np.mean(delta_hat))
    var = float(np.var(delta_hat, ddof=1)) if delta_hat.size > 1 else 0.0
    if not var > np.finfo(float).eps * mean**2:  # equal up to rounding
        return np.inf, np.inf
    return (2.0 * var + mean**2) / var, (mean * var + mean**3) / var


def _posterior_scale(sum2: np.ndarray, n_samples: int, a_prior: float, b_prior: float,
                     prior_mean: float) -> np.ndarray:
    """Posterior batch scale under the inverse-gamma prior (neuroCombat's ``postvar``).

    With a point-mass prior (``a_prior`` infinite) the posterior is the prior's value,
    ``b / (a - 1) -> prior_mean``, the limit of the formula as the variances' spread
    goes to zero.
    """
    if np.isinf(a_prior):
        return np.full_like(sum2, prior_mean)
    return (0.5 * sum2 + b_prior) / (n_samples / 2.0 + a_prior - 1.0)


def parametric_adjustments(
    batch_mean: np.ndarray,
    centred_ss: np.ndarray,
    n_samples: int,
    gamma_hat: np.ndarray,
    delta_hat: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Parametric empirical Bayes estimates of one batch's location and scale.

    Iterates the posterior mean of the location (normal prior) and the posterior
    variance of the scale (inverse-gamma prior) until the largest relative change of
    either is below :data:`PARAMETRIC_CONVERGENCE`, as neuroCombat's ``it.sol`` does.

    Parameters
    ----------
    batch_mean : ndarray, shape (n_features,)
        Mean of the standardized data of the batch's participants.
    centred_ss : ndarray, shape (n_features,)
        Sum of squared deviations from ``batch_mean`` over the batch's participants.
    n_samples : int
        Number of participants in the batch.
    gamma_hat, delta_hat : ndarray, shape (n_features,)
        Least-squares location and scale estimates of the batch.

    Returns
    -------
    gamma_star, delta_star : ndarray, shape (n_features,)
        Posterior location and scale.
    """
    gamma_bar = float(np.mean(gamma_hat))
    tau2 = float(np.var(gamma_hat, ddof=1))
    a_prior, b_prior = inverse_gamma_prior(delta_hat)
    gamma_old, delta_old = gamma_hat.copy(), delta_hat.copy()
    for _ in range(PARAMETRIC_MAX_ITERATIONS):
        gamma_new = (tau2 * n_samples * gamma_hat + delta_old * gamma_bar) / (
            tau2 * n_samples + delta_old
        )
        # sum over the batch of (s - gamma_new)^2, from the sufficient statistics
        sum2 = centred_ss + n_samples * (batch_mean - gamma_new) ** 2
        delta_new = _posterior_scale(sum2, n_samples, a_prior, b_prior, float(np.mean(delta_hat)))
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(
                np.nanmax(np.abs(gamma_new - gamma_old) / gamma_old),
                np.nanmax(np.abs(delta_new - delta_old) / delta_old),
            )
        gamma_old, delta_old = gamma_new, delta_new
        if change <= PARAMETRIC_CONVERGENCE:
            break
    else:
        warnings.warn(
            "ComBat parametric empirical Bayes did not converge in "
            f"{PARAMETRIC_MAX_ITERATIONS} iterations",
            RuntimeWarning,
            stacklevel=2,
        )
    return gamma_new, delta_new


def parametric_mean_only_adjustment(gamma_hat: np.ndarray) -> np.ndarray:
    """Parametric empirical Bayes location of one batch when scales are not adjusted.

    Parameters
    ----------
    gamma_hat : ndarray, shape (n_features,)
        Least-squares location estimates of the batch.

    Returns
    -------
    ndarray, shape (n_features,)
        Posterior mean with unit sample size and unit variance (neuroCombat's
        ``postmean(gamma.hat, gamma.bar, 1, 1, t2)``).
    """
    gamma_bar = float(np.mean(gamma_hat))
    tau2 = float(np.var(gamma_hat, ddof=1))
    return (tau2 * gamma_hat + gamma_bar) / (tau2 + 1.0)


def nonparametric_adjustments(
    batch_mean: np.ndarray,
    centred_ss: np.ndarray,
    n_samples: int,
    gamma_hat: np.ndarray,
    delta_hat: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-parametric empirical Bayes estimates of one batch's location and scale.

    The prior of feature *i* is the empirical distribution of the other features'
    ``(gamma_hat, delta_hat)`` pairs, weighted by the normal likelihood of feature
    *i*'s data (neuroCombat's ``int.eprior``). Computed in blocks of features, in the
    log domain (the weights are normalised, so this equals the direct formula and does
    not underflow to 0/0 for large batches).

    Parameters
    ----------
    batch_mean, centred_ss, n_samples, gamma_hat, delta_hat
        As in :func:`parametric_adjustments`.

    Returns
    -------
    gamma_star, delta_star : ndarray, shape (n_features,)
        Posterior location and scale.
    """
    n_features = gamma_hat.size
    gamma_star = np.empty(n_features)
    delta_star = np.empty(n_features)
    log_norm = -0.5 * n_samples * np.log(2.0 * np.pi * delta_hat)  # (n_features,)
    inv_two_delta = 1.0 / (2.0 * delta_hat)
    block = max(1, NONPARAMETRIC_BLOCK_BYTES // (8 * max(n_features, 1)))
    for start in range(0, n_features, block):
        stop = min(start + block, n_features)
        # sum2[i, k] = sum_j (x_ij - g_k)^2 for feature i's data and feature k's gamma
        diff = batch_mean[start:stop, None] - gamma_hat[None, :]
        log_lik = centred_ss[start:stop, None] + n_samples * diff * diff
        log_lik *= -inv_two_delta[None, :]
        log_lik += log_norm[None, :]
        rows = np.arange(stop - start)
        log_lik[rows, start + rows] = -np.inf  # leave feature i out of its own prior
        log_lik -= log_lik.max(axis=1, keepdims=True)
        np.exp(log_lik, out=log_lik)
        total = log_lik.sum(axis=1)
        gamma_star[start:stop] = (log_lik @ gamma_hat) / total
        delta_star[start:stop] = (log_lik @ delta_hat) / total
    return gamma_star, delta_star
