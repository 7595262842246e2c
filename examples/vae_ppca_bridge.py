"""From probabilistic PCA to the variational autoencoder: a linear VAE reaches PPCA's likelihood.

Probabilistic PCA is a latent variable model, x = W z + mu + noise with z ~ N(0, I) and Gaussian
noise of one variance, and its maximum likelihood has a closed form (the eigenvectors of the
data's covariance). A VAE is the same kind of model, p(z) p(x | z), with p(x | z) given by a
neural network (the decoder) and the posterior p(z | x) approximated by another (the encoder),
both trained by gradient ascent on the evidence lower bound (ELBO) instead of a closed form.

Make the decoder linear (``hidden_sizes=()``) and let the VAE learn one shared noise variance
(``likelihood='gaussian-learned', learned_std='global'``) and the VAE *is* probabilistic PCA.
Its exact posterior p(z | x) is Gaussian with a mean linear in x, which a linear Gaussian encoder
can represent, so nothing is lost to the approximation: the ELBO is tight (it equals log p(x)) at
the optimum, and the trained VAE's ELBO climbs to exactly PPCA's maximum log-likelihood (Lucas et
al. 2019, "Don't blame the ELBO!"). Its decoder spans PPCA's principal subspace (up to a rotation
of z, which the likelihood cannot see), and its learned noise is PPCA's. With a noise variance per
feature (``learned_std='per-feature'``) the same holds for factor analysis.

So the VAE generalizes PPCA: gradient training and amortized inference lose nothing where the
closed form exists. Make the decoder nonlinear (``hidden_sizes=(200, 200)``) and the same model
can describe data on curved manifolds, which no linear model can; then the posterior is no
longer Gaussian, the ELBO is no longer tight, and ``lvmkit.log_marginal`` (importance sampling)
measures what the bound leaves out.

The data: scikit-learn's wine (178 wines, 13 chemical measurements), standardized. The VAE is
trained in three stages of falling step size (``warm_start=True`` between them), so the Monte
Carlo noise of the gradient does not hide the last hundredth of a nat. The script prints the
reference log-likelihood, the VAE's ELBO (the last epoch's, and a 1,000-draw estimate) and its
importance-sampled log p(x), and draws the ELBO's climb, its gap on a log scale, and the loadings.

    python examples/vae_ppca_bridge.py --out out      # writes out/vae_ppca_bridge.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def train_linear_vae(X, q, learned_std, stages, seed):
    """A VAE with affine encoder and decoder, trained in stages of falling step size; the
    fitted VAE and its training ELBO per epoch over all the stages."""
    from lvmkit import VAE

    (epochs, lr), *rest = stages
    vae = VAE(
        q,
        hidden_sizes=(),  # no hidden layer: x_mean = W z + b, and an affine encoder
        likelihood="gaussian-learned",  # the noise variance is learned ...
        learned_std=learned_std,  # ... one for all features (PPCA) or one per feature (FA)
        k=8,  # 8 draws of z per row per step: less gradient noise
        batch_size=32,
        epochs=epochs,
        lr=lr,
        validation_fraction=0,  # the comparison is on the training data, as PPCA's loglike_
        patience=None,
        dtype="float64",
        random_state=seed,
    ).fit(X)
    curve = list(vae.history_["elbo"])
    for epochs, lr in rest:  # fine-tune the same networks with a smaller step
        vae.set_params(warm_start=True, epochs=epochs, lr=lr).fit(X)
        curve += vae.history_["elbo"]
    return vae, np.array(curve)


def decoder_weights(vae, q):
    """(W, b) of the affine decoder x_mean = W z + b, read through ``decode``."""
    b = vae.decode(np.zeros((1, q)))[0]
    return (vae.decode(np.eye(q)) - b).T, b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-components", type=int, default=2, help="latent dimension q")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from scipy.linalg import orthogonal_procrustes, subspace_angles
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    from lvmkit import FactorAnalysis, ProbabilisticPCA, log_marginal

    q = args.n_components
    # (epochs, Adam step size): a coarse stage, then a tenth and a hundredth of the step.
    stages = (
        ((40, 5e-2), (20, 5e-3), (20, 5e-4))
        if args.quick
        else ((100, 5e-2), (50, 5e-3), (50, 5e-4))
    )
    wine = load_wine()
    X = StandardScaler().fit_transform(wine.data)
    names = [n.replace("_", " ") for n in wine.feature_names]
    print(f"wine (scikit-learn): {X.shape[0]} rows x {X.shape[1]} features, standardized; q = {q}")
    print(f"linear VAE: hidden_sizes=(), k=8, batch 32, float64, stages (epochs, lr) {stages}\n")

    ppca = ProbabilisticPCA(q).fit(X)
    fa = FactorAnalysis(q, tol=1e-9, max_iter=10_000).fit(X)  # EM run to the maximum
    rows = []
    for label, learned_std, reference, best in (
        ("PPCA (one noise variance)", "global", ppca, ppca.loglike_),
        ("FA (a variance per feature)", "per-feature", fa, fa.score(X)),
    ):
        t0 = time.perf_counter()
        vae, curve = train_linear_vae(X, q, learned_std, stages, args.seed)
        seconds = time.perf_counter() - t0
        elbo = float(vae.score_samples(X, n_samples=1000).mean())  # the ELBO, 1,000 draws per row
        marginal = log_marginal(vae, X, k=1000, random_state=args.seed)  # log p(x), IS
        W, b = decoder_weights(vae, q)
        rows.append(
            dict(
                label=label,
                vae=vae,
                curve=curve,
                best=best,
                elbo=elbo,
                marginal=marginal.mean,
                W=W,
                reference=reference,
                seconds=seconds,
                angle=float(np.degrees(subspace_angles(W, reference.loadings_)).max()),
            )
        )

    print(
        f"{'model':<28} {'max log-lik':>11} {'ELBO, last':>10} {'ELBO, 1000':>10} "
        f"{'log p(x), IS':>12} {'gap':>7} {'angle':>6} {'train':>6}"
    )
    for r in rows:
        print(
            f"{r['label']:<28} {r['best']:>11.4f} {r['curve'][-1]:>10.4f} {r['elbo']:>10.4f} "
            f"{r['marginal']:>12.4f} {r['best'] - r['elbo']:>7.4f} {r['angle']:>5.2f}° "
            f"{r['seconds']:>5.1f}s"
        )
    p = rows[0]
    sigma = float(p["vae"].module_.model.likelihood.std().detach())
    print(
        f"\nPPCA log-likelihood {ppca.loglike_:.4f} nats per sample (closed form); the linear "
        f"VAE's ELBO {p['elbo']:.4f} (1,000 draws of z per row), {p['best'] - p['elbo']:.4f} "
        f"below it; its importance-sampled log p(x) (k=1000) {p['marginal']:.4f}.\n"
        "'ELBO, last': the mean over the last training epoch's batches (each row's bound from "
        "k=8 draws of z, while the weights move); it scatters by a few hundredths of a nat.\n"
        f"Learned noise sd {sigma:.4f} against PPCA's {np.sqrt(ppca.noise_variance_):.4f}; "
        "'angle': the largest principal angle between the VAE decoder's columns and the "
        "reference's loadings (the same subspace)."
    )

    # ------------------------------------------------------------------ the figure
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "vae_ppca_bridge.png"
    colors = ("#1f77b4", "#d62728")
    with rc_context({"font.size": 10}):
        fig = Figure(figsize=(16, 4.8), layout="constrained")
        ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=(1.1, 1.1, 1))
        bounds = np.cumsum([e for e, _ in stages])[:-1]
        epochs = np.arange(1, len(p["curve"]) + 1)
        for r, c in zip(rows, colors, strict=True):
            ax1.plot(epochs, r["curve"], color=c, linewidth=1.2, label=f"linear VAE, {r['label']}")
            ax1.axhline(r["best"], color=c, linestyle="--", linewidth=1.2)
            gap = r["curve"] - r["best"]
            ax2.plot(epochs, gap, color=c, linewidth=0.7, alpha=0.35)
            smooth = np.convolve(gap, np.ones(10) / 10, mode="valid")  # ten-epoch means
            ax2.plot(
                epochs[9:], smooth, color=c, linewidth=1.6, label=f"{r['label']}, 10-epoch mean"
            )
            ax2.plot(
                epochs[-1] + 4, r["elbo"] - r["best"], "o", color=c, markersize=6, clip_on=False,
                label=f"after training, 1,000 draws: {r['elbo'] - r['best']:+.4f}",
            )  # fmt: skip
        for r, c, text in zip(rows, colors, ("PPCA", "FA"), strict=True):
            ax1.text(
                epochs[len(epochs) // 3], r["best"] + 0.03, f"{text}: maximum log-likelihood",
                color=c, va="bottom",
            )  # fmt: skip
        for ax in (ax1, ax2):
            for x in bounds:
                ax.axvline(x + 0.5, color="0.6", linewidth=0.8, linestyle=":")
        lo = min(r["best"] for r in rows) - 3
        ax1.set(
            xlabel="epoch",
            ylabel="training ELBO (nats per sample)",
            ylim=(lo, max(r["best"] for r in rows) + 0.5),
            title="The ELBO climbs to the maximum likelihood",
        )
        ax1.legend(loc="lower right", fontsize="small")
        ax2.axhline(0, color="black", linewidth=0.8)
        ax2.set_yscale("symlog", linthresh=0.05)
        ax2.set(
            xlabel="epoch (dotted: step size divided by 10)",
            ylabel="ELBO − maximum log-likelihood (symlog)",
            title="The gap closes (to Monte Carlo noise)",
        )
        ax2.legend(loc="lower right", fontsize="small")

        # Loadings: PPCA's W against the VAE's, rotated onto it (z is identified up to a rotation).
        W = p["W"]
        R, _ = orthogonal_procrustes(W, ppca.loadings_)
        Wr = W @ R
        for i, name in enumerate(names):
            ax3.annotate(
                "", xy=ppca.loadings_[i, :2], xytext=(0, 0),
                arrowprops=dict(arrowstyle="->", color="0.55", linewidth=1.2),
            )  # fmt: skip
            ax3.text(*(ppca.loadings_[i, :2] * 1.08), name, fontsize=7.5, ha="center")
        ax3.scatter(*Wr[:, :2].T, s=22, color=colors[0], zorder=3, label="linear VAE (rotated)")
        ax3.plot([], [], color="0.55", label="PPCA loadings")
        ax3.axhline(0, color="0.85", linewidth=0.8, zorder=0)
        ax3.axvline(0, color="0.85", linewidth=0.8, zorder=0)
        ax3.set_aspect("equal", adjustable="datalim")
        ax3.set(
            xlabel="loading on z₁",
            ylabel="loading on z₂",
            title=f"The same loadings (largest principal angle {p['angle']:.2f}°)",
        )
        ax3.legend(loc="lower left", fontsize="small")
        fig.suptitle(
            "A VAE with a linear decoder and a learned noise variance is probabilistic PCA "
            f"(wine, standardized, q = {q})"
        )
        fig.savefig(path, dpi=100)
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
