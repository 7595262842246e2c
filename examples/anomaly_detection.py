"""Anomaly detection with a Gaussian mixture: an unseen digit among the known ones.

A ``MixtureAnomalyDetector`` learns the density of scikit-learn's handwritten digits from the
images of every digit but one (default: 8), after a PCA to 16 dimensions fitted on the training
images; K is chosen by held-out log-likelihood with ``select_components``. It is then shown
held-out images of the known digits mixed with images of the unseen digit, which it should flag
as improbable. Two threshold rules are compared:

- ``contamination=0.05``: the 5% quantile of the *training* log-densities. The mixture fits its
  own training images better than new ones, so more than 5% of new known images fall below it.
- ``threshold=t``: t is the 5% quantile of the log-densities of *validation* images of the
  known digits (never fitted on), which holds the false-alarm rate near 5%.

Reports precision and recall at each threshold, ROC AUC and average precision of
``score_samples``, and the most anomalous test images.

    python examples/anomaly_detection.py --out out    # writes out/anomaly_detection.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--anomaly-digit", type=int, default=8, choices=range(10))
    parser.add_argument(
        "--n-anomalies",
        type=int,
        default=60,
        help="images of the unseen digit in the test set (default 60)",
    )
    parser.add_argument("--contamination", type=float, default=0.05)
    parser.add_argument("--pca", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer K to try (for tests)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    from sklearn.model_selection import train_test_split

    from lvmkit import GaussianMixture
    from lvmkit.estimators.anomaly import MixtureAnomalyDetector
    from lvmkit.estimators.selection import select_components

    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    known = np.flatnonzero(digits.target != args.anomaly_digit)
    unseen = np.flatnonzero(digits.target == args.anomaly_digit)
    unseen = rng.choice(unseen, size=min(args.n_anomalies, len(unseen)), replace=False)
    train, test_known = train_test_split(known, test_size=0.3, random_state=args.seed)
    train, validation = train_test_split(train, test_size=0.2, random_state=args.seed)
    test = np.r_[test_known, unseen]
    is_anomaly = np.r_[np.zeros(len(test_known), bool), np.ones(len(unseen), bool)]

    pca = PCA(args.pca, random_state=args.seed).fit(digits.data[train])
    X_train, X_val, X_test = (pca.transform(digits.data[r]) for r in (train, validation, test))
    print(
        f"digits: train on {len(train)} images of the digits other than {args.anomaly_digit} "
        f"({len(validation)} more for validation); test on {len(test_known)} held-out known "
        f"images + {len(unseen)} images of {args.anomaly_digit} ({is_anomaly.mean():.0%} "
        f"anomalies); PCA to {args.pca} dimensions"
    )

    # Pixels range over 0..16: a variance floor of 1 (reg_covar) keeps a component from
    # collapsing onto a handful of near-identical images, which would overrate their density.
    template = GaussianMixture(
        covariance_type="full", reg_covar=1.0, n_init=2, random_state=args.seed
    )
    ks = (6, 10) if args.quick else range(4, 21, 4)
    table, _ = select_components(
        template, X_train, ks, "heldout", random_state=args.seed, refit=False
    )
    k = table.attrs["best_n_components"]
    print(f"held-out log-likelihood over K = {list(ks)} is highest at K = {k}")

    estimator = template.set_params(n_components=k)
    detector = MixtureAnomalyDetector(estimator, contamination=args.contamination).fit(X_train)
    scores = detector.score_samples(X_test)
    auc = roc_auc_score(is_anomaly, -scores)
    ap = average_precision_score(is_anomaly, -scores)
    print(
        f"threshold-free ranking by score_samples: ROC AUC {auc:.3f}, average precision {ap:.3f}\n"
    )
    validation_cut = float(np.quantile(detector.score_samples(X_val), args.contamination))
    calibrated = MixtureAnomalyDetector(estimator, threshold=validation_cut).fit(X_train)
    rules = {
        f"contamination={args.contamination:g}": detector,
        f"threshold={validation_cut:.1f}": calibrated,
    }
    header = (
        f"{'rule':<20} {'threshold_':>10} {'flagged':>8} {'precision':>9} {'recall':>7} "
        f"{'false alarms':>13}"
    )
    print(header)
    print("-" * len(header))
    points = {}
    for name, rule in rules.items():
        flagged = rule.predict(X_test) == -1
        hits = (flagged & is_anomaly).sum()
        precision, recall = hits / max(flagged.sum(), 1), hits / is_anomaly.sum()
        points[name] = (flagged[~is_anomaly].mean(), recall, precision, rule.threshold_)
        print(
            f"{name:<20} {rule.threshold_:>10.2f} {flagged.sum():>8} {precision:>9.3f} "
            f"{recall:>7.3f} {points[name][0]:>13.3f}"
        )
    print(
        f"(false alarms = share of the {len(test_known)} known test images flagged; both rules "
        f"aim at {args.contamination:.0%})"
    )
    flagged = detector.predict(X_test) == -1
    order = np.argsort(scores)
    print("\nthe 10 most anomalous test images:")
    print(f"{'rank':>4} {'image':>6} {'digit':>6} {'log-density':>12} {'flagged':>8}")
    for rank, i in enumerate(order[:10], start=1):
        print(
            f"{rank:>4} {test[i]:>6} {digits.target[test[i]]:>6} {scores[i]:>12.2f} "
            f"{'yes' if flagged[i] else 'no':>8}"
        )

    # --- figure: log-density histogram with the threshold, ROC curve, most anomalous images
    fig = plt.figure(figsize=(13, 8.5))
    outer = fig.add_gridspec(2, 1, height_ratios=[1.15, 1], hspace=0.35)
    top = outer[0].subgridspec(1, 2, width_ratios=[1.6, 1], wspace=0.25)
    ax = fig.add_subplot(top[0])
    train_scores = detector.score_samples(X_train)
    low = min(scores.min(), train_scores.min())
    bins = np.linspace(max(low, np.quantile(scores, 0.005) - 20), scores.max(), 50)
    ax.hist(
        np.clip(train_scores, bins[0], None),
        bins=bins,
        density=True,
        histtype="step",
        color="grey",
        linewidth=1.5,
        label="training images (known digits)",
    )
    ax.hist(
        np.clip(scores[~is_anomaly], bins[0], None),
        bins=bins,
        density=True,
        alpha=0.55,
        color="C0",
        label="test: known digits",
    )
    ax.hist(
        np.clip(scores[is_anomaly], bins[0], None),
        bins=bins,
        density=True,
        alpha=0.55,
        color="C3",
        label=f"test: unseen digit {args.anomaly_digit}",
    )
    for (name, (*_, cut)), style, source in zip(
        points.items(), ("--", ":"), ("training", "validation"), strict=False
    ):
        ax.axvline(
            cut,
            color="black",
            linestyle=style,
            label=f"{name} ({args.contamination:.0%} quantile of {source})",
        )
    ax.set(
        xlabel="log-density score_samples (nats; lower values clipped at the left edge)",
        ylabel="density",
        title="log-density under the mixture: anomalies sit to the left",
    )
    ax.legend(fontsize="small")
    ax = fig.add_subplot(top[1])
    fpr, tpr, _ = roc_curve(is_anomaly, -scores)
    ax.plot(fpr, tpr, color="C3", label=f"score_samples (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for (name, (fa, recall, precision, _)), marker in zip(points.items(), "os", strict=False):
        ax.plot(
            fa,
            recall,
            marker=marker,
            color="black",
            linestyle="none",
            label=f"{name.split('=')[0]}: precision {precision:.2f}",
        )
    ax.set(
        xlabel="false-alarm rate (known digits flagged)",
        ylabel="recall (unseen digit flagged)",
        title="ROC curve on the test images",
        aspect="equal",
    )
    ax.legend(fontsize="small", loc="lower right")
    cells = outer[1].subgridspec(2, 10, hspace=0.45, wspace=0.1)
    for n, i in enumerate(order[:20]):
        cell = fig.add_subplot(cells[n // 10, n % 10])
        cell.imshow(digits.images[test[i]], cmap="gray_r")
        colour = "C3" if is_anomaly[i] else "C0"
        cell.set_title(f"{digits.target[test[i]]}  ({scores[i]:.0f})", fontsize=9, color=colour)
        cell.set_xticks([])
        cell.set_yticks([])
        for spine in cell.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2)
    fig.text(
        0.5,
        0.455,
        f"the 20 most anomalous test images, lowest log-density first: true "
        f"digit (log-density); red = the unseen digit {args.anomaly_digit}, "
        "blue = a known digit",
        ha="center",
        fontsize=10,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "anomaly_detection.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
