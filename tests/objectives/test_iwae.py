"""The importance-weighted bound: its value, and the IWAE and DReG gradients (same expectation,
DReG with less variance for the encoder), in float64 on a tiny model."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lvmkit import VAE, log_marginal
from lvmkit.models.vae import DeepLatentModel, make_likelihood
from lvmkit.objectives.iwae import iwae_terms
from lvmkit.objectives.marginal import log_importance_weights_lse
from lvmkit.posteriors.amortized import GaussianEncoder

D64 = torch.float64


def tiny(seed=0):
    torch.manual_seed(seed)
    D, L = 5, 2
    enc = GaussianEncoder(
        torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2 * L)).to(
            D64
        ),
        L,
    )
    dec = torch.nn.Sequential(torch.nn.Linear(L, 4), torch.nn.Tanh(), torch.nn.Linear(4, D)).to(D64)
    model = DeepLatentModel(dec, make_likelihood("bernoulli", D), L)
    x = (torch.rand(3, D) < 0.5).to(D64)
    return enc, model, x


def test_bound_value_matches_the_importance_sampling_estimator():
    enc, model, x = tiny()
    with torch.no_grad():
        bound = iwae_terms(enc, model, x, 7, torch.Generator().manual_seed(3)).bound
        ref = log_importance_weights_lse(enc, model, x, 7, torch.Generator().manual_seed(3))
    torch.testing.assert_close(bound, ref, rtol=1e-12, atol=1e-12)


def _gradients(enc, model, x, k, dreg, repeats, seed):
    params = list(enc.parameters()) + list(model.parameters())
    n_enc = sum(p.numel() for p in enc.parameters())
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(repeats):
        loss = iwae_terms(enc, model, x, k, g, dreg).loss()
        grads = torch.autograd.grad(loss, params)
        out.append(torch.cat([gr.flatten() for gr in grads]))
    G = torch.stack(out).numpy()
    return G[:, :n_enc], G[:, n_enc:]


def test_dreg_and_iwae_gradients_agree_in_expectation_and_dreg_has_less_variance():
    enc, model, x = tiny()
    k, R = 20, 3000
    enc_iwae, dec_iwae = _gradients(enc, model, x, k, False, R, seed=1)
    enc_dreg, dec_dreg = _gradients(enc, model, x, k, True, R, seed=2)
    for a, b in ((enc_iwae, enc_dreg), (dec_iwae, dec_dreg)):
        se = np.sqrt(a.var(0, ddof=1) / R + b.var(0, ddof=1) / R)
        z = (a.mean(0) - b.mean(0)) / np.maximum(se, 1e-12)
        # ~70 coordinates: under the null, max |z| > 4 has probability ~0.5% (fixed seeds here).
        assert np.abs(z).max() < 4.0, z
    # Same decoder estimator (the same samples would give the same numbers); the encoder's
    # gradient variance is lower with DReG (Tucker et al. 2019).
    assert enc_dreg.var(0).sum() < 0.5 * enc_iwae.var(0).sum()


def test_iwae_training_tightens_the_bound():
    X = load_digits().data / 16.0
    kw = dict(
        latent_dim=4,
        hidden_sizes=(32,),
        binarize="dynamic",
        epochs=6,
        batch_size=50,
        random_state=0,
    )
    elbo_model = VAE(**kw).fit(X)
    iwae_model = VAE(objective="iwae", k=10, gradient="dreg", **kw).fit(X)
    # Early stopping watched L_10 for the IWAE model; the history's training bound is L_10 too.
    assert iwae_model.history_["elbo"][-1] > iwae_model.history_["elbo"][0]
    ll_iwae = log_marginal(iwae_model, X[:300], k=200).mean
    ll_elbo = log_marginal(elbo_model, X[:300], k=200).mean
    assert ll_iwae > ll_elbo - 0.5  # at least as good a likelihood (typically better)
    assert log_marginal(iwae_model, X[:300], k=200).mean > iwae_model.score(X[:300])


def test_option_errors():
    X = np.zeros((20, 4))
    with pytest.raises(ValueError, match="gradient='dreg'.*needs objective='iwae'"):
        VAE(gradient="dreg").fit(X)
    with pytest.raises(ValueError, match="no separate KL term"):
        VAE(objective="iwae", beta=2.0).fit(X)
    with pytest.raises(ValueError, match="parameter 'k' must be an int >= 1"):
        VAE(k=0).fit(X)


def test_k_sample_elbo_has_the_elbo_expectation():
    enc, model, x = tiny()
    from lvmkit.objectives.elbo import elbo_terms

    with torch.no_grad():
        terms = elbo_terms(enc, model, x, torch.Generator().manual_seed(0), 100_000)
        rec, kl = terms.reconstruction, terms.kl
        terms_i = iwae_terms(enc, model, x, 100_000, torch.Generator().manual_seed(1))
        rec_i, kl_i = terms_i.reconstruction, terms_i.kl
    torch.testing.assert_close(rec, rec_i, atol=0.02, rtol=0)
    torch.testing.assert_close(kl, kl_i, atol=0.02, rtol=0)
    assert math.isfinite(float(rec.sum()))


def test_terms_of_the_bound_and_its_surrogates():
    """IWAE's surrogate is L_k itself; DReG's is Σ w̃ log w (another value, the same gradient's
    expectation); reconstruction − kl is the k-sample average ELBO, which L_k bounds from above."""
    enc, model, x = tiny()
    iwae = iwae_terms(enc, model, x, 9, torch.Generator().manual_seed(2))
    dreg = iwae_terms(enc, model, x, 9, torch.Generator().manual_seed(2), dreg=True)
    torch.testing.assert_close(iwae.surrogate.detach(), iwae.bound, rtol=0, atol=0)
    torch.testing.assert_close(dreg.bound, iwae.bound, rtol=1e-12, atol=1e-12)
    assert iwae.surrogate.shape == dreg.surrogate.shape == (x.shape[0],)
    assert (
        not iwae.bound.requires_grad
        and iwae.surrogate.requires_grad
        and dreg.surrogate.requires_grad
    )
    assert torch.all(iwae.reconstruction - iwae.kl <= iwae.bound + 1e-12)
    mu, log_sigma = enc(x)
    torch.testing.assert_close(iwae.mu, mu, rtol=0, atol=0)
    torch.testing.assert_close(iwae.log_sigma, log_sigma, rtol=0, atol=0)
