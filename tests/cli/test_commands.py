"""The command line in-process (``lvmkit.cli.main.main``): every command, outputs and errors.

test_cli.py runs the installed console script itself; these run the same code without paying
a new interpreter per command.
"""

import json

import numpy as np
import pytest
from PIL import Image

import lvmkit
from lvmkit.cli.kinds import KINDS, ModelKind, ensure_kinds, kind_of, register_kind
from lvmkit.cli.main import main
from tests.cli.conftest import one_error_line
from tests.conftest import blobs


@pytest.fixture
def cli(tmp_path, run_cli):
    run = run_cli
    X = blobs(n=150, d=3, k=3)[0]
    np.savetxt(tmp_path / "data.csv", X, delimiter=",", header="a,b,c", comments="", fmt="%.10g")
    run.X = np.loadtxt(tmp_path / "data.csv", delimiter=",", skiprows=1)  # as written
    return run


def test_fit_score_predict_sample_info(cli, tmp_path):
    out, _ = cli(
        "fit",
        "gmm",
        "data.csv",
        "-k",
        "3",
        "--covariance",
        "diag",
        "-o",
        "m.lvm",
        "--dtype",
        "float64",
        "--n-init",
        "2",
        "--json",
    )
    fit = json.loads(out)
    assert fit["class"] == "GaussianMixture" and fit["n_features"] == 3 and fit["converged"]
    model = lvmkit.load("m.lvm")
    assert model.covariance_type == "diag" and model.n_init == 2 and model.random_state == 0

    out, _ = cli("score", "m.lvm", "data.csv")
    scores = np.array(out.splitlines()[1:], dtype=float)
    assert scores.tobytes() == model.score_samples(cli.X).tobytes()

    out, _ = cli("predict", "m.lvm", "data.csv", "-o", "labels.csv")
    assert "wrote 150 rows" in out
    labels = np.loadtxt("labels.csv", skiprows=1, dtype=int)
    np.testing.assert_array_equal(labels, model.predict(cli.X))

    out, _ = cli("sample", "m.lvm", "-n", "7", "-o", "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "a,b,c"
    out, _ = cli("sample", "m.lvm", "-n", "5", "--json")
    assert np.array(json.loads(out)["samples"]).shape == (5, 3)
    out, _ = cli("sample", "m.lvm", "-n", "100", "-o", "pairs.png")
    assert (tmp_path / "pairs.png").exists()

    out, _ = cli("info", "m.lvm")
    assert "GaussianMixture" in out and "fitted on: data.csv (columns ['a', 'b', 'c'])" in out


def test_fit_on_chosen_columns_is_remembered(cli):
    cli("fit", "gmm", "data.csv", "--columns", "a,2", "-k", "2", "-o", "m.lvm")
    assert lvmkit.load("m.lvm").n_features_in_ == 2
    out, _ = cli("score", "m.lvm", "data.csv")  # the model's columns by default
    assert len(out.splitlines()) == 151
    out, err = cli("score", "m.lvm", "data.csv", "--columns", "a", code=2)
    line = one_error_line(err)
    assert "has 1 feature(s) per sample but the model was fitted on 2" in line
    assert "['a', 'c']" in line


def test_images_bernoulli_plot_and_sample_grid(cli, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        img = np.zeros((6, 6), np.uint8)
        img[:, i % 3 * 2 : i % 3 * 2 + 2] = 255
        img[rng.random((6, 6)) < 0.05] = 128
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    cli("fit", "bernoulli", "images", "--binarize", "200", "-k", "3", "-o", "b.lvm")
    model = lvmkit.load("b.lvm")
    assert model.probs_.shape == (3, 36)
    out, _ = cli("sample", "b.lvm", "-n", "16", "-o", "grid.png")
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > 100
    cli("plot", "b.lvm", "images", "-o", "components.png")
    assert (tmp_path / "components.png").stat().st_size > 5000


def test_poisson_fit_and_progress(cli, tmp_path):
    counts = np.random.default_rng(0).poisson(3.0, size=(80, 4)).astype(float)
    np.save(tmp_path / "c.npy", counts)
    out, err = cli("fit", "poisson", "c.npy", "-k", "2", "-o", "p.lvm", "--progress")
    assert "PoissonMixture fitted on 80 samples x 4 features" in out
    assert "fit poisson K=2" in err


def test_convergence_warning_is_one_line(cli):
    out, err = cli("fit", "gmm", "data.csv", "-k", "3", "--max-iter", "1", "-o", "m.lvm")
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning_lines) == 1 and "did not converge" in warning_lines[0]
    assert "Traceback" not in err and ".py" not in err


def test_select_and_plot(cli, tmp_path):
    out, _ = cli("select", "gmm", "data.csv", "-k", "1,2,3", "--plot", "bic.png", "-o", "best.lvm")
    chosen = int(out.split("bic chooses K = ")[1].split(";")[0])
    assert "saved best.lvm" in out and lvmkit.load("best.lvm").n_components == chosen
    assert (tmp_path / "bic.png").exists()
    cli("plot", "best.lvm", "data.csv", "-o", "pca.png")
    cli("plot", "best.lvm", "data.csv", "-o", "dims.svg", "--dims", "0,2")
    assert (tmp_path / "pca.png").exists() and (tmp_path / "dims.svg").exists()
    _, err = cli("plot", "best.lvm", "data.csv", "-o", "x.png", "--dims", "0", code=2)
    assert "--dims" in one_error_line(err)
    _, err = cli("plot", "best.lvm", "data.csv", "-o", "x.png", "--dims", "0,7", code=2)
    assert "out of range" in one_error_line(err)


def test_report_command(cli, tmp_path):
    cli("fit", "gmm", "data.csv", "-k", "2", "-o", "m.lvm", "--n-init", "2")
    out, _ = cli("report", "m.lvm", "data.csv", "-o", "r.html", "--json")
    assert json.loads(out)["report"] == "r.html"
    page = (tmp_path / "r.html").read_text()
    for title in ("Summary", "Training curve", "Clusters", "BIC against K", "Samples", "Restarts"):
        assert f"<h2>{title}</h2>" in page
    _, err = cli("report", "m.lvm", "data.csv", "-o", "r.pdf", code=2)
    assert "HTML" in one_error_line(err)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["fit", "gmm", "missing.csv"], ["missing.csv", "no such file"]),
        (["fit", "gmm", "data.csv", "--columns", "zz"], ["no column named 'zz'"]),
        (["fit", "gmm", "data.csv", "--covariance", "round"], ["'round'", "lvmkit fit gmm --help"]),
        (["fit", "gmm", "data.csv", "-k", "0"], ["--components", "0"]),
        (["fit", "gmm", "data.csv", "-k", "500"], ["n_components", "500"]),
        (["fit", "nosuch", "data.csv"], ["nosuch"]),
        (["fit", "gmm", "data.csv", "-o", "no/such/folder/m.lvm"], ["does not exist"]),
        (["select", "gmm", "data.csv", "-k", "0:3"], ["--components", "K >= 1"]),
        (["score", "data.csv", "data.csv"], ["not an lvmkit model file"]),
        (["info", "missing.lvm"], ["missing.lvm", "no such file"]),
        (["sample", "data.csv"], ["not an lvmkit model file"]),
        (["fit", "gmm", "data.csv", "--device", "cuda:0"], ["cuda"]),
    ],
)
def test_user_errors_are_one_line_exit_2(cli, args, fragments):
    if "cuda:0" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    _, err = cli(*args, code=2)
    line = one_error_line(err)
    for fragment in fragments:
        assert fragment in line, line


def test_output_suffix_errors(cli):
    cli("fit", "gmm", "data.csv", "-k", "2", "-o", "m.lvm")
    _, err = cli("sample", "m.lvm", "-o", "s.xyz", code=2)
    assert "-o s.xyz" in one_error_line(err)
    _, err = cli("plot", "m.lvm", "data.csv", "-o", "p.txt", code=2)
    assert ".png" in one_error_line(err)


def test_debug_reraises(cli):
    with pytest.raises(FileNotFoundError):
        main(["fit", "gmm", "missing.csv", "--debug"])


def test_help_and_version(cli):
    out, _ = cli("--help")
    for command in (
        "fit",
        "select",
        "score",
        "predict",
        "sample",
        "plot",
        "info",
        "report",
        "demo",
    ):
        assert command in out
    out, _ = cli("fit", "--help")
    assert "gmm" in out and "poisson" in out and "bernoulli" in out
    out, _ = cli("--version")
    assert lvmkit.__version__ in out


def test_demo_command_calls_the_demo(cli, monkeypatch):
    import lvmkit.demo

    seen = []
    monkeypatch.setattr(lvmkit.demo, "main", lambda argv=None: seen.append(argv) or 0)
    cli("demo", "--max-components", "2", "--out", "o")
    assert seen == [["--max-components", "2", "--out", "o"]]


def test_kind_registry_extension(cli):
    """A new kind (as the VAE will add) is one ModelKind: fit picks it up with its options."""
    import click

    from lvmkit.estimators.gaussian_mixture import GaussianMixture

    def build(options, settings):
        return GaussianMixture(n_components=options["pieces"], random_state=settings.seed)

    ensure_kinds()
    register_kind(
        ModelKind(
            name="toy",
            estimator="ToyNotRegistered",
            help="A toy kind.",
            build=build,
            options=[click.Option(["--pieces"], type=int, default=2)],
        )
    )
    try:
        out, _ = cli("fit", "toy", "data.csv", "--pieces", "3", "-o", "t.lvm", "--json")
        assert json.loads(out)["n_components"] == 3
        assert kind_of(lvmkit.load("t.lvm")).name == "gmm"
    finally:
        KINDS.pop("toy")


def test_score_with_importance_sampling(cli, tmp_path):
    # --k K: log p(x) by importance sampling, the numbers of lvmkit.log_marginal (same seed).
    X = (np.random.RandomState(0).rand(60, 12) < 0.3).astype(np.float64)
    np.save(tmp_path / "bits.npy", X)
    vae = lvmkit.VAE(latent_dim=2, hidden_sizes=(8,), epochs=2, batch_size=20, random_state=0).fit(
        X
    )
    vae.save(tmp_path / "vae.lvm")
    out, _ = cli("score", "vae.lvm", "bits.npy", "--k", "20", "--seed", "3", "--json")
    got = json.loads(out)
    ref = lvmkit.log_marginal(vae, X, k=20, random_state=3)
    assert got["score"] == "log_px" and got["k"] == 20 and got["method"] == "importance"
    np.testing.assert_allclose(got["scores"], ref.per_sample, rtol=1e-12)
    assert got["mean"] == pytest.approx(ref.mean) and got["stderr"] == pytest.approx(ref.stderr)
    out, err = cli("score", "vae.lvm", "bits.npy", "--k", "20", "--seed", "3")
    assert out.splitlines()[0] == "log_px" and len(out.splitlines()) == 61
    assert "mean log p(x)" in err and "bits/dim" in err  # the summary stays out of the CSV
    out, _ = cli("score", "vae.lvm", "bits.npy", "--k", "20", "-o", "s.csv")
    assert "wrote 60 scores to s.csv (mean log p(x)" in out
    # Not for a mixture (exact already) or a model without an encoder distribution.
    cli("fit", "gmm", "data.csv", "-k", "2", "-o", "m.lvm")
    _, err = cli("score", "m.lvm", "data.csv", "--k", "10", code=2)
    assert "exact log p(x) already" in one_error_line(err)
    lvmkit.Autoencoder(latent_dim=2, hidden_sizes=(8,), epochs=1, random_state=0).fit(X).save(
        tmp_path / "ae.lvm"
    )
    _, err = cli("score", "ae.lvm", "bits.npy", "--k", "10", code=2)
    assert "no probabilistic encoder" in one_error_line(err)


def test_advice_names_the_command_line_options_not_python_keywords(cli, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(60, 6, 6)).astype(np.uint8)
    np.save(tmp_path / "img8.npy", images)
    _, err = cli("fit", "vae", "img8.npy", "--epochs", "1", "-o", "v.lvm", code=2)
    line = one_error_line(err)
    assert (
        "--scale 255" in line
        and "--binarization dynamic" in line
        and "--likelihood gaussian" in line
    )
    assert "binarize=" not in line and "likelihood=" not in line
    # warnings too: the library's reg_covar advice names --reg-covar
    tiny = np.random.default_rng(1).normal(size=(60, 2)) * 1e-6
    np.save(tmp_path / "tiny.npy", tiny)
    _, err = cli("fit", "gmm", "tiny.npy", "-k", "2", "-o", "t.lvm")
    assert "warning: --reg-covar 1e-06 exceeds the variance" in err and "reg_covar" not in err


def test_every_option_the_advice_names_exists():
    from lvmkit.cli.main import CLI_OPTIONS

    options = {opt for kind in ensure_kinds().values() for o in kind.options for opt in o.opts}
    options |= {"--components"}  # added to every kind with components
    assert set(CLI_OPTIONS.values()) <= options, set(CLI_OPTIONS.values()) - options


@pytest.mark.slow
def test_vae_from_8_bit_images(cli, tmp_path):
    """fit vae on uint8 images (N, 8, 8) with --scale and dynamic binarization; the model file
    remembers the scaling, so score, sample and report need only the data. (In-process: the
    console script's round trip is covered by test_cli.py.)"""
    from sklearn.datasets import load_digits

    np.save(
        tmp_path / "digits.npy", (load_digits().data[:400] * 15).astype(np.uint8).reshape(-1, 8, 8)
    )
    out, _ = cli(
        "fit", "vae", "digits.npy", "--scale", "240", "--binarization", "dynamic",
        "--latent-dim", "2", "--hidden", "32", "--epochs", "2", "--network", "conv",
        "-o", "vae.lvm", "--json",
    )  # fmt: skip
    summary = json.loads(out)
    assert summary["class"] == "VAE" and summary["n_iter"] == 2
    model = lvmkit.load(tmp_path / "vae.lvm")
    assert model.input_shape_ == (8, 8)
    scores = cli("score", "vae.lvm", "digits.npy")[0].split()
    assert scores[0] == "elbo" and len(scores) == 401
    X = np.load(tmp_path / "digits.npy") / 240.0
    np.testing.assert_allclose(np.array(scores[1:], dtype=float), model.score_samples(X), rtol=1e-6)
    cli("sample", "vae.lvm", "-n", "16", "-o", "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    cli("report", "vae.lvm", "digits.npy", "-o", "r.html")
    assert "Reconstructions" in (tmp_path / "r.html").read_text()
    # Grey levels without a binarization: one line naming the fix, exit 2.
    _, err = cli(
        "fit", "vae", "digits.npy", "--scale", "240", "--epochs", "1", "-o", "x.lvm", code=2
    )
    line = one_error_line(err)
    assert "not a valid likelihood" in line and "--binarization dynamic" in line
    _, err = cli(
        "fit", "vae", "digits.npy", "--binarization", "dynamic", "--epochs", "1", "-o", "x.lvm",
        code=2,
    )  # fmt: skip
    assert "--scale 255" in one_error_line(err)
    _, err = cli("fit", "vae", "digits.npy", "--hidden", "a,b", "-o", "x.lvm", code=2)
    assert "layer widths" in err
