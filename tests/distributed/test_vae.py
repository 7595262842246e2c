"""The VAE on two ranks (DistributedDataParallel) is the VAE in one process with the same batch.

Every rank passes the same rows; each global batch of 100 is split 50/50, each rank draws the
batch's noise for all 100 rows and keeps its own, and DDP averages the gradients. So two epochs on
two ranks must give the parameters of one process with a batch of 100, to 1e-5 (float64; the
difference is the order of sums: 2e-16 relative when this was written), and a checkpoint written
with one world size resumes with another.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.distributed.cases import vae, vae_rows, vae_state
from tests.distributed.harness import check_ok, run_ranks

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    X = vae_rows()
    one = vae_state(vae().fit(X))
    vae(epochs=1, checkpoint=str(out / "one-process.ckpt")).fit(X)
    ranks = run_ranks("vaes", 2, out, 280)
    check_ok(ranks)
    return out, one, [r.results(out) for r in ranks]


def assert_same(got: dict, expected: dict, prefix: str, rtol: float = 1e-5):
    for name, value in expected.items():
        np.testing.assert_allclose(
            got[f"{prefix}/{name}"], value, rtol=rtol, atol=rtol * 1e-3, err_msg=f"{prefix}/{name}"
        )


def test_two_ranks_with_batch_100_equal_one_process_with_batch_100(run):
    _, one, (rank0, rank1) = run
    for key in rank0:
        assert np.array_equal(rank0[key], rank1[key]), f"{key} differs between the ranks"
    assert_same(rank0, one, "full")
    assert len(one["lower_bounds_"]) == 2  # both epochs, each with a (reduced) validation ELBO


def test_a_one_process_checkpoint_resumes_on_two_ranks(run):
    _, one, (rank0, _) = run
    assert_same(rank0, one, "resumed")


def test_a_two_rank_checkpoint_resumes_in_one_process(run, tmp_path):
    out, one, _ = run
    shutil.copy(out / "two-ranks.ckpt", tmp_path / "c.ckpt")
    resumed = vae(checkpoint=str(tmp_path / "c.ckpt")).fit(vae_rows(), resume=True)
    got = {f"r/{k}": v for k, v in vae_state(resumed).items()}
    assert_same(got, one, "r")
