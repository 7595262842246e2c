"""Hidden Markov models across processes equal one process: two ranks, each with its own whole
sequences (unevenly split, and one rank with none), every iteration's log-likelihood and every
fitted parameter to 1e-10 relative (float64), the ranks bit-identical; and the same for the
one-process fit in chunks of a few sequences (the chunked path)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from tests.distributed.harness import check_ok, run_ranks
from tests.distributed.hmm_cases import HMM_CASES, HMM_SPLITS, hmm_estimator, hmm_fitted, hmm_rows
from tests.distributed.test_em import assert_close

pytestmark = pytest.mark.timeout(300)


def one_process(case: str, **overrides) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hmm_fitted(hmm_estimator(case, **overrides).fit(*hmm_rows(case)))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("hmms")
    ranks = run_ranks("hmms", 2, out, 280)
    check_ok(ranks)
    return [r.results(out) for r in ranks]


@pytest.mark.parametrize("case, split", [(c, s) for c in HMM_CASES for s in HMM_SPLITS])
def test_two_ranks_equal_one_process_at_every_iteration(two_ranks, case, split):
    expected = one_process(case)
    chunked = one_process(case, chunk_size=60)  # chunks of whole sequences, 60 rows at most
    rank0, rank1 = two_ranks
    for name, value in expected.items():
        key = f"{case}/{split}/{name}"
        assert np.array_equal(rank0[key], rank1[key]), f"{key} differs between the ranks"
        assert_close(rank0[key], value, key)
        assert_close(chunked[name], value, f"{case} chunked {name}")
    bounds = expected["lower_bounds_"]
    assert len(bounds) == 12 and np.all(np.diff(bounds) > -1e-9 * np.abs(bounds[1:]))


def test_partial_fit_on_two_ranks_equals_one_process(two_ranks):
    X, lengths = hmm_rows("gaussian-diag")
    est = hmm_estimator("gaussian-diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(3):
            pair = lengths[2 * step : 2 * step + 2]
            start = int(np.sum(lengths[: 2 * step]))
            est.partial_fit(X[start : start + sum(pair)], pair)
    expected = hmm_fitted(est)
    for name, value in expected.items():
        key = f"partial/{name}"
        assert np.array_equal(two_ranks[0][key], two_ranks[1][key])
        assert_close(two_ranks[0][key], value, key)


@pytest.mark.parametrize("label", ["ppca", "fa"])
@pytest.mark.parametrize("split", ["uneven", "empty"])
def test_linear_models_on_two_ranks_equal_one_process(two_ranks, split, label):
    """Probabilistic PCA's and factor analysis's statistics pass (run by the same worker, to start
    no new processes): every rank ends with the one-process fit."""
    from lvmkit import FactorAnalysis, ProbabilisticPCA
    from tests.distributed.cases import rows

    model = ProbabilisticPCA(2) if label == "ppca" else FactorAnalysis(2, tol=1e-6)
    expected = model.fit(rows("full"))
    for name in ("loadings_", "mean_", "noise_variance_", "loglike_"):
        key = f"{label}/{split}/{name}"
        assert np.array_equal(two_ranks[0][key], two_ranks[1][key])
        assert_close(two_ranks[0][key], getattr(expected, name), key)


@pytest.mark.parametrize("label", ["ppca-gaps", "fa-gaps", "mfa-gaps"])
@pytest.mark.parametrize("split", ["uneven", "empty"])
def test_em_with_missing_values_on_two_ranks_equals_one_process(two_ranks, split, label):
    """EM on rows with gaps (probabilistic PCA, factor analysis, a mixture of factor analyzers
    from k-means): 15 iterations, every bound and parameter as in one process, in chunks too."""

    expected, chunked = _one_process_with_gaps(label)
    for name, value in expected.items():
        key = f"{label}/{split}/{name}"
        assert np.array_equal(two_ranks[0][key], two_ranks[1][key]), key
        assert_close(two_ranks[0][key], value, key)
        assert_close(chunked[name], value, f"{label} chunked {name}")


@pytest.mark.parametrize("split", ["uneven", "empty"])
def test_lda_batch_em_on_two_ranks_equals_one_process(two_ranks, split):
    """Batch variational EM with each rank's own documents (the documents' random starts drawn
    for the whole corpus, each rank taking its rows): every bound and the topics as in one
    process."""
    from tests.distributed.hmm_cases import lda_case

    expected = lda_case.fitted(lda_case.estimator().fit(lda_case.documents()))
    for name, value in expected.items():
        key = f"lda/{split}/{name}"
        assert np.array_equal(two_ranks[0][key], two_ranks[1][key]), key
        assert_close(two_ranks[0][key], value, key)


@functools.cache
def _one_process_with_gaps(label: str):
    """The one-process fit of a gappy-linear case, whole and in chunks of 7 rows (once per
    label, shared by the splits)."""
    from tests.distributed.hmm_cases import gappy_linear_models as cases

    X = cases.rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = cases.fitted(cases.estimators()[label].fit(X))
        chunked = cases.fitted(cases.estimators()[label].set_params(chunk_size=7).fit(X))
    return expected, chunked
