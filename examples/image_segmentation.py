"""Colour segmentation of a photograph with lvmkit.GaussianMixture.

The pixels of scikit-learn's sample image ``china.jpg`` (427 x 640) are points in a 3-D colour
space (CIE Lab by default, where distances follow perceived colour differences; or RGB). A
mixture of K Gaussians is fitted to a random subsample of the pixels, then every pixel is
assigned to its most probable component and painted with the mean colour of its segment. The
posterior probabilities also give an uncertainty map: 1 - max_k p(k | pixel), high on the edges
between segments.

    python examples/image_segmentation.py --out out   # writes out/image_segmentation.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# sRGB (D65) -> CIE XYZ, and the D65 reference white.
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* of sRGB colours in [0, 1], shape (..., 3)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ SRGB_TO_XYZ.T / WHITE_D65
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the figure (default: out)")
    parser.add_argument("--n-components", type=int, default=8)
    parser.add_argument("--space", choices=("lab", "rgb"), default="lab")
    parser.add_argument(
        "--covariance-type", default="full", choices=("full", "tied", "diag", "spherical")
    )
    parser.add_argument("--n-fit", type=int, default=20_000, help="pixels to fit on (20,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_sample_image

    from lvmkit import GaussianMixture

    image = load_sample_image("china.jpg")  # (427, 640, 3) uint8; needs Pillow
    height, width, _ = image.shape
    rgb = image.reshape(-1, 3) / 255.0
    X = rgb_to_lab(rgb) if args.space == "lab" else rgb
    space = {"lab": "Lab", "rgb": "RGB"}[args.space]
    rng = np.random.default_rng(args.seed)
    fit_rows = rng.choice(len(X), size=min(args.n_fit, len(X)), replace=False)

    k = args.n_components
    gm = GaussianMixture(k, covariance_type=args.covariance_type, n_init=2, random_state=args.seed)
    t0 = time.perf_counter()
    gm.fit(X[fit_rows])
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = gm.predict_proba(X)  # every pixel
    predict_seconds = time.perf_counter() - t0
    labels = proba.argmax(1)
    uncertainty = 1.0 - proba.max(1)

    # Paint each segment with the mean RGB colour of its pixels.
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, 3))
    np.add.at(sums, labels, rgb)
    palette = sums / np.maximum(counts, 1)[:, None]
    segmented = palette[labels].reshape(height, width, 3)

    print(
        f"china.jpg: {height} x {width} = {len(X):,} pixels in {space}; "
        f"fitted K = {k} ({args.covariance_type}) on {len(fit_rows):,} of them in "
        f"{fit_seconds:.2f} s ({gm.n_iter_} EM iterations, restarts "
        f"{', '.join(f'{b:.3f}' for b in gm.restarts_)}), predicted all in "
        f"{predict_seconds:.2f} s"
    )
    print(
        f"mean log-likelihood per pixel: {gm.score(X):.3f} (fitted subsample "
        f"{gm.score(X[fit_rows]):.3f})\n"
    )
    order = np.argsort(counts)[::-1]
    uncertain = np.bincount(labels, weights=uncertainty > 0.2, minlength=k) / np.maximum(counts, 1)
    print(f"{'segment':>7} {'weight_':>8} {'pixels':>7} {'mean RGB':>9} {'uncertain':>10}")
    for c in order:
        colour = "#" + "".join(f"{int(round(255 * v)):02x}" for v in palette[c])
        print(
            f"{c:>7} {gm.weights_[c]:>8.3f} {counts[c] / len(X):>7.1%} {colour:>9} "
            f"{uncertain[c]:>10.1%}"
        )
    print(
        f"(uncertain: share of a segment's pixels whose top posterior is below 0.8; "
        f"{np.mean(uncertainty > 0.2):.1%} overall)"
    )

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4), layout="constrained")
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("original")
    axes[0, 1].imshow(segmented)
    axes[0, 1].set_title(f"segmented: K = {k} Gaussians in {space} (segment mean colours)")
    shown = axes[1, 0].imshow(uncertainty.reshape(height, width), cmap="magma", vmin=0, vmax=0.5)
    axes[1, 0].set_title("uncertainty: 1 - max posterior")
    fig.colorbar(shown, ax=axes[1, 0], shrink=0.8)
    for ax in axes.flat[:3]:
        ax.set_axis_off()
    ax = axes[1, 1]
    ax.barh(np.arange(k), counts[order] / len(X), color=palette[order], edgecolor="black")
    ax.set_yticks(np.arange(k), [f"segment {c}" for c in order])
    ax.invert_yaxis()
    ax.set_xlabel("share of the pixels")
    ax.set_title("segments, painted in their mean colour")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "image_segmentation.png"
    fig.savefig(path, dpi=100)
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
