"""Local (per data point) Gaussian posteriors: stochastic variational
inference with a fixed decoder.

Each data point x_n gets its own free variational parameters, q_n(z) = N(mu_n, diag(sigma_n²)),
moved by Adam on its Monte Carlo ELBO

    ELBO_n = E_q[log p(x_n | z)] − KL(q_n ‖ N(0, I))      (nats per data point)

with the reconstruction term estimated from reparameterized draws z = mu + sigma·eps and the KL in
closed form. Nothing is amortized: the optimum is the best diagonal Gaussian for each point, q*,
whatever an encoder would have predicted; ``ELBO(q*)`` is what the amortization gap of Cremer,
Li and Duvenaud (2018) is measured against. Started from an encoder's output (``init=(mu,
log_sigma)``), the same loop is semi-amortized inference (Kim et al. 2018; Krishnan et al. 2018).

A batch of points is optimized at once, with no Python loop over points: the loss is the *sum* of
the points' negative ELBOs, so each point's gradient is its own (no 1/B factor), and Adam's
moments are element-wise, so the batch runs exactly as B independent Adam runs would (given the
same noise). The decoder stays fixed: gradients are taken with respect to (mu, log_sigma) only
(``torch.autograd.grad``); the model's parameters keep their ``requires_grad`` and their ``.grad``.

The ELBO's gradient is noisy, so a constant step size leaves the parameters jittering around the
optimum. The returned parameters are the average of the iterates over the last ``average`` share
of the steps (Polyak–Ruppert averaging), which removes most of that jitter: the error then falls
as 1/sqrt(steps · n_samples), the rate of the Monte Carlo noise itself. (Lowering the step size
linearly to zero instead was tried and ended ~5x further from the exact posterior of a
linear-Gaussian model at the same cost.)
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from lvmkit.posteriors.amortized import gaussian_kl, rsample

__all__ = ["LocalFit", "LocalGaussian", "fit_local", "local_elbo_terms", "standard_normal_kl"]

#: Steps per window of the ``tol`` plateau test.
WINDOW = 50


class LocalFit(NamedTuple):
    """What :func:`fit_local` returns (unpacks as a 4-tuple).

    mu, log_sigma : (B, L) tensors, detached: the fitted q_n(z) = N(mu_n, diag(exp(log_sigma_n)²)).
    elbo : (B,) tensor, detached: each point's ELBO at the fitted q, estimated afresh from
        ``eval_samples`` draws (nats per data point).
    history : (steps_run,) float64 array: the training estimate of the mean ELBO over the batch at
        each step (nats per data point; noisy, from ``n_samples`` draws per point).
    """

    mu: torch.Tensor
    log_sigma: torch.Tensor
    elbo: torch.Tensor
    history: np.ndarray


def standard_normal_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(sigma²)) ‖ N(0, I)) per data point, summed over the last dimension (nats)."""
    return gaussian_kl(mu, log_sigma)


def local_elbo_terms(
    model,
    x: torch.Tensor,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    *,
    n_samples: int = 1,
    generator=None,
):
    """(reconstruction, kl), each (B,): the Monte Carlo E_q[log p(x | z)] from ``n_samples``
    reparameterized draws and the exact KL(q ‖ p(z)), for free q parameters ``mu, log_sigma``.

    Differentiable in mu, log_sigma and the model's parameters: the E-step differentiates it in
    the former, an M-step (decoder update) in the latter. ``x`` is (B, ...), flattened here.
    """
    flat = x.reshape(x.shape[0], -1)
    if n_samples == 1:
        reconstruction = model.log_likelihood(flat, rsample(mu, log_sigma, generator=generator))
    else:
        reconstruction = model.log_likelihood(
            flat, rsample(mu, log_sigma, n_samples, generator=generator)
        ).mean(0)
    return reconstruction, standard_normal_kl(mu, log_sigma)


def _check_int(name: str, value, low: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}. {hint}")
    return int(value)


def _check_init(init, batch: int, latent: int, like: torch.Tensor):
    """(mu, log_sigma) as fresh float leaves of shape (B, L) on x's device and dtype."""
    if init is None or (isinstance(init, str) and init == "prior"):
        zeros = torch.zeros((batch, latent), dtype=like.dtype, device=like.device)
        return zeros, zeros.clone()
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise ValueError(
            f"init must be None or 'prior' (start at q = p(z) = N(0, I)) or a pair (mu, log_sigma) "
            f"of ({batch}, {latent}) tensors, for example an encoder's output; got "
            f"{type(init).__name__}."
        )
    out = []
    for name, t in zip(("mu", "log_sigma"), init, strict=False):
        t = torch.as_tensor(t).detach().to(device=like.device, dtype=like.dtype)
        if tuple(t.shape) != (batch, latent):
            raise ValueError(
                f"init {name} has shape {tuple(t.shape)}; expected ({batch}, {latent}): one row "
                f"per data point of x and one column per latent dimension "
                f"(model.latent_dim={latent})."
            )
        if not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"init {name} contains NaN or infinite values; start from finite values (or "
                f"init=None)."
            )
        out.append(t.clone())
    return out[0], out[1]


def fit_local(
    model,
    x: torch.Tensor,
    *,
    init=None,
    steps: int = 1000,
    lr: float = 0.05,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    tol: float | None = None,
    average: float = 0.5,
    eval_samples: int = 100,
) -> LocalFit:
    """Fit a diagonal Gaussian q_n(z) to each point of ``x`` by Adam on its ELBO, decoder fixed.

    Parameters
    ----------
    model : DeepLatentModel (``log_likelihood(x, z)`` for z of shape (S, B, L), ``latent_dim``).
        Its parameters are not trained and not touched (no ``.grad``, no ``requires_grad`` change).
    x : (B, ...) tensor of the data the likelihood scores (binarized, for a Bernoulli likelihood);
        flattened to (B, D). Its dtype and device are those of the fit.
    init : None or 'prior' (q_n = N(0, I)), or (mu, log_sigma), each (B, L): a start, for example
        an encoder's output (semi-amortized inference). Copied, never modified.
    steps : Adam steps (0 evaluates the start only).
    lr : Adam's step size (for mu and log_sigma alike).
    n_samples : reparameterized draws per point and step.
    generator : torch.Generator for all draws (None: torch's global generator).
    tol : None, or a plateau test: the constant-step phase ends early once the mean ELBO, averaged
        over windows of 50 steps, rose by less than ``tol`` nats per point from one window to the
        next; the averaging phase (of its planned length) follows.
    average : share of ``steps`` (the last ones) over which the iterates are averaged into the
        returned (mu, log_sigma); 0 returns the last iterate.
    eval_samples : draws per point for the returned ELBO estimate (fresh, after the fit).

    Returns
    -------
    LocalFit(mu, log_sigma, elbo, history): see :class:`LocalFit`. The
    ELBO is in nats per data point.
    """
    if x.ndim < 2:
        raise ValueError(
            f"x must have shape (batch, ...) with one row per data point; got shape "
            f"{tuple(x.shape)}."
        )
    steps = _check_int("steps", steps, 0, "Use a few hundred to a few thousand.")
    n_samples = _check_int(
        "n_samples", n_samples, 1, "Use 1 (the usual) or more for less noisy steps."
    )
    eval_samples = _check_int(
        "eval_samples", eval_samples, 1, "Use 100 or more for a precise final ELBO."
    )
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr must be a number > 0; got {lr!r}. Try 0.05.")
    if isinstance(average, bool) or not isinstance(average, numbers.Real) or not 0 <= average <= 1:
        raise ValueError(
            f"average must be a number in [0, 1] (a share of the steps); got {average!r}. Try 0.5."
        )
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real) or tol < 0):
        raise ValueError(
            f"tol must be None or a number >= 0 (nats per point per window); got {tol!r}."
        )
    flat = x.reshape(x.shape[0], -1)
    if not flat.dtype.is_floating_point:
        flat = flat.to(torch.get_default_dtype())
    B, L = flat.shape[0], int(model.latent_dim)
    mu0, ls0 = _check_init(init, B, L, flat)
    mu = mu0.requires_grad_(True)
    log_sigma = ls0.requires_grad_(True)

    average_steps = int(round(average * steps))
    history = torch.empty(steps, dtype=torch.float64, device=flat.device)
    optimizer = torch.optim.Adam([mu, log_sigma], lr=float(lr))
    done, phase_end = 0, steps - average_steps
    avg_mu, avg_ls, n_avg = mu.detach().clone(), log_sigma.detach().clone(), 0
    with torch.enable_grad():
        while done < steps:
            rec, kl = local_elbo_terms(
                model, flat, mu, log_sigma, n_samples=n_samples, generator=generator
            )
            elbo = rec - kl
            loss = -elbo.sum()  # a sum: every point's gradient is its own
            if done % WINDOW == 0 and not bool(torch.isfinite(loss)):  # one host read per window
                raise FloatingPointError(
                    f"fit_local: the ELBO became NaN or infinite at step {done}; lower lr (now "
                    f"{lr}) or start closer (init=the encoder's output)."
                )
            g_mu, g_ls = torch.autograd.grad(loss, [mu, log_sigma])
            mu.grad, log_sigma.grad = g_mu, g_ls
            optimizer.step()
            history[done] = elbo.detach().mean()
            done += 1
            if done > phase_end:
                n_avg += 1
                with torch.no_grad():
                    avg_mu += (mu - avg_mu) / n_avg
                    avg_ls += (log_sigma - avg_ls) / n_avg
            if tol is not None and done < phase_end and done % WINDOW == 0 and done >= 2 * WINDOW:
                last = history[done - WINDOW : done].mean()
                before = history[done - 2 * WINDOW : done - WINDOW].mean()
                if float(last - before) < tol:
                    # Plateau: go straight to the averaging phase (of its planned length).
                    steps, phase_end = done + average_steps, done
    mu, log_sigma = (avg_mu, avg_ls) if n_avg else (mu.detach(), log_sigma.detach())
    if not (bool(torch.isfinite(mu).all()) and bool(torch.isfinite(log_sigma).all())):
        raise FloatingPointError(
            f"fit_local: the variational parameters became NaN or infinite; lower lr (now {lr}) or "
            "start from an encoder's output (init=(mu, log_sigma))."
        )
    with torch.no_grad():  # in chunks of samples: at most ~50,000 decoded rows at once
        chunk = max(1, min(eval_samples, 50_000 // max(B, 1)))
        total = torch.zeros(B, dtype=flat.dtype, device=flat.device)
        for start in range(0, eval_samples, chunk):
            c = min(chunk, eval_samples - start)
            rec, _ = local_elbo_terms(model, flat, mu, log_sigma, n_samples=c, generator=generator)
            total += rec * c
        elbo = total / eval_samples - standard_normal_kl(mu, log_sigma)
    return LocalFit(mu, log_sigma, elbo, history[:done].cpu().numpy())


class LocalGaussian(nn.Module):
    """Free variational parameters for N data points: q_n(z) = N(mu[n], diag(exp(log_sigma[n])²)).

    The posterior of stochastic variational inference (Hoffman et al. 2013): ``forward(indices)``
    returns the rows (mu, log_sigma) of a mini-batch, differentiable, for the ELBO of a decoder
    update; :meth:`refine` is the E-step, Adam on the batch's rows with the decoder fixed (see
    :func:`fit_local`), written back. Rows start at the prior, N(0, I), unless given.

    Parameters
    ----------
    n_points, latent_dim : the table's shape.
    mu, log_sigma : optional (n_points, latent_dim) starting values (for example an encoder's
        output over the data set: :meth:`from_encoder`).
    dtype, device : of the parameters (default: torch's default dtype, the CPU).
    """

    def __init__(
        self, n_points: int, latent_dim: int, *, mu=None, log_sigma=None, dtype=None, device=None
    ):
        super().__init__()
        n_points = _check_int("n_points", n_points, 1, "One row per data point.")
        latent_dim = _check_int("latent_dim", latent_dim, 1, "The dimension of z.")
        dtype = dtype or torch.get_default_dtype()
        like = torch.empty(0, dtype=dtype, device=device)
        start = (
            None
            if mu is None and log_sigma is None
            else (
                torch.zeros(n_points, latent_dim) if mu is None else mu,
                torch.zeros(n_points, latent_dim) if log_sigma is None else log_sigma,
            )
        )
        m, s = _check_init(start, n_points, latent_dim, like)
        self.mu = nn.Parameter(m)
        self.log_sigma = nn.Parameter(s)

    @property
    def n_points(self) -> int:
        return self.mu.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.mu.shape[1]

    @classmethod
    @torch.no_grad()
    def from_encoder(cls, encoder, X: torch.Tensor, batch_size: int = 1000) -> LocalGaussian:
        """Start every row at an encoder's q(z | x_n) (semi-amortized SVI);
        ``X`` as the encoder reads it."""
        parts = [encoder(X[s : s + batch_size]) for s in range(0, X.shape[0], batch_size)]
        mu = torch.cat([p[0] for p in parts])
        log_sigma = torch.cat([p[1] for p in parts])
        return cls(
            mu.shape[0], mu.shape[1], mu=mu, log_sigma=log_sigma, dtype=mu.dtype, device=mu.device
        )

    def _indices(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(indices, device=self.mu.device)
        if idx.dtype == torch.bool or idx.dtype.is_floating_point or idx.ndim != 1:
            raise ValueError(
                f"indices must be a 1-D integer array of data-point numbers in [0, "
                f"{self.n_points}); got dtype {idx.dtype} and shape {tuple(idx.shape)}."
            )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_points):
            raise IndexError(
                f"indices must lie in [0, {self.n_points}) (the LocalGaussian holds "
                f"{self.n_points} points); got values from {int(idx.min())} to {int(idx.max())}."
            )
        return idx

    def forward(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_sigma) of the points ``indices``, each (len(indices), L), differentiable."""
        idx = self._indices(indices)
        return self.mu[idx], self.log_sigma[idx]

    @torch.no_grad()
    def assign(self, indices, mu: torch.Tensor, log_sigma: torch.Tensor) -> None:
        """Overwrite the rows ``indices`` (for example after an E-step done elsewhere)."""
        idx = self._indices(indices)
        self.mu[idx] = mu.to(self.mu)
        self.log_sigma[idx] = log_sigma.to(self.log_sigma)

    def refine(self, model, x: torch.Tensor, indices, **fit_options) -> LocalFit:
        """The E-step: :func:`fit_local` on the points ``indices`` (data ``x``, one row each),
        started from their stored parameters, the result written back. ``fit_options`` go to
        fit_local
        (steps, lr, n_samples, generator, tol, average, eval_samples)."""
        idx = self._indices(indices)
        if x.shape[0] != idx.shape[0]:
            raise ValueError(
                f"x has {x.shape[0]} rows but {idx.shape[0]} indices were given; pass one index "
                f"per row of x."
            )
        result = fit_local(
            model, x, init=(self.mu[idx].detach(), self.log_sigma[idx].detach()), **fit_options
        )
        self.assign(idx, result.mu, result.log_sigma)
        return result
