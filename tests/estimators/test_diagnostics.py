"""Inference diagnostics: the gap decomposition against closed forms (linear-Gaussian VAE, float64)
and its ordering on a trained VAE; gradient variance per estimator; their figures and errors."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats as st  # noqa: E402

from lvmkit.estimators.diagnostics import GapReport, gap_report, gradient_variance  # noqa: E402
from lvmkit.estimators.marginal import log_marginal  # noqa: E402
from lvmkit.estimators.vae import VAE, Autoencoder  # noqa: E402
from lvmkit.plot.diagnostics import plot_gap_report, plot_gradient_variance  # noqa: E402

D, L, SIGMA = 5, 2, 0.5


@pytest.fixture(scope="module")
def trained():
    """A tiny Gaussian VAE on a noisy 2-D manifold in 6 dimensions, float64, a few epochs."""
    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6))) + 0.1 * rng.normal(
        size=(200, 6)
    )
    vae = VAE(
        latent_dim=2,
        hidden_sizes=(16,),
        likelihood="gaussian",
        decoder_std=0.3,
        epochs=10,
        batch_size=25,
        dtype="float64",
        validation_fraction=0,
        random_state=0,
    ).fit(X)
    return vae, X


def _linear_vae(W, b, A, c, log_s):
    """A VAE whose decoder is x = Wz + b (+ N(0, σ²I)) and encoder mu = Ax + c, log-sd = log_s."""
    X0 = np.random.default_rng(9).normal(size=(10, D))
    vae = VAE(
        latent_dim=L,
        encoder=torch.nn.Linear(D, 2 * L),
        decoder=torch.nn.Linear(L, D),
        likelihood="gaussian",
        decoder_std=SIGMA,
        epochs=0,
        dtype="float64",
        validation_fraction=0,
        random_state=0,
    ).fit(X0)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        enc, dec = vae.module_.encoder.net, vae.module_.model.decoder
        dec.weight.copy_(t(W)), dec.bias.copy_(t(b))
        enc.weight.zero_()
        enc.weight[:L].copy_(t(A))
        enc.bias.copy_(torch.cat([t(c), t(log_s)]))
    return vae


@pytest.mark.parametrize(
    "orthogonal", [True, False], ids=["diagonal-posterior", "correlated-posterior"]
)
def test_gaps_of_a_linear_gaussian_vae_match_their_closed_forms(orthogonal):
    rng = np.random.default_rng(1)
    W = np.linalg.qr(rng.normal(size=(D, L)))[0] * np.array([2.0, 1.2])
    if not orthogonal:  # columns at 37° from each other: a correlated posterior
        W[:, 1] = 0.8 * W[:, 0] + 0.6 * W[:, 1] * np.linalg.norm(W[:, 0]) / np.linalg.norm(W[:, 1])
    b = rng.normal(size=D)
    X = rng.normal(size=(8, D)) * 2
    Lam = np.eye(L) + W.T @ W / SIGMA**2  # posterior precision
    A = np.linalg.solve(Lam, W.T) / SIGMA**2  # exact posterior mean = A (x − b)
    # A deliberately poor encoder: the right mean map scaled by 0.6, a too-wide sd.
    A_enc, log_s = 0.5 * A, -0.5 * np.log(np.diag(Lam)) + 0.7
    vae = _linear_vae(W, b, A_enc, -A_enc @ b, log_s)
    report = gap_report(
        vae,
        X,
        k=2000,
        svi_steps=800,
        svi_lr=0.02,
        n_samples_elbo=2000,
        svi_samples=16,
        random_state=0,
    )

    log_px = st.multivariate_normal(mean=b, cov=W @ W.T + SIGMA**2 * np.eye(D)).logpdf(X)
    mean_field = 0.5 * (np.log(np.diag(Lam)).sum() - np.linalg.slogdet(Lam)[1])  # KL(q* ‖ p(z | x))
    # KL(q_enc ‖ p(z | x)) for the encoder's diagonal Gaussian.
    M, mu_e = (X - b) @ A.T, (X - b) @ A_enc.T
    var_e = np.exp(2 * log_s)
    d = mu_e - M
    kl_enc = 0.5 * (
        var_e @ np.diag(Lam)
        + np.einsum("ni,ij,nj->n", d, Lam, d)
        - L
        - np.log(var_e).sum()
        - np.linalg.slogdet(Lam)[1]
    )

    mc = report.mc_stderr
    # log p(x): importance sampling from q* (≈ p(z | x) when the posterior is diagonal) is accurate.
    assert np.all(np.abs(report.log_px - log_px) < 4 * mc["log_px"] + 2e-3)
    # Approximation gap: 0 for a diagonal posterior, the mean-field KL otherwise; within 4 Monte
    # Carlo standard errors per point plus 0.01 nats for the inexact optimization of q*.
    assert mean_field < 1e-12 if orthogonal else mean_field > 0.3
    assert np.all(
        np.abs(report.approximation_gap - mean_field) < 4 * mc["approximation_gap"] + 0.01
    )
    assert (
        abs(report.approximation_gap.mean() - mean_field)
        < 4 * report.summary().loc["approximation_gap", "mc_stderr"] + 0.005
    )
    # Amortization gap: KL(q_enc ‖ p) − KL(q* ‖ p), about a nat or more here.
    assert np.all(kl_enc - mean_field > 0.5)
    assert np.all(
        np.abs(report.amortization_gap - (kl_enc - mean_field)) < 4 * mc["amortization_gap"] + 0.01
    )
    np.testing.assert_allclose(
        report.elbo_encoder, log_px - kl_enc, atol=float(np.max(4 * mc["elbo_encoder"]))
    )
    np.testing.assert_allclose(
        report.inference_gap,
        report.approximation_gap + report.amortization_gap,
        rtol=1e-12,
        atol=1e-12,
    )
    if orthogonal:  # q* = p(z | x): alone as the proposal, every weight is p(x) up to SVI's error
        alone = gap_report(
            vae,
            X,
            k=500,
            svi_steps=800,
            svi_lr=0.02,
            n_samples_elbo=10,
            svi_samples=16,
            proposal="optimal",
        )
        np.testing.assert_allclose(alone.log_px, log_px, atol=0.01)
        assert np.all(alone.mc_stderr["log_px"] < 0.005)


def test_trained_vae_gaps_are_ordered_and_reproducible(trained):
    vae, X = trained
    report = gap_report(vae, X[:30], k=1000, svi_steps=400, n_samples_elbo=400, random_state=0)
    assert isinstance(report, GapReport) and report.n == 30
    for name in ("approximation_gap", "amortization_gap", "inference_gap"):
        gap, se = getattr(report, name), report.mc_stderr[name]
        assert np.all(np.isfinite(gap)) and np.all(se > 0)
        assert np.all(gap > -5 * se), name  # each point: >= 0 up to Monte Carlo error
        row = report.summary().loc[name]
        assert row["mean"] > -3 * row["mc_stderr"], name
    # log p >= ELBO(q*) >= ELBO(encoder), on average, up to Monte Carlo error (both gaps >= 0).
    assert (
        report.log_px.mean()
        >= report.elbo_optimal.mean() - 3 * report.summary().loc["approximation_gap", "mc_stderr"]
    )
    assert report.amortization_gap.mean() > 0.1  # a few epochs leave a clear amortization gap
    # The encoder's ELBO is the VAE's own Monte Carlo ELBO (score_samples), within its error.
    elbo = vae.score_samples(X[:30], n_samples=400)
    assert (
        abs(elbo.mean() - report.elbo_encoder.mean())
        < 4 * np.sqrt(2) * report.summary().loc["elbo_encoder", "mc_stderr"]
    )
    # Same arguments, same numbers; the table names every row.
    again = gap_report(vae, X[:30], k=1000, svi_steps=400, n_samples_elbo=400, random_state=0)
    np.testing.assert_array_equal(again.amortization_gap, report.amortization_gap)
    np.testing.assert_array_equal(again.log_px, report.log_px)
    text = str(report)
    for label in (
        "log p(x)",
        "approximation gap",
        "amortization gap",
        "nats per data point",
        "± s.e. (MC)",
    ):
        assert label in text
    # Started from the prior, SVI finds the same optimum; with the encoder as the importance
    # proposal, log p(x) is log_marginal's estimate (the default mixture's is at least as high).
    prior = gap_report(
        vae,
        X[:30],
        k=1000,
        svi_steps=400,
        n_samples_elbo=400,
        init="prior",
        proposal="encoder",
        random_state=1,
    )
    s, sp = report.summary(), prior.summary()
    both = np.hypot(s.loc["elbo_optimal", "mc_stderr"], sp.loc["elbo_optimal", "mc_stderr"])
    assert abs(s.loc["elbo_optimal", "mean"] - sp.loc["elbo_optimal", "mean"]) < 4 * both + 0.02
    ref = log_marginal(vae, X[:30], k=1000, random_state=2)
    assert (
        abs(ref.mean - sp.loc["log_px", "mean"])
        < 4 * np.sqrt(2) * sp.loc["log_px", "mc_stderr"] + 1e-3
    )
    assert s.loc["log_px", "mean"] > sp.loc["log_px", "mean"] - 3 * np.hypot(
        s.loc["log_px", "mc_stderr"], sp.loc["log_px", "mc_stderr"]
    )
    fig = plot_gap_report(report)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_gradient_variance_of_the_score_function_dwarfs_the_reparameterized_one(trained):
    vae, X = trained
    result = gradient_variance(vae, X[:20], n_repeats=60, n_samples=2, random_state=0)
    table = result.table
    assert list(table.index) == ["reparameterization", "score", "score-baseline"]
    numbers = table[
        ["total_variance", "mean_variance", "mean_norm", "snr", "median_snr", "variance_ratio"]
    ].to_numpy()
    assert np.all(np.isfinite(numbers)) and np.all(numbers > 0)
    assert table.loc["score", "variance_ratio"] > 10
    assert table.loc["score-baseline", "total_variance"] < table.loc["score", "total_variance"]
    assert table.loc["reparameterization", "snr"] > 2 * table.loc["score", "snr"]
    n_params = sum(p.numel() for p in vae.module_.encoder.parameters())
    assert all(m.shape == (n_params,) for m in result.mean.values())
    assert all(s.shape == (60,) for s in result.samples.values())
    assert result.coordinate.endswith("bias[0]") and "score-baseline" in str(result)
    # Reproducible: the same seed gives the same draws.
    again = gradient_variance(
        vae, X[:20], estimators="score", n_repeats=60, n_samples=2, random_state=0
    )
    np.testing.assert_array_equal(again.samples["score"], result.samples["score"])
    fig = plot_gradient_variance(result)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].patches) == 3 and fig.axes[0].get_yscale() == "log"


def test_errors_name_the_problem(trained):
    vae, X = trained
    with pytest.raises(ValueError, match="needs a fitted VAE.*Call fit"):
        gap_report(VAE(), X)
    auto = Autoencoder(
        latent_dim=2,
        hidden_sizes=(4,),
        likelihood="gaussian",
        epochs=1,
        validation_fraction=0,
        random_state=0,
    ).fit(X[:20])
    with pytest.raises(ValueError, match="needs a VAE.*not probabilistic"):
        gradient_variance(auto, X[:5])
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        gap_report(vae, X[:5], k=0)
    with pytest.raises(ValueError, match="proposal must be 'mixture'.*got 'prior'"):
        gap_report(vae, X[:5], proposal="prior")
    with pytest.raises(ValueError, match="needs n_samples >= 2.*score-mean-baseline"):
        gradient_variance(vae, X[:5], n_samples=1)
    with pytest.raises(ValueError, match="estimators must be names from"):
        gradient_variance(vae, X[:5], estimators=("pathwise",))
    with pytest.raises(ValueError, match="plot_gradient_variance needs"):
        plot_gradient_variance(object())
