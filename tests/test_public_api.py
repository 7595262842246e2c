import lvmkit


def test_all_is_pinned():
    # Adding a public name is a decision: update this list in the same commit.
    assert sorted(lvmkit.__all__) == sorted(
        [
            "BernoulliMixture",
            "GaussianMixture",
            "MixtureAnomalyDetector",
            "PoissonMixture",
            "__version__",
            "load",
            "restart_report",
            "select_components",
            "Autoencoder",
            "VAE",
            "log_marginal",
            "MarginalLikelihood",
            "gap_report",
            "gradient_variance",
            "GapReport",
            "GradientVariance",
            "GaussianHMM",
            "PoissonHMM",
            "BernoulliHMM",
            "CategoricalHMM",
            "GMMHMM",
            "ProbabilisticPCA",
            "FactorAnalysis",
            "MixtureOfFactorAnalyzers",
            "LatentDirichletAllocation",
        ]
    )


def test_nothing_private_in_all():
    assert not [name for name in lvmkit.__all__ if name.startswith("_") and name != "__version__"]
    for name in lvmkit.__all__:
        assert hasattr(lvmkit, name)


def test_the_package_declares_its_annotations_with_py_typed():
    import importlib.resources
    import tomllib
    from pathlib import Path

    assert importlib.resources.files("lvmkit").joinpath("py.typed").is_file()
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["lvmkit"]
