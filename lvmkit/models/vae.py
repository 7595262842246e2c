"""The deep latent variable model p(x, z) = N(z; 0, I) p(x | decoder(z)).

A likelihood turns the decoder's flat output (one natural parameter per feature) into
log p(x | z), summed over features: a sum, never a mean, so that the ELBO of a data point is
comparable with log p(x) and the KL term is not silently re-weighted.

- ``bernoulli``: the decoder outputs logits; log p = x·l − softplus(l), computed from logits.
- ``gaussian``: the decoder outputs means; the standard deviation is fixed (``std``).
- ``gaussian-learned``: as above with a learned standard deviation, one for all features
  (``'global'``) or one per feature (``'per-feature'``), kept above ``min_std`` so the likelihood
  stays bounded.
- ``poisson``: the decoder outputs log-rates; log p = x·l − exp(l) − log x!.

The densities themselves live with their families (:mod:`lvmkit.families.bernoulli`,
:mod:`~lvmkit.families.diagonal`, :mod:`~lvmkit.families.poisson`, per-sample forms); the classes
here hold only what a decoder's likelihood adds (a fixed or learned standard deviation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvmkit.families import bernoulli, poisson
from lvmkit.families.diagonal import shared_std_log_prob, standard_normal_log_prob


class Likelihood(nn.Module):
    """p(x | natural parameters), independent across features."""

    name = ""

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Summed over the last dimension; ``params`` (..., B, D) broadcasts against x (B, D)."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def reconstruction_error(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """−log p(x | params) per sample: the loss a deterministic autoencoder minimizes."""
        return -self.log_prob(params, x)


class BernoulliLikelihood(Likelihood):
    name = "bernoulli"

    def log_prob(self, params, x):
        return bernoulli.log_prob_logits(params, x)

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        return bernoulli.sample_logits(params, generator)


class GaussianLikelihood(Likelihood):
    """N(x; decoder mean, std²) with std fixed, or learned (``learn='global'|'per-feature'``)."""

    def __init__(
        self, n_features: int, std: float = 1.0, learn: str | None = None, min_std: float = 1e-3
    ):
        super().__init__()
        self.name = "gaussian-learned" if learn else "gaussian"
        self.min_std = float(min_std)
        self.learn = learn
        if learn:
            shape = (n_features,) if learn == "per-feature" else ()
            start = math.log(math.expm1(max(std - min_std, 1e-6)))
            self.raw_std = nn.Parameter(torch.full(shape, start, dtype=torch.float64))
        else:
            self.register_buffer("fixed_std", torch.tensor(float(std), dtype=torch.float64))

    def std(self) -> torch.Tensor:
        if self.learn:
            return self.min_std + F.softplus(self.raw_std)
        return self.fixed_std

    def log_prob(self, params, x):
        return shared_std_log_prob(x, params, self.std())

    def mean(self, params):
        return params

    def sample(self, params, generator=None):
        noise = torch.randn(
            params.shape, generator=generator, device=params.device, dtype=params.dtype
        )
        return params + self.std() * noise


class PoissonLikelihood(Likelihood):
    name = "poisson"

    def log_prob(self, params, x):
        return poisson.log_prob_log_rates(params, x)

    def mean(self, params):
        return torch.exp(params)

    def sample(self, params, generator=None):
        return poisson.sample_log_rates(params, generator)


def make_likelihood(
    name: str, n_features: int, std: float = 1.0, learned_std: str = "per-feature"
) -> Likelihood:
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name == "gaussian":
        return GaussianLikelihood(n_features, std=std)
    if name == "gaussian-learned":
        return GaussianLikelihood(n_features, std=std, learn=learned_std)
    if name == "poisson":
        return PoissonLikelihood()
    raise ValueError(
        f"unknown likelihood {name!r}; expected 'bernoulli', 'gaussian', 'gaussian-learned' or "
        f"'poisson'."
    )


class DeepLatentModel(nn.Module):
    """p(z) = N(0, I) and p(x | z) = likelihood(decoder(z)); x is flat (B, D) here."""

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, latent_dim: int):
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = int(latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's natural parameters, flattened to (..., D)."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, z.shape[-1]))
        return out.reshape(*lead, -1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over features, for z of shape (..., B, L) and x of shape (B, D)."""
        return self.likelihood.log_prob(self.decode(z), x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.log_likelihood(x, z) + self.log_prior(z)
