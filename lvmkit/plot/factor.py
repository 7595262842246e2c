"""The figures of :class:`lvmkit.FactorAnalysis` for ``lvmkit plot`` and the report.

They live in :mod:`lvmkit.plot.linear`, shared by the linear-Gaussian models; the report looks
for them in the module named like the estimator's own (``lvmkit/estimators/factor.py``): this one.
"""

from lvmkit.plot.linear import *  # noqa: F403  (registers the report sections and the plot)
from lvmkit.plot.linear import __all__  # noqa: F401
