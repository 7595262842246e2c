"""Hidden Markov models: fitting from data, the hmmlearn interface, weights, files, degenerate
cases without NaN, and errors that name the fix."""

import warnings

import numpy as np
import pytest
import torch

import lvmkit
from lvmkit.estimators._hmm import StateReseedWarning
from lvmkit.posteriors import chain


def simulate(seed=0, lengths=(200, 150, 1, 120, 2, 80)):
    """Rows from a known 3-state diagonal Gaussian HMM, and the model."""
    rng = np.random.default_rng(seed)
    true = lvmkit.GaussianHMM(3, covariance_type="diag", init_params="", random_state=seed)
    true.startprob_ = np.array([0.6, 0.3, 0.1])
    true.transmat_ = np.array([[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.15, 0.8]])
    true.means_ = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 5.0]])
    true.covars_ = np.array([[1.0, 0.5], [0.7, 1.2], [1.5, 0.4]])
    parts = [true.sample(n, random_state=rng.integers(1 << 30))[0] for n in lengths]
    return true, np.concatenate(parts), list(lengths)


def matched(true_means, means):
    """The permutation of fitted states closest to the true ones."""
    from scipy.optimize import linear_sum_assignment

    cost = ((true_means[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    return linear_sum_assignment(cost)[1]


def test_fit_from_data_recovers_a_known_model():
    true, X, lengths = simulate()
    m = lvmkit.GaussianHMM(
        3, covariance_type="diag", n_iter=100, tol=1e-6, n_init=2, random_state=0, dtype="float64"
    ).fit(X, lengths)
    order = matched(true.means_, m.means_)
    np.testing.assert_allclose(m.means_[order], true.means_, atol=0.35)
    np.testing.assert_allclose(m.transmat_[np.ix_(order, order)], true.transmat_, atol=0.08)
    assert m.converged_ and m.monitor_.converged and len(m.restarts_) == 2
    assert m.lower_bound_ == pytest.approx(max(m.restarts_))
    assert np.all(np.diff(m.lower_bounds_) > -1e-8 * np.abs(m.lower_bounds_[1:]))
    # predict is Viterbi, predict_proba the posteriors; map = argmax of the posteriors
    states = m.predict(X, lengths)
    log_prob, decoded = m.decode(X, lengths)
    np.testing.assert_array_equal(states, decoded)
    assert log_prob < m.score(X, lengths)
    post = m.predict_proba(X, lengths)
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(m.decode(X, lengths, algorithm="map")[1], post.argmax(1))


def test_score_sequences_gives_every_sequence_at_once():
    true, X, lengths = simulate(13)
    per = true.score_sequences(X, lengths)
    starts = np.cumsum([0, *lengths])
    expected = [true.score(X[a:b]) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    np.testing.assert_allclose(per, expected, rtol=1e-6)
    assert per.sum() == pytest.approx(true.score(X, lengths), rel=1e-12)


def test_list_of_arrays_equals_concatenation_and_lengths():
    _, X, lengths = simulate(1)
    parts = np.split(X, np.cumsum(lengths)[:-1])
    kw = dict(n_components=3, n_iter=5, random_state=0, dtype="float64")
    a = lvmkit.GaussianHMM(**kw).fit(X, lengths)
    b = lvmkit.GaussianHMM(**kw).fit(parts)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-12)
    assert b.score(parts) == pytest.approx(a.score(X, lengths), rel=1e-12)


def test_blocks_for_long_sequences_equal_one_recursion(monkeypatch):
    """A 3000-step sequence is cut into blocks of 55 steps; the fit equals the plain one."""
    _, X, _ = simulate(2, lengths=(3000, 40))
    kw = dict(n_components=3, n_iter=6, tol=0, random_state=0, dtype="float64")
    assert chain.pack([3000, 40]).blocks is not None
    blocked = lvmkit.GaussianHMM(**kw).fit(X, [3000, 40])
    monkeypatch.setattr(chain, "BLOCK_FROM", 10**9)
    monkeypatch.setattr(chain, "BLOCK_NARROW_FROM", 10**9)
    assert chain.pack([3000, 40]).blocks is None
    plain = lvmkit.GaussianHMM(**kw).fit(X, [3000, 40])
    np.testing.assert_allclose(blocked.lower_bounds_, plain.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(blocked.transmat_, plain.transmat_, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("init", ["", "stmc"])
def test_sequence_weights_equal_duplicated_sequences(init):
    true, X, lengths = simulate(3, lengths=(60, 30, 45))
    parts = np.split(X, np.cumsum(lengths)[:-1])
    kw = dict(n_components=3, n_iter=6, tol=0, random_state=0, dtype="float64", init_params=init)

    def make():
        m = lvmkit.GaussianHMM(**kw)
        if not init:
            m.startprob_, m.transmat_ = true.startprob_, true.transmat_
            m.means_, m.covars_ = true.means_ + 0.3, true._covars_
        return m

    weighted = make().fit(parts, sample_weight=[2, 1, 3])
    duplicated = make().fit([parts[0], parts[0], parts[1], parts[2], parts[2], parts[2]])
    np.testing.assert_allclose(weighted.lower_bounds_, duplicated.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(weighted.means_, duplicated.means_, rtol=1e-8)


def test_save_and_load_give_identical_predictions(tmp_path):
    _, X, lengths = simulate(4)
    for m in (
        lvmkit.GaussianHMM(3, covariance_type="full", n_iter=3, random_state=0),
        lvmkit.GMMHMM(2, n_mix=2, n_iter=3, random_state=0),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X, lengths)
        path = m.save(tmp_path / f"{type(m).__name__}.lvm")
        back = lvmkit.load(path)
        assert type(back) is type(m)
        assert back.score(X, lengths) == m.score(X, lengths)
        np.testing.assert_array_equal(back.predict(X, lengths), m.predict(X, lengths))
        np.testing.assert_array_equal(back.covars_, m.covars_)
        assert back.monitor_.history == m.monitor_.history


def test_partial_fit_improves_over_batches():
    true, X, lengths = simulate(5, lengths=(100,) * 12)
    m = lvmkit.GaussianHMM(3, random_state=0, dtype="float64", learning_offset=2.0)
    start = 0
    for n in (300, 300, 300, 300):  # three sequences per batch
        m.partial_fit(X[start : start + n], [100, 100, 100])
        start += n
    assert m.n_iter_ == 4 and len(m.lower_bounds_) == 4
    assert np.isfinite(m.lower_bounds_).all()
    order = matched(true.means_, m.means_)
    np.testing.assert_allclose(m.means_[order], true.means_, atol=0.5)


def test_sample_follows_the_model():
    true, _, _ = simulate()
    X, states = true.sample(20000, random_state=0)
    assert X.shape == (20000, 2) and states.shape == (20000,)
    # state frequencies -> the stationary distribution; emissions -> each state's mean
    w, vecs = np.linalg.eig(true.transmat_.T)
    stationary = np.real(vecs[:, np.argmax(np.real(w))])
    stationary /= stationary.sum()
    np.testing.assert_allclose(np.bincount(states, minlength=3) / 20000, stationary, atol=0.03)
    for k in range(3):
        np.testing.assert_allclose(X[states == k].mean(0), true.means_[k], atol=0.1)
    # transitions follow transmat_
    pairs = np.zeros((3, 3))
    np.add.at(pairs, (states[:-1], states[1:]), 1)
    np.testing.assert_allclose(pairs / pairs.sum(1, keepdims=True), true.transmat_, atol=0.03)
    X2, s2 = true.sample(10, random_state=1, currstate=2)
    assert X2.shape == (10, 2)


def test_bic_and_aic_count_parameters_like_hmmlearn():
    from hmmlearn import hmm

    true, X, lengths = simulate(6)
    theirs = hmm.GaussianHMM(3, covariance_type="diag", init_params="")
    theirs.n_features = 2
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        setattr(theirs, name, getattr(true, name) if name != "covars_" else true._covars_)
    assert true.bic(X, lengths) == pytest.approx(theirs.bic(X, lengths), rel=1e-6)
    assert true.aic(X, lengths) == pytest.approx(theirs.aic(X, lengths), rel=1e-6)


@pytest.mark.parametrize(
    "cls, make",
    [
        (lvmkit.PoissonHMM, lambda rng, z: rng.poisson(np.array([[1, 8], [6, 1], [9, 9]])[z])),
        (
            lvmkit.BernoulliHMM,
            lambda rng, z: (
                rng.random((len(z), 4))
                < np.array([[0.9, 0.1, 0.8, 0.1], [0.1, 0.9, 0.1, 0.8], [0.5, 0.5, 0.9, 0.9]])[z]
            ).astype(float),
        ),
        (
            lvmkit.CategoricalHMM,
            lambda rng, z: np.array(
                [
                    rng.choice(4, p=p)
                    for p in np.array(
                        [[0.7, 0.2, 0.05, 0.05], [0.05, 0.05, 0.8, 0.1], [0.25, 0.25, 0.25, 0.25]]
                    )[z]
                ]
            )[:, None],
        ),
        (
            lvmkit.GMMHMM,
            lambda rng, z: np.array([[0, 0], [5, 0], [0, 5]])[z] + rng.normal(size=(len(z), 2)),
        ),
    ],
)
def test_every_emission_fits_monotonically(cls, make):
    true, _, _ = simulate(7)
    _, z = true.sample(600, random_state=0)
    X = make(np.random.default_rng(0), z).astype(float)
    kwargs = {"n_mix": 2} if cls is lvmkit.GMMHMM else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StateReseedWarning)
        m = cls(3, n_iter=20, tol=1e-8, random_state=0, dtype="float64", **kwargs).fit(
            X, [300, 300]
        )
    bounds = np.array(m.lower_bounds_)
    assert np.isfinite(bounds).all()
    assert np.all(np.diff(bounds) > -1e-8 * np.abs(bounds[1:]))
    assert m.score(X, [300, 300]) > bounds[0]
    sample, states = m.sample(50, random_state=0)
    assert sample.shape[0] == 50 and states.max() < 3


# ---------------------------------------------------------------------------- degenerate cases
def test_a_state_no_sequence_visits_is_reseeded_with_a_warning():
    _, X, lengths = simulate(8)
    m = lvmkit.GaussianHMM(3, init_params="", n_iter=5, dtype="float64")
    m.startprob_ = np.array([0.5, 0.5, 0.0])
    m.transmat_ = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]])
    m.means_ = np.array([[0.0, 0.0], [4.0, 1.0], [1e4, 1e4]])
    m.covars_ = np.ones((3, 2))
    with pytest.warns(StateReseedWarning, match=r"State\(s\) \[2\]"):
        m.fit(X, lengths)
    assert np.isfinite(m.transmat_).all() and np.isfinite(m.means_).all()
    assert m.means_[2, 0] < 100  # moved to the data
    np.testing.assert_allclose(m.transmat_.sum(1), 1.0)


def test_zero_row_of_the_transition_prior_gives_no_nan():
    _, X, lengths = simulate(9)
    prior = np.ones((3, 3))
    prior[1] = 0.0  # max(0 - 1 + counts, 0): nothing left in row 1 when counts < 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lvmkit.GaussianHMM(
            3, transmat_prior=prior, n_iter=5, random_state=0, dtype="float64"
        ).fit(X, lengths)
    assert np.isfinite(m.transmat_).all()
    np.testing.assert_allclose(m.transmat_.sum(1), 1.0)


def test_short_sequences_and_single_steps():
    """Sequences of one step and sequences shorter than the number of states."""
    rng = np.random.default_rng(10)
    lengths = [1, 1, 2, 3, 1, 2]
    X = rng.normal(size=(sum(lengths), 2))
    m = lvmkit.GaussianHMM(4, n_iter=5, random_state=0, dtype="float64").fit(X, lengths)
    assert np.isfinite(m.lower_bounds_).all() and np.isfinite(m.transmat_).all()
    np.testing.assert_allclose(m.predict_proba(X, lengths).sum(1), 1.0)


def test_a_symbol_that_never_occurs_keeps_a_finite_probability():
    rng = np.random.default_rng(11)
    X = rng.integers(0, 4, size=(200, 1))  # symbols 0-3 of an alphabet of 6
    m = lvmkit.CategoricalHMM(2, n_features=6, n_iter=10, random_state=0).fit(X)
    assert m.emissionprob_.shape == (2, 6)
    assert np.all(m.emissionprob_[:, 4:] > 0) and np.all(m.emissionprob_[:, 4:] < 1e-8)
    assert np.isfinite(m.score(np.array([[5], [4], [0]])))


def test_emissions_that_underflow_in_float32():
    """Rows hundreds of standard deviations from every state: each frame's emissions are shifted
    by their maximum, so nothing underflows to a NaN."""
    true, X, lengths = simulate(12)
    X = X.copy()
    X[5] = [300.0, -400.0]
    m = lvmkit.GaussianHMM(3, init_params="", dtype="float32")
    for name in ("startprob_", "transmat_", "means_"):
        setattr(m, name, getattr(true, name))
    m.covars_ = true._covars_
    log_prob, post = m.score_samples(X, lengths)
    assert np.isfinite(log_prob) and np.isfinite(post).all()
    ref = lvmkit.GaussianHMM(3, init_params="", dtype="float64")
    for name in ("startprob_", "transmat_", "means_"):
        setattr(ref, name, getattr(true, name))
    ref.covars_ = true._covars_
    assert log_prob == pytest.approx(ref.score(X, lengths), rel=1e-5)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "lengths, match",
    [
        ([100, 100], "lengths sum to 200 but X has 553 rows"),
        ([553, 0], r"lengths\[1\] = 0"),
        ([600, -47], r"lengths\[1\] = -47"),
        ([552.5, 0.5], "whole numbers"),
    ],
)
def test_bad_lengths_are_named(lengths, match):
    _, X, _ = simulate()
    with pytest.raises(ValueError, match=match):
        lvmkit.GaussianHMM(2).fit(X, lengths)


def test_bad_data_is_named():
    _, X, lengths = simulate()
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lvmkit.GaussianHMM(2).fit(bad, lengths)
    with pytest.raises(ValueError, match="fewer rows than states"):
        lvmkit.GaussianHMM(5).fit(X[:3], [3])
    with pytest.raises(ValueError, match="PoissonHMM needs non-negative counts"):
        lvmkit.PoissonHMM(2).fit(X, lengths)
    with pytest.raises(ValueError, match="binary data"):
        lvmkit.BernoulliHMM(2).fit(X, lengths)
    with pytest.raises(ValueError, match="one weight per sequence"):
        lvmkit.GaussianHMM(2).fit(X, lengths, sample_weight=[1, 2])
    m = lvmkit.CategoricalHMM(2, n_iter=2, random_state=0).fit(np.array([[0], [1], [2], [1]]))
    with pytest.raises(ValueError, match=r"Symbol 7 is outside the alphabet 0 … 2"):
        m.predict(np.array([[0], [7]]))
    with pytest.raises(ValueError, match="expecting 1 features"):
        m.predict(np.array([[0, 1]]))
    with pytest.raises(ValueError, match="one column of integer symbols"):
        lvmkit.CategoricalHMM(2).fit(np.array([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="startprob_ must be 2 non-negative probabilities"):
        u = lvmkit.GaussianHMM(2, init_params="mc")
        u.startprob_ = np.array([0.5, 0.6])
        u.transmat_ = np.full((2, 2), 0.5)
        u.fit(X, lengths)
    with pytest.raises(ValueError, match="must be set before fit"):
        lvmkit.GaussianHMM(2, init_params="").fit(X, lengths)


def test_a_failed_fit_leaves_the_model_as_it_was():
    _, X, lengths = simulate()
    m = lvmkit.GaussianHMM(2, n_iter=3, random_state=0).fit(X, lengths)
    before = m.transmat_.copy()
    with pytest.raises(ValueError):
        m.fit(X, [1, 2])
    np.testing.assert_array_equal(m.transmat_, before)


def test_tensors_and_float32_on_the_default_device():
    _, X, lengths = simulate()
    m = lvmkit.GaussianHMM(3, n_iter=5, random_state=0).fit(torch.as_tensor(X), lengths)
    assert m.means_.dtype == np.float64 and np.isfinite(m.lower_bound_)


# ---------------------------------------------------------------------------- review findings
def test_partial_fit_after_fit_continues_and_fit_restarts_the_stepwise_state():
    true, X, lengths = simulate(14)
    m = lvmkit.GaussianHMM(3, n_iter=30, random_state=0, dtype="float64").fit(X, lengths)
    batch_score = m.score(X[:10])
    m.partial_fit(X[:10])  # one step from the fitted parameters, not a new start
    assert m.n_iter_ == 1 and m.lower_bound_ == pytest.approx(batch_score, rel=1e-10)
    m.partial_fit(X[10:30])
    assert m.n_iter_ == 2
    m.fit(X, lengths)
    m.partial_fit(X[:10])
    assert m.n_iter_ == 1  # fit left no running statistics behind


def test_a_sequence_of_weight_zero_is_left_out_even_far_away_in_float32():
    true, X, lengths = simulate(15, lengths=(60, 60, 20))
    far = X.copy()
    far[120:] += 1e6
    kw = dict(n_components=3, random_state=0, n_iter=20, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        left_out = lvmkit.GaussianHMM(**kw).fit(far, lengths, sample_weight=[1, 1, 0])
        reference = lvmkit.GaussianHMM(**kw).fit(X[:120], [60, 60])
    assert left_out.score(X[:120], [60, 60]) == pytest.approx(
        reference.score(X[:120], [60, 60]), rel=1e-4
    )


def test_parameters_you_set_are_checked():
    _, X, lengths = simulate(16)
    g = lvmkit.GMMHMM(2, n_mix=2, init_params="")
    g.startprob_, g.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    g.weights_ = np.array([[0.9, 0.9], [0.5, 0.5]])
    g.means_, g.covars_ = np.zeros((2, 2, 2)), np.ones((2, 2, 2))
    with pytest.raises(ValueError, match="weights_ must be"):
        g.score(X, lengths)
    c = lvmkit.CategoricalHMM(2, init_params="")
    c.startprob_, c.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    c.emissionprob_ = np.array([[0.6, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="must sum to 1"):
        c.score(np.array([[0], [1]]))
    b = lvmkit.BernoulliHMM(2, init_params="")
    b.startprob_, b.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    b.emissionprob_ = np.array([[1.2, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        b.score(np.array([[0.0, 1.0]]))
    f = lvmkit.GaussianHMM(2, covariance_type="full", init_params="")
    f.startprob_, f.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    f.means_ = np.zeros((2, 2))
    f.covars_ = np.array([[[1.0, 0.5], [0.2, 1.0]]] * 2)
    with pytest.raises(ValueError, match="symmetric"):
        f.score(X, lengths)
    f.covars_ = np.array([[[1.0, 2.0], [2.0, 1.0]]] * 2)
    with pytest.raises(ValueError, match="positive-definite"):
        f.score(X, lengths)


def test_init_params_subsets_use_what_you_set():
    true, X, lengths = simulate(17)
    m = lvmkit.GaussianHMM(3, init_params="stm", params="stm", n_iter=3, random_state=0)
    m.covars_ = true._covars_
    m.fit(X, lengths)
    np.testing.assert_array_equal(m._covars_, true._covars_)  # not initialised, not updated
    m = lvmkit.GaussianHMM(3, init_params="stc", params="stc", n_iter=3, random_state=0)
    m.means_ = true.means_
    m.fit(X, lengths)
    np.testing.assert_array_equal(m.means_, true.means_)
    with pytest.raises(ValueError, match="covars_ must be set before fit"):
        lvmkit.GaussianHMM(3, init_params="stm").fit(X, lengths)
    g = lvmkit.GMMHMM(2, n_mix=2, init_params="stmc", params="stmc", n_iter=3, random_state=0)
    g.weights_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.fit(X, lengths)
    np.testing.assert_array_equal(g.weights_, [[0.9, 0.1], [0.2, 0.8]])


def test_sample_currstate_is_the_first_state_as_in_hmmlearn():
    m = lvmkit.CategoricalHMM(2, init_params="")
    m.startprob_, m.transmat_ = np.array([0.5, 0.5]), np.array([[0.0, 1.0], [1.0, 0.0]])
    m.emissionprob_ = np.array([[1.0, 0.0], [0.0, 1.0]])
    _, states = m.sample(4, currstate=0, random_state=0)
    np.testing.assert_array_equal(states, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="currstate must be a state number in 0 … 1"):
        m.sample(3, currstate=5)


def test_poisson_rate_priors_per_state_and_new_parameters_with_other_features():
    _, X, lengths = simulate(18)
    counts = np.random.default_rng(0).poisson(3, size=(200, 3)).astype(float)
    m = lvmkit.PoissonHMM(2, lambdas_prior=np.array([1.0, 2.0]), lambdas_weight=1.0, n_iter=3,
                          random_state=0).fit(counts)  # fmt: skip
    assert m.lambdas_.shape == (2, 3) and np.isfinite(m.lambdas_).all()
    g = lvmkit.GaussianHMM(3, n_iter=2, random_state=0).fit(X, lengths)  # D = 2
    g.means_, g.covars_ = np.zeros((3, 3)), np.ones((3, 3))  # replaced with D = 3
    assert np.isfinite(g.score(np.zeros((5, 3))))
