"""The documentation site: `mkdocs build --strict` passes, the pages exist, and the nav is whole.

The docs extra (`pip install -e '.[docs]'`, or `make docs`) is not part of the test extra, so the
build tests skip when MkDocs, Material or mkdocstrings is missing. The nav check needs only PyYAML.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.plot.test_report import CHROMIUM_FLAGS, find_chromium

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"

DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


needs_docs_extra = pytest.mark.skipif(
    bool(_missing_docs_packages()),
    reason=f"the docs extra is not installed (missing: {', '.join(_missing_docs_packages())}); "
    "`make docs` or `pip install -e '.[docs]'` installs it",
)


def _load_config() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read mkdocs.yml")
    return yaml.safe_load(CONFIG.read_text())


def _nav_files(entries) -> list[str]:
    """Every page path of a MkDocs nav (nested lists of {title: path-or-list} or bare paths)."""
    files = []
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                files.extend(_nav_files(value))
            elif isinstance(value, str) and "://" not in value:
                files.append(value)
    return files


def test_every_nav_entry_points_to_a_file():
    config = _load_config()
    assert config.get("docs_dir", "docs") == "docs"
    nav = _nav_files(config["nav"])
    assert "index.md" in nav and any(path.startswith("api/") for path in nav)
    missing = [path for path in nav if not (DOCS / path).is_file()]
    assert not missing, f"mkdocs.yml's nav names pages that do not exist under docs/: {missing}"
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(CONFIG),
            "--site-dir",
            str(site_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    )
    return site_dir


def _page(site: Path, name: str) -> Path:
    """A page's HTML file, whether or not the build uses directory URLs."""
    for path in (site / f"{name}.html", site / name / "index.html"):
        if path.is_file():
            return path
    raise AssertionError(f"the built site has no page {name!r}")


@needs_docs_extra
def test_site_builds_with_home_and_api_pages(site):
    home = (site / "index.html").read_text()
    assert "<title>lvmkit</title>" in home
    assert "One bound under every model" in home and "make demo" in home

    api = _page(site, "api/mixtures").read_text()
    assert 'id="lvmkit.GaussianMixture"' in api, "mkdocstrings did not render GaussianMixture"
    assert "n_components" in api and "covariance_type" in api  # the parsed Parameters section
    assert 'id="lvmkit.GaussianMixture.fit"' in api  # an inherited method
    for name in (
        "api/vae",
        "api/inference",
        "api/distributed",
        "api/sources",
        "api/callbacks",
        "guide/mixtures",
        "guide/vae",
        "guide/distributed",
        "cli",
        "files",
        "examples",
        "benchmarks",
        "design-notes",
    ):
        _page(site, name)
    for figure in ("vae_digits.png", "gmm_wine.png", "anomaly_detection.png"):
        assert (site / figure).is_file()


@needs_docs_extra
def test_home_page_renders_in_headless_chromium(site, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "chromium is not installed (apt-get install chromium); the build is still tested"
        )
    env = {**os.environ, "HOME": str(tmp_path)}
    for page in (site / "index.html", _page(site, "api/mixtures")):
        profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
        result = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                page.as_uri(),
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
        assert not console, f"{page.name}: {console}"
        # Material's script ran: it adds a copy button to every code block.
        assert 'data-md-type="copy"' in result.stdout, (
            f"{page.name}: the theme's JavaScript did not run"
        )
