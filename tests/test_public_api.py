import lvmkit


def test_all_is_pinned():
    # Adding a public name is a decision: update this list in the same commit.
    assert sorted(lvmkit.__all__) == sorted([
        "BernoulliMixture", "GaussianMixture", "MixtureAnomalyDetector", "PoissonMixture",
        "__version__", "load", "restart_report", "select_components",
        "Autoencoder", "VAE", "log_marginal", "MarginalLikelihood",
        "gap_report", "gradient_variance", "GapReport", "GradientVariance",
    ])


def test_nothing_private_in_all():
    assert not [name for name in lvmkit.__all__ if name.startswith("_") and name != "__version__"]
    for name in lvmkit.__all__:
        assert hasattr(lvmkit, name)
