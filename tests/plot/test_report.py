"""The HTML report: self-contained, one section per picture, and it renders in a real browser."""

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from lvmkit import BernoulliMixture, GaussianMixture, MixtureAnomalyDetector
from lvmkit.plot.report import SECTIONS, ReportContext, Section, register_sections, write_report
from tests.conftest import IN_CI, blobs, quiet

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def gmm_report(tmp_path_factory):
    X = blobs(n=200, d=3, k=3)[0]
    model = quiet(GaussianMixture(3, n_init=2, random_state=0).fit, X)
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(model, X, path, context=ReportContext(feature_names=["a", "b", "c"]))
    return path


def assert_self_contained(page: str):
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=\"(?!data:)", page), "every resource must be embedded"
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_gmm_report_sections(gmm_report):
    page = gmm_report.read_text()
    assert_self_contained(page)
    for title in ("Summary", "Training curve", "Clusters", "BIC against K", "Samples", "Restarts"):
        assert f"<h2>{title}</h2>" in page
    assert page.count('src="data:image/png;base64,') == 5
    assert "projected exactly onto the first two principal components" in page
    assert "GaussianMixture" in page and "mean log-likelihood on the data" in page


def test_image_and_detector_reports(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((60, 16)) < np.repeat([[0.1] * 8 + [0.9] * 8, [0.9] * 8 + [0.1] * 8], 30, 0)
    model = quiet(BernoulliMixture(2, random_state=0).fit, X.astype(float))
    write_report(
        model,
        X.astype(float),
        tmp_path / "b.html",
        context=ReportContext(image_shape=(4, 4), bic=False),
    )
    page = (tmp_path / "b.html").read_text()
    assert_self_contained(page)
    assert "<h2>Components</h2>" in page and "BIC against K" not in page

    Y = blobs(n=150, d=2, k=2)[0]
    detector = quiet(MixtureAnomalyDetector(GaussianMixture(2, random_state=0)).fit, Y)
    write_report(detector, Y, tmp_path / "d.html", context=ReportContext(bic=False))
    page = (tmp_path / "d.html").read_text()
    assert "<h2>Outliers</h2>" in page and "<h2>Clusters</h2>" in page


def test_registered_sections_are_used(tmp_path):
    class Toy(GaussianMixture):
        pass

    @register_sections("Toy")
    def toy_sections(model, X, context):
        return [Section("Toy section", html="<p>hello &amp; welcome</p>", note="a <note>")]

    try:
        X = blobs(n=60, d=2, k=2)[0]
        model = quiet(Toy(2, random_state=0).fit, X)
        page = write_report(model, X, tmp_path / "t.html").read_text()
    finally:
        SECTIONS.pop("Toy")
    assert "<h2>Toy section</h2>" in page and "<p>hello &amp; welcome</p>" in page
    assert "a &lt;note&gt;" in page


# A test-only script injected into a copy of the page: once everything has loaded, it records
# how many images decoded. The report itself carries no script.
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var ok = 0, imgs = document.images;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
</script></body>"""


def test_report_renders_in_headless_chromium(gmm_report, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    shot = tmp_path / "shot.png"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1100,2400",
            f"--screenshot={shot}",
            gmm_report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot is blank or nearly so"

    instrumented = tmp_path / "instrumented.html"
    instrumented.write_text(gmm_report.read_text().replace("</body>", CHECK_SCRIPT))
    profile2 = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    result = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile2}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            instrumented.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    console = [
        line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    assert not console, console
    assert 'data-images-loaded="5/5"' in result.stdout
