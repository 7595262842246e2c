"""The main job of ``make demo``: model selection for a Gaussian mixture on real data.

Fits lvmkit.GaussianMixture to scikit-learn's wine data (178 wines, 13 chemical measurements,
standardised) for K = 1..8 and all four covariance types, selects the pair with the lowest BIC,
prints tables and writes a picture of the clusters with their covariance ellipses on two chosen
measurements, beside BIC against K.

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
