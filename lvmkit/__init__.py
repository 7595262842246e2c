"""lvmkit: latent variable models on PyTorch, every fit raising one evidence lower bound.

The estimators follow scikit-learn's contract. See the README for the command line and examples.
"""

from lvmkit.estimators.anomaly import MixtureAnomalyDetector
from lvmkit.estimators.discrete_mixtures import BernoulliMixture, PoissonMixture
from lvmkit.estimators.gaussian_mixture import GaussianMixture
from lvmkit.estimators.selection import restart_report, select_components
from lvmkit.io import load

__version__ = "0.1.0"

__all__ = [
    "BernoulliMixture",
    "GaussianMixture",
    "MixtureAnomalyDetector",
    "PoissonMixture",
    "__version__",
    "load",
    "restart_report",
    "select_components",
]
