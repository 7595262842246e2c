"""One rank of a multi-process test: ``python -m tests.distributed.worker
SCENARIO RANK WORLD PORT OUT``.

Joins a gloo process group on 127.0.0.1:PORT (a 60 s timeout), runs the scenario and writes its
results to OUT/rank{RANK}.npz (arrays) or OUT/rank{RANK}.txt (a message). Exit code 0 on success,
3 when the scenario ended with the error it was meant to provoke (the message is in the .txt).
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch.distributed as dist

import lvmkit.distributed as lvd
from lvmkit.fit import callbacks
from tests.distributed.cases import (
    CASES,
    SPLITS,
    estimator,
    fitted,
    rows,
    share,
    vae,
    vae_rows,
    vae_state,
)


def fits(rank, world, out: Path):
    """Every family and covariance type, uneven and empty shards (in memory), and files."""
    results = {}
    for case in CASES:
        X = rows(case)
        for split, fraction in SPLITS.items():
            est = estimator(case).fit(share(X, fraction, rank))
            results.update({f"{case}/{split}/{k}": v for k, v in fitted(est).items()})
        files = out / "files" / case
        if files.is_dir():  # the same rows in .npy files: the glob is sharded by rank
            est = estimator(case).fit(str(files / "*.npy"))
            results.update({f"{case}/files/{k}": v for k, v in fitted(est).items()})
        for algorithm in ("stepwise", "gem"):
            if case in ("full", "poisson"):
                est = estimator(case, algorithm=algorithm, batch_size=100, max_iter=5)
                est.fit(share(X, SPLITS["uneven"], rank))
                results.update({f"{case}/{algorithm}/{k}": v for k, v in fitted(est).items()})
    np.savez(out / f"rank{rank}.npz", **results)


def partial(rank, world, out: Path):
    """partial_fit: step t gives rank 0 the first rows of batch t and rank 1 the rest (rank 0
    none at step 3)."""
    results = {}
    for case in ("full", "bernoulli"):
        est = estimator(case)
        X = rows(case, n=1000, seed=1)
        for t in range(5):
            batch = X[200 * t : 200 * (t + 1)]
            est.partial_fit(share(batch, 0.0 if t == 3 else 0.3 + 0.1 * t, rank))
            results.update({f"{case}/{t}/{k}": v for k, v in fitted(est).items()})
    np.savez(out / f"rank{rank}.npz", **results)


def _long_fit(rank, on_iteration):
    """A fit long enough to be interrupted (20,000 rows, up to 500 iterations): at each
    iteration ``on_iteration(n)``."""
    X = rows("full", n=20000)
    est = estimator("full", max_iter=500, tol=0.0)

    def watch(event):
        on_iteration(event.iteration)

    with callbacks.observe(watch), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(share(X, 0.5, rank))


def _expect_failure(rank, out, run, linger: float = 0.0):
    """Run; write the error it ends with (type|seconds|message) and exit with 3, after
    ``linger`` seconds alive."""
    start = time.monotonic()
    try:
        run()
    except Exception as exc:  # the message is what the test reads
        (out / f"rank{rank}.txt").write_text(
            f"{type(exc).__name__}|{time.monotonic() - start:.2f}|{exc}"
        )
        time.sleep(linger)
        sys.exit(3)
    (out / f"rank{rank}.txt").write_text("no error")


def kill(rank, world, out: Path):
    """Rank 1 SIGKILLs itself at iteration 3; the other ranks must stop with a clear error."""
    lvd.set_timeout(20)

    def on_iteration(n):
        if rank == 1 and n == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    _expect_failure(rank, out, lambda: _long_fit(rank, on_iteration))


def hang(rank, world, out: Path):
    """Rank 1 raises at iteration 3 and stays alive (as in a notebook): the others must stop
    within the timeout, naming rank 1 and its error."""
    lvd.set_timeout(8)

    def on_iteration(n):
        if rank == 1 and n == 3:
            raise RuntimeError("boom at iteration 3")

    # rank 1 stays alive, out of the collectives, for 15 s (killed by the harness if too long)
    _expect_failure(rank, out, lambda: _long_fit(rank, on_iteration), 15.0 if rank == 1 else 0.0)


def mismatch(rank, world, out: Path):
    """Rank 1's data is wrong (another feature count, dtype, an infinity), one case after another in
    the same group: every rank fails before the first pass (and the group stays usable). Writes
    ``type|message`` lines, one per case, to OUT/rank{RANK}.txt."""
    lines = []
    for what in ("features", "dtype", "inf"):
        X = share(rows("full"), 0.5, rank)
        if rank == 1:
            X = {
                "features": lambda X=X: np.hstack([X, X[:, :1]]),
                "dtype": lambda X=X: X.astype(np.float32),
                "inf": lambda X=X: np.where(np.arange(len(X))[:, None] == 7, np.inf, X),
            }[what]()
        try:
            estimator("full").fit(X)
            lines.append(f"{what}|none|no error")
        except Exception as exc:
            lines.append(f"{what}|{type(exc).__name__}|{' '.join(str(exc).split())}")
    (out / f"rank{rank}.txt").write_text("\n".join(lines))


def vaes(rank, world, out: Path):
    """A VAE on every rank's copy of the same rows (batch 100: 50 rows per rank), 2 epochs; then
    the resumptions across world sizes: from a 1-process checkpoint of epoch 1 (written by the
    test), and a 2-rank run of 1 epoch whose checkpoint the test resumes in one process."""
    X = vae_rows()
    results = {f"full/{k}": v for k, v in vae_state(vae().fit(X)).items()}
    resumed = vae(checkpoint=str(out / "one-process.ckpt")).fit(X, resume=True)
    results.update({f"resumed/{k}": v for k, v in vae_state(resumed).items()})
    vae(epochs=1, checkpoint=str(out / "two-ranks.ckpt")).fit(X)
    np.savez(out / f"rank{rank}.npz", **results)


def vae_kill(rank, world, out: Path):
    """Rank 1 SIGKILLs itself in the middle of the VAE's second epoch: rank 0 must stop in
    DistributedDataParallel's gradient all_reduce with an error naming rank 1."""
    from lvmkit import VAE

    lvd.set_timeout(20)

    class Dying(VAE):
        def _batch_terms(self, module, xb, progress, generator, idx=None):
            if rank == 1 and progress >= 1.4:
                os.kill(os.getpid(), signal.SIGKILL)
            return super()._batch_terms(module, xb, progress, generator, idx)

    settings = vae(epochs=5).get_params()
    _expect_failure(rank, out, lambda: Dying(**settings).fit(vae_rows()))


def restarts(rank, world, out: Path):
    """Restarts with k-means++ seeds (random_state=0, compared with one process), and with
    random_state=None (rank 0's seed is broadcast: the ranks must agree)."""
    X = share(rows("full"), 0.4, rank)
    seeded = estimator("full", n_init=3, init_params="k-means++").fit(X)
    unseeded = estimator("full", n_init=2, random_state=None).fit(X)
    results = {f"seeded/{k}": v for k, v in fitted(seeded).items()}
    results.update({f"unseeded/{k}": v for k, v in fitted(unseeded).items()})
    np.savez(out / f"rank{rank}.npz", **results)


def hmms(rank, world, out: Path):
    """Hidden Markov models on each rank's whole sequences (uneven, and none on rank 0), and
    partial_fit steps with a rank's share of every batch of sequences; then probabilistic PCA on
    each rank's rows, and factor analysis."""
    from tests.distributed.hmm_cases import (
        HMM_CASES,
        HMM_SPLITS,
        hmm_estimator,
        hmm_fitted,
        hmm_rows,
        hmm_share,
    )

    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in HMM_CASES:
            X, lengths = hmm_rows(case)
            for split, first in HMM_SPLITS.items():
                est = hmm_estimator(case).fit(*hmm_share(X, lengths, first, rank))
                results.update({f"{case}/{split}/{k}": v for k, v in hmm_fitted(est).items()})
        X, lengths = hmm_rows("gaussian-diag")
        est = hmm_estimator("gaussian-diag")
        for step in range(3):  # batch t: sequences 2t..2t+1 split one each (rank 0 none at t=2)
            pair = lengths[2 * step : 2 * step + 2]
            start = int(np.sum(lengths[: 2 * step]))
            Xb = X[start : start + sum(pair)]
            mine = hmm_share(Xb, pair, 0 if step == 2 else 1, rank)
            est.partial_fit(*mine)
        results.update({f"partial/{k}": v for k, v in hmm_fitted(est).items()})
        # probabilistic PCA's one pass of statistics, on the same ranks (no new processes)
        from lvmkit import FactorAnalysis, ProbabilisticPCA

        X = rows("full")
        for split, fraction in SPLITS.items():
            for label, est in (("ppca", ProbabilisticPCA(2)), ("fa", FactorAnalysis(2, tol=1e-6))):
                est.fit(share(X, fraction, rank))
                for name in ("loadings_", "mean_", "noise_variance_", "loglike_"):
                    results[f"{label}/{split}/{name}"] = np.asarray(getattr(est, name))
        # the same with 20% of the values missing (EM on the rows), and a mixture of them
        from tests.distributed.hmm_cases import gappy_linear_models

        X = gappy_linear_models.rows()
        for split, fraction in SPLITS.items():
            for label, est in gappy_linear_models.estimators().items():
                est.fit(share(X, fraction, rank))
                for name, value in gappy_linear_models.fitted(est).items():
                    results[f"{label}/{split}/{name}"] = value
        # latent Dirichlet allocation by batch variational EM: each rank its own documents
        from tests.distributed.hmm_cases import lda_case

        X = lda_case.documents()
        for split, fraction in SPLITS.items():
            est = lda_case.estimator().fit(share(X, fraction, rank))
            for name, value in lda_case.fitted(est).items():
                results[f"lda/{split}/{name}"] = value
    np.savez(out / f"rank{rank}.npz", **results)


SCENARIOS = {
    f.__name__: f for f in (fits, partial, kill, hang, mismatch, vaes, vae_kill, restarts, hmms)
}


def main():
    scenario, rank, world, port, out = sys.argv[1:6]
    rank, world = int(rank), int(world)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    SCENARIOS[scenario](rank, world, Path(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
