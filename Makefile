# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench-deps bench-gmm bench-mixtures bench-hmm bench-factor bench-missing bench-lda bench-streaming bench-distributed bench-mnist bench-vae bench-vae-mnist bench-iwae-mnist bench-inference docs clean

# torch==2.13.0 is installed first, on its own: it is the CPU wheel these machines carry, so the
# project's looser range (torch>=2.4) is then satisfied without pulling CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lvmkit.demo --out out

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Ruff (configured in pyproject.toml, pinned in the dev extra): lint, then check the formatting
# (`ruff format` over the same paths fixes it; `ruff check --fix` fixes what it can).
LINT_PATHS := lvmkit tests bench examples
lint: $(STAMP)
	$(PIP) install --quiet -e ".[dev]"
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# Benchmarks need the peers (scikit-learn pinned, pomegranate); each writes its BENCHMARKS.md table.
bench-deps: $(STAMP)
	$(PIP) install --quiet -e ".[test,bench]"

bench-gmm: bench-deps
	$(PY) bench/gmm.py

bench-mixtures: bench-deps
	$(PY) bench/mixtures.py

# Gaussian HMMs (Baum-Welch) against hmmlearn and pomegranate, 2 threads each (~15 min).
bench-hmm: bench-deps
	$(PY) bench/hmm.py

# Factor analysis and probabilistic PCA against scikit-learn, 100,000 x 50 -> 10 (~5 min).
bench-factor: bench-deps
	$(PY) bench/factor.py

# Missing values (imputation on digits against scikit-learn's imputers), mixtures of factor
# analyzers against Gaussian mixtures (held-out), time per EM iteration with gaps (~3 min; 1
# thread, as the tables were measured on a loaded machine).
bench-missing: bench-deps
	$(PY) bench/missing.py --threads 1

# Latent Dirichlet allocation against scikit-learn and gensim, batch and online, 5,000 and
# 100,000 synthetic documents.
bench-lda: bench-deps
	$(PY) bench/lda.py

# Stepwise vs batch EM (N=4M) and a fit on a >32 GB .npy (written to /work/tmp_stream, then
# deleted; needs ~40 GB free disk and ~30 min).
bench-streaming: $(STAMP)
	$(PY) bench/streaming.py --threads 1

# 1 process x 2 threads against 2 processes x 1 thread (gloo), GMM N=2M, D=32, K=32 (~10 min).
bench-distributed: $(STAMP)
	$(PY) bench/distributed.py

# Needs ../shared/data/binarized-mnist.
bench-mnist: $(STAMP)
	$(PY) bench/bernoulli_mnist.py

# VAE training speed against a hand-written loop and Pyro (needs ../shared/data/mnist).
bench-vae: bench-deps
	$(PY) bench/vae.py

# The standard MNIST VAE (dynamic and static binarization), then its table and figures; long.
bench-vae-mnist: $(STAMP)
	$(PY) bench/vae_mnist.py --data mnist --minutes 90
	$(PY) bench/vae_mnist.py --data binarized --minutes 90
	$(PY) bench/vae_mnist.py --report

# IWAE k=5 and k=50 fine-tuned from the dynamic-MNIST VAE (after bench-vae-mnist), side by side.
bench-iwae-mnist: $(STAMP)
	pids=; for k in 5 50; do OMP_NUM_THREADS=1 $(PY) bench/vae_mnist.py --data mnist --objective iwae --train-k $$k \
	  --init out/vae-mnist/mnist/model.lvm --name iwae-k$$k --minutes 80 --k 100 & pids="$$pids $$!"; done; \
	  for p in $$pids; do wait $$p || exit 1; done
	for k in 5 50; do $(PY) bench/vae_mnist.py --data mnist --name iwae-k$$k --evaluate --k 5000 --threads 2 || exit 1; done
	$(PY) bench/vae_mnist.py --report-iwae

# Evaluation speed, importance vs prior sampling, gap report, gradient variance (after bench-vae-mnist).
bench-inference: $(STAMP)
	$(PY) bench/inference.py

# The documentation site (MkDocs + Material + mkdocstrings) into site/; --strict fails on any warning.
docs: $(STAMP)
	$(PIP) install --quiet -e ".[docs]"
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) out .pytest_cache
