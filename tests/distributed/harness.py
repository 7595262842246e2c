"""Start real processes on one machine: a gloo process group on 127.0.0.1, a free port, a timeout.

``run_ranks(scenario, world, out)`` starts ``world`` processes of ``python -m
tests.distributed.worker`` and waits for all of them, killing every one still running after
``timeout`` seconds, so a test can never hang. Each worker writes its results under ``out``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Rank:
    rank: int
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    def results(self, out: Path) -> dict:
        with np.load(out / f"rank{self.rank}.npz") as f:
            return dict(f)


def worker_env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def run_ranks(
    scenario: str, world: int, out: Path, timeout: float = 120.0, *extra: str
) -> list[Rank]:
    """Run ``scenario`` on ``world`` ranks; every process is killed after ``timeout`` seconds."""
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.distributed.worker",
                scenario,
                str(r),
                str(world),
                str(port),
                str(out),
                *extra,
            ],
            cwd=ROOT,
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    ranks = []
    for r, p in enumerate(procs):
        left = max(timeout - (time.monotonic() - start), 0.1)
        try:
            stdout, stderr = p.communicate(timeout=left)
            code = p.returncode
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            stdout, stderr = p.communicate()
            code = None
        ranks.append(Rank(r, code, stdout, stderr, time.monotonic() - start))
    return ranks


def check_ok(ranks: list[Rank]) -> None:
    for r in ranks:
        assert r.returncode == 0, f"rank {r.rank} exited with {r.returncode}:\n{r.stderr[-3000:]}"
