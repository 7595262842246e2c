"""Pictures of hidden Markov models (lvmkit.plot.hmm): the sequence over its Viterbi states with
the posteriors beneath, the transition heat map, the emissions, the report sections; and that no
two pieces of text overlap, from 2 to 10 states."""

import re

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.legend import Legend

from lvmkit import GMMHMM, BernoulliHMM, CategoricalHMM, GaussianHMM, PoissonHMM
from lvmkit.plot.figures import plot_model
from lvmkit.plot.hmm import (
    emission_table,
    plot_emissions,
    plot_hmm,
    plot_sequence,
    plot_states,
    plot_transmat,
)
from lvmkit.plot.report import ReportContext, model_summary, write_report
from tests.conftest import quiet


def _chain(k: int, seed: int = 0):
    """Start and transition probabilities of k states that mostly stay."""
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.ones(k), size=k) * 0.3 + 0.7 * np.eye(k)
    return np.full(k, 1.0 / k), A / A.sum(1, keepdims=True)


def gaussian_hmm(k: int, d: int = 3, seed: int = 0) -> GaussianHMM:
    """A GaussianHMM with its parameters set (no fit): fast and exactly known."""
    model = GaussianHMM(k, covariance_type="diag", random_state=seed)
    model.startprob_, model.transmat_ = _chain(k, seed)
    model.means_ = np.arange(k)[:, None] * 3.0 + np.arange(d)[None, :]
    model.covars_ = np.full((k, d), 0.5)
    return model


def _data(model, lengths, seed=0):
    return np.concatenate(
        [model.sample(n, random_state=seed + i)[0] for i, n in enumerate(lengths)]
    )


def _renderer(fig):
    canvas = FigureCanvasAgg(fig.figure if hasattr(fig, "figure") and fig.figure else fig)
    canvas.draw()
    return canvas.get_renderer()


def text_boxes(fig):
    """(label, window extent) of every piece of text drawn on ``fig``: titles, axis labels,
    tick labels within the view, texts in the axes, and each legend as one box."""
    renderer = _renderer(fig)
    boxes = []
    for title in fig.findobj(lambda a: getattr(a, "_suptitle", None) is not None):
        boxes.append(("suptitle " + title._suptitle.get_text(), title._suptitle))
    for ax in fig.findobj(lambda a: isinstance(a, Axes)):
        view = ax.get_window_extent(renderer)
        boxes += [("title", t) for t in (ax.title, ax._left_title, ax._right_title)]
        boxes += [("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)]
        boxes += [(f"cell {t.get_text()}", t) for t in ax.texts]
        for axis, lo, hi in ((ax.xaxis, view.x0, view.x1), (ax.yaxis, view.y0, view.y1)):
            for tick in axis.get_ticklabels():
                box = tick.get_window_extent(renderer)
                center = (box.x0 + box.x1) / 2 if axis is ax.xaxis else (box.y0 + box.y1) / 2
                if lo - 1 <= center <= hi + 1:
                    boxes.append((f"tick {tick.get_text()}", tick))
    out = []
    for label, artist in boxes:
        if not artist.get_visible() or not artist.get_text().strip():
            continue
        out.append((label, artist.get_window_extent(renderer)))
    for legend in fig.findobj(lambda a: isinstance(a, Legend)):
        out.append(("legend", legend.get_window_extent(renderer)))
    return out


def assert_no_overlap(fig):
    boxes = text_boxes(fig)
    assert boxes
    clashes = []
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1 :]:
            overlap_x = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            overlap_y = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if overlap_x > 1 and overlap_y > 1:  # more than a pixel both ways
                clashes.append((a, b))
    assert not clashes, clashes[:10]
    width, height = fig.get_size_inches() * fig.dpi
    for label, box in boxes:  # nothing cut off at the edges
        assert box.x0 >= -1 and box.y0 >= -1, label
        assert box.x1 <= width + 1 and box.y1 <= height + 1, label


# ====================================================================== the sequence figure
def test_plot_states_draws_the_chosen_sequence_over_its_viterbi_states():
    model = gaussian_hmm(3)
    lengths = [30, 45, 25]
    X = _data(model, lengths)
    fig = plot_states(model, X, lengths, sequence=1, feature_names=["a", "b", "c"])
    top, bottom = fig.axes
    assert top.get_shared_x_axes().joined(top, bottom)
    rows = X[30:75]
    assert top.get_xlim() == (-0.5, 44.5) and bottom.get_xlim() == (-0.5, 44.5)
    # the first three features as lines, the sequence's own rows
    lines = top.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b", "c"]
    np.testing.assert_array_equal(lines[1].get_ydata(), rows[:, 1])
    # the background: one span per run of equal Viterbi states, in that state's colour
    states = model.predict(rows)
    spans = {}
    for collection in top.collections:
        color = tuple(np.round(collection.get_facecolor()[0][:3], 6))
        for path in collection.get_paths():
            x = path.vertices[:, 0]
            spans.setdefault(color, []).append((x.min(), x.max()))
    assert len(spans) == len(np.unique(states))
    covered = {c: sum(hi - lo for lo, hi in s) for c, s in spans.items()}
    assert sorted(round(v) for v in covered.values()) == sorted(
        np.bincount(states)[np.unique(states)]
    )
    # beneath: the posteriors, one stacked band per state, filling [0, 1]
    assert len(bottom.collections) == 3 and bottom.get_ylim() == (0.0, 1.0)
    assert "sequence 1 (45 steps)" in fig._suptitle.get_text()
    legend_texts = [t.get_text() for t in bottom.get_legend().get_texts()]
    assert legend_texts == ["0", "1", "2"]
    assert_no_overlap(fig)


def test_plot_states_on_a_subfigure_and_long_sequences_are_cut():
    from matplotlib.figure import Figure

    model = gaussian_hmm(2, d=1)
    X = _data(model, [300])
    root = Figure(figsize=(9, 4), layout="constrained")
    sub = root.subfigures(1, 1)
    out = plot_states(model, X, max_steps=100, sequence_name="walk")
    assert "sequence walk (first 100 of 300 steps)" in out._suptitle.get_text()
    assert out.axes[0].get_xlim() == (-0.5, 99.5)
    assert out.axes[0].get_ylabel() == "x0"  # one feature: named on the axis
    assert plot_states(model, X, fig=sub) is sub and len(sub.axes) == 2 and not root._localaxes


@pytest.mark.parametrize("k", [2, 5, 10])
def test_plot_hmm_is_legible_from_2_to_10_states(k):
    model = gaussian_hmm(k, seed=k)
    lengths = [80, 60]
    X = _data(model, lengths, seed=k)
    fig = plot_hmm(model, X, lengths, sequence=1, sequence_name="second")
    assert len(fig.subfigs) == 2
    left, right = fig.subfigs
    assert len(left.axes) == 2 and len(right.axes) == 1
    assert right.axes[0].get_xlabel() == "to state"
    assert len(right.axes[0].texts) == k * k
    assert_no_overlap(fig)
    assert_no_overlap(plot_transmat(model))


def test_transmat_cells_hold_the_probabilities_in_a_readable_colour():
    model = gaussian_hmm(4)
    model.transmat_ = np.array(
        [[0.97, 0.01, 0.01, 0.01], [0.5, 0.5, 0.0, 0.0], [0.0, 0.1, 0.9, 0.0], [0.25] * 4]
    )
    fig = plot_transmat(model)
    ax = fig.axes[0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    for (i, j), value in np.ndenumerate(model.transmat_):
        assert texts[i, j].get_text() == f"{value:.2f}"
    assert texts[0, 0].get_color() == "white" and texts[0, 1].get_color() == "black"
    assert texts[2, 2].get_color() == "white" and texts[3, 3].get_color() == "black"
    np.testing.assert_array_equal(ax.images[0].get_array(), model.transmat_)
    assert len(fig.axes) == 2  # the heat map and its colour bar
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("to state", "from state")


# ====================================================================== emissions
def _counts_models():
    start, A = _chain(3)
    poisson = PoissonHMM(3)
    poisson.startprob_, poisson.transmat_ = start, A
    poisson.lambdas_ = np.array([[0.5, 4.0], [9.0, 1.0], [3.0, 3.0]])
    bernoulli = BernoulliHMM(3)
    bernoulli.startprob_, bernoulli.transmat_ = start, A
    bernoulli.emissionprob_ = np.array([[0.9, 0.1, 0.5, 0.2], [0.1, 0.9, 0.5, 0.7], [0.5] * 4])
    categorical = CategoricalHMM(3)
    categorical.startprob_, categorical.transmat_ = start, A
    categorical.emissionprob_ = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    categorical.n_features_ = 3
    return {"poisson": poisson, "bernoulli": bernoulli, "categorical": categorical}


@pytest.mark.parametrize("kind", ["poisson", "bernoulli", "categorical"])
def test_emission_heat_maps_and_sequences_of_counts_and_symbols(kind):
    model = _counts_models()[kind]
    values = model.lambdas_ if kind == "poisson" else model.emissionprob_
    fig = plot_emissions(model, feature_names=["u", "v", "w", "z"][: values.shape[1]])
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), values)
    assert len(ax.texts) == values.size and ax.get_ylabel() == "state"
    assert ax.get_xlabel() == ("symbol" if kind == "categorical" else "feature")
    assert_no_overlap(fig)

    rows, states = model.sample(50, random_state=0)
    fig = plot_states(model, rows)
    top = fig.axes[0]
    if kind == "bernoulli":  # a raster: one row of ticks per feature
        assert [t.get_text() for t in top.get_yticklabels()] == ["x0", "x1", "x2", "x3"]
        assert sum(len(line.get_xdata()) for line in top.get_lines()) == int(rows.sum())
    else:  # points, no lines between them
        assert all(line.get_linestyle() == "None" for line in top.get_lines())
        np.testing.assert_array_equal(top.get_lines()[0].get_ydata(), rows[:, 0])
    assert_no_overlap(fig)
    fig = plot_sequence(model, rows, states, title="drawn")  # a sampled sequence: no posteriors
    assert len(fig.axes) == 1 and fig._suptitle.get_text() == "drawn"
    assert_no_overlap(fig)


def test_gaussian_and_gmm_emission_tables():
    model = gaussian_hmm(2, d=2)
    page = emission_table(model, ["a", "b"])
    assert "<th>state</th><th>a</th><th>b</th>" in page
    assert f"{model.means_[1, 1]:.4g} ± {np.sqrt(0.5):.3g}" in page
    gmm = GMMHMM(2, n_mix=2, covariance_type="diag")
    gmm.startprob_, gmm.transmat_ = _chain(2)
    gmm.weights_ = np.array([[0.3, 0.7], [0.5, 0.5]])
    gmm.means_ = np.arange(8.0).reshape(2, 2, 2)
    gmm.covars_ = np.full((2, 2, 2), 4.0)
    page = emission_table(gmm)
    assert page.count("<tr>") == 5 and "<td>1</td><td>0</td><td>0.500</td><td>4 ± 2</td>" in page
    assert dict(model_summary(gmm))["hidden states"] == "2"  # its (K, M) weights_ too


# ====================================================================== report and plot_model
@pytest.fixture(scope="module")
def fitted():
    truth = gaussian_hmm(3, d=2)
    lengths = [60, 50, 40]
    X = _data(truth, lengths)
    model = quiet(GaussianHMM(3, n_iter=20, random_state=0).fit, X, lengths)
    return model, X, lengths


def test_report_sections_of_a_gaussian_hmm(fitted, tmp_path):
    model, X, lengths = fitted
    context = ReportContext(feature_names=["a", "b"], lengths=lengths)
    context.extra["sequence_ids"] = ["first", "second", "third"]
    path = write_report(model, X, tmp_path / "r.html", context=context)
    page = path.read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == [
        "Summary",
        "Log-likelihood curve",
        "Sequence and states",
        "Transition matrix",
        "Emission parameters",
    ]
    assert page.count('src="data:image/png;base64,') == 3
    summary = dict(model_summary(model, X, lengths))
    assert summary["sequences"] == "3 (40 to 60 rows)"
    assert float(summary["log-likelihood of the data (nats, total)"]) == pytest.approx(
        model.score(X, lengths), rel=1e-5
    )
    assert float(summary["BIC on the data"]) == pytest.approx(model.bic(X, lengths), rel=1e-5)
    assert "final log-likelihood (nats, all training sequences)" in summary
    assert f"{len(model.lower_bounds_)} Baum-Welch iteration(s)" in page
    shares = np.bincount(model.predict(X, lengths), minlength=3) / len(X)
    for share in shares:
        assert f"<td>{share:.3f}</td>" in page  # the states table: share of rows on the path
    assert "<th>a</th><th>b</th>" in page


def test_plot_model_draws_an_hmm(fitted):
    model, X, _ = fitted
    fig = plot_model(model, X[:60], feature_names=["a", "b"])
    assert len(fig.subfigs) == 2 and fig.subfigs[1].axes[0].get_title() == "transition matrix"
