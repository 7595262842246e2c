"""``torchrun ... -m lvmkit fit`` writes the model the command line writes without torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.distributed.cases import rows
from tests.distributed.harness import ROOT, worker_env

pytestmark = pytest.mark.timeout(300)


def run(args, cwd, timeout=150):
    proc = subprocess.run(
        args, cwd=cwd, env=worker_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def lvmkit(*args, cwd):
    return run([sys.executable, "-m", "lvmkit", *args], cwd)


def torchrun(*args, cwd):
    return run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "lvmkit",
            *args,
        ],
        cwd,
    )


def scores(model, data, cwd) -> np.ndarray:
    lvmkit("score", model, data, "-o", f"{model}.csv", cwd=cwd)
    return np.loadtxt(cwd / f"{model}.csv", delimiter=",", skiprows=1)


@pytest.mark.parametrize(
    "kind, case, glob",
    [("gmm", "full", True), ("poisson", "poisson", False)],
)
def test_fit_under_torchrun_writes_the_model_of_one_process(tmp_path, kind, case, glob):
    X = rows(case, n=2000)
    np.save(tmp_path / "data.npy", X)
    for i, (a, b) in enumerate([(0, 700), (700, 1100), (1100, 2000)]):
        np.save(tmp_path / f"part{i}.npy", X[a:b])
    data = "part*.npy" if glob else "data.npy"
    common = ["-k", "3", "--dtype", "float64", "--seed", "0", "--json"]
    one = json.loads(lvmkit("fit", kind, data, *common, "-o", "one.lvm", cwd=tmp_path).stdout)
    proc = torchrun("fit", kind, data, *common, "-o", "two.lvm", cwd=tmp_path)
    two = json.loads(proc.stdout)  # rank 0 alone prints: one JSON document
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["n_iter"] == one["n_iter"] and two["n_samples"] == one["n_samples"] == 2000
    np.testing.assert_allclose(two["lower_bound"], one["lower_bound"], rtol=1e-10)
    s1, s2 = scores("one.lvm", "data.npy", tmp_path), scores("two.lvm", "data.npy", tmp_path)
    np.testing.assert_allclose(s2, s1, rtol=1e-10, atol=1e-10 * np.abs(s1).max())


def test_other_commands_refuse_to_run_under_torchrun(tmp_path):
    np.save(tmp_path / "data.npy", rows("full", n=100))
    lvmkit("fit", "gmm", "data.npy", "-k", "2", "-o", "m.lvm", cwd=tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "lvmkit",
            "score",
            "m.lvm",
            "data.npy",
        ],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode != 0
    assert "error: lvmkit score runs in one process: run it without torchrun" in proc.stderr
    # (torchrun stops the other rank as soon as one fails, so which rank printed varies)
    assert 'Traceback (most recent call last):\n  File "' + str(ROOT) not in proc.stderr


def test_messages_of_ranks_other_than_0_say_which_rank(monkeypatch):
    from lvmkit.distributed import rank_prefix

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert rank_prefix() == "rank 1: "
    monkeypatch.setenv("RANK", "0")
    assert rank_prefix() == ""


def test_fit_vae_under_torchrun_writes_the_model_of_one_process(tmp_path):
    from tests.distributed.cases import vae_rows

    np.save(tmp_path / "data.npy", vae_rows(n=600))
    common = [
        "--latent-dim",
        "2",
        "--hidden",
        "16",
        "--binarization",
        "dynamic",
        "--epochs",
        "2",
        "--batch-size",
        "100",
        "--dtype",
        "float64",
        "--seed",
        "0",
        "--json",
    ]
    one = json.loads(
        lvmkit("fit", "vae", "data.npy", *common, "-o", "one.lvm", cwd=tmp_path).stdout
    )
    two = json.loads(
        torchrun("fit", "vae", "data.npy", *common, "-o", "two.lvm", cwd=tmp_path).stdout
    )
    assert two["world_size"] == 2
    np.testing.assert_allclose(two["lower_bound"], one["lower_bound"], rtol=1e-10)
    s1, s2 = scores("one.lvm", "data.npy", tmp_path), scores("two.lvm", "data.npy", tmp_path)
    np.testing.assert_allclose(s2, s1, rtol=1e-10, atol=1e-10 * np.abs(s1).max())
