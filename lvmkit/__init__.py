"""lvmkit: latent variable models on PyTorch, every fit raising one evidence lower bound.

The estimators follow scikit-learn's contract. See the README for the command line and examples.
"""

from lvmkit.estimators.gaussian_mixture import GaussianMixture

__version__ = "0.1.0"

__all__ = ["GaussianMixture", "__version__"]
