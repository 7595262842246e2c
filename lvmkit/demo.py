"""The main job of ``make demo``: a Gaussian mixture and a variational autoencoder on real data.

1. Fits lvmkit.GaussianMixture to scikit-learn's wine data (178 wines, 13 chemical measurements,
   standardised) for K = 1..8 and all four covariance types, selects the pair with the lowest BIC,
   prints tables and writes a picture of the clusters with their covariance ellipses on two chosen
   measurements, beside BIC against K (gmm_wine.png).
2. Trains a VAE (2-D latent space, two hidden layers of 256, dynamic binarization, KL warm-up;
   300 epochs, about a minute on two cores) on scikit-learn's 8x8 digits and writes a grid of
   samples, the latent map coloured by digit and the decoded latent grid under its test ELBO
   (vae_digits.png).

    python -m lvmkit.demo --out out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lvmkit.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--max-components", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--vae-epochs", type=int, default=300, help="epochs of VAE training (default: 300)"
    )
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
    print(
        f"wine: {X.shape[0]} samples, {X.shape[1]} features (standardised); "
        f"K = 1..{args.max_components} x 4 covariance types, 5 restarts each\n"
    )
    fits = {}
    for ct in types:
        for k in ks:
            start = time.perf_counter()
            gm = GaussianMixture(
                k,
                covariance_type=ct,
                n_init=5,
                max_iter=500,
                random_state=args.seed,
                dtype="float64",
            ).fit(X)
            fits[ct, k] = (gm, gm.bic(X), time.perf_counter() - start)
    best_ct, best_k = min(fits, key=lambda key: fits[key][1])
    best = fits[best_ct, best_k][0]

    print("BIC (lower is better)")
    print(f"{'K':>3} " + " ".join(f"{ct:>10}" for ct in types))
    for k in ks:
        cells = [
            f"{fits[ct, k][1]:>9.1f}" + ("*" if (ct, k) == (best_ct, best_k) else " ")
            for ct in types
        ]
        print(f"{k:>3} " + " ".join(cells))
    header = (
        f"{'K':>3} {'loglik/sample':>14} {'BIC':>9} {'iterations':>10} "
        f"{'restarts min..max':>20} {'time (s)':>9}"
    )
    print(f"\n{best_ct} covariance")
    print(header)
    print("-" * len(header))
    for k in ks:
        gm, bic, seconds = fits[best_ct, k]
        spread = f"{gm.restarts_.min():.3f}..{gm.restarts_.max():.3f}"
        print(
            f"{k:>3} {gm.score(X):>14.4f} {bic:>9.1f} {gm.n_iter_:>10} {spread:>20} {seconds:>9.3f}"
        )
    ari = adjusted_rand_score(data.target, best.predict(X))
    print(
        f"\nBIC selects K = {best_k}, {best_ct} covariance; adjusted Rand index against the "
        f"3 cultivars: {ari:.3f}"
    )

    dims = (names.index("flavanoids"), names.index("color_intensity"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    plot_clusters(
        best,
        X,
        dims=dims,
        ax=axes[0],
        feature_names=names,
        title=f"wine: K = {best_k}, {best_ct}, selected by BIC (ARI {ari:.2f})",
    )
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


# The demo's VAE: wide enough and trained long enough (about a minute on two cores) that its
# samples and its decoded latent grid read as digits. KL warm-up lets the decoder learn to use z
# before the KL term pulls q(z | x) towards the prior; the weights kept
# are the best validation epoch.
VAE_SETTINGS = {
    "latent_dim": 2,
    "hidden_sizes": (256, 256),
    "activation": "relu",
    "binarize": "dynamic",
    "batch_size": 64,
    "lr": 2e-3,
    "kl_warmup": 20,
    "patience": None,
}


def demo_vae(out: Path, epochs: int = 300, seed: int = 0) -> Path:
    """Train a 2-D VAE on the digits and draw samples, the latent map and the decoded grid."""
    import matplotlib.pyplot as plt
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from lvmkit import VAE
    from lvmkit.plot.vae import latent_map, manifold_grid, sample_grid

    digits = load_digits()
    X_train, X_test, _, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.25, random_state=seed
    )
    # One thread: networks this small gain little from more (two threads on two idle cores: about
    # 1.4 times faster), and lose a lot when the cores are busy (there: several times slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        vae = VAE(epochs=epochs, random_state=seed, **VAE_SETTINGS).fit(X_train)
        seconds = time.perf_counter() - start
        test_elbo = vae.score(X_test)
    finally:
        torch.set_num_threads(threads)
    n_val = round(vae.validation_fraction * len(X_train))  # held out by fit, as it splits
    print(
        f"\nVAE on the 8x8 digits ({len(X_train) - n_val} training and {n_val} validation images, "
        f"dynamic binarization, 2-D latent space, hidden layers {VAE_SETTINGS['hidden_sizes']}): "
        f"{vae.n_iter_} epochs in {seconds:.1f} s; best validation ELBO {vae.lower_bound_:.2f} "
        f"nats (epoch {vae.best_epoch_}, the weights kept), test ELBO {test_elbo:.2f} nats per "
        f"image ({len(X_test)} images; a lower bound on log p(x))."
    )

    # A title band above three panels side by side, each a subfigure: the grids draw their own
    # tiles and titles in theirs, the latent map keeps margins for its labels and legend.
    width, height, head = 15.0, 5.6, 0.45
    fig = plt.figure(figsize=(width, height))
    top, body = fig.subfigures(2, 1, height_ratios=(head, height - head), hspace=0)
    top.suptitle(
        f"VAE with a 2-D latent space on scikit-learn's 8x8 digits: test ELBO {test_elbo:.2f} "
        "nats per image",
        fontsize=12,
        y=0.5,
        va="center",
    )
    samples, middle, grid = body.subfigures(1, 3, width_ratios=(1.0, 1.1, 1.0), wspace=0)
    sample_grid(vae, 64, image_shape=(8, 8), fig=samples)
    w, h = middle.bbox.width / fig.dpi, middle.bbox.height / fig.dpi
    # Margins in inches: tick labels and axis labels left and below, the
    # title above, the legend right.
    ax = middle.add_subplot(
        middle.add_gridspec(left=0.6 / w, right=1 - 0.75 / w, bottom=0.55 / h, top=1 - 0.34 / h)[0]
    )
    latent_map(vae, X_test, y_test, ax=ax)
    ax.set_title(f"latent map: encoder means of the {len(X_test)} test images", fontsize=10)
    ax.legend(
        title="digit",
        markerscale=3,
        fontsize=8,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )
    ax.set_aspect("equal", adjustable="datalim")
    manifold_grid(vae, 12, image_shape=(8, 8), fig=grid)
    path = Path(out) / "vae_digits.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
