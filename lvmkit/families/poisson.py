"""Independent Poisson counts per feature: p(x | z = k) = Π_d Poisson(x_d; λ_kd).

Log-densities of all components are one matrix product, Σ_d x_d log λ_kd − Σ_d λ_kd − Σ_d log x_d!,
with the last term (the same for every component) computed once per data set as a feature.
Statistics are N_k = Σ r and S_k = Σ r x; the M-step λ_k = S_k / N_k is clipped below at
``min_rate``, which is the exact maximiser over λ ≥ min_rate (the objective is concave in λ), so
EM still never lowers the likelihood.

For per-sample parameters (a VAE decoder's log-rates, one set per data point) the module-level
:func:`log_prob_log_rates` and :func:`sample_log_rates` give the same density and draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lvmkit.families._base import EPS_NK, IndependentFeatures


@dataclass
class PoissonParams:
    rates: Tensor  # (K, D)
    prepared: dict | None = None

    def to(self, dtype=None, device=None) -> PoissonParams:
        return PoissonParams(self.rates.to(dtype=dtype, device=device))


class Poisson(IndependentFeatures):
    """Poisson observation family for a K-component mixture of count vectors."""

    params_class = PoissonParams

    def __init__(self, min_rate: float = 1e-6):
        self.min_rate = float(min_rate)

    def features(self, X: Tensor) -> Tensor:
        """``[x, log Π_d x_d!]`` (n, D+1): the log-factorial term is computed once."""
        return torch.cat([X, torch.lgamma(X + 1).sum(1, keepdim=True)], 1)

    def data_of(self, features: Tensor) -> Tensor:
        return features[..., :-1]

    def prepare(self, params: PoissonParams) -> dict:
        if params.prepared is None:
            rates = params.rates
            minus_one = -torch.ones(1, rates.shape[0], dtype=rates.dtype, device=rates.device)
            params.prepared = {
                "W": torch.cat([torch.log(rates).T, minus_one], 0).contiguous(),
                "c": -rates.sum(1),
            }
        return params.prepared

    def maximize(self, stats: dict[str, Tensor], reference=None) -> Tensor:
        """Rates (K, D), float64."""
        return (stats["sx"] / (stats["nk"] + EPS_NK)[:, None]).clamp(min=self.min_rate)

    # gradient view
    def unconstrained(self, params: PoissonParams) -> dict[str, Tensor]:
        return {"log_rates": torch.log(params.rates)}

    def constrained(self, u: dict[str, Tensor]) -> PoissonParams:
        return PoissonParams(torch.exp(u["log_rates"]))

    def expected_log_likelihood(self, summary, params: PoissonParams) -> Tensor:
        """Σ_n Σ_k r_nk log p(x_n | λ_k), without the λ-free term Σ r log x!."""
        rates = params.rates
        return (summary["sx"] * torch.log(rates)).sum() - (summary["nk"][:, None] * rates).sum()

    def sample(self, labels: Tensor, rates: Tensor, generator) -> Tensor:
        return torch.poisson(rates[labels], generator=generator)


# Per-sample parameters: log-rates that come with each sample, as a VAE decoder produces them.


def log_prob_log_rates(log_rates: Tensor, x: Tensor) -> Tensor:
    """log p(x | λ = exp(log_rates)) = Σ_d [x_d l_d − exp(l_d) − log x_d!], summed over the last
    axis; ``log_rates`` (..., B, D) broadcasts against ``x`` (B, D)."""
    return (log_rates * x).sum(-1) - torch.exp(log_rates).sum(-1) - torch.lgamma(x + 1).sum(-1)


def sample_log_rates(log_rates: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x ~ Poisson(exp(log_rates)) elementwise."""
    return torch.poisson(torch.exp(log_rates), generator=generator)
