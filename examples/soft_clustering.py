"""Soft clustering of handwritten digits with lvmkit.GaussianMixture.

scikit-learn's digits (1,797 images of 8 x 8 pixels) are projected on their first principal
components, K is chosen by BIC with ``select_components``, and the clusters are compared with the
true digits by the adjusted Rand index (ARI) for several K and covariance types. The mixture's
posterior probabilities show which images it is unsure about: the entropy of predict_proba, and
the most uncertain digits with the two components they hesitate between.

    python examples/soft_clustering.py --out out      # writes out/soft_clustering.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--pca", type=int, default=16, help="principal components kept (16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer K and restarts (for tests)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    from lvmkit import GaussianMixture
    from lvmkit.estimators.selection import select_components
    from lvmkit.plot.selection import plot_selection

    digits = load_digits()
    X = PCA(args.pca, random_state=args.seed).fit_transform(digits.data)
    y = digits.target
    n_init = 1 if args.quick else 2
    print(f"digits: {X.shape[0]} images, 64 pixels -> {args.pca} principal components\n")

    # --- K by BIC (on 80% of the rows; the best K is refitted on all of them)
    ks = range(6, 19, 4) if args.quick else range(4, 21, 2)
    template = GaussianMixture(
        covariance_type="full", n_init=n_init, max_iter=200, random_state=args.seed
    )
    table, best = select_components(template, X, ks, "bic", random_state=args.seed)
    best_k = table.attrs["best_n_components"]
    print("select_components (full covariance, BIC on the training 80%):")
    print(
        table[
            ["n_components", "lower_bound", "heldout_loglik", "bic", "n_iter", "fit_seconds"]
        ].to_string(index=False, float_format="%.3f")
    )
    print(
        f"-> BIC selects K = {best_k}; held-out log-likelihood peaks at K = "
        f"{int(table.loc[table['heldout_loglik'].idxmax(), 'n_components'])}\n"
    )

    # --- agreement with the true digits for several K and covariance types (one start each)
    types = ("full", "tied", "diag", "spherical")
    grid_ks = (10, best_k) if args.quick else sorted({5, 10, 15, 20, best_k})
    ari = pd.DataFrame(index=pd.Index(grid_ks, name="K"), columns=list(types), dtype=float)
    for ct in types:
        for k in grid_ks:
            gm = GaussianMixture(k, covariance_type=ct, max_iter=200, random_state=args.seed).fit(X)
            ari.loc[k, ct] = adjusted_rand_score(y, gm.predict(X))
    print("adjusted Rand index against the 10 true digits (1 = identical partition):")
    print(ari.to_string(float_format="%.3f"), "\n")

    # --- soft assignments of the selected model
    proba = best.predict_proba(X)
    entropy = -np.sum(proba * np.log(np.clip(proba, 1e-300, None)), axis=1)
    hard = proba.argmax(1)
    # Name every component by the digit most of its images are (for the captions only).
    counts = np.zeros((best_k, 10), dtype=int)
    np.add.at(counts, (hard, y), 1)
    majority = counts.argmax(1)
    top2 = np.argsort(proba, axis=1)[:, ::-1][:, :2]
    uncertain = np.argsort(entropy)[::-1][:12]
    confident = np.mean(proba.max(1) > 0.99)
    print(
        f"K = {best_k}: {confident:.0%} of the images are assigned with probability > 0.99; "
        f"median entropy {np.median(entropy):.3f} nats (max possible {np.log(best_k):.2f})."
    )
    print(f"ARI of the selected model: {adjusted_rand_score(y, hard):.3f}")
    print("most uncertain images (true digit: component 'digit' probability, ...):")
    for i in uncertain[:6]:
        a, b = top2[i]
        print(
            f"  image {i:4d} (a {y[i]}): component {a} '{majority[a]}' {proba[i, a]:.2f}, "
            f"component {b} '{majority[b]}' {proba[i, b]:.2f}"
        )

    # --- figure
    fig = plt.figure(figsize=(13, 9.5))
    outer = fig.add_gridspec(2, 2, hspace=0.5, wspace=0.28)
    plot_selection(table, ax=fig.add_subplot(outer[0, 0]))
    ax = fig.add_subplot(outer[0, 1])
    for ct in types:
        ax.plot(ari.index, ari[ct], marker="o", label=ct)
    ax.axvline(best_k, linestyle="--", color="grey", linewidth=1)
    ax.set(
        xlabel="number of components K",
        ylabel="adjusted Rand index vs true digits",
        title="clusters against the true digits",
        xticks=list(ari.index),
    )
    ax.legend(title="covariance", fontsize="small")
    ax = fig.add_subplot(outer[1, 0])
    ax.hist(entropy, bins=40, color="C0")
    ax.set_yscale("log")
    ax.set(
        xlabel="entropy of predict_proba (nats)",
        ylabel="images (log scale)",
        title=f"soft assignments, K = {best_k}: most images are certain",
    )
    cells = outer[1, 1].subgridspec(3, 4, hspace=0.75, wspace=0.15)
    for n, i in enumerate(uncertain):
        cell = fig.add_subplot(cells[n // 4, n % 4])
        cell.imshow(digits.images[i], cmap="gray_r")
        a, b = top2[i]
        cell.set_title(
            f"true {y[i]}\n'{majority[a]}' {proba[i, a]:.2f}  '{majority[b]}' {proba[i, b]:.2f}",
            fontsize=8,
        )
        cell.set_xticks([])
        cell.set_yticks([])
    fig.text(
        0.73,
        0.465,
        "the 12 most uncertain images: top two components\n"
        "(named by their majority digit) and their probabilities",
        ha="center",
        va="bottom",
        fontsize=10,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "soft_clustering.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
