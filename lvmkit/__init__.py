"""lvmkit: latent variable models on PyTorch, every fit raising one evidence lower bound.

The estimators follow scikit-learn's contract. See the README for the command line and examples.
"""

from lvmkit.estimators.anomaly import MixtureAnomalyDetector
from lvmkit.estimators.diagnostics import GapReport, GradientVariance, gap_report, gradient_variance
from lvmkit.estimators.discrete_mixtures import BernoulliMixture, PoissonMixture
from lvmkit.estimators.factor import FactorAnalysis
from lvmkit.estimators.gaussian_mixture import GaussianMixture
from lvmkit.estimators.hmm import (
    GMMHMM,
    BernoulliHMM,
    CategoricalHMM,
    GaussianHMM,
    PoissonHMM,
)
from lvmkit.estimators.lda import LatentDirichletAllocation
from lvmkit.estimators.marginal import MarginalLikelihood, log_marginal
from lvmkit.estimators.mfa import MixtureOfFactorAnalyzers
from lvmkit.estimators.ppca import ProbabilisticPCA
from lvmkit.estimators.selection import restart_report, select_components
from lvmkit.estimators.vae import VAE, Autoencoder
from lvmkit.io import load

__version__ = "0.1.0"

__all__ = [
    "Autoencoder",
    "BernoulliHMM",
    "BernoulliMixture",
    "FactorAnalysis",
    "MixtureOfFactorAnalyzers",
    "LatentDirichletAllocation",
    "CategoricalHMM",
    "GMMHMM",
    "GaussianHMM",
    "GapReport",
    "GaussianMixture",
    "GradientVariance",
    "MarginalLikelihood",
    "MixtureAnomalyDetector",
    "PoissonHMM",
    "ProbabilisticPCA",
    "PoissonMixture",
    "__version__",
    "gap_report",
    "gradient_variance",
    "load",
    "log_marginal",
    "restart_report",
    "select_components",
    "VAE",
]
