"""The model kinds ``lvmkit fit`` and ``lvmkit select`` know, and how to add one.

A kind is a name on the command line (``gmm``), the estimator it builds, and that estimator's own
options. ``lvmkit fit KIND DATA [OPTIONS]`` and, for kinds with a number of components,
``lvmkit select KIND DATA --components 1:10`` are generated from :data:`KINDS`; every kind also
gets the shared options (``--columns``, ``--key``, ``--binarize``, ``--seed``, ``--device``,
``--json``, ``-o``).

Adding a kind is one function returning a :class:`ModelKind`, registered once. For the VAE::

    # lvmkit/cli/vae_kind.py
    import click
    from lvmkit.cli.kinds import ModelKind

    def vae_kind() -> ModelKind:
        def build(options, settings):
            from lvmkit.estimators.vae import VAE
            return VAE(options["latent_dim"], encoder=options["network"],
                       decoder=options["network"], likelihood=options["likelihood"],
                       epochs=options["epochs"], random_state=settings.seed,
                       device=settings.device)
        return ModelKind(
            name="vae", estimator="VAE",
            help="Variational autoencoder (lvmkit.VAE) trained on the ELBO: vectors or images.",
            options=[
                click.Option(["--latent-dim"], type=click.IntRange(1),
                             default=2, show_default=True),
                click.Option(["--network"], type=click.Choice(["mlp", "conv"]), default="mlp"),
                click.Option(["--likelihood"], type=click.Choice(["bernoulli", "gaussian"]),
                             default="bernoulli"),
                click.Option(["--epochs"], type=click.IntRange(1), default=100, show_default=True),
            ],
            build=build, score_name="elbo", flatten=False,
        )

then one line in :func:`builtin_kinds` below (``kinds.append(vae_kind())``), or
``register_kind(vae_kind())`` before the command line runs. Option values reach ``build`` by
their parameter names (``--latent-dim`` -> ``options["latent_dim"]``). ``build`` imports the
estimator itself, so a kind costs nothing until it is fitted. ``flatten=False`` hands the
estimator images as (n, H, W) instead of (n, H*W); ``score_name`` names the column of
``lvmkit score`` (a VAE's ``score_samples`` is a bound, not log p(x)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click

from lvmkit.cli.common import UserError


@dataclass
class FitSettings:
    """The shared options every kind's ``build`` receives."""

    seed: int = 0
    device: str | None = None


@dataclass
class ModelKind:
    """One model kind of the command line.

    name : the word on the command line (``gmm``)
    estimator : the registered class name of what it builds (``GaussianMixture``), used to find
        the kind of a loaded model
    help : one paragraph for ``lvmkit fit NAME --help``
    options : the kind's own ``click.Option`` objects; their values reach ``build`` by the
        option's parameter name
    build : ``build(options: dict, settings: FitSettings) -> estimator`` (unfitted)
    has_components : whether the estimator has ``n_components`` (then ``--components/-k`` is
        added to ``fit``, and ``select`` is offered)
    score_name : what ``score_samples`` returns, the column name of ``lvmkit score``
    flatten : whether the estimator gets (n_samples, n_features) (the default: images are
        flattened) or the samples in their own shape, e.g. (n, H, W) images for a
        convolutional network
    own_progress : the estimator draws its own progress bar (its ``verbose`` parameter is set
        from ``--progress``) instead of the EM iteration bar
    sequences : the rows are sequences (a hidden Markov model): ``fit``, ``predict``, ``score``,
        ``plot`` and ``report`` take ``--lengths-column`` (the column naming each row's sequence,
        remembered in the saved model) and hand the estimator ``(X, lengths)``; ``score`` writes
        one log-likelihood per sequence and ``sample`` one sequence with its states
    label_name : what ``predict`` (and ``sample``) call a row's label (``state`` for an HMM)
    missing_values : the estimator takes NaN for a missing value: the commands read a data file's
        missing cells (empty, NA, NaN) as NaN for it and the model decides, instead of refusing
        the file
    split_rows : under torchrun, each rank fits its share of the rows of a file loaded whole
        (the estimator adds the ranks' statistics), as the mixtures with ``has_components`` do
    documents : the rows are documents (a topic model): DATA is text, a folder of ``.txt`` files
        or a file of one document per line, counted on a vocabulary by the kind's
        ``--stop-words``, ``--min-df``, ``--max-df``, ``--max-features`` and ``--encoding``
        (:func:`lvmkit.data.read_documents`), or a table of counts (CSV, NumPy, Parquet;
        documents as rows, its column names the words); ``fit`` stores the vocabulary in the
        model (``vocabulary_``), and the commands that use the model count new text on it
    """

    name: str
    estimator: str
    help: str
    options: list[click.Option]
    build: Callable
    has_components: bool = False
    default_components: int = 1
    score_name: str = "log_likelihood"
    flatten: bool = True
    own_progress: bool = False
    sequences: bool = False
    label_name: str = "label"
    missing_values: bool = False
    split_rows: bool = False
    documents: bool = False


KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    """Make ``kind`` available to ``lvmkit fit`` (and ``select``)."""
    KINDS[kind.name] = kind
    return kind


def kind_of(model) -> ModelKind | None:
    """The kind that builds estimators of ``model``'s class (None when no kind does)."""
    ensure_kinds()
    names = {klass.__name__ for klass in type(model).__mro__}
    for kind in KINDS.values():
        if kind.estimator in names:
            return kind
    return None


def ensure_kinds() -> dict[str, ModelKind]:
    if not KINDS:
        for kind in builtin_kinds():
            KINDS.setdefault(kind.name, kind)
    return KINDS


def builtin_kinds() -> list[ModelKind]:
    """The kinds lvmkit ships. Add a kind here with one line."""
    kinds = mixture_kinds()
    kinds.append(vae_kind())
    kinds.append(hmm_kind())
    kinds += linear_kinds()
    kinds.append(lda_kind())
    return kinds


# ====================================================================== VAE
def _hidden_sizes(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r} is not a list of layer widths, e.g. 200,200.")
    return sizes


def vae_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.vae import VAE

        binarize = None if options["binarization"] == "none" else options["binarization"]
        return VAE(
            latent_dim=options["latent_dim"],
            encoder=options["network"],
            decoder=options["network"],
            hidden_sizes=options["hidden"],
            likelihood=options["likelihood"],
            binarize=binarize,
            beta=options["beta"],
            objective=options["objective"],
            k=options["k"],
            epochs=options["epochs"],
            batch_size=options["batch_size"],
            lr=options["lr"],
            validation_fraction=options["validation_fraction"],
            patience=options["patience"],
            checkpoint=options["checkpoint"],
            random_state=settings.seed,
            device=settings.device,
            dtype=options["dtype"],
        )

    return ModelKind(
        name="vae",
        estimator="VAE",
        help="Variational autoencoder (lvmkit.VAE) trained on the ELBO: vectors or images. For "
        "8-bit images use --scale 255 with --binarization dynamic.",
        options=[
            click.Option(
                ["--latent-dim"],
                type=click.IntRange(1),
                default=2,
                show_default=True,
                help="Dimension of z.",
            ),
            click.Option(
                ["--network"],
                type=click.Choice(["mlp", "conv"]),
                default="mlp",
                show_default=True,
                help="Encoder and decoder: MLPs, or convolutions (image data).",
            ),
            click.Option(
                ["--hidden"],
                default="200,200",
                show_default=True,
                callback=_hidden_sizes,
                help="Hidden layer widths, comma-separated.",
            ),
            click.Option(
                ["--likelihood"],
                type=click.Choice(["bernoulli", "gaussian", "gaussian-learned", "poisson"]),
                default="bernoulli",
                show_default=True,
                help="p(x | z).",
            ),
            click.Option(
                ["--binarization"],
                type=click.Choice(["none", "dynamic", "static", "threshold"]),
                default="none",
                show_default=True,
                help="For a Bernoulli likelihood of data in [0, 1]: 'dynamic' resamples every "
                "epoch.",
            ),
            click.Option(
                ["--beta"],
                type=click.FloatRange(0),
                default=1.0,
                show_default=True,
                help="KL weight.",
            ),
            click.Option(
                ["--objective"],
                type=click.Choice(["elbo", "iwae"]),
                default="elbo",
                show_default=True,
            ),
            click.Option(
                ["--k"],
                type=click.IntRange(1),
                default=1,
                show_default=True,
                help="Samples of z per data point in training.",
            ),
            click.Option(["--epochs"], type=click.IntRange(0), default=100, show_default=True),
            click.Option(["--batch-size"], type=click.IntRange(1), default=100, show_default=True),
            click.Option(
                ["--lr"], type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True
            ),
            click.Option(
                ["--validation-fraction"],
                type=click.FloatRange(0, 1, max_open=True),
                default=0.1,
                show_default=True,
                help="Held out for early stopping.",
            ),
            click.Option(["--patience"], type=click.IntRange(1), default=10, show_default=True),
            click.Option(
                ["--checkpoint"],
                type=click.Path(dir_okay=False),
                default=None,
                help="Checkpoint file written every epoch.",
            ),
            click.Option(
                ["--dtype"],
                type=click.Choice(["float32", "float64"]),
                default="float32",
                show_default=True,
            ),
        ],
        build=build,
        score_name="elbo",
        flatten=False,
        own_progress=True,
    )


# ====================================================================== mixtures
def _mixture_options(init_choices=("kmeans", "kmeans++", "random", "random_from_data", "lecture")):
    return [
        click.Option(
            ["--n-init"],
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help="Restarts (initialisations); the best is kept.",
        ),
        click.Option(
            ["--max-iter"],
            type=click.IntRange(0),
            default=100,
            show_default=True,
            help="EM iterations per restart.",
        ),
        click.Option(
            ["--tol"],
            type=click.FloatRange(0),
            default=1e-3,
            show_default=True,
            help="Stop when the bound (nats/sample) changes by less.",
        ),
        click.Option(
            ["--init", "init_params"],
            type=click.Choice(init_choices),
            default="kmeans",
            show_default=True,
            help="How the components start.",
        ),
        click.Option(
            ["--algorithm"],
            type=click.Choice(["em", "gem", "gradient", "stepwise"]),
            default="em",
            show_default=True,
            help="Closed-form EM, generalised EM, gradient ascent, or stepwise (online) "
            "EM over mini-batches.",
        ),
        click.Option(
            ["--batch-size"],
            type=click.IntRange(1),
            default=10_000,
            show_default=True,
            help="Rows per mini-batch of --algorithm stepwise.",
        ),
        click.Option(
            ["--dtype"],
            type=click.Choice(["float32", "float64"]),
            default="float32",
            show_default=True,
            help="Compute precision of the E-step.",
        ),
        click.Option(
            ["--chunk-size"],
            type=click.IntRange(1),
            default=None,
            help="Rows per E-step chunk (default: sized from memory).",
        ),
    ]


def _mixture_common(options: dict, settings: FitSettings) -> dict:
    return dict(
        n_components=options["components"],
        n_init=options["n_init"],
        max_iter=options["max_iter"],
        tol=options["tol"],
        init_params=options["init_params"],
        algorithm=options["algorithm"],
        dtype=options["dtype"],
        chunk_size=options["chunk_size"],
        random_state=settings.seed,
        device=settings.device,
        batch_size=options["batch_size"],
    )


def gmm_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.gaussian_mixture import GaussianMixture

        return GaussianMixture(
            covariance_type=options["covariance"],
            reg_covar=options["reg_covar"],
            **_mixture_common(options, settings),
        )

    return ModelKind(
        name="gmm",
        estimator="GaussianMixture",
        help="Gaussian mixture (lvmkit.GaussianMixture) fitted by EM: real-valued features.",
        options=[
            click.Option(
                ["--covariance"],
                type=click.Choice(["full", "tied", "diag", "spherical"]),
                default="full",
                show_default=True,
                help="Covariance structure.",
            ),
            click.Option(
                ["--reg-covar"],
                type=click.FloatRange(0),
                default=1e-6,
                show_default=True,
                help="Added to every covariance's diagonal.",
            ),
            *_mixture_options(),
        ],
        build=build,
        has_components=True,
        missing_values=True,
    )


def poisson_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.discrete_mixtures import PoissonMixture

        return PoissonMixture(min_rate=options["min_rate"], **_mixture_common(options, settings))

    return ModelKind(
        name="poisson",
        estimator="PoissonMixture",
        help="Mixture of independent Poisson counts (lvmkit.PoissonMixture): non-negative "
        "integers.",
        options=[
            click.Option(
                ["--min-rate"],
                type=click.FloatRange(0, min_open=True),
                default=1e-6,
                show_default=True,
                help="Lower bound on every rate.",
            ),
            *_mixture_options(),
        ],
        build=build,
        has_components=True,
    )


def bernoulli_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.discrete_mixtures import BernoulliMixture

        return BernoulliMixture(min_prob=options["min_prob"], **_mixture_common(options, settings))

    return ModelKind(
        name="bernoulli",
        estimator="BernoulliMixture",
        help="Mixture of independent Bernoulli features (lvmkit.BernoulliMixture): 0/1 data "
        "(use --binarize for grey levels).",
        options=[
            click.Option(
                ["--min-prob"],
                type=click.FloatRange(0, 0.5, min_open=True),
                default=1e-6,
                show_default=True,
                help="Probabilities are kept in [p, 1 - p].",
            ),
            *_mixture_options(),
        ],
        build=build,
        has_components=True,
    )


def mixture_kinds() -> list[ModelKind]:
    return [gmm_kind(), poisson_kind(), bernoulli_kind()]


# ====================================================================== hidden Markov models
HMM_EMISSIONS = {
    "gaussian": "GaussianHMM",
    "poisson": "PoissonHMM",
    "bernoulli": "BernoulliHMM",
    "categorical": "CategoricalHMM",
    "gmm": "GMMHMM",
}


def hmm_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators import hmm

        emission = options["emission"]
        covariance = options["covariance_type"]
        if covariance is not None and emission not in ("gaussian", "gmm"):
            raise UserError(
                f"--covariance-type applies to --emission gaussian (or gmm), not {emission}; "
                "drop it."
            )
        if options["n_mix"] is not None and emission != "gmm":
            raise UserError(f"--n-mix applies to --emission gmm, not {emission}; drop it.")
        common = dict(
            n_components=options["states"],
            n_iter=options["n_iter"],
            tol=options["tol"],
            n_init=options["n_init"],
            dtype=options["dtype"],
            random_state=settings.seed,
            device=settings.device,
        )
        if emission in ("gaussian", "gmm"):
            common["covariance_type"] = covariance or "diag"
        if emission == "gmm":
            common["n_mix"] = options["n_mix"] or 2
        return getattr(hmm, HMM_EMISSIONS[emission])(**common)

    return ModelKind(
        name="hmm",
        estimator="BaseHMM",  # every HMM class: GaussianHMM, PoissonHMM, ... GMMHMM
        help="Hidden Markov model (lvmkit.GaussianHMM, PoissonHMM, BernoulliHMM, CategoricalHMM, "
        "GMMHMM) fitted by Baum-Welch: rows in time order, one or several sequences. "
        "--lengths-column names the column holding each row's sequence id (the rows of a "
        "sequence together, in time order); without it the whole file is one sequence. "
        "Example: lvmkit fit hmm steps.csv --states 4 --lengths-column id -o hmm.lvm",
        options=[
            click.Option(
                ["--states", "-k", "--components", "states"],
                type=click.IntRange(1),
                default=2,
                show_default=True,
                help="Number of hidden states K.",
            ),
            click.Option(
                ["--emission"],
                type=click.Choice(list(HMM_EMISSIONS)),
                default="gaussian",
                show_default=True,
                help="What a state emits: real-valued features (gaussian, or a Gaussian mixture "
                "per state: gmm), counts (poisson), 0/1 features (bernoulli), or one column of "
                "symbols 0..M-1 (categorical).",
            ),
            click.Option(
                ["--covariance-type", "--covariance", "covariance_type"],
                type=click.Choice(["full", "tied", "diag", "spherical"]),
                default=None,
                help="Covariance structure of --emission gaussian or gmm.  [default: diag]",
            ),
            click.Option(
                ["--n-mix"],
                type=click.IntRange(1),
                default=None,
                help="Gaussian components per state of --emission gmm.  [default: 2]",
            ),
            click.Option(
                ["--n-iter"],
                type=click.IntRange(0),
                default=100,
                show_default=True,
                help="Most Baum-Welch (EM) iterations per restart.",
            ),
            click.Option(
                ["--tol"],
                type=click.FloatRange(0),
                default=1e-2,
                show_default=True,
                help="Stop when the total log-likelihood (nats) changes by less.",
            ),
            click.Option(
                ["--n-init"],
                type=click.IntRange(1),
                default=1,
                show_default=True,
                help="Restarts (initialisations); the best is kept.",
            ),
            click.Option(
                ["--dtype"],
                type=click.Choice(["float32", "float64"]),
                default="float32",
                show_default=True,
                help="Compute precision of the E-step.",
            ),
        ],
        build=build,
        sequences=True,
        label_name="state",
    )


# ====================================================================== linear-Gaussian models
def _latent_dimension(ctx, param, value):
    """``--components`` of ppca: an int >= 1, or 'mle'."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "mle":
        return "mle"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter(
        f"{value!r} is not a latent dimension: give an int >= 1 (e.g. 3), or 'mle' to choose it "
        "by Minka's evidence."
    )


def _chunk_option():
    return click.Option(
        ["--chunk-size"],
        type=click.IntRange(1),
        default=None,
        help="Rows per chunk of the statistics pass (default: sized from memory).",
    )


def _dtype_option():
    return click.Option(
        ["--dtype"],
        type=click.Choice(["float64", "float32"]),
        default="float64",
        show_default=True,
        help="Compute precision of EM's posteriors (the statistics are float64).",
    )


def ppca_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.ppca import ProbabilisticPCA

        return ProbabilisticPCA(
            n_components=options["components"],
            solver=options["solver"],
            init=options["init"],
            tol=options["tol"],
            max_iter=options["max_iter"],
            dtype=options["dtype"],
            chunk_size=options["chunk_size"],
            random_state=settings.seed,
            device=settings.device,
        )

    return ModelKind(
        name="ppca",
        estimator="ProbabilisticPCA",
        help="Probabilistic PCA (lvmkit.ProbabilisticPCA): real-valued features, a q-dimensional "
        "Gaussian latent space and isotropic noise; the maximum-likelihood fit in closed form, "
        "or by EM when values are missing (empty cells, NA: marginalized exactly). "
        "Example: lvmkit fit ppca data.csv --components 3 -o ppca.lvm",
        options=[
            click.Option(
                ["--components", "-k", "components"],
                default="2",
                show_default=True,
                callback=_latent_dimension,
                metavar="Q|mle",
                help="Latent dimension q (below the number of features), or 'mle' to choose it "
                "by Minka's Laplace-approximated evidence (complete data).",
            ),
            click.Option(
                ["--solver"],
                type=click.Choice(["auto", "eigen", "em"]),
                default="auto",
                show_default=True,
                help="The closed form (eigen; complete data), EM, or auto: the closed form "
                "unless values are missing.",
            ),
            click.Option(
                ["--init"],
                type=click.Choice(["pca", "random"]),
                default="pca",
                show_default=True,
                help="EM's start: the closed form of the data with gaps filled by column means, "
                "or random loadings (--seed).",
            ),
            click.Option(
                ["--max-iter"],
                type=click.IntRange(1),
                default=1000,
                show_default=True,
                help="Most EM iterations.",
            ),
            click.Option(
                ["--tol"],
                type=click.FloatRange(0),
                default=1e-6,
                show_default=True,
                help="EM stops when the log-likelihood (nats/sample) changes by less.",
            ),
            _dtype_option(),
            _chunk_option(),
        ],
        build=build,
        missing_values=True,
        split_rows=True,
    )


def fa_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.factor import FactorAnalysis

        rotation = None if options["rotation"] == "none" else options["rotation"]
        return FactorAnalysis(
            n_components=options["components"],
            rotation=rotation,
            tol=options["tol"],
            max_iter=options["max_iter"],
            dtype=options["dtype"],
            device=settings.device,
            chunk_size=options["chunk_size"],
        )

    return ModelKind(
        name="fa",
        estimator="FactorAnalysis",
        help="Factor analysis (lvmkit.FactorAnalysis) fitted by EM: real-valued features, q "
        "Gaussian factors and a noise variance per feature; missing values (empty cells, NA) "
        "are marginalized exactly. "
        "Example: lvmkit fit fa data.csv --components 2 --rotation varimax -o fa.lvm",
        options=[
            click.Option(
                ["--components", "-k", "components"],
                type=click.IntRange(1),
                default=2,
                show_default=True,
                help="Number of factors q (below the number of features).",
            ),
            click.Option(
                ["--rotation"],
                type=click.Choice(["none", "varimax", "quartimax"]),
                default="none",
                show_default=True,
                help="Rotate the fitted loadings (the likelihood does not change).",
            ),
            click.Option(
                ["--max-iter"],
                type=click.IntRange(1),
                default=1000,
                show_default=True,
                help="Most EM iterations.",
            ),
            click.Option(
                ["--tol"],
                type=click.FloatRange(0),
                default=1e-2,
                show_default=True,
                help="Stop when the total log-likelihood (nats) changes by less.",
            ),
            _dtype_option(),
            _chunk_option(),
        ],
        build=build,
        missing_values=True,
        split_rows=True,
    )


def mfa_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.mfa import MixtureOfFactorAnalyzers

        return MixtureOfFactorAnalyzers(
            n_components=options["components"],
            n_factors=options["factors"],
            noise=options["noise"],
            tol=options["tol"],
            reg_covar=options["reg_covar"],
            max_iter=options["max_iter"],
            n_init=options["n_init"],
            init_params=options["init_params"],
            dtype=options["dtype"],
            chunk_size=options["chunk_size"],
            random_state=settings.seed,
            device=settings.device,
        )

    return ModelKind(
        name="mfa",
        estimator="MixtureOfFactorAnalyzers",
        help="Mixture of factor analyzers (lvmkit.MixtureOfFactorAnalyzers) fitted by EM: "
        "real-valued features, K Gaussian components whose covariances are low rank plus "
        "diagonal (W_k W_k^T + Psi_k), each with q factors; missing values (empty cells, NA) "
        "are marginalized exactly. "
        "Example: lvmkit fit mfa data.csv --components 3 --factors 2 -o mfa.lvm",
        options=[
            click.Option(
                ["--components", "-k", "components"],
                type=click.IntRange(1),
                default=1,
                show_default=True,
                help="Number of mixture components K.",
            ),
            click.Option(
                ["--factors", "-q", "factors"],
                type=click.IntRange(1),
                default=2,
                show_default=True,
                help="Factors q of every component (below the number of features).",
            ),
            click.Option(
                ["--noise"],
                type=click.Choice(["diagonal", "isotropic"]),
                default="diagonal",
                show_default=True,
                help="A noise variance per feature (factor analyzers), or one per component "
                "(a mixture of probabilistic PCAs).",
            ),
            click.Option(
                ["--n-init"],
                type=click.IntRange(1),
                default=1,
                show_default=True,
                help="Restarts (initialisations); the best is kept.",
            ),
            click.Option(
                ["--max-iter"],
                type=click.IntRange(1),
                default=100,
                show_default=True,
                help="EM iterations per restart.",
            ),
            click.Option(
                ["--tol"],
                type=click.FloatRange(0),
                default=1e-3,
                show_default=True,
                help="Stop when the log-likelihood (nats/sample) changes by less.",
            ),
            click.Option(
                ["--init", "init_params"],
                type=click.Choice(["kmeans", "k-means++", "random_from_data", "random"]),
                default="kmeans",
                show_default=True,
                help="How rows are first assigned to components (each then starts at the "
                "probabilistic-PCA solution of its rows).",
            ),
            click.Option(
                ["--reg-covar"],
                type=click.FloatRange(0, min_open=True),
                default=1e-6,
                show_default=True,
                help="Floor of every noise variance.",
            ),
            _dtype_option(),
            _chunk_option(),
        ],
        build=build,
        missing_values=True,
        split_rows=True,
    )


def linear_kinds() -> list[ModelKind]:
    return [ppca_kind(), fa_kind(), mfa_kind()]


# ====================================================================== topic models
def _document_frequency(ctx, param, value):
    """``--min-df`` / ``--max-df``: a number of documents (an int, e.g. 2) or a share of them (a
    float in [0, 1], e.g. 0.95)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        number = int(text) if text.isdigit() else float(text)
    except ValueError:
        number = None
    if isinstance(number, int) and number >= 1:
        return number
    if isinstance(number, float) and 0.0 <= number <= 1.0:
        return number
    raise click.BadParameter(
        f"{value!r} is not a document frequency: give a number of documents (an int >= 1, e.g. "
        "2) or a share of them (a float in [0, 1], e.g. 0.95)."
    )


def lda_kind() -> ModelKind:
    def build(options, settings):
        from lvmkit.estimators.lda import LatentDirichletAllocation

        return LatentDirichletAllocation(
            n_components=options["topics"],
            doc_topic_prior=options["doc_topic_prior"],
            topic_word_prior=options["topic_word_prior"],
            learning_method=options["method"],
            max_iter=options["max_iter"],
            batch_size=options["batch_size"],
            random_state=settings.seed,
            device=settings.device,
            dtype=options["dtype"],
        )

    return ModelKind(
        name="lda",
        estimator="LatentDirichletAllocation",
        help="Latent Dirichlet allocation (lvmkit.LatentDirichletAllocation), a topic model fitted "
        "by variational Bayes: DATA is text, a folder of .txt files (one document each) or a "
        "text file with one document per line, whose words are counted (stop words and rare "
        "or common words left out); or a table of word counts (.csv, .npy, .parquet; documents "
        "as rows, the column names the words). The vocabulary is saved with the model. "
        "Example: lvmkit fit lda articles/ --topics 20 -o lda.lvm",
        options=[
            click.Option(
                ["--topics", "-k", "--components", "topics"],
                type=click.IntRange(1),
                default=10,
                show_default=True,
                help="Number of topics K.",
            ),
            click.Option(
                ["--stop-words"],
                type=click.Choice(["english", "none"], case_sensitive=False),
                default="english",
                show_default=True,
                help="Text: leave out scikit-learn's English stop words, or keep every word.",
            ),
            click.Option(
                ["--min-df"],
                default="2",
                show_default=True,
                callback=_document_frequency,
                metavar="N|SHARE",
                help="Text: keep the words in at least N documents (an int) or a share of them "
                "(a float, e.g. 0.01).",
            ),
            click.Option(
                ["--max-df"],
                default="0.95",
                show_default=True,
                callback=_document_frequency,
                metavar="N|SHARE",
                help="Text: keep the words in at most N documents (an int) or a share of them "
                "(a float; 1.0 keeps them all).",
            ),
            click.Option(
                ["--max-features"],
                type=click.IntRange(1),
                default=None,
                help="Text: keep only the most frequent words (default: all that pass the "
                "filters).",
            ),
            click.Option(
                ["--encoding"],
                default="utf-8",
                show_default=True,
                help="Text: the files' encoding (e.g. latin-1).",
            ),
            click.Option(
                ["--method"],
                type=click.Choice(["batch", "online"]),
                default="batch",
                show_default=True,
                help="Batch variational Bayes (every document, every pass) or online (stepwise, "
                "one mini-batch of --batch-size documents per step).",
            ),
            click.Option(
                ["--max-iter"],
                type=click.IntRange(0),
                default=10,
                show_default=True,
                help="Passes over the documents.",
            ),
            click.Option(
                ["--batch-size"],
                type=click.IntRange(1),
                default=128,
                show_default=True,
                help="Documents per step of --method online.",
            ),
            click.Option(
                ["--doc-topic-prior"],
                type=click.FloatRange(0, min_open=True),
                default=None,
                help="α, the Dirichlet prior of every document's topic proportions.  "
                "[default: 1/K]",
            ),
            click.Option(
                ["--topic-word-prior"],
                type=click.FloatRange(0, min_open=True),
                default=None,
                help="η, the Dirichlet prior of every topic's word distribution.  [default: 1/K]",
            ),
            click.Option(
                ["--dtype"],
                type=click.Choice(["float32", "float64"]),
                default="float32",
                show_default=True,
                help="Compute precision of the E-step (the statistics are float64).",
            ),
        ],
        build=build,
        split_rows=True,
        documents=True,
    )
