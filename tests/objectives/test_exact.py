"""ELBO = log p(x) at the exact posterior and ≤ log p(x) for any q (a property test)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from lvmkit.objectives.exact import elbo
from lvmkit.posteriors.exact import exact_posterior


def test_elbo_equals_log_evidence_at_exact_posterior():
    log_joint = torch.randn(20, 5, dtype=torch.float64) * 4
    log_evidence, log_resp = exact_posterior(log_joint)
    brute = np.log(np.exp(log_joint.numpy()).sum(1))
    np.testing.assert_allclose(log_evidence.numpy(), brute, rtol=1e-12)
    np.testing.assert_allclose(elbo(log_joint, log_resp).bound.numpy(), brute, rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(seed=hs.integers(0, 2**31 - 1), k=hs.integers(1, 6))
def test_elbo_is_a_lower_bound_for_any_q(seed, k):
    g = torch.Generator().manual_seed(seed)
    log_joint = torch.randn(10, k, generator=g, dtype=torch.float64) * 3
    log_q = torch.log_softmax(torch.randn(10, k, generator=g, dtype=torch.float64) * 2, dim=1)
    log_evidence, log_resp = exact_posterior(log_joint)
    bound = elbo(log_joint, log_q).bound
    assert (bound <= log_evidence + 1e-12).all()
    # The gap is exactly KL(q || p(z|x)).
    kl = (log_q.exp() * (log_q - log_resp)).sum(1)
    np.testing.assert_allclose((log_evidence - bound).numpy(), kl.numpy(), atol=1e-10)


def test_zero_probability_terms_contribute_nothing():
    log_joint = torch.tensor([[0.0, -1.0]], dtype=torch.float64)
    log_q = torch.tensor([[0.0, -float("inf")]], dtype=torch.float64)
    assert torch.isfinite(elbo(log_joint, log_q).bound).all()


def test_fast_responsibilities_match_exact_posterior():
    from lvmkit.posteriors.exact import responsibilities

    log_joint = torch.randn(50, 6, dtype=torch.float64) * 60  # spans the subnormal range of exp
    log_evidence, log_resp = exact_posterior(log_joint)
    fast_evidence, resp = responsibilities(log_joint)
    np.testing.assert_allclose(fast_evidence.numpy(), log_evidence.numpy(), rtol=1e-14)
    np.testing.assert_allclose(resp.numpy(), log_resp.exp().numpy(), atol=1e-150, rtol=1e-12)
    f32_evidence, f32_resp = responsibilities(log_joint.float())
    assert f32_resp.min() >= 0 and (f32_resp[f32_resp > 0] >= torch.finfo(torch.float32).tiny).all()
    np.testing.assert_allclose(f32_evidence.numpy(), log_evidence.numpy(), rtol=1e-6)


def test_elbo_terms_split_into_reconstruction_and_kl_with_the_prior():
    """Given log p(z), bound = E_q log p(x | z) − KL(q ‖ p(z)), each against a brute-force sum."""
    g = torch.Generator().manual_seed(4)
    log_prior = torch.log_softmax(torch.randn(4, generator=g, dtype=torch.float64), 0)
    log_lik = torch.randn(12, 4, generator=g, dtype=torch.float64) * 3
    log_q = torch.log_softmax(
        torch.randn(12, 4, generator=g, dtype=torch.float64), dim=1
    ).requires_grad_()
    terms = elbo(log_lik + log_prior, log_q, log_prior)
    q, lq, lp, ll = (
        log_q.detach().exp().numpy(),
        log_q.detach().numpy(),
        log_prior.numpy(),
        log_lik.numpy(),
    )
    np.testing.assert_allclose(terms.reconstruction.detach().numpy(), (q * ll).sum(1), rtol=1e-12)
    np.testing.assert_allclose(terms.kl.detach().numpy(), (q * (lq - lp)).sum(1), rtol=1e-12)
    np.testing.assert_allclose(
        terms.bound.numpy(), (q * ll).sum(1) - (q * (lq - lp)).sum(1), rtol=1e-12
    )
    assert not terms.bound.requires_grad and terms.surrogate.requires_grad
    torch.testing.assert_close(terms.surrogate.detach(), terms.bound, rtol=0, atol=0)
    assert elbo(log_lik + log_prior, log_q).reconstruction is None
