"""The real ``lvmkit`` console script, run in a subprocess: every command and its error paths.

Each run pays Python's start-up and the import of torch and scikit-learn (3-5 s on a loaded
2-core machine): the core round trip, the error paths (exit status, one line on stderr, no
traceback) and the launchers run the real script; the other commands of these files run
in-process (``in_process``), as test_commands.py's do.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import lvmkit
from tests.conftest import blobs

SCRIPT = Path(sys.executable).parent / "lvmkit"

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason=f"console script not installed at {SCRIPT} (pip install -e .)"
)


def lvmkit_cli(*args, cwd, check_exit=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("LVMKIT_DEBUG", None)
    result = subprocess.run(
        [str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check_exit is not None:
        assert result.returncode == check_exit, (result.stdout, result.stderr)
    return result


def in_process(*args, cwd, check_exit=None):
    """The same command run in this process (no start-up of a new interpreter): for the
    round-trip tests whose subject is the command, not the console script; the result has
    ``returncode``, ``stdout`` and ``stderr`` as :func:`lvmkit_cli`'s."""
    from lvmkit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(previous)
    result = types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check_exit is not None:
        assert result.returncode == check_exit, (result.stdout, result.stderr)
    return result


def assert_user_error(result, *fragments):
    """Exit status 2, one line 'error: ...' on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a 2-feature CSV (header 'height,width') and a GMM fitted by the CLI."""
    folder = tmp_path_factory.mktemp("cli")
    X = blobs(n=240, d=2, k=3)[0]
    np.savetxt(
        folder / "data.csv", X, delimiter=",", header="height,width", comments="", fmt="%.10g"
    )
    result = lvmkit_cli(
        "fit",
        "gmm",
        "data.csv",
        "--components",
        "3",
        "--covariance",
        "full",
        "-o",
        "model.lvm",
        "--json",
        "--progress",
        cwd=folder,
        check_exit=0,
    )
    summary = json.loads(result.stdout)
    assert summary["model"] == "model.lvm" and summary["class"] == "GaussianMixture"
    assert summary["n_components"] == 3 and summary["n_samples"] == 240
    assert "fit gmm" in result.stderr  # the progress bar
    return folder


# ====================================================================== core round trip
def test_fit_then_score_matches_python_bitwise(workdir):
    result = lvmkit_cli("score", "model.lvm", "data.csv", cwd=workdir, check_exit=0)
    lines = result.stdout.splitlines()
    assert lines[0] == "log_likelihood"
    scores = np.array([float(v) for v in lines[1:]])
    model = lvmkit.load(workdir / "model.lvm")
    X = np.loadtxt(workdir / "data.csv", delimiter=",", skiprows=1)
    expected = model.score_samples(X)
    assert scores.tobytes() == expected.tobytes()


@pytest.mark.slow
def test_score_json_and_file(workdir):
    result = in_process(
        "score", "model.lvm", "data.csv", "--json", "-o", "scores.csv", cwd=workdir, check_exit=0
    )
    out = json.loads(result.stdout)
    assert out["n_samples"] == 240 and len(out["scores"]) == 240
    assert np.isclose(out["mean"], np.mean(out["scores"]))
    assert (workdir / "scores.csv").read_text().startswith("log_likelihood\n")


@pytest.mark.slow
def test_predict_labels_and_probabilities(workdir):
    labels = in_process("predict", "model.lvm", "data.csv", cwd=workdir, check_exit=0)
    lines = labels.stdout.splitlines()
    assert lines[0] == "label" and len(lines) == 241
    assert set(lines[1:]) <= {"0", "1", "2"}
    proba = in_process(
        "predict", "model.lvm", "data.csv", "--proba", "--json", cwd=workdir, check_exit=0
    )
    P = np.array(json.loads(proba.stdout)["probabilities"])
    assert P.shape == (240, 3) and np.allclose(P.sum(1), 1)
    assert (P.argmax(1) == np.array(lines[1:], dtype=int)).all()


@pytest.mark.slow
def test_sample_csv_and_png(workdir):
    csv = in_process("sample", "model.lvm", "-n", "10", "--seed", "1", cwd=workdir, check_exit=0)
    lines = csv.stdout.splitlines()
    assert lines[0] == "height,width" and len(lines) == 11
    png = in_process(
        "sample", "model.lvm", "-n", "64", "-o", "samples.png", cwd=workdir, check_exit=0
    )
    assert "wrote 64 samples" in png.stdout
    assert (workdir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_plot_and_info(workdir):
    in_process("plot", "model.lvm", "data.csv", "-o", "clusters.png", cwd=workdir, check_exit=0)
    assert (workdir / "clusters.png").stat().st_size > 10_000
    info = in_process("info", "model.lvm", "--json", cwd=workdir, check_exit=0)
    out = json.loads(info.stdout)
    assert out["class"] == "GaussianMixture" and out["format_version"] == 1
    assert out["fitted"]["n_components"] == 3 and out["metadata"]["kind"] == "gmm"
    assert out["metadata"]["data"]["feature_names"] == ["height", "width"]
    text = in_process("info", "model.lvm", cwd=workdir, check_exit=0).stdout
    assert "GaussianMixture" in text and "components: 3" in text


# ====================================================================== error paths
def test_missing_data_file(workdir):
    assert_user_error(lvmkit_cli("fit", "gmm", "nope.csv", cwd=workdir), "nope.csv", "no such file")


@pytest.mark.slow
def test_bad_column(workdir):
    assert_user_error(
        lvmkit_cli("fit", "gmm", "data.csv", "--columns", "height,depth", cwd=workdir),
        "data.csv",
        "no column named 'depth'",
        "'height', 'width'",
    )


def test_bad_option_value(workdir):
    line = assert_user_error(
        lvmkit_cli("fit", "gmm", "data.csv", "--covariance", "round", cwd=workdir),
        "--covariance",
        "'round'",
    )
    assert "lvmkit fit gmm --help" in line


@pytest.mark.slow
def test_unknown_option_and_kind(workdir):
    assert_user_error(
        lvmkit_cli("fit", "gmm", "data.csv", "--frobnicate", cwd=workdir), "--frobnicate"
    )
    assert_user_error(lvmkit_cli("fit", "kmeans", "data.csv", cwd=workdir), "kmeans")
    assert_user_error(
        lvmkit_cli("select", "gmm", "data.csv", "--components", "3:x", cwd=workdir),
        "--components",
        "LOW:HIGH",
    )


@pytest.mark.slow
def test_not_a_model_and_corrupted_model(workdir):
    assert_user_error(
        lvmkit_cli("score", "data.csv", "data.csv", cwd=workdir),
        "data.csv: not an lvmkit model file",
    )
    raw = bytearray((workdir / "model.lvm").read_bytes())
    raw[-3] ^= 0xFF
    (workdir / "corrupt.lvm").write_bytes(bytes(raw))
    assert_user_error(lvmkit_cli("info", "corrupt.lvm", cwd=workdir), "corrupt.lvm", "checksum")


@pytest.mark.slow
def test_wrong_number_of_features_and_bad_cell(workdir):
    assert_user_error(
        lvmkit_cli("score", "model.lvm", "data.csv", "--columns", "height", cwd=workdir),
        "has 1 feature(s)",
        "fitted on 2",
        "--columns",
    )
    (workdir / "bad.csv").write_text("height,width\n1,2\n3,oops\n")
    assert_user_error(
        lvmkit_cli("predict", "model.lvm", "bad.csv", cwd=workdir),
        "bad.csv: row 3, column 2 ('width') is 'oops', not a number",
    )


@pytest.mark.slow
def test_debug_shows_the_traceback(workdir):
    result = lvmkit_cli("fit", "gmm", "nope.csv", "--debug", cwd=workdir)
    assert result.returncode != 0 and "Traceback" in result.stderr


# ====================================================================== the other commands
@pytest.mark.slow
def test_select(workdir):
    result = in_process(
        "select",
        "gmm",
        "data.csv",
        "--components",
        "1:4",
        "--criterion",
        "bic",
        "-o",
        "best.lvm",
        "--table",
        "table.csv",
        "--plot",
        "bic.png",
        "--json",
        cwd=workdir,
        check_exit=0,
    )
    out = json.loads(result.stdout)
    assert out["best_n_components"] == 3 and len(out["table"]) == 4
    assert lvmkit.load(workdir / "best.lvm").n_components == 3
    assert (workdir / "table.csv").read_text().startswith("n_components,")
    assert (workdir / "bic.png").exists()


@pytest.mark.slow
def test_poisson_and_bernoulli_fits(workdir):
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.choice([1.0, 8.0], size=(120, 1)), size=(120, 3))
    np.save(workdir / "counts.npy", counts.astype(float))
    result = in_process(
        "fit",
        "poisson",
        "counts.npy",
        "-k",
        "2",
        "-o",
        "poisson.lvm",
        "--json",
        cwd=workdir,
        check_exit=0,
    )
    assert json.loads(result.stdout)["class"] == "PoissonMixture"
    grey = rng.random((80, 5)) * 255
    np.savez(workdir / "grey.npz", images=grey, labels=np.zeros(80))
    in_process(
        "fit",
        "bernoulli",
        "grey.npz",
        "--key",
        "images",
        "--binarize",
        "127",
        "-k",
        "2",
        "-o",
        "bern.lvm",
        cwd=workdir,
        check_exit=0,
    )
    # The model remembers the key and the threshold: scoring needs neither again.
    scores = in_process("score", "bern.lvm", "grey.npz", cwd=workdir, check_exit=0)
    assert len(scores.stdout.splitlines()) == 81
    # Without binarizing, the data are outside the Bernoulli family: a clear error.
    assert_user_error(
        in_process("fit", "bernoulli", "grey.npz", "--key", "images", cwd=workdir),
        "binary data",
        "Binarize",
    )


@pytest.mark.slow
def test_report(workdir):
    in_process("report", "model.lvm", "data.csv", "-o", "report.html", cwd=workdir, check_exit=0)
    page = (workdir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "http://" not in page and "https://" not in page


@pytest.mark.slow
def test_demo_forwards_to_the_demo(tmp_path):
    # The demo itself (minutes of fitting) is `make demo`'s job; here: the command reaches it
    # and hands it its options (--help is the demo's own).
    result = lvmkit_cli("demo", "--help", cwd=tmp_path, check_exit=0)
    assert "lvmkit.demo" in result.stdout and "--out" in result.stdout
    assert_user_error(lvmkit_cli("demo", "--no-such-option", cwd=tmp_path), "--no-such-option")
