"""Pictures of the linear-Gaussian models (lvmkit.plot.linear): explained variance, the loadings
heat map, the latent map, imputations beside the truth, ``lvmkit plot``'s overview and the
report's sections, for probabilistic PCA, factor analysis and (when present) a mixture of factor
analyzers. Figures are built, not rendered, except the one report written."""

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import AxesImage

import lvmkit
from lvmkit.plot.figures import plot_model
from lvmkit.plot.linear import (
    imputation_errors,
    learned_summary,
    linear_sections,
    plot_explained_variance,
    plot_imputations,
    plot_latent_map,
    plot_linear,
    plot_loadings,
)
from lvmkit.plot.report import ReportContext, _provider, write_report
from tests.conftest import quiet

NAMES = ["height", "weight", "age", "income", "score", "rank"]


def _data(n=240, seed=0):
    """Two clusters of a 2-factor model in 6 features: correlated, so imputation beats means."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(6, 2)) * 1.5
    labels = rng.integers(0, 2, n)
    return rng.normal(size=(n, 2)) @ W.T + rng.normal(size=(n, 6)) * 0.3 + 4.0 * labels[:, None]


@pytest.fixture(scope="module")
def X():
    return _data()


@pytest.fixture(scope="module")
def models(X):
    fitted = {
        "ppca": lvmkit.ProbabilisticPCA(3).fit(X),
        "fa": lvmkit.FactorAnalysis(2, rotation="varimax").fit(X),
    }
    try:
        from lvmkit import MixtureOfFactorAnalyzers
    except ImportError:
        return fitted
    fitted["mfa"] = quiet(MixtureOfFactorAnalyzers(2, 2, max_iter=50, random_state=0).fit, X)
    return fitted


@pytest.mark.parametrize("kind", ["ppca", "fa", "mfa"])
def test_explained_variance(models, kind):
    if kind not in models:
        pytest.skip("no MixtureOfFactorAnalyzers in this lvmkit")
    model = models[kind]
    fig = plot_explained_variance(model)
    bars_ax, cumulative_ax = fig.axes
    q = model.loadings_.shape[-1]
    heights = [p.get_height() for p in bars_ax.patches]
    if kind == "ppca":  # the eigenvalues, over the noise floor σ²
        np.testing.assert_allclose(heights, model.explained_variance_)
        assert bars_ax.lines[0].get_ydata()[0] == pytest.approx(model.noise_variance_)
        np.testing.assert_allclose(
            cumulative_ax.lines[0].get_ydata(), np.cumsum(model.explained_variance_ratio_)
        )
    elif kind == "fa":  # the factors' squared loadings
        np.testing.assert_allclose(heights, (model.loadings_**2).sum(0))
    else:
        assert len(heights) == model.n_components * q and len(cumulative_ax.lines) == 2
    for line in cumulative_ax.lines:  # a share of the variance, growing
        y = np.asarray(line.get_ydata())
        assert np.all(np.diff(y) >= 0) and 0 < y[-1] <= 1


@pytest.mark.parametrize("kind", ["ppca", "fa", "mfa"])
def test_loadings_heat_map(models, kind):
    if kind not in models:
        pytest.skip("no MixtureOfFactorAnalyzers in this lvmkit")
    model = models[kind]
    fig = plot_loadings(model, NAMES)
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    k = model.loadings_.shape[0] if model.loadings_.ndim == 3 else 1
    assert len(panels) == k and len(fig.axes) == k + 1  # and one colour bar
    W = model.loadings_.reshape(-1, *model.loadings_.shape[-2:])
    for ax in panels:
        image = next(a for a in ax.get_children() if isinstance(a, AxesImage))
        assert any(np.array_equal(image.get_array(), w) for w in W)
        low, high = image.get_clim()
        assert low == -high and image.get_cmap().name == "RdBu_r"  # centred at 0
    assert [t.get_text() for t in panels[0].get_yticklabels()] == NAMES
    assert [t.get_text() for t in panels[0].get_xticklabels()][:2] == ["z1", "z2"]


@pytest.mark.parametrize("kind", ["ppca", "fa", "mfa"])
def test_latent_map(models, X, kind):
    if kind not in models:
        pytest.skip("no MixtureOfFactorAnalyzers in this lvmkit")
    model = models[kind]
    fig = plot_latent_map(model, X)
    (ax,) = fig.axes
    points = np.concatenate(
        [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    )
    Z = model.transform(X)[:, :2]
    assert len(points) == len(X)
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(Z, axis=0))
    assert ax.get_xlabel() == "z1" and ax.get_ylabel() == "z2"
    if kind == "mfa":  # one colour per component
        assert len(ax.collections) == len(np.unique(model.predict(X)))
    fig = plot_latent_map(models["ppca"], X, dims=(2, 0))
    assert fig.axes[0].get_xlabel() == "z3"
    with pytest.raises(ValueError, match="latent coordinates"):
        plot_latent_map(models["ppca"], X, dims=(0, 3))


def test_imputations_beside_the_truth(models, X):
    model = models["fa"]
    if not hasattr(model, "impute"):
        pytest.skip("FactorAnalysis has no impute in this lvmkit")
    gappy = X.copy()
    gappy[3, 1] = np.nan  # a value missing already is not scored
    result = imputation_errors(model, gappy, fraction=0.2, random_state=1)
    observed = int((~np.isnan(gappy)).sum())
    assert result["n_observed"] == observed and 0.15 < result["n_hidden"] / observed < 0.25
    assert result["rmse"] < 0.5 * result["rmse_column_means"]  # the model knows the correlations
    assert np.isin(result["truth"], gappy[~np.isnan(gappy)]).all()  # hidden: observed values
    fig = plot_imputations(model, gappy, 0.2, random_state=1, feature_names=NAMES)
    (ax,) = fig.axes
    title = ax.get_title()
    assert f"RMSE {result['rmse']:.4g}" in title
    assert f"column means: {result['rmse_column_means']:.4g}" in title
    assert sum(len(c.get_offsets()) for c in ax.collections) == result["n_hidden"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == NAMES
    # the same hidden cells for the same seed, and none of a model that cannot impute
    again = imputation_errors(model, gappy, fraction=0.2, random_state=1)
    np.testing.assert_array_equal(again["truth"], result["truth"])
    with pytest.raises(ValueError, match="has no impute"):
        imputation_errors(object(), X)
    with pytest.raises(ValueError, match="fraction"):
        imputation_errors(model, X, fraction=1.5)


def test_every_row_keeps_an_observed_value(models):
    model = models["ppca"]
    if not hasattr(model, "impute"):
        pytest.skip("ProbabilisticPCA has no impute in this lvmkit")
    X = _data(60)
    result = imputation_errors(model, X, fraction=0.9, random_state=0)
    assert result["n_hidden"] <= X.size - len(X)


def test_plot_overview_and_registration(models, X):
    for kind, model in models.items():
        fig = plot_model(model, X, feature_names=NAMES)  # what 'lvmkit plot' draws
        assert len(fig.subfigs) == 2, kind
        latent, loadings = fig.subfigs
        assert latent.axes[0].get_xlabel() == "z1"
        assert any(ax.images for ax in loadings.axes)
        assert _provider(model) is linear_sections
    fig = plot_linear(models["fa"], X, dims=(1, 0))
    assert fig.subfigs[0].axes[0].get_xlabel() == "z2"


def test_learned_summary(models):
    rows = dict(learned_summary(models["ppca"]))
    assert rows["latent dimension"] == "3"
    assert rows["noise variance σ²"] == f"{models['ppca'].noise_variance_:.6g}"
    rows = dict(learned_summary(models["fa"]))
    assert rows["rotation of the loadings"] == "varimax" and "noise variances Ψ" in rows
    if "mfa" in models:
        rows = dict(learned_summary(models["mfa"]))
        assert rows["latent dimension"] == "2 factors in each of 2 components"


def test_report_sections(models, X, tmp_path):
    path = write_report(
        models["ppca"], X, tmp_path / "ppca.html", context=ReportContext(feature_names=NAMES)
    )
    page = path.read_text()
    titles = ["What the model learned", "Explained variance", "Loadings", "Latent map", "Samples"]
    if hasattr(models["ppca"], "impute"):
        titles.append("Imputations beside the truth")
    for title in titles:
        assert f"<h2>{title}</h2>" in page, title
    assert "<h2>Training curve</h2>" not in page  # the closed form has no iterations
    assert page.count("data:image/png;base64,") == len(titles) - 1
    # a model fitted by EM adds its curve (sections built, not rendered)
    for kind in ("fa", "mfa"):
        if kind in models:
            sections = [s.title for s in linear_sections(models[kind], X, ReportContext())]
            assert sections[:3] == [
                "What the model learned",
                "Training curve",
                "Explained variance",
            ]
