"""The scripts in examples/ run end to end (small settings) and write their figure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).absolute().parents[1]

# name -> (small settings, a phrase of the printed summary, modules it needs beyond lvmkit's)
CASES = {
    "soft_clustering": (["--quick"], "adjusted Rand index", []),
    "anomaly_detection": (["--quick"], "ROC AUC", []),
    "image_segmentation": (["--n-fit", "5000", "--n-components", "5"], "segment", ["PIL"]),
    "hmm_regimes": (["--quick"], "NBER recession", ["statsmodels"]),
    "vae_ppca_bridge": (["--quick"], "PPCA log-likelihood", []),
    # gensim ships the Lee news corpus (a plain text file in its test data)
    "lda_topics": (["--quick"], "held-out articles", ["gensim"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_and_writes_its_figure(name, tmp_path):
    extra, expected, needs = CASES[name]
    for module in needs:  # load_sample_image reads the JPEG with Pillow
        pytest.importorskip(
            module, reason=f"examples/{name}.py needs {module}, which is not installed"
        )
    # The checkout's lvmkit (not an installed copy); one thread: these problems are tiny, and
    # on a shared CPU several threads spend most of their time waiting for each other.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--out", str(tmp_path), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
    figure = tmp_path / f"{name}.png"
    assert figure.stat().st_size > 20_000
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
