"""The main job of ``make demo``: a Gaussian mixture and a variational autoencoder on real data.

1. Fits lvmkit.GaussianMixture to scikit-learn's wine data (178 wines, 13 chemical measurements,
   standardised) for K = 1..8 and all four covariance types, selects the pair with the lowest BIC,
   prints tables and writes a picture of the clusters with their covariance ellipses on two chosen
   measurements, beside BIC against K (gmm_wine.png).
2. Trains a small VAE (2-D latent space, dynamic binarization) on scikit-learn's 8x8 digits and
   writes a grid of samples, the latent map coloured by digit and the decoded latent grid
   (vae_digits.png), with its test ELBO.

    python -m lvmkit.demo --out out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvmkit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--max-components", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-epochs", type=int, default=60)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_wine
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import StandardScaler

    from lvmkit import GaussianMixture
    from lvmkit.plot.mixture import plot_clusters, plot_criterion

    data = load_wine()
    X = StandardScaler().fit_transform(data.data)
    names = list(data.feature_names)
    types = ("full", "tied", "diag", "spherical")
    ks = range(1, args.max_components + 1)
    print(f"wine: {X.shape[0]} samples, {X.shape[1]} features (standardised); "
          f"K = 1..{args.max_components} x 4 covariance types, 5 restarts each\n")
    fits = {}
    for ct in types:
        for k in ks:
            start = time.perf_counter()
            gm = GaussianMixture(k, covariance_type=ct, n_init=5, max_iter=500,
                                 random_state=args.seed, dtype="float64").fit(X)
            fits[ct, k] = (gm, gm.bic(X), time.perf_counter() - start)
    best_ct, best_k = min(fits, key=lambda key: fits[key][1])
    best = fits[best_ct, best_k][0]

    print("BIC (lower is better)")
    print(f"{'K':>3} " + " ".join(f"{ct:>10}" for ct in types))
    for k in ks:
        cells = [f"{fits[ct, k][1]:>9.1f}" + ("*" if (ct, k) == (best_ct, best_k) else " ") for ct in types]
        print(f"{k:>3} " + " ".join(cells))
    header = f"{'K':>3} {'loglik/sample':>14} {'BIC':>9} {'iterations':>10} {'restarts min..max':>20} {'time (s)':>9}"
    print(f"\n{best_ct} covariance")
    print(header)
    print("-" * len(header))
    for k in ks:
        gm, bic, seconds = fits[best_ct, k]
        spread = f"{gm.restarts_.min():.3f}..{gm.restarts_.max():.3f}"
        print(f"{k:>3} {gm.score(X):>14.4f} {bic:>9.1f} {gm.n_iter_:>10} {spread:>20} {seconds:>9.3f}")
    ari = adjusted_rand_score(data.target, best.predict(X))
    print(f"\nBIC selects K = {best_k}, {best_ct} covariance; adjusted Rand index against the "
          f"3 cultivars: {ari:.3f}")

    dims = (names.index("flavanoids"), names.index("color_intensity"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    plot_clusters(best, X, dims=dims, ax=axes[0], feature_names=names,
                  title=f"wine: K = {best_k}, {best_ct}, selected by BIC (ARI {ari:.2f})")
    for ct in types:
        plot_criterion(list(ks), [fits[ct, k][1] for k in ks], ax=axes[1], label="BIC")
        axes[1].lines[-1].set_label(ct)
    axes[1].axvline(best_k, linestyle="--", color="grey")
    axes[1].legend(title="covariance")
    fig.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gmm_wine.png"
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    demo_vae(out, epochs=args.vae_epochs, seed=args.seed)
    return 0


def demo_vae(out: Path, epochs: int = 60, seed: int = 0) -> Path:
    """Train a 2-D VAE on the digits and draw samples, the latent map and the decoded grid."""
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from lvmkit import VAE
    from lvmkit.plot.vae import latent_map, manifold_grid, sample_grid

    digits = load_digits()
    X_train, X_test, _, y_test = train_test_split(digits.data / 16.0, digits.target, test_size=0.25, random_state=seed)
    start = time.perf_counter()
    vae = VAE(latent_dim=2, hidden_sizes=(128, 128), binarize="dynamic", epochs=epochs, batch_size=32,
              random_state=seed).fit(X_train)
    seconds = time.perf_counter() - start
    print(f"\nVAE on the 8x8 digits ({len(X_train)} training images, dynamic binarization, 2-D latent "
          f"space): {vae.n_iter_} epochs in {seconds:.1f} s; validation ELBO {vae.lower_bound_:.2f} "
          f"nats, test ELBO {vae.score(X_test):.2f} nats per image (a lower bound on log p(x)).")
    fig = plt.figure(figsize=(15, 5))
    panels = [sample_grid(vae, 64, image_shape=(8, 8)), latent_map(vae, X_test, y_test), manifold_grid(vae, 12, image_shape=(8, 8))]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for i, panel in enumerate(panels):
        canvas = FigureCanvasAgg(panel)
        canvas.draw()
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(np.asarray(canvas.buffer_rgba()))
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(out) / "vae_digits.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
