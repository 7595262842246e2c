"""lvmkit.fit.callbacks: observing fits from outside, at no cost when nobody observes."""

from lvmkit import GaussianMixture, select_components
from lvmkit.fit.callbacks import FitProgress, observe, observers
from tests.conftest import blobs, quiet


def test_every_iteration_of_every_restart_is_reported():
    X = blobs(n=200, d=2, k=3)[0]
    events = []
    with observe(events.append):
        model = quiet(GaussianMixture(3, n_init=2, random_state=0).fit, X)
    assert all(isinstance(e, FitProgress) and e.estimator is model for e in events)
    assert {e.restart for e in events} == {0, 1} and events[0].n_restarts == 2
    last = [e for e in events if e.restart == model.restarts_.argmax()]
    assert [e.iteration for e in last] == list(range(1, model.n_iter_ + 1))
    assert [e.lower_bound for e in last] == model.lower_bounds_
    assert observers() == ()


def test_observers_see_fits_inside_select_components_and_nest():
    X = blobs(n=200, d=2, k=3)[0]
    outer, inner = [], []
    with observe(outer.append):
        with observe(inner.append):
            quiet(select_components, GaussianMixture(), X, [1, 2], random_state=0)
    assert {e.estimator.n_components for e in inner} == {1, 2}
    assert len(outer) == len(inner) > 0
