"""How good is the MNIST VAE, and how fast can we tell: issue 5's measurements on a trained model.

Needs the model written by ``bench/vae_mnist.py --data mnist`` (out/vae-mnist/mnist/model.lvm).

1. Evaluation speed: log p(x) of the 10,000 MNIST test images by importance sampling with
   k = 5000 (``lvmkit.log_marginal``), timed (target: under 5 minutes on this 2-core CPU).
2. Importance sampling against naive prior sampling as k grows, on the same model and images
   (table and figure ``docs/marginal_vs_k.png``).
3. The gap report (Cremer et al. 2018): log p(x), the ELBO with the optimal per-point Gaussian q,
   the ELBO with the encoder's q; approximation and amortization gaps.
4. The variance of the encoder-gradient estimators (reparameterized, score function with and
   without a baseline) on the same model and batch (table and ``docs/gradient_variance.png``).

    .venv/bin/python bench/inference.py            # all four, writes BENCHMARKS.md
    .venv/bin/python bench/inference.py --quick    # small sizes, prints only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import _common  # noqa: E402

import lvmkit  # noqa: E402
from lvmkit.data.idx import load_mnist  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "mnist"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=REPO / "out" / "vae-mnist" / "mnist" / "model.lvm"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--skip-speed", action="store_true", help="do not time the 10,000 x 5000 evaluation"
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    from lvmkit.plot.diagnostics import plot_gradient_variance

    model = lvmkit.load(args.model)
    test, _ = load_mnist(DATA, "test")
    X = test.reshape(-1, 784).astype(np.float32) / 255
    info = _common.machine_info()
    lines = [
        "## Inference diagnostics on the MNIST VAE (issue 5)",
        "",
        f"Command: `.venv/bin/python bench/inference.py`; {info['date']}; {info['cpu']}, "
        f"{info['cores']} cores, no GPU; torch {info['versions']['torch']} "
        f"({torch.get_num_threads()} threads). Model: the dynamic-MNIST VAE of the table above "
        f"({model.n_iter_} epochs); test images binarized once with a fixed seed.",
        "",
    ]

    # 1. Evaluation speed.
    n_eval, k_eval = (500, 500) if args.quick else (10_000, 5000)
    if not args.skip_speed:
        ll = lvmkit.log_marginal(
            model, X[:n_eval], k=k_eval
        )  # compile='auto': compiled at this size
        # The same images and samples with and without torch.compile, in this run (a ratio).
        n_sub = 200 if args.quick else 2000
        eager = lvmkit.log_marginal(model, X[:n_sub], k=k_eval, compile=False)
        fused = lvmkit.log_marginal(model, X[:n_sub], k=k_eval, compile=True)
        diff = float(np.abs(eager.per_sample - fused.per_sample).max())
        lines += [
            f"### Evaluation speed: {n_eval:,} test images at k = {k_eval}",
            "",
            f"log p(x) = **{ll.mean:.2f} ± {ll.stderr:.2f}** nats ({ll.bits_per_dim:.4f} bits/dim) "
            f"in **{ll.seconds:.0f} s** ({ll.seconds / 60:.1f} min, the one-off compile included; "
            f"target: under 5 min). {n_eval * k_eval / ll.seconds / 1e3:.0f} thousand decoder "
            f"evaluations per second.",
            "",
            f"`torch.compile` (`log_marginal(compile='auto')` compiles from 5,000,000 rows): on "
            f"the first {n_sub:,} images, eager {eager.seconds:.1f} s, compiled "
            f"{fused.seconds:.1f} s including the compile: "
            f"**{eager.seconds / fused.seconds:.2f}x**; the per-image estimates agree to "
            f"{diff:.1e} nats (same samples).",
            "",
        ]
        print("\n".join(lines[-4:]), flush=True)

    # 2. Importance sampling against the prior, as k grows.
    n_k = 50 if args.quick else 200
    ks = [1, 10, 100, 1000] if args.quick else [1, 10, 100, 1000, 5000]
    rows = []
    for k in ks:
        imp = lvmkit.log_marginal(model, X[:n_k], k=k)
        prior = lvmkit.log_marginal(model, X[:n_k], method="prior", k=k)
        rows.append((k, imp, prior))
        print(f"k={k}: importance {imp.mean:.2f}, prior {prior.mean:.2f}", flush=True)
    elbo = float(model.score_samples(X[:n_k], n_samples=100).mean())
    lines += [
        f"### Importance sampling against sampling from the prior ({n_k} test images)",
        "",
        f"ELBO (100 samples): {elbo:.2f} nats. Each cell: mean estimate of log p(x) ± standard "
        f"error over images.",
        "",
        "| k | importance sampling (encoder q) | naive Monte Carlo (prior p(z)) |",
        "|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {imp.mean:.2f} ± {imp.stderr:.2f} | {prior.mean:.2f} ± {prior.stderr:.2f} |"
        for k, imp, prior in rows
    ]
    gap_1, gap_k = rows[0][1].mean - rows[0][2].mean, rows[-1][1].mean - rows[-1][2].mean
    lines += [
        "",
        f"With 50 latent dimensions almost no prior draw lands where p(x | z) is large: the naive "
        f"estimate is {gap_1:.0f} nats below importance sampling at k = {ks[0]} and still "
        f"{gap_k:.0f} nats below at k = {ks[-1]}. Figure: `docs/marginal_vs_k.png`.",
        "",
    ]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    ax.errorbar(
        ks,
        [r[1].mean for r in rows],
        [r[1].stderr for r in rows],
        marker="o",
        label="importance sampling, q(z | x)",
    )
    ax.errorbar(
        ks,
        [r[2].mean for r in rows],
        [r[2].stderr for r in rows],
        marker="s",
        label="naive Monte Carlo, p(z)",
    )
    ax.axhline(elbo, color="grey", linestyle="--", label="ELBO")
    (
        ax.set_xscale("log"),
        ax.set_xlabel("k (samples per image)"),
        ax.set_ylabel("estimate of log p(x), nats"),
    )
    ax.set_title("MNIST VAE: log p(x) estimates against k", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if not args.quick:
        fig.savefig(REPO / "docs" / "marginal_vs_k.png", dpi=100)

    # 3. The gap report.
    n_gap = 50 if args.quick else 500
    start = time.perf_counter()
    report = lvmkit.gap_report(
        model,
        X[:n_gap],
        k=500 if args.quick else 5000,
        svi_steps=300 if args.quick else 1000,
        n_samples_elbo=100 if args.quick else 1000,
    )
    seconds = time.perf_counter() - start
    print(report, flush=True)
    table = report.summary()
    lines += [
        f"### Gap report ({n_gap} test images, {seconds:.0f} s)",
        "",
        _markdown(table),
        "",
        "Approximation gap = log p(x) − ELBO(q*), the cost of a diagonal Gaussian; amortization "
        "gap = ELBO(q*) − ELBO(encoder), the cost of one encoder for all images (Cremer, Li and "
        "Duvenaud 2018).",
        "",
    ]

    # 4. Gradient-estimator variance.
    variance = lvmkit.gradient_variance(model, X[:100], n_repeats=50 if args.quick else 200)
    print(variance.table, flush=True)
    lines += [
        "### Variance of the encoder-gradient estimators (one batch of 100 test images)",
        "",
        _markdown(variance.table),
        "",
        "Figure: `docs/gradient_variance.png`.",
    ]
    if not args.quick:
        plot_gradient_variance(variance).savefig(REPO / "docs" / "gradient_variance.png", dpi=100)
        _common.write_section("\n".join(lines), "bench/inference.py")
    print("\n".join(lines))


def _markdown(frame) -> str:
    cols = [str(c) for c in frame.columns]
    out = [
        "| " + " | ".join([frame.index.name or ""] + cols) + " |",
        "|---" + "|---:" * len(cols) + "|",
    ]
    for idx, row in frame.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        out.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
